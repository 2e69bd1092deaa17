//! Configuration: the TOML file (unknown keys refused) turned into one
//! validated [`Config`], or a list of problems each naming its key.
//!
//! - [`file`](mod@file): the one typed definition of the file: every key,
//!   its default and its doc.
//! - `validate`: the parsed file turned into a [`Config`], every problem
//!   collected.
//! - `chains`: the `[[chain]]` tables and the chain `default` `[policy]`
//!   stands for.
//! - `load`: reading the file, and the checks that touch the filesystem
//!   (the `[tls]` certificate through a [`CertificateCheck`] the caller
//!   supplies).
//! - `coherence`: settings that together cannot work or open the relay.
//! - `upstream_pool`: `[upstream_pool]`, the reuse of upstream connections.
//! - `upstream_tls`: `[upstream_tls]`, TLS towards the upstream.
//! - `source`: the file plus command-line overrides, kept for reloads.
//! - `docs_agree` (tests): the README's configuration block and
//!   `dist/relaygate.example.toml` hold to the typed definition.
//!
//! This module holds the runtime types.

mod chains;
mod coherence;
#[cfg(test)]
mod docs_agree;
pub mod file;
mod listeners;
mod load;
mod policy_table;
mod source;
mod state;
mod upstream_pool;
mod upstream_tls;
mod validate;

pub use chains::{ChainConfig, ChainModuleConfig};
pub use file::{
    BUILTIN_APPLE_RELAY, CLIENT_NAME_TIMEOUT, DEFAULT_CHAIN, DEFAULT_CHAIN_MODULE,
    DEFAULT_COMMAND_TIMEOUT, DEFAULT_LISTEN, DEFAULT_UPSTREAM, SUBSCRIBER_IPV6_PREFIX,
};
pub use load::{CertificateCheck, readable_is_enough};
pub use policy_table::{PolicyConfig, PolicyValue};
pub use source::ConfigSource;
pub use state::{StateBackendKind, StateConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
pub use upstream_pool::UpstreamPoolConfig;
pub use upstream_tls::UpstreamTlsConfig;

/// Everything relaygate needs to run, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[proxy]`.
    pub proxy: ProxyConfig,
    /// `[policy]`.
    pub policy: PolicySettings,
    /// `[dns]`.
    pub dns: DnsConfig,
    /// `[auth]`: how SMTP AUTH credentials are checked.
    pub auth: Option<AuthConfig>,
    /// `[tls]`: the certificate offered with STARTTLS.
    pub tls: Option<TlsConfig>,
    /// `[admin] listen`: the loopback HTTP endpoint for status and reload.
    pub admin_listen: Option<SocketAddr>,
    /// `[state]`: where stateful policies keep what outlives a session.
    pub state: StateConfig,
    /// `[upstream_pool]`: reuse of upstream connections across sessions.
    pub upstream_pool: UpstreamPoolConfig,
    /// `[upstream_tls]`: TLS towards the upstream.
    pub upstream_tls: UpstreamTlsConfig,
    /// `[[listener]]` tables, checked. The listeners of `[proxy] listen` and
    /// `proxy_protocol_listen` are not here: [`Config::listeners`] gives all.
    pub listener_tables: Vec<ListenerConfig>,
    /// `[[chain]]` tables, checked. The chain `default` that `[policy]`
    /// stands for is not here: [`Config::chains`] gives all.
    pub chain_tables: Vec<ChainConfig>,
    /// The file this came from; none for the embedded default.
    pub source: Option<PathBuf>,
}

/// `[proxy]`: listeners, upstream and session limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// Addresses to listen on behind a load balancer: each connection starts
    /// with a PROXY protocol v1/v2 header naming the real client.
    pub proxy_protocol_listen: Vec<SocketAddr>,
    /// The upstream mail server, `host:port`.
    pub upstream: String,
    /// More mail servers, tried in order when the ones before do not answer.
    pub upstream_fallbacks: Vec<String>,
    /// How long a server that did not answer is skipped.
    pub upstream_back_off: Duration,
    /// How often servers marked down are probed.
    pub upstream_health_interval: Duration,
    /// Our name in the greeting and EHLO.
    pub hostname: String,
    /// SIZE limit in bytes; larger messages are refused.
    pub max_message_size: u64,
    /// Recipients per transaction.
    pub max_recipients: usize,
    /// Concurrent client connections; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Errors (every 4xx/5xx reply to a command) before a session is
    /// closed with 421: Postfix's `smtpd_hard_error_limit`.
    pub max_errors: u32,
    /// Errors after which each error reply waits `error_sleep`: Postfix's
    /// `smtpd_soft_error_limit`.
    pub soft_error_limit: u32,
    /// The wait before each error reply past `soft_error_limit`: Postfix's
    /// `smtpd_error_sleep_time` (zero: none).
    pub error_sleep: Duration,
    /// Concurrent connections from one client: an IPv4 address, or an IPv6
    /// prefix of `per_client_ipv6_prefix` bits.
    pub max_connections_per_client: usize,
    /// IPv6 clients count per prefix of this length (1..=128; 64 by default).
    pub per_client_ipv6_prefix: u8,
    /// Clients not counted per client (they still count against
    /// `max_connections`); none: loopback and this machine's own addresses,
    /// found when the proxy starts.
    pub per_client_exempt: Option<Vec<ipnet::IpNet>>,
    /// Longest a session may last; it is then closed at the next command.
    pub max_session_duration: Duration,
    /// Wait this long before greeting and refuse clients that talk first
    /// (zero: greet at once, no check).
    pub early_talker_delay: Duration,
    /// How long a client may take to send a whole command line.
    pub command_timeout: Duration,
    /// How long to wait for each chunk of message data.
    pub data_timeout: Duration,
    /// How long to wait for each upstream reply.
    pub upstream_timeout: Duration,
    /// How long sessions may finish after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
}

/// The listener `[proxy] listen` stands for.
pub const SMTP_LISTENER: &str = "smtp";
/// The listener `[proxy] proxy_protocol_listen` stands for.
pub const PROXY_LISTENER: &str = "proxy";

/// One listening address and how its sessions run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Its name in logs, metrics and `relaygate check`.
    pub name: String,
    /// Where it listens.
    pub address: SocketAddr,
    /// STARTTLS, TLS from the first byte, or no TLS.
    pub tls: ListenerTls,
    /// A PROXY protocol header starts every connection.
    pub proxy_protocol: bool,
    /// Our name in the greeting and EHLO.
    pub hostname: String,
    /// Whether AUTH is offered, required or off.
    pub auth: ListenerAuth,
    /// AUTH only under TLS.
    pub require_tls: bool,
    /// The policy chain its sessions are asked.
    pub chain: String,
}

/// `[[listener]] tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerTls {
    /// Plain; STARTTLS offered when `[tls]` has a certificate.
    Starttls,
    /// TLS from the first byte (RFC 8314).
    Implicit,
    /// Plain; STARTTLS never offered.
    None,
}

/// `[[listener]] auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerAuth {
    /// AUTH as the policy and `[auth]` allow.
    Offered,
    /// AUTH offered wherever `[auth]` allows, and MAIL before it refused (530).
    Required,
    /// AUTH never offered.
    Off,
}

/// Where the policy module comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleSource {
    /// The embedded default policy.
    BuiltinAppleRelay,
    /// A component file on disk.
    File(PathBuf),
}

/// Whether the policy's refusals are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyMode {
    /// Refusals are answered (the default).
    Enforce,
    /// Refusals are logged ("would reject") and the command goes on: try a
    /// policy on live traffic without risk.
    DryRun,
}

/// What to answer when a policy call fails (trap, timeout, bad reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    /// 451 4.3.0 (fail closed, the default).
    Tempfail,
    /// Carry on as if the policy had accepted (fail open).
    Accept,
}

/// `[policy]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySettings {
    /// The module to run.
    pub module: ModuleSource,
    /// Reload when the module file changes.
    pub watch: bool,
    /// Where compiled modules are cached across restarts; none: memory only.
    pub cache_dir: Option<PathBuf>,
    /// CPU-time budget of one hook call.
    pub call_timeout: Duration,
    /// Linear-memory cap of one policy instance, in bytes.
    pub memory_limit: usize,
    /// Answer to a failed call.
    pub on_failure: FailureMode,
    /// Enforce or dry-run.
    pub mode: PolicyMode,
    /// Log a decision trace for every call.
    pub trace: bool,
    /// Log decision traces for clients in these networks.
    pub trace_clients: Vec<ipnet::IpNet>,
    /// `[policy.config]`, handed to the policy.
    pub config: PolicyConfig,
    /// The state namespace: a `[[chain]]` module's name; none (the name
    /// the policy gives in `init`) for `[policy] module`.
    pub state_namespace: Option<String>,
}

/// `[dns]`.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Name servers to ask; empty means the system's (/etc/resolv.conf).
    pub nameservers: Vec<SocketAddr>,
    /// Timeout of one lookup.
    pub timeout: Duration,
    /// Longest a client's forward-confirmed name lookup may take in all (its
    /// PTR query, then the forward queries of its names); past it the
    /// client counts as unnamed, or as the name confirmed by then.
    pub client_name_timeout: Duration,
}

/// `[auth]`: SMTP AUTH credential checking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Backend name as configured.
    pub backend: String,
    /// Backend server address.
    pub server: Option<String>,
    /// Offer AUTH only after STARTTLS.
    pub require_tls: bool,
    /// `tls`: how the `imap`, `pop3` and `smtp` backends secure their connection.
    pub tls: TlsMode,
    /// `tls_ca`: PEM CA certificates to trust instead of the webpki roots.
    pub tls_ca: Option<PathBuf>,
    /// `tls_server_name`: the name the backend's certificate must carry
    /// (default: the host part of `server`).
    pub tls_server_name: Option<String>,
    /// `users_file`: `user:hash` lines for the `file` backend.
    pub users_file: Option<PathBuf>,
    /// `smtp_mechanism`: what the `smtp` backend uses towards the server.
    pub smtp_mechanism: SmtpMechanism,
    /// `timeout`: the longest one backend check may take.
    pub timeout: Duration,
    /// `cache_ttl`: how long a successful check is remembered; zero = off.
    pub cache_ttl: Duration,
    /// `cache_size`: the most successful checks remembered at once.
    pub cache_size: usize,
    /// `failures_before_delay`: failures per client address answered
    /// without delay.
    pub failures_before_delay: u32,
    /// `failure_delay`: the delay after the first slowed failure; it doubles
    /// with each further failure.
    pub failure_delay: Duration,
    /// `max_failures`: failures (and checks in flight) within
    /// `failure_window` after which a client's attempts are refused without
    /// asking the backend, and a user's checks are spaced out.
    pub max_failures: u32,
    /// `failure_window`: the time in which `max_failures` failures are forgotten.
    pub failure_window: Duration,
    /// `attack_check_interval`: the least time between two checks of a user
    /// with `max_failures` failures in the window (a user under attack).
    pub attack_check_interval: Duration,
    /// `attack_queue_size`: attempts that may wait for their turn per user
    /// under attack; beyond that they get 454.
    pub attack_queue_size: usize,
    /// `max_concurrent_checks`: backend checks running at once, all users
    /// and clients together; more wait (at most `timeout`), then get 454.
    pub max_concurrent_checks: usize,
    /// The name the `smtp` backend gives in EHLO (`[proxy] hostname`).
    pub ehlo_name: String,
}

/// `[auth] tls` and `[upstream_tls] mode`: the transport towards a server
/// relaygate is the client of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP (only sensible on loopback or a trusted network).
    None,
    /// Plain TCP, then the protocol's STARTTLS/STLS command.
    Starttls,
    /// TLS from the first byte (imaps 993, pop3s 995, submissions 465).
    Implicit,
}

/// `[auth] smtp_mechanism`: the SASL mechanism towards an `smtp` backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpMechanism {
    /// `AUTH PLAIN` with an initial response.
    Plain,
    /// `AUTH LOGIN` (for servers that accept only LOGIN).
    Login,
}

/// `[tls]`: certificate for STARTTLS.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Configuration could not be used; each line names a key and its problem.
#[derive(Debug, thiserror::Error)]
#[error("{}", problems.join("\n"))]
pub struct ConfigError {
    /// One line per problem.
    pub problems: Vec<String>,
}

impl ConfigError {
    fn one(problem: String) -> Self {
        Self {
            problems: vec![problem],
        }
    }
}

impl Config {
    /// The embedded default (README, "Quick start"): listen on 127.0.0.1:2525,
    /// forward to 127.0.0.1:25, Apple policy with restricted relay on for the
    /// machine's own addresses and loopback, AUTH off.
    pub fn embedded_default() -> Self {
        Self::parse("[policy.config]\nopen_relay_addr_flag = 1\n")
            .expect("the embedded default configuration is valid")
    }
}

/// The problems `Config::parse` reports for `text`, which must be refused.
#[cfg(test)]
fn problems(text: &str) -> Vec<String> {
    Config::parse(text)
        .expect_err("config should be refused")
        .problems
}
