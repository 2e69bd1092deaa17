//! `relaygate policy new LANG NAME`: writes a policy project into a new
//! folder, ready to build and test outside the repository (the WIT contract
//! and any bindings included), from the templates embedded in [`templates`].

mod c_bindings;
mod templates;

use anyhow::{Context, anyhow};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use templates::{File, Template};

/// The WIT world a new project's component is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyWorld {
    /// The hooks and the imports every policy gets.
    Policy,
    /// `policy` plus the `state` import: a store that outlives the session.
    StatefulPolicy,
}

impl PolicyWorld {
    /// The world's name in the WIT files.
    fn wit_name(self) -> &'static str {
        match self {
            Self::Policy => "policy",
            Self::StatefulPolicy => "stateful-policy",
        }
    }
}

/// Why `relaygate policy new` wrote nothing.
#[derive(Debug)]
pub enum NewError {
    /// The arguments ask for something there is no template for.
    Usage(String),
    /// The project could not be written.
    Failed(anyhow::Error),
}

/// The languages `relaygate policy new` writes projects in.
pub fn policy_languages() -> Vec<&'static str> {
    templates::TEMPLATES.iter().map(|t| t.language).collect()
}

/// Checks a policy name: the project folder, the package name and the name
/// `init` reports. Lower-case ASCII letters, digits and single dashes, starting
/// with a letter, at most 64 characters.
pub fn parse_policy_name(name: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if name.is_empty() || name.len() > 64 {
        return Err("a policy name has 1 to 64 characters".to_owned());
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("a policy name starts with a lower-case letter (a-z)".to_owned());
    }
    if !name.chars().all(allowed) || name.ends_with('-') || name.contains("--") {
        return Err(
            "a policy name has only lower-case letters, digits and single dashes inside, like my-policy"
                .to_owned(),
        );
    }
    Ok(name.to_owned())
}

/// Writes the project of `language` and `world` into the new folder
/// `dir/name`, and says what it wrote and what to run next.
pub fn policy_new(
    language: &str,
    name: &str,
    world: PolicyWorld,
    dir: &Path,
) -> Result<PathBuf, NewError> {
    let template = templates::find(language).ok_or_else(|| {
        NewError::Usage(format!(
            "no template for {language:?}; there are {}",
            policy_languages().join(", ")
        ))
    })?;
    let files = project_files(template, name, world)?;
    let folder = dir.join(name);
    ensure_fresh(&folder).map_err(NewError::Failed)?;
    write_project(&folder, &files).map_err(NewError::Failed)?;
    println!(
        "wrote the {} policy {name} (world {}) to {}:",
        template.title,
        world.wit_name(),
        folder.display()
    );
    for (path, _) in &files {
        println!("  {path}");
    }
    println!(
        "next: cd {} && ./build.sh && relaygate policy test policy.wasm cases.toml",
        folder.display()
    );
    Ok(folder)
}

/// Every file of the project, its name filled in: the template's files (the
/// stateful variant's in place of theirs), the WIT files, any bindings and
/// the README.
fn project_files(
    template: &Template,
    name: &str,
    world: PolicyWorld,
) -> Result<Vec<(String, Vec<u8>)>, NewError> {
    let overlay: &[File] = match (world, template.stateful) {
        (PolicyWorld::Policy, _) => &[],
        (PolicyWorld::StatefulPolicy, Some(files)) => files,
        (PolicyWorld::StatefulPolicy, None) => {
            let offered: Vec<&str> = templates::TEMPLATES
                .iter()
                .filter(|t| t.stateful.is_some())
                .map(|t| t.language)
                .collect();
            return Err(NewError::Usage(format!(
                "there is no stateful-policy template for {} yet (there is for {}); \
                 start from --world policy and import `state` as wit/state.wit describes",
                template.language,
                offered.join(", ")
            )));
        }
    };
    let replaced = |file: &'static File| overlay.iter().find(|o| o.path == file.path);
    let added = overlay
        .iter()
        .filter(|o| !template.files.iter().any(|file| file.path == o.path));
    let chosen: Vec<&File> = template
        .files
        .iter()
        .map(|file| replaced(file).unwrap_or(file))
        .chain(added)
        .chain(templates::WIT)
        .collect();
    let mut files: Vec<(String, Vec<u8>)> = chosen
        .iter()
        .map(|file| (file.path.to_owned(), fill(file.contents, name, world)))
        .collect();
    if let Some(folder) = template.c_bindings {
        let bindings = c_bindings::generate(world.wit_name()).map_err(NewError::Failed)?;
        files.extend(
            bindings
                .into_iter()
                .map(|(file, bytes)| (format!("{folder}/{file}"), bytes)),
        );
    }
    let readme = readme(template, name, world, &chosen);
    files.push(("README.md".to_owned(), readme.into_bytes()));
    Ok(files)
}

/// The template text with the project's name and world in place of the
/// template's, and the repository's `wit/` replaced by the project's own.
fn fill(contents: &[u8], name: &str, world: PolicyWorld) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(contents) else {
        return contents.to_vec();
    };
    text.replace("relaygate-policy-template", name)
        .replace("my-policy", name)
        .replace("my_policy", &name.replace('-', "_"))
        .replace("../../../wit", "wit")
        .replace("`cargo xtask c-bindings gen`", "`relaygate policy new`")
        .replace("{{world_c}}", &world.wit_name().replace('-', "_"))
        .replace("{{world}}", world.wit_name())
        .into_bytes()
}

/// The project README: how to build, test and hot-swap it.
fn readme(template: &Template, name: &str, world: PolicyWorld, chosen: &[&File]) -> String {
    let (rule, config) = match world {
        PolicyWorld::Policy => (
            "It refuses mail from the sender domains in the config key `blocked_domains` \
             (`550 5.7.1`) and accepts everything else: replace that rule with yours.",
            "blocked_domains = [\"spam.example\"]",
        ),
        PolicyWorld::StatefulPolicy => (
            "It refuses mail from the sender domains in the config key `blocked_domains` \
             (`550 5.7.1`), and counts each client's recipients in relaygate's state store \
             (the `state` import; relaygate keeps it in memory or in Redis, see `[state]`), \
             deferring those over `max_recipients_per_hour` (default 100) with `450 4.7.1`, \
             and with `451 4.3.0` when the store cannot be reached. Replace the rules with \
             yours.",
            "blocked_domains = [\"spam.example\"]\nmax_recipients_per_hour = 100",
        ),
    };
    let mut table: Vec<String> = chosen
        .iter()
        .filter(|file| !file.about.is_empty())
        .map(|file| format!("| `{}` | {} |", file.path, file.about))
        .collect();
    if let Some(folder) = template.c_bindings {
        table.push(format!(
            "| `{folder}/` | the C bindings of the world, generated from `wit/` by wit-bindgen |"
        ));
    }
    templates::README
        .replace("{{name}}", name)
        .replace("{{language}}", template.title)
        .replace("{{world}}", world.wit_name())
        .replace("{{rule}}", rule)
        .replace("{{files}}", &table.join("\n"))
        .replace("{{install}}", template.install)
        .replace("{{unit_tests}}", template.unit_tests)
        .replace("{{config}}", config)
}

/// Refuses a folder that exists and is not empty (or is not a folder).
fn ensure_fresh(folder: &Path) -> anyhow::Result<()> {
    match fs::read_dir(folder) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(anyhow!(
                    "{} already exists and is not empty; refusing to overwrite it",
                    folder.display()
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("{} cannot be used", folder.display())),
    }
}

/// Writes the files under `folder`; scripts (`*.sh`) are made executable.
fn write_project(folder: &Path, files: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    for (relative, bytes) in files {
        let path = folder.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        if relative.ends_with(".sh") {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .with_context(|| format!("making {} executable", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_language_without_a_stateful_variant_is_refused_by_name() {
        let template = Template {
            language: "plain",
            title: "Plain",
            install: "",
            unit_tests: "",
            files: &[],
            stateful: None,
            c_bindings: None,
        };
        let Err(NewError::Usage(problem)) =
            project_files(&template, "x", PolicyWorld::StatefulPolicy)
        else {
            panic!("a stateful project without a template");
        };
        assert!(
            problem.contains("no stateful-policy template for plain"),
            "{problem}"
        );
        assert!(project_files(&template, "x", PolicyWorld::Policy).is_ok());
    }

    #[test]
    fn names_fit_every_language_s_package_rules() {
        for good in ["a", "my-policy", "rate-limit2"] {
            assert_eq!(parse_policy_name(good).as_deref(), Ok(good));
        }
        let long = "a".repeat(65);
        for bad in [
            "",
            "A",
            "9a",
            "a_b",
            "a--b",
            "a-",
            "a.b",
            "a/b",
            long.as_str(),
        ] {
            assert!(parse_policy_name(bad).is_err(), "{bad:?}");
        }
    }
}
