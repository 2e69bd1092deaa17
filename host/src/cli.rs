//! Command-line interface (SPEC section 1). Flags override the config file.

use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// relaygate: SMTP filtering proxy with WebAssembly relay policies.
#[derive(Debug, Parser)]
#[command(name = "relaygate", version, about)]
pub struct Cli {
    /// Config file (TOML). Without it the embedded default runs.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Listen address (repeatable); overrides [proxy] listen.
    #[arg(long, global = true, value_name = "ADDR")]
    pub listen: Vec<SocketAddr>,
    /// Upstream mail server host:port; overrides [proxy] upstream.
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub upstream: Option<String>,
    /// Policy component (.wasm) or builtin:apple-relay; overrides [policy] module.
    #[arg(long, global = true, value_name = "FILE")]
    pub policy: Option<String>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do (default: run the proxy).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config and policy, print the effective mode, and exit.
    Check,
    /// Ask the running proxy to reload its config and policy now
    /// (needs [admin] listen; SIGHUP does the same).
    Reload,
    /// Show the running proxy's policy, reload history and sessions
    /// (needs [admin] listen).
    Status,
    /// Policy tools.
    Policy {
        /// What to do with the policy.
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// SMTP AUTH tools.
    Auth {
        /// What to do.
        #[command(subcommand)]
        command: AuthCommand,
    },
}

/// `relaygate auth ...`.
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Read a password from standard input (one line) and print its argon2id
    /// hash for an `[auth] users_file` line `user:HASH`.
    Hash,
}

/// `relaygate policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Does this component fit the WIT world? What does it import and export?
    Check {
        /// The component file.
        file: PathBuf,
    },
}
