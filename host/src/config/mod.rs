//! Configuration: the TOML file (unknown keys refused) turned into one
//! validated [`Config`], or a list of problems each naming its key.

mod coherence;
mod file;
mod policy_table;
mod source;
mod state;

use file::{
    AuthBackendName, AuthSection, AuthTlsName, ConfigFile, FailureModeName, ModeName,
    SmtpMechanismName,
};
pub use policy_table::{PolicyConfig, PolicyValue};
pub use source::ConfigSource;
pub use state::{StateBackendKind, StateConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default listening address of the embedded default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:2525";
/// Default upstream of the embedded default.
pub const DEFAULT_UPSTREAM: &str = "127.0.0.1:25";
/// The name of the embedded default policy.
pub const BUILTIN_APPLE_RELAY: &str = "builtin:apple-relay";

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
#[derive(Debug, Clone)]
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
    pub tls: AuthTls,
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

/// `[auth] tls`: the transport towards the credential backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthTls {
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
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::one(format!("{}: cannot read: {e}", path.display())))?;
        let mut config = Self::parse(&text).map_err(|e| ConfigError {
            problems: e
                .problems
                .into_iter()
                .map(|p| format!("{}: {p}", path.display()))
                .collect(),
        })?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Validate config text (relative paths resolve against the working directory).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let deserializer = toml::Deserializer::parse(text)
            .map_err(|e| ConfigError::one(toml_problem(text, &e)))?;
        let file: ConfigFile = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = inner.message().to_string();
            let at = inner
                .span()
                .map(|span| format!(" (line {})", line_of(text, span.start)))
                .unwrap_or_default();
            ConfigError::one(if path == "." {
                format!("{message}{at}")
            } else {
                format!("{path}: {message}{at}")
            })
        })?;
        Self::from_file(file)
    }

    /// The embedded default (README, "Quick start"): listen on 127.0.0.1:2525,
    /// forward to 127.0.0.1:25, Apple policy with restricted relay on for the
    /// machine's own addresses and loopback, AUTH off.
    pub fn embedded_default() -> Self {
        Self::parse("[policy.config]\nopen_relay_addr_flag = 1\n")
            .expect("the embedded default configuration is valid")
    }

    fn from_file(file: ConfigFile) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let proxy = file.proxy;
        let listen = proxy.listen.unwrap_or_else(|| {
            vec![
                DEFAULT_LISTEN
                    .parse()
                    .expect("default listen address parses"),
            ]
        });
        let upstream = proxy
            .upstream
            .unwrap_or_else(|| DEFAULT_UPSTREAM.to_string());
        let hostname = proxy.hostname.unwrap_or_else(system_hostname);
        if hostname.is_empty()
            || !hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            problems.push(format!(
                "proxy.hostname: {hostname:?} is not a host name (letters, digits, '-' and '.')"
            ));
        }
        let positive = |key: &str, value: u64, problems: &mut Vec<String>| {
            if value == 0 {
                problems.push(format!("proxy.{key}: must be greater than 0"));
            }
        };
        let max_message_size = proxy.max_message_size.unwrap_or(35_882_577);
        positive("max_message_size", max_message_size, &mut problems);
        let max_recipients = proxy.max_recipients.unwrap_or(100);
        positive("max_recipients", max_recipients as u64, &mut problems);
        let max_connections = proxy.max_connections.unwrap_or(1000);
        positive("max_connections", max_connections as u64, &mut problems);
        let max_errors = proxy.max_errors.unwrap_or(20);
        positive("max_errors", u64::from(max_errors), &mut problems);
        let soft_error_limit = proxy.soft_error_limit.unwrap_or(10);
        let error_sleep = proxy.error_sleep.unwrap_or(Duration::from_secs(1));
        if error_sleep > Duration::from_secs(60) {
            // Each delayed reply holds a session slot; past a minute it is
            // the proxy that is tied up, not the client.
            problems.push("proxy.error_sleep: must be at most 60s".to_string());
        }
        let max_connections_per_client = proxy.max_connections_per_client.unwrap_or(50);
        positive(
            "max_connections_per_client",
            max_connections_per_client as u64,
            &mut problems,
        );
        let per_client_ipv6_prefix = proxy
            .per_client_ipv6_prefix
            .unwrap_or(crate::net::client_group::SUBSCRIBER_IPV6_PREFIX);
        if !(1..=128).contains(&per_client_ipv6_prefix) {
            problems.push(format!(
                "proxy.per_client_ipv6_prefix: {per_client_ipv6_prefix} is not a prefix length from 1 to 128 (64: one subscriber's block)"
            ));
        }
        let early_talker_delay = proxy.early_talker_delay.unwrap_or(Duration::ZERO);
        let timeouts = [
            ("command_timeout", proxy.command_timeout, 300),
            ("data_timeout", proxy.data_timeout, 600),
            ("upstream_timeout", proxy.upstream_timeout, 300),
            ("shutdown_grace", proxy.shutdown_grace, 30),
            ("max_session_duration", proxy.max_session_duration, 3600),
        ]
        .map(|(key, value, default_secs)| {
            let value = value.unwrap_or(Duration::from_secs(default_secs));
            if value.is_zero() {
                problems.push(format!("proxy.{key}: must be longer than 0s"));
            }
            value
        });
        let [
            command_timeout,
            data_timeout,
            upstream_timeout,
            shutdown_grace,
            max_session_duration,
        ] = timeouts;

        let policy = file.policy;
        let module = match policy.module.as_deref() {
            None | Some(BUILTIN_APPLE_RELAY) => ModuleSource::BuiltinAppleRelay,
            Some(other) if other.starts_with("builtin:") => {
                problems.push(format!(
                    "policy.module: unknown built-in {other:?} (the only one is {BUILTIN_APPLE_RELAY:?})"
                ));
                ModuleSource::BuiltinAppleRelay
            }
            Some(path) => ModuleSource::File(PathBuf::from(path)),
        };
        let call_timeout = policy.call_timeout.unwrap_or(Duration::from_millis(100));
        if call_timeout < Duration::from_millis(1) {
            problems.push("policy.call_timeout: must be at least 1ms".to_string());
        }
        let memory_limit = policy.memory_limit.unwrap_or(64 << 20);
        if memory_limit < (1 << 20) {
            problems
                .push("policy.memory_limit: must be at least 1048576 bytes (1 MiB)".to_string());
        }
        let on_failure = match policy.on_failure.unwrap_or(FailureModeName::Tempfail) {
            FailureModeName::Tempfail => FailureMode::Tempfail,
            FailureModeName::Accept => FailureMode::Accept,
        };
        let policy_config = PolicyConfig::from_table(policy.config.unwrap_or_default())
            .unwrap_or_else(|errors| {
                problems.extend(errors);
                PolicyConfig::default()
            });

        let dns = DnsConfig {
            nameservers: file.dns.nameservers.unwrap_or_default(),
            timeout: file.dns.timeout.unwrap_or(Duration::from_secs(3)),
            client_name_timeout: file
                .dns
                .client_name_timeout
                .unwrap_or(crate::dns::CLIENT_NAME_TIMEOUT),
        };
        if dns.timeout.is_zero() {
            problems.push("dns.timeout: must be longer than 0s".to_string());
        }
        if dns.client_name_timeout.is_zero() {
            problems.push("dns.client_name_timeout: must be longer than 0s".to_string());
        }

        let auth = file.auth.map(|auth| {
            if auth.backend != AuthBackendName::File && auth.server.is_none() {
                problems.push("auth.server: required for this backend".to_string());
            }
            if let Some(server) = &auth.server
                && let Err(why) = check_host_port(server)
            {
                problems.push(format!("auth.server: {server:?} {why}"));
            }
            auth_config(auth, &hostname, &mut problems)
        });
        let tls = file.tls.map(|tls| {
            let mut readable = true;
            for (key, path) in [("cert", &tls.cert), ("key", &tls.key)] {
                if let Err(e) = std::fs::metadata(path) {
                    problems.push(format!("tls.{key}: cannot read {}: {e}", path.display()));
                    readable = false;
                }
            }
            let tls = TlsConfig {
                cert: tls.cert,
                key: tls.key,
            };
            if readable && let Err(e) = crate::tls::acceptor(&tls) {
                problems.push(format!("{e:#}"));
            }
            tls
        });

        let state = state::from_section(file.state, &mut problems);

        let config = Self {
            proxy: ProxyConfig {
                listen,
                proxy_protocol_listen: proxy.proxy_protocol_listen.unwrap_or_default(),
                upstream,
                hostname,
                max_message_size,
                max_recipients,
                max_connections,
                max_errors,
                soft_error_limit,
                error_sleep,
                max_connections_per_client,
                per_client_ipv6_prefix,
                per_client_exempt: proxy.per_client_exempt,
                max_session_duration,
                early_talker_delay,
                command_timeout,
                data_timeout,
                upstream_timeout,
                shutdown_grace,
            },
            policy: PolicySettings {
                module,
                watch: policy.watch.unwrap_or(true),
                cache_dir: policy.cache_dir.or_else(default_cache_dir),
                call_timeout,
                memory_limit: usize::try_from(memory_limit).unwrap_or(usize::MAX),
                on_failure,
                mode: match policy.mode.unwrap_or(ModeName::Enforce) {
                    ModeName::Enforce => PolicyMode::Enforce,
                    ModeName::DryRun => PolicyMode::DryRun,
                },
                trace: policy.trace.unwrap_or(false),
                trace_clients: policy.trace_clients.unwrap_or_default(),
                config: policy_config,
            },
            dns,
            auth,
            tls,
            admin_listen: file.admin.listen,
            state,
            source: None,
        };
        problems.extend(config.overridable_problems());
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Check again after command-line flags replaced values.
    pub fn revalidate(&self) -> Result<(), ConfigError> {
        let problems = self.overridable_problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Problems with the values that command-line flags can override.
    fn overridable_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.proxy.listen.is_empty() {
            problems.push("proxy.listen: needs at least one address".to_string());
        }
        if let Err(why) = check_host_port(&self.proxy.upstream) {
            problems.push(format!("proxy.upstream: {:?} {why}", self.proxy.upstream));
        }
        if let ModuleSource::File(path) = &self.policy.module
            && let Err(e) = std::fs::File::open(path)
        {
            problems.push(format!(
                "policy.module: cannot read {}: {e}",
                path.display()
            ));
        }
        problems
    }
}

/// Checks `[auth]` beyond its syntax; each problem names its key.
fn auth_config(auth: AuthSection, hostname: &str, problems: &mut Vec<String>) -> AuthConfig {
    let timeout = auth.timeout.unwrap_or(Duration::from_secs(10));
    if timeout.is_zero() {
        problems.push("auth.timeout: must be longer than 0s".to_string());
    }
    let cache_size = auth.cache_size.unwrap_or(1024);
    if cache_size == 0 {
        problems.push("auth.cache_size: must be at least 1".to_string());
    }
    let failures_before_delay = auth.failures_before_delay.unwrap_or(3);
    let max_failures = auth.max_failures.unwrap_or(10);
    if max_failures == 0 {
        problems.push("auth.max_failures: must be at least 1".to_string());
    } else if failures_before_delay > max_failures {
        problems.push(format!(
            "auth.failures_before_delay: {failures_before_delay} is more than auth.max_failures ({max_failures})"
        ));
    }
    let failure_window = auth.failure_window.unwrap_or(Duration::from_secs(600));
    if failure_window.is_zero() {
        problems.push("auth.failure_window: must be longer than 0s".to_string());
    }
    let attack_check_interval = auth.attack_check_interval.unwrap_or(Duration::from_secs(2));
    if attack_check_interval > Duration::from_secs(3600) {
        problems.push("auth.attack_check_interval: must be at most 1h".to_string());
    }
    let max_concurrent_checks = auth
        .max_concurrent_checks
        .unwrap_or_else(|| default_concurrent_checks(auth.backend));
    if max_concurrent_checks == 0 {
        problems.push("auth.max_concurrent_checks: must be at least 1".to_string());
    }
    if auth.backend == AuthBackendName::File {
        match &auth.users_file {
            None => problems.push("auth.users_file: required for the file backend".to_string()),
            Some(path) => {
                if let Err(e) = std::fs::metadata(path) {
                    problems.push(format!(
                        "auth.users_file: cannot read {}: {e}",
                        path.display()
                    ));
                }
            }
        }
    }
    if let Some(path) = &auth.tls_ca
        && let Err(e) = std::fs::metadata(path)
    {
        problems.push(format!("auth.tls_ca: cannot read {}: {e}", path.display()));
    }
    if let Some(name) = &auth.tls_server_name
        && rustls_pki_types::ServerName::try_from(name.as_str()).is_err()
    {
        problems.push(format!(
            "auth.tls_server_name: {name:?} is not a DNS name or IP address"
        ));
    }
    AuthConfig {
        backend: format!("{:?}", auth.backend).to_lowercase(),
        server: auth.server,
        require_tls: auth.require_tls.unwrap_or(true),
        tls: match auth.tls.unwrap_or(AuthTlsName::None) {
            AuthTlsName::None => AuthTls::None,
            AuthTlsName::Starttls => AuthTls::Starttls,
            AuthTlsName::Implicit => AuthTls::Implicit,
        },
        tls_ca: auth.tls_ca,
        tls_server_name: auth.tls_server_name,
        users_file: auth.users_file,
        smtp_mechanism: match auth.smtp_mechanism.unwrap_or(SmtpMechanismName::Plain) {
            SmtpMechanismName::Plain => SmtpMechanism::Plain,
            SmtpMechanismName::Login => SmtpMechanism::Login,
        },
        timeout,
        cache_ttl: auth.cache_ttl.unwrap_or(Duration::ZERO),
        cache_size,
        failures_before_delay,
        failure_delay: auth.failure_delay.unwrap_or(Duration::from_secs(1)),
        max_failures,
        failure_window,
        attack_check_interval: auth.attack_check_interval.unwrap_or(Duration::from_secs(2)),
        attack_queue_size: auth.attack_queue_size.unwrap_or(4),
        max_concurrent_checks,
        ehlo_name: hostname.to_string(),
    }
}

/// `[auth] max_concurrent_checks` by default: one per core for the `file`
/// backend, whose every check is a CPU- and memory-hard hash; four per core
/// for the others, whose checks mostly wait on the network.
fn default_concurrent_checks(backend: AuthBackendName) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    match backend {
        AuthBackendName::File => cores,
        _ => cores * 4,
    }
}

/// `host:port` with a non-empty host and a numeric port.
fn check_host_port(text: &str) -> Result<(), &'static str> {
    if text.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    match text.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty() && !host.contains(':') && port.parse::<u16>().is_ok() =>
        {
            Ok(())
        }
        _ => Err("is not host:port (e.g. \"127.0.0.1:25\" or \"mail.example.com:25\")"),
    }
}

/// `$XDG_CACHE_HOME/relaygate`, else `$HOME/.cache/relaygate`.
fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::home_dir().map(|home| home.join(".cache")))?;
    Some(base.join("relaygate"))
}

fn system_hostname() -> String {
    gethostname::gethostname()
        .into_string()
        .unwrap_or_else(|_| "localhost".to_string())
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn toml_problem(text: &str, error: &toml::de::Error) -> String {
    let at = error
        .span()
        .map(|span| format!(" at line {}", line_of(text, span.start)))
        .unwrap_or_default();
    format!("invalid TOML{at}: {}", error.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        Config::parse(text)
            .expect_err("config should be refused")
            .problems
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        let config = Config::parse("").expect("valid");
        assert_eq!(config.proxy.listen, vec![DEFAULT_LISTEN.parse().unwrap()]);
        assert_eq!(config.proxy.upstream, DEFAULT_UPSTREAM);
        assert_eq!(config.proxy.max_message_size, 35_882_577);
        assert_eq!(config.proxy.max_recipients, 100);
        assert_eq!(config.policy.module, ModuleSource::BuiltinAppleRelay);
        assert_eq!(config.policy.on_failure, FailureMode::Tempfail);
    }

    #[test]
    fn spec_example_parses() {
        let text = r#"
[proxy]
listen   = ["127.0.0.1:2525", "[::1]:2525"]
upstream = "127.0.0.1:25"
hostname = "mx.example.com"
max_message_size = 35882577
max_recipients   = 100

[policy]
module = "builtin:apple-relay"
watch  = false

[policy.config]
open_relay_addr_flag  = 1
open_relay_addr_list  = ["192.168.1.0/24", "10.0.0.5-10.0.0.40", "gw.example.com", "example.org"]
smtp_plain_login_flag = 0
local_domains         = ["example.com"]

[dns]
nameservers = ["127.0.0.1:5353"]
timeout = "2s"
"#;
        let config = Config::parse(text).expect("valid");
        assert_eq!(config.proxy.listen.len(), 2);
        assert_eq!(config.proxy.hostname, "mx.example.com");
        assert_eq!(config.dns.timeout, Duration::from_secs(2));
        assert_eq!(
            config.policy.config.get("open_relay_addr_list"),
            Some(&PolicyValue::TextList(vec![
                "192.168.1.0/24".into(),
                "10.0.0.5-10.0.0.40".into(),
                "gw.example.com".into(),
                "example.org".into()
            ]))
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let p = problems("[proxy]\nlisten = [\"127.0.0.1:2525\"]\nlsiten = 1\n");
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with("proxy.lsiten: unknown field `lsiten`"),
            "{p:?}"
        );
        assert!(p[0].contains("line 3"), "{p:?}");
        let p = problems("[proxyy]\n");
        assert!(p[0].contains("unknown field `proxyy`"), "{p:?}");
    }

    #[test]
    fn bad_values_are_named_with_their_key() {
        let p = problems("[proxy]\nlisten = [\"127.0.0.1:2525\", \"nonsense\"]\n");
        assert!(p[0].starts_with("proxy.listen[1]:"), "{p:?}");
        let p = problems("[proxy]\nmax_recipients = -1\n");
        assert!(p[0].starts_with("proxy.max_recipients:"), "{p:?}");
        let p = problems("[proxy]\ncommand_timeout = \"soon\"\n");
        assert!(p[0].starts_with("proxy.command_timeout:"), "{p:?}");
    }

    #[test]
    fn every_semantic_problem_is_reported_at_once() {
        let p = problems(
            "[proxy]\nupstream = \"nohost\"\nmax_recipients = 0\n[policy]\nmodule = \"/nonexistent/p.wasm\"\n",
        );
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].starts_with("proxy.max_recipients:"));
        assert!(p[1].starts_with("proxy.upstream:"));
        assert!(p[2].starts_with("policy.module: cannot read /nonexistent/p.wasm"));
    }

    #[test]
    fn invalid_toml_names_the_line() {
        let p = problems("[proxy]\nlisten = [\n");
        assert!(p[0].starts_with("invalid TOML at line"), "{p:?}");
    }

    #[test]
    fn error_limits_default_to_postfixs_and_the_sleep_is_bounded() {
        let proxy = Config::parse("").expect("valid").proxy;
        assert_eq!(
            (proxy.max_errors, proxy.soft_error_limit, proxy.error_sleep),
            (20, 10, Duration::from_secs(1))
        );
        let set = Config::parse("[proxy]\nsoft_error_limit = 3\nerror_sleep = \"250ms\"\n")
            .expect("valid")
            .proxy;
        assert_eq!(
            (set.soft_error_limit, set.error_sleep),
            (3, Duration::from_millis(250))
        );
        let p = problems("[proxy]\nerror_sleep = \"2m\"\n");
        assert!(p[0].starts_with("proxy.error_sleep:"), "{p:?}");
    }

    #[test]
    fn unknown_builtin_is_refused() {
        let p = problems("[policy]\nmodule = \"builtin:nope\"\n");
        assert!(p[0].contains("unknown built-in"), "{p:?}");
    }

    #[test]
    fn the_example_config_in_dist_is_valid() {
        let text = include_str!("../../../dist/relaygate.example.toml");
        let config = Config::parse(text).expect("dist/relaygate.example.toml parses");
        assert_eq!(config.admin_listen, Some("127.0.0.1:8025".parse().unwrap()));
        assert_eq!(config.policy.mode, PolicyMode::Enforce);
    }

    #[test]
    fn auth_that_needs_tls_without_a_certificate_is_warned_about() {
        // Under a custom policy, which may or may not offer AUTH: a warning.
        let module = format!(
            "[policy]\nmodule = {:?}\n",
            std::env::current_exe().unwrap().display().to_string()
        );
        let auth = format!("{module}[auth]\nbackend = \"imap\"\nserver = \"127.0.0.1:143\"\n");
        let warnings = Config::parse(&auth).expect("valid").warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("require_tls"), "{warnings:?}");
        let clear = format!("{auth}require_tls = false\n");
        assert!(Config::parse(&clear).expect("valid").warnings().is_empty());
        assert!(Config::parse("").expect("valid").warnings().is_empty());
    }

    #[test]
    fn embedded_default_restricts_relay() {
        let config = Config::embedded_default();
        assert_eq!(
            config.policy.config.get("open_relay_addr_flag"),
            Some(&PolicyValue::Integer(1))
        );
        assert!(config.source.is_none());
    }
}
