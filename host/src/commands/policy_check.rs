//! `relaygate policy check FILE`: does a component fit this proxy?

use anyhow::Context;
use relaygate::config::{Config, ModuleSource};
use relaygate::policy::{PolicyEngine, WIT_PACKAGE, WIT_VERSION};
use std::time::Instant;

/// `relaygate policy check FILE`.
pub async fn policy_check(file: &std::path::Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let engine = PolicyEngine::new(None)?;
    let started = Instant::now();
    let component = engine
        .compile(&bytes)
        .with_context(|| format!("{} is not usable", file.display()))?;
    let compile_time = started.elapsed();
    let (exports, imports) = engine.interface_names(&component);
    println!("file:      {} ({} bytes)", file.display(), bytes.len());
    println!("compiled:  {} ms", compile_time.as_millis());
    println!("exports:   {}", exports.join(", "));
    println!(
        "imports:   {}",
        if imports.is_empty() {
            "(none)".to_string()
        } else {
            imports.join(", ")
        }
    );
    println!("host:      {WIT_PACKAGE}@{WIT_VERSION}");
    let config = Config::embedded_default();
    let mut settings = config.policy.clone();
    settings.module = ModuleSource::File(file.to_path_buf());
    settings.config = Default::default();
    let services = relaygate::policy::PolicyServices {
        config: Default::default(),
        dns: None,
        own_networks: relaygate::policy::own_networks(),
        hostname: config.proxy.hostname.clone(),
    };
    match engine
        .load(&file.display().to_string(), &bytes, &settings, services)
        .await
    {
        Ok(policy) => {
            println!("fits:      yes ({})", policy.info().name);
            Ok(())
        }
        Err(relaygate::policy::LoadError::Config(problems)) => {
            println!(
                "fits:      yes (its init refused an empty [policy.config]: {})",
                problems.join("; ")
            );
            Ok(())
        }
        Err(e) => {
            println!("fits:      no");
            Err(anyhow::Error::from(e)
                .context(format!("{} does not fit this relaygate", file.display())))
        }
    }
}
