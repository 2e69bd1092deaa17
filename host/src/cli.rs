//! Command-line interface (README, "Command line"). Flags override the config file.

use crate::commands::{PolicyWorld, parse_policy_name, policy_languages};
use clap::builder::PossibleValuesParser;
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
    /// Write the man page (roff) or shell completions to standard output,
    /// generated from this command-line definition (packaging uses it).
    #[command(hide = true)]
    Generate {
        /// What to write.
        #[command(subcommand)]
        what: GenerateCommand,
    },
}

/// `relaygate generate ...`.
#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// The man page `relaygate(1)`.
    Man,
    /// Completions for `shell`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
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
    ///
    /// With `--config FILE`, the component's `init` is given that file's
    /// `[policy.config]` and says what it makes of it (exit status 1 when it
    /// refuses it); without, an empty table.
    Check {
        /// The component file.
        file: PathBuf,
    },
    /// Run a policy offline against test cases and compare its verdicts.
    ///
    /// No sockets and no real DNS: the policy's `dns` import answers from
    /// the case data. Prints one `ok`/`FAIL` line per checked stage and a
    /// summary. Exit status: 0 all passed, 1 a check failed, 2 the policy
    /// could not be loaded, 78 the cases file is invalid. The cases format
    /// is documented in policies/CASES.md.
    ///
    /// `chain:NAME` in place of a file runs the cases against the chain
    /// NAME of the `--config` file, its modules asked in order as the proxy
    /// asks them (a FAIL names the refusing module); 78 when `--config` is
    /// missing, names no such chain, or the cases file sets `config`.
    #[command(after_help = CASES_HELP)]
    Test {
        /// The component file (or builtin:apple-relay, or chain:NAME).
        file: PathBuf,
        /// The cases file (TOML).
        cases: PathBuf,
    },
    /// Write a new policy project, ready to build and test, into the folder NAME.
    ///
    /// The project builds outside the repository with the language's own
    /// toolchain: it holds the rules with their unit tests, the WIT glue,
    /// the WIT contract (and, for C, its bindings), `build.sh`, a
    /// `cases.toml` for `relaygate policy test` and a README. Exit status:
    /// 0 written, 1 NAME exists and is not empty or cannot be written, 2 an
    /// unknown language, a bad name or a world the language has no template
    /// for.
    New {
        /// The language of the project.
        #[arg(value_parser = PossibleValuesParser::new(policy_languages()))]
        language: String,
        /// The policy's name: its folder, its package, the name its `init`
        /// reports (lower-case letters, digits and single dashes).
        #[arg(value_parser = parse_policy_name)]
        name: String,
        /// The WIT world: `stateful-policy` adds the `state` import and a
        /// rule that uses it.
        #[arg(long, value_enum, default_value_t = PolicyWorld::Policy)]
        world: PolicyWorld,
        /// The folder to create NAME in.
        #[arg(long, value_name = "PATH", default_value = ".")]
        dir: PathBuf,
    },
    /// Turn a core module whose world a bindings generator embedded (the C
    /// projects of `policy new`) into a component.
    Componentize {
        /// The core module (.wasm).
        core: PathBuf,
        /// The component to write.
        out: PathBuf,
    },
}

/// A short reminder of the cases format (the full one: policies/CASES.md).
const CASES_HELP: &str = "\
Cases file (TOML), see policies/CASES.md:
  [config]                     # the [policy.config] handed to the policy
  open_relay_addr_flag = 1
  [server]                     # optional: hostname, own_networks, address
  own_networks = [\"127.0.0.0/8\"]
  [dns]                        # optional forward records for the dns import
  \"gw.example.com\" = [\"192.0.2.7\"]
  [[case]]
  name = \"unlisted client may not relay\"
  client = \"203.0.113.5\"        # client IP
  client_name = \"mx.example.net\"  # optional reverse DNS name
  helo = \"mx.example.net\"       # optional; ehlo = false for HELO
  auth = \"alice\"                # optional identity; tls = true optional
  sender = \"bob@example.net\"    # optional MAIL FROM (\"\" = <>)
  recipients = [\"a@example.com\", \"b@elsewhere.org\"]
  config = { smtp_plain_login_flag = 1 }   # optional overrides
  expect = { connect = \"accept\", rcpt = [\"accept\", \"reject 554 5.7.1\"] }
Expectations: init (ok|refused), connect, helo, extensions (list), auth,
mail, rcpt (one or one per recipient), data; a verdict is
\"accept\" | \"reject [CODE [X.Y.Z]]\" | \"tempfail [CODE [X.Y.Z]]\".";
