//! The `relaygate` binary: parse arguments, set up logging, run a subcommand.

use anyhow::Context;
use clap::Parser;
use relaygate::app::{App, load_policy};
use relaygate::config::{BUILTIN_APPLE_RELAY, Config, ConfigError, ModuleSource};
use relaygate::policy::{PolicyEngine, WIT_PACKAGE, WIT_VERSION};
use std::process::ExitCode;
use std::time::Instant;

mod cli;
use cli::{Cli, Command, LogFormat, PolicyCommand};

/// Exit code for configuration errors (sysexits EX_CONFIG): a service
/// manager should not restart in a loop on these.
const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("relaygate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(dispatch(cli))
}

async fn dispatch(cli: Cli) -> ExitCode {
    let config = match &cli.command {
        Some(Command::Policy {
            command: PolicyCommand::Check { file },
        }) => {
            return report(policy_check(file).await);
        }
        _ => match effective_config(&cli) {
            Ok(config) => config,
            Err(e) => {
                for problem in &e.problems {
                    eprintln!("relaygate: config error: {problem}");
                }
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    match cli.command {
        Some(Command::Check) => match check(&config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("relaygate: {e:#}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        _ => report(run(config).await),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relaygate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The config file (or the embedded default) with the command-line overrides.
fn effective_config(cli: &Cli) -> Result<Config, ConfigError> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::embedded_default(),
    };
    if !cli.listen.is_empty() {
        config.proxy.listen = cli.listen.clone();
    }
    if let Some(upstream) = &cli.upstream {
        config.proxy.upstream = upstream.clone();
    }
    if let Some(policy) = &cli.policy {
        config.policy.module = if policy == BUILTIN_APPLE_RELAY {
            ModuleSource::BuiltinAppleRelay
        } else {
            ModuleSource::File(policy.into())
        };
    }
    config.revalidate()?;
    Ok(config)
}

async fn run(config: Config) -> anyhow::Result<()> {
    for note in config.inactive_sections() {
        tracing::warn!("{note}");
    }
    let app = App::build(&config).await?;
    let policy = app.policy();
    let info = policy.info();
    tracing::info!(
        listen = ?config.proxy.listen,
        upstream = %config.proxy.upstream,
        policy = policy.name(),
        digest = policy.digest(),
        load_ms = policy.load_time().as_millis() as u64,
        "relaygate ready: {}",
        info.summary
    );
    if info.open_relay {
        tracing::warn!(
            "OPEN RELAY: as configured, the policy lets ANY client relay mail to ANY domain"
        );
    }
    app.run(shutdown_signal()).await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// `relaygate check`: everything `run` checks, without serving.
async fn check(config: &Config) -> anyhow::Result<()> {
    let engine = PolicyEngine::new()?;
    let policy = load_policy(config, &engine, None).await?;
    let info = policy.info();
    let source = config.source.as_ref().map_or_else(
        || "embedded default".to_string(),
        |p| p.display().to_string(),
    );
    println!("config:    {source}: OK");
    println!(
        "listen:    {}",
        config
            .proxy
            .listen
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("upstream:  {}", config.proxy.upstream);
    println!("hostname:  {}", config.proxy.hostname);
    println!(
        "limits:    max_message_size {} bytes, max_recipients {}",
        config.proxy.max_message_size, config.proxy.max_recipients
    );
    println!(
        "policy:    {} ({}), sha256 {}",
        policy.name(),
        info.name,
        policy.digest()
    );
    println!("mode:      {}", info.summary);
    for note in config.inactive_sections() {
        println!("note:      {note}");
    }
    if info.open_relay {
        println!("WARNING:   OPEN RELAY: any client may relay mail to any domain");
    }
    Ok(())
}

/// `relaygate policy check FILE`.
async fn policy_check(file: &std::path::Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let engine = PolicyEngine::new()?;
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
