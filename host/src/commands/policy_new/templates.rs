//! The files `relaygate policy new` writes, embedded in the binary: one table
//! entry per language, built from `policies/template/<lang>/` (the rules,
//! tests, glue and cases every template shares) and
//! `policies/template/project/<lang>/` (what a project outside the repository
//! needs instead: its build script, and the `stateful-policy` variants).

/// One file of a project.
pub struct File {
    /// Where it goes, relative to the project folder.
    pub path: &'static str,
    /// Its contents before the project's name is filled in.
    pub contents: &'static [u8],
    /// Its line in the project README's file table; empty for none.
    pub about: &'static str,
}

/// What one language's project is made of.
pub struct Template {
    /// The language as `relaygate policy new` names it.
    pub language: &'static str,
    /// The language as the README names it.
    pub title: &'static str,
    /// What to install, for the README.
    pub install: &'static str,
    /// The command that runs the unit tests alone, for the README.
    pub unit_tests: &'static str,
    /// The project of the world `policy`.
    pub files: &'static [File],
    /// The files that replace (same path) or join those of `files` for the
    /// world `stateful-policy`; `None` where this language has no such
    /// variant yet.
    pub stateful: Option<&'static [File]>,
    /// The folder the world's C bindings are written into, for languages
    /// that link them (`gen/policy.h`, `gen/policy.c`,
    /// `gen/policy_component_type.o`).
    pub c_bindings: Option<&'static str>,
}

/// A file of `policies/template/`, embedded at build time.
macro_rules! embed {
    ($path:literal, $source:literal, $about:expr) => {
        File {
            path: $path,
            contents: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../policies/template/",
                $source
            )),
            about: $about,
        }
    };
}

/// The WIT contract, written into every project's `wit/`.
pub const WIT: &[File] = &[
    File {
        path: "wit/policy.wit",
        contents: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/policy.wit")),
        about: "the WIT contract (world `policy`): every hook, record and import, documented",
    },
    File {
        path: "wit/state.wit",
        contents: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/state.wit")),
        about: "the `state` import and the world `stateful-policy`",
    },
];

/// The project README, with `{{...}}` placeholders.
pub const README: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../policies/template/project/README.md"
));

/// Every language `relaygate policy new` writes, in the order its help lists them.
pub const TEMPLATES: &[Template] = &[RUST, C, ZIG, PYTHON, JAVASCRIPT];

/// The template of `language`, if there is one.
pub fn find(language: &str) -> Option<&'static Template> {
    TEMPLATES
        .iter()
        .find(|template| template.language == language)
}

const CASES_ABOUT: &str = "the cases `relaygate policy test` plays through the component";

const RUST: Template = Template {
    language: "rust",
    title: "Rust",
    install: "Needs Rust (rustup, stable 1.95 or later) with the `wasm32-unknown-unknown` \
              target, which `build.sh` adds when it is missing. The component needs no WASI.",
    unit_tests: "cargo test",
    files: &[
        embed!(
            "src/lib.rs",
            "rust/src/lib.rs",
            "the rules, with their unit tests"
        ),
        embed!(
            "src/component.rs",
            "rust/src/component.rs",
            "the WIT glue: the hooks call the rules"
        ),
        embed!(
            "Cargo.toml",
            "rust/Cargo.toml",
            "the crate (wit-bindgen, only for wasm32)"
        ),
        embed!("Cargo.lock", "rust/Cargo.lock", ""),
        embed!(
            ".cargo/config.toml",
            "project/rust/cargo-config.toml",
            "links with wasm-component-ld, which writes the component"
        ),
        embed!(
            "build.sh",
            "project/rust/build.sh",
            "unit tests, then the component"
        ),
        embed!("cases.toml", "rust/cases.toml", CASES_ABOUT),
        embed!(".gitignore", "rust/.gitignore", ""),
    ],
    stateful: Some(&[
        embed!(
            "src/lib.rs",
            "project/rust/stateful/lib.rs",
            "the rules, with their unit tests"
        ),
        embed!(
            "src/component.rs",
            "project/rust/stateful/component.rs",
            "the WIT glue: the hooks call the rules and count in the state store"
        ),
        embed!(
            "cases.toml",
            "project/rust/stateful/cases.toml",
            CASES_ABOUT
        ),
    ]),
    c_bindings: None,
};

const C: Template = Template {
    language: "c",
    title: "C",
    install: "Needs clang with wasi-libc (Debian: `apt-get install clang-19 lld-19 wasi-libc \
              libclang-rt-19-dev-wasm32`; `CLANG=...` picks another clang), and relaygate \
              itself, whose `relaygate policy componentize` turns the core module into a \
              component (`RELAYGATE=...` picks the binary). The bindings are in `gen/`.",
    unit_tests: "test/run.sh",
    files: &[
        embed!("rules.c", "c/rules.c", "the rules"),
        embed!("rules.h", "c/rules.h", "their interface"),
        embed!(
            "test/test_rules.c",
            "c/test/test_rules.c",
            "their unit tests"
        ),
        embed!(
            "test/run.sh",
            "c/test/run.sh",
            "compiles and runs the unit tests natively"
        ),
        embed!(
            "policy.c",
            "c/policy.c",
            "the WIT glue: the hooks call the rules"
        ),
        embed!(
            "build.sh",
            "project/c/build.sh",
            "unit tests, then the component"
        ),
        embed!("cases.toml", "c/cases.toml", CASES_ABOUT),
        embed!(".gitignore", "project/c/gitignore", ""),
    ],
    stateful: Some(&[
        embed!("rules.c", "project/c/stateful/rules.c", "the rules"),
        embed!("rules.h", "project/c/stateful/rules.h", "their interface"),
        embed!(
            "test/test_rules.c",
            "project/c/stateful/test_rules.c",
            "their unit tests"
        ),
        embed!(
            "policy.c",
            "project/c/stateful/policy.c",
            "the WIT glue: the hooks call the rules and count in the state store"
        ),
        embed!("cases.toml", "project/c/stateful/cases.toml", CASES_ABOUT),
    ]),
    c_bindings: Some("gen"),
};

const ZIG: Template = Template {
    language: "zig",
    title: "Zig",
    install: "Needs Python 3 with `venv` (Debian: `python3-venv`): `build.sh` installs Zig \
              0.17.0 (`ziglang` on PyPI) into `.venv/` on first use (`ZIG=...` names a `zig` \
              binary already installed). And relaygate itself, whose `relaygate policy \
              componentize` turns the core module into a component (`RELAYGATE=...` picks the \
              binary). The bindings are in `gen/`; the module is built for \
              `wasm32-freestanding`, so it imports no WASI.",
    unit_tests: "zig test rules.zig",
    files: &[
        embed!(
            "rules.zig",
            "zig/rules.zig",
            "the rules, with their unit tests"
        ),
        embed!(
            "policy.zig",
            "zig/policy.zig",
            "the WIT glue: the hooks call the rules; a panic traps"
        ),
        embed!(
            "libc.zig",
            "zig/libc.zig",
            "`malloc`, `free` and the rest the C glue calls, on Zig's allocator"
        ),
        embed!(
            "build.sh",
            "project/zig/build.sh",
            "unit tests, then the component"
        ),
        embed!("cases.toml", "zig/cases.toml", CASES_ABOUT),
        embed!(".gitignore", "project/zig/gitignore", ""),
    ],
    stateful: None,
    c_bindings: Some("gen"),
};

const PYTHON: Template = Template {
    language: "python",
    title: "Python",
    install: "Needs Python 3 with `venv` (Debian: `python3-venv`). `build.sh` installs \
              componentize-py 0.25.1 into `.venv/` on first use (`COMPONENTIZE_PY=...` \
              names one already installed).",
    unit_tests: "python3 -m unittest discover -s tests",
    files: &[
        embed!("rules.py", "python/rules.py", "the rules"),
        embed!(
            "tests/test_rules.py",
            "python/tests/test_rules.py",
            "their unit tests"
        ),
        embed!(
            "app.py",
            "python/app.py",
            "the WIT glue: the hooks call the rules"
        ),
        embed!(
            "build.sh",
            "project/python/build.sh",
            "unit tests, then the component"
        ),
        embed!("cases.toml", "python/cases.toml", CASES_ABOUT),
        embed!(".gitignore", "project/python/gitignore", ""),
    ],
    stateful: Some(&[
        embed!("rules.py", "project/python/stateful/rules.py", "the rules"),
        embed!(
            "tests/test_rules.py",
            "project/python/stateful/test_rules.py",
            "their unit tests"
        ),
        embed!(
            "app.py",
            "project/python/stateful/app.py",
            "the WIT glue: the hooks call the rules and count in the state store"
        ),
        embed!(
            "cases.toml",
            "project/python/stateful/cases.toml",
            CASES_ABOUT
        ),
    ]),
    c_bindings: None,
};

const JAVASCRIPT: Template = Template {
    language: "javascript",
    title: "JavaScript",
    install: "Needs Node.js 18 or later and npm. `build.sh` runs `npm ci` on first use, which \
              installs componentize-qjs as pinned in `package-lock.json`.",
    unit_tests: "node --test test/*.test.js",
    files: &[
        embed!("rules.js", "javascript/rules.js", "the rules"),
        embed!(
            "test/rules.test.js",
            "javascript/test/rules.test.js",
            "their unit tests"
        ),
        embed!(
            "policy.js",
            "javascript/policy.js",
            "the WIT glue: the hooks call the rules"
        ),
        embed!(
            "package.json",
            "javascript/package.json",
            "the package (componentize-qjs)"
        ),
        embed!("package-lock.json", "javascript/package-lock.json", ""),
        embed!(
            "build.sh",
            "project/javascript/build.sh",
            "unit tests, then the component"
        ),
        embed!("cases.toml", "javascript/cases.toml", CASES_ABOUT),
        embed!(".gitignore", "javascript/.gitignore", ""),
    ],
    stateful: Some(&[
        embed!(
            "rules.js",
            "project/javascript/stateful/rules.js",
            "the rules"
        ),
        embed!(
            "test/rules.test.js",
            "project/javascript/stateful/rules.test.js",
            "their unit tests"
        ),
        embed!(
            "policy.js",
            "project/javascript/stateful/policy.js",
            "the WIT glue: the hooks call the rules and count in the state store"
        ),
        embed!(
            "cases.toml",
            "project/javascript/stateful/cases.toml",
            CASES_ABOUT
        ),
    ]),
    c_bindings: None,
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The Zig project installs the Zig the repository's own builds pin.
    #[test]
    fn the_zig_project_pins_the_zig_of_the_repository() {
        let tools = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/tools.sh"));
        let pinned = tools
            .lines()
            .find_map(|line| line.strip_prefix("ZIGLANG_VERSION="))
            .and_then(|rest| rest.split_whitespace().next())
            .expect("policies/tools.sh pins ziglang");
        let build = ZIG
            .files
            .iter()
            .find(|file| file.path == "build.sh")
            .expect("a build script");
        let build = std::str::from_utf8(build.contents).unwrap();
        assert!(build.contains(&format!("version={pinned}\n")), "{build}");
        assert!(ZIG.install.contains(pinned), "{}", ZIG.install);
    }
}
