//! `relaygate policy check FILE [--config FILE]`: does a component fit this
//! proxy? Names the WIT package and version it was built for, lists its
//! imports and exports, says why it does not fit, reports its size and
//! compile time, and what its `init` says about the config's
//! `[policy.config]` (an empty table without `--config`).

use anyhow::{Context, bail};
use relaygate::config::{Config, readable_is_enough};
use relaygate::policy::{
    LoadError, PolicyEngine, PolicyServices, WIT_PACKAGE, WIT_VERSION, semver_compatible,
};
use relaygate::policy_test::read_module;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

/// The interfaces of our package a policy may import.
const HOST_INTERFACES: [&str; 6] = ["types", "config", "log", "dns", "server", "state"];
/// The interface a policy must export.
const HOOKS: &str = "hooks";
/// WASI 0.2 interfaces the host links (with no capabilities), by prefix.
const WASI_GIVEN: [&str; 7] = [
    "wasi:cli/",
    "wasi:clocks/wall-clock@",
    "wasi:clocks/monotonic-clock@",
    "wasi:filesystem/",
    "wasi:io/",
    "wasi:random/",
    "wasi:sockets/",
];

/// An interface name split into `package`, `interface` and `version`.
fn split_name(name: &str) -> Option<(&str, &str, Option<&str>)> {
    let (package, rest) = name.split_once('/')?;
    Some(match rest.split_once('@') {
        Some((interface, version)) => (package, interface, Some(version)),
        None => (package, rest, None),
    })
}

/// Whether the host gives the WASI interface `name`.
fn wasi_given(name: &str) -> bool {
    let version_ok = split_name(name)
        .and_then(|(_, _, version)| version)
        .is_some_and(|v| semver_compatible(v, "0.2.0"));
    version_ok && WASI_GIVEN.iter().any(|prefix| name.starts_with(prefix))
}

/// What is wrong with a component's imports and exports, from their names.
fn problems(exports: &[String], imports: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let ours = |name: &str, wanted: &str| {
        split_name(name).is_some_and(|(p, i, _)| p == WIT_PACKAGE && i == wanted)
    };
    let version_of = |name: &String| split_name(name).and_then(|(_, _, v)| v.map(str::to_string));
    match exports.iter().find(|n| ours(n, HOOKS)) {
        None => problems.push(format!(
            "it does not export {WIT_PACKAGE}/{HOOKS} (the hooks relaygate calls)"
        )),
        Some(name) => match version_of(name) {
            Some(v) if semver_compatible(&v, WIT_VERSION) => {}
            Some(v) => problems.push(format!(
                "it was built for {WIT_PACKAGE}@{v}, but this relaygate provides {WIT_PACKAGE}@{WIT_VERSION}"
            )),
            None => problems.push(format!("it exports {name} without a version")),
        },
    }
    for name in imports {
        if name.starts_with("wasi:") {
            if !wasi_given(name) {
                problems.push(format!(
                    "it imports {name}, which relaygate does not give policies (only WASI 0.2 cli, clocks, filesystem, io, random and sockets, all without capabilities)"
                ));
            }
            continue;
        }
        let known = HOST_INTERFACES.iter().any(|i| ours(name, i));
        if !known {
            problems.push(format!(
                "it imports {name}, which is not part of {WIT_PACKAGE}@{WIT_VERSION}"
            ));
            continue;
        }
        if let Some(v) = version_of(name).filter(|v| !semver_compatible(v, WIT_VERSION)) {
            problems.push(format!(
                "it imports {name}: built for {WIT_PACKAGE}@{v}, but this relaygate provides {WIT_PACKAGE}@{WIT_VERSION}"
            ));
        }
    }
    problems
}

/// The `package@version`s the component's names refer to, ours first.
fn packages(names: &[String]) -> Vec<String> {
    let mut ours = BTreeSet::new();
    let mut others = BTreeSet::new();
    for name in names {
        if let Some((package, _, version)) = split_name(name) {
            let full = match version {
                Some(v) => format!("{package}@{v}"),
                None => package.to_string(),
            };
            if package == WIT_PACKAGE {
                ours.insert(full);
            } else {
                others.insert(full);
            }
        }
    }
    ours.into_iter().chain(others).collect()
}

/// `relaygate policy check FILE`, with `init` given the `[policy.config]`
/// of `config_file` where one is named.
pub async fn policy_check(file: &Path, config_file: Option<&Path>) -> anyhow::Result<()> {
    // The config is read first: a broken one is reported before any output.
    let config = match config_file {
        Some(path) => Config::load(path, &readable_is_enough)
            .map_err(|e| anyhow::anyhow!("{}", e.problems.join("\n")))?,
        None => Config::embedded_default(),
    };
    let (name, bytes, source) = read_module(file)?;
    let engine = PolicyEngine::new(None)?;
    let started = Instant::now();
    let component = engine
        .compile(&bytes)
        .with_context(|| format!("{} is not usable", file.display()))?;
    let compile_time = started.elapsed();
    let (exports, imports) = engine.interface_names(&component);
    println!("file:      {name} ({} bytes)", bytes.len());
    println!("compiled:  {} ms", compile_time.as_millis());
    let built_for = packages(&exports);
    println!(
        "built for: {}",
        if built_for.is_empty() {
            "(no versioned package in its exports)".to_string()
        } else {
            built_for.join(", ")
        }
    );
    println!("exports:   {}", list(&exports));
    for export in &exports {
        let functions = engine.instance_functions(&component, export, true);
        if !functions.is_empty() {
            println!("           {export}: {}", functions.join(", "));
        }
    }
    let wasi = imports.iter().filter(|n| n.starts_with("wasi:")).count();
    let (own, wasi_names): (Vec<String>, Vec<String>) = imports
        .iter()
        .cloned()
        .partition(|n| !n.starts_with("wasi:"));
    println!("imports:   {}", list(&own));
    if wasi > 0 {
        println!(
            "wasi:      {wasi} interfaces, given with no capabilities: {}",
            wasi_names.join(", ")
        );
    } else {
        println!("wasi:      none");
    }
    println!("host:      {WIT_PACKAGE}@{WIT_VERSION}");
    let found = problems(&exports, &imports);
    if !found.is_empty() {
        println!("fits:      no");
        for problem in &found {
            println!("why:       {problem}");
        }
        bail!(
            "{} does not fit this relaygate: {}",
            file.display(),
            found.join("; ")
        );
    }
    let table = match config_file {
        Some(path) => format!("the [policy.config] of {}", path.display()),
        None => "an empty [policy.config]".to_string(),
    };
    let mut settings = config.policy.clone();
    settings.module = source;
    if config_file.is_none() {
        settings.config = Default::default();
    }
    let services = PolicyServices {
        config: settings.config.clone(),
        dns: None,
        own_networks: relaygate::net::own_networks(),
        hostname: config.proxy.hostname.clone(),
    };
    let started = Instant::now();
    match engine.load(&name, &bytes, &settings, services).await {
        Ok(policy) => {
            println!(
                "init:      {} ms with {table}: {}",
                started.elapsed().as_millis(),
                policy.info().summary
            );
            println!("fits:      yes ({})", policy.info().name);
            Ok(())
        }
        Err(LoadError::Config(problems)) if config_file.is_none() => {
            println!(
                "fits:      yes (its init refused {table}: {})",
                problems.join("; ")
            );
            Ok(())
        }
        Err(LoadError::Config(problems)) => {
            println!("fits:      yes, but its init refused {table}");
            for problem in &problems {
                println!("why:       {problem}");
            }
            bail!(
                "{} refuses {table}: {}",
                file.display(),
                problems.join("; ")
            )
        }
        Err(e) => {
            println!("fits:      no");
            println!("why:       {e}");
            Err(anyhow::Error::from(e)
                .context(format!("{} does not fit this relaygate", file.display())))
        }
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".to_string()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_fitting_component_has_no_problems() {
        let exports = names(&["relaygate:policy/hooks@0.1.0"]);
        let imports = names(&[
            "relaygate:policy/types@0.1.0",
            "relaygate:policy/config@0.1.0",
            "wasi:cli/stdout@0.2.3",
            "wasi:io/streams@0.2.0",
        ]);
        assert_eq!(problems(&exports, &imports), Vec::<String>::new());
        assert_eq!(
            packages(&imports),
            vec!["relaygate:policy@0.1.0", "wasi:cli@0.2.3", "wasi:io@0.2.0"]
        );
    }

    #[test]
    fn each_misfit_is_named() {
        let found = problems(&names(&["relaygate:policy/hooks@0.2.0"]), &[]);
        assert!(
            found[0].contains("built for relaygate:policy@0.2.0"),
            "{found:?}"
        );
        let found = problems(&[], &[]);
        assert!(
            found[0].contains("does not export relaygate:policy/hooks"),
            "{found:?}"
        );
        let found = problems(
            &names(&["relaygate:policy/hooks@0.1.0"]),
            &names(&["wasi:http/types@0.2.0", "acme:kv/store@1.0.0"]),
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("wasi:http/types@0.2.0"), "{found:?}");
        assert!(found[1].contains("acme:kv/store@1.0.0"), "{found:?}");
    }
}
