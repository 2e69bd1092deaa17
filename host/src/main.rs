//! The `relaygate` binary: parse arguments, set up logging, run a subcommand.

use clap::Parser;
use relaygate::config::{ConfigError, ConfigSource};
use std::process::ExitCode;

mod cli;
mod commands;
use cli::{AuthCommand, Cli, Command, LogFormat, PolicyCommand};

// Sessions allocate and free many small buffers (command lines, replies,
// policy records) across the runtime's threads; mimalloc serves that with
// fewer instructions than glibc's malloc (bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let source = ConfigSource {
        path: cli.config.clone(),
        listen: cli.listen.clone(),
        upstream: cli.upstream.clone(),
        policy: cli.policy.clone(),
    };
    if let Some(Command::Policy {
        command: PolicyCommand::Check { file },
    }) = &cli.command
    {
        return report(commands::policy_check(file, cli.config.as_deref()).await);
    }
    if let Some(Command::Generate { what }) = &cli.command {
        return report(commands::generate(what));
    }
    if let Some(Command::Policy {
        command:
            PolicyCommand::New {
                language,
                name,
                world,
                dir,
            },
    }) = &cli.command
    {
        return policy_new_status(commands::policy_new(language, name, *world, dir));
    }
    if let Some(Command::Policy {
        command: PolicyCommand::Componentize { core, out },
    }) = &cli.command
    {
        return report(commands::policy_componentize(core, out));
    }
    if let Some(Command::Auth {
        command: AuthCommand::Hash,
    }) = &cli.command
    {
        return report(commands::auth_hash());
    }
    if let Some(Command::Policy {
        command: PolicyCommand::Test { file, cases },
    }) = &cli.command
    {
        return policy_test_status(commands::policy_test(file, cases, cli.config.as_deref()).await);
    }
    let config = match source.load(&relaygate::tls::check) {
        Ok(config) => config,
        Err(e) => return config_error(&e),
    };
    match cli.command {
        Some(Command::Check) if !config.unworkable().is_empty() => config_error(&ConfigError {
            problems: config
                .unworkable()
                .into_iter()
                .map(|problem| match &source.path {
                    Some(path) => format!("{}: {problem}", path.display()),
                    None => problem,
                })
                .collect(),
        }),
        Some(Command::Check) => match commands::check(&config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("relaygate: {e:#}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Some(Command::Reload) => report(commands::admin_request(&config, "POST", "/reload")),
        Some(Command::Status) => report(commands::admin_request(&config, "GET", "/status")),
        Some(Command::Policy { .. } | Command::Auth { .. } | Command::Generate { .. }) => {
            unreachable!("handled above")
        }
        None => report(commands::run(source, config).await),
    }
}

/// Exit status of `relaygate policy test` (see its help).
fn policy_test_status(result: Result<commands::TestOutcome, commands::TestError>) -> ExitCode {
    match result {
        Ok(commands::TestOutcome::Passed) => ExitCode::SUCCESS,
        Ok(commands::TestOutcome::Failed) => ExitCode::FAILURE,
        Err(commands::TestError::Cases(problem)) => {
            eprintln!("relaygate: invalid cases file: {problem}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(commands::TestError::Config(problem)) => {
            eprintln!("relaygate: config error: {problem}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(commands::TestError::Policy(e)) => {
            eprintln!("relaygate: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Exit status of `relaygate policy new` (see its help).
fn policy_new_status(result: Result<std::path::PathBuf, commands::NewError>) -> ExitCode {
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(commands::NewError::Usage(problem)) => {
            eprintln!("relaygate: {problem}");
            ExitCode::from(2)
        }
        Err(commands::NewError::Failed(e)) => {
            eprintln!("relaygate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config_error(error: &ConfigError) -> ExitCode {
    for problem in &error.problems {
        eprintln!("relaygate: config error: {problem}");
    }
    ExitCode::from(EXIT_CONFIG)
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
