//! The one typed definition of the configuration file: every key of every
//! section with its default and the doc a user reads. Unknown keys are
//! refused. `validate` turns this into the runtime [`super::Config`]; the
//! README's configuration block and `dist/relaygate.example.toml` are
//! checked against these defaults by the tests in `docs_agree`.
//!
//! Each default is written once, in the section's `Default` impl (or, for
//! `[auth]`, whose `backend` is required, in its `auth_default` functions).
//! A key whose default depends on the machine or on other keys is an
//! `Option`; the function that computes its default lives here too.

use serde::Deserialize;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

/// Default of `[proxy] listen`.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 2525));
/// Default of `[proxy] upstream`.
pub const DEFAULT_UPSTREAM: &str = "127.0.0.1:25";
/// The name of the embedded default policy, and the default `[policy] module`.
pub const BUILTIN_APPLE_RELAY: &str = "builtin:apple-relay";
/// Default of `[proxy] command_timeout`.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// The IPv6 prefix one subscriber usually has: the default of `[proxy]
/// per_client_ipv6_prefix`.
pub const SUBSCRIBER_IPV6_PREFIX: u8 = 64;
/// Default of `[dns] client_name_timeout`: the longest a forward-confirmed
/// name lookup (the PTR query and the forward queries after it) may take.
pub const CLIENT_NAME_TIMEOUT: Duration = Duration::from_secs(5);

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `[proxy]`: listeners, upstream and session limits.
    #[serde(default)]
    pub proxy: ProxySection,
    /// `[policy]`: the policy module and how it runs.
    #[serde(default)]
    pub policy: PolicySection,
    /// `[dns]`: lookups for host-name and domain relay entries.
    #[serde(default)]
    pub dns: DnsSection,
    /// `[auth]`: how SMTP AUTH credentials are checked. Default: none (no AUTH).
    pub auth: Option<AuthSection>,
    /// `[tls]`: the certificate offered with STARTTLS. Default: none (no STARTTLS).
    pub tls: Option<TlsSection>,
    /// `[admin]`: the loopback HTTP endpoint.
    #[serde(default)]
    pub admin: AdminSection,
    /// `[state]`: where stateful policies keep what outlives a session.
    #[serde(default)]
    pub state: StateSection,
    /// `[upstream_pool]`: warm upstream connections handed to new sessions.
    #[serde(default)]
    pub upstream_pool: UpstreamPoolSection,
    /// `[upstream_tls]`: TLS towards the upstream. Default: none (plain SMTP).
    #[serde(default)]
    pub upstream_tls: UpstreamTlsSection,
    /// `[[listener]]`: named listeners, each with its own TLS, PROXY
    /// protocol, host name and AUTH settings. Default: none (only `[proxy]
    /// listen` and `proxy_protocol_listen`).
    #[serde(default)]
    pub listener: Vec<ListenerSection>,
    /// `[[chain]]`: named policy chains, each an ordered list of modules
    /// asked in turn at every hook. Default: none (only the chain `default`,
    /// made of `[policy] module`).
    #[serde(default)]
    pub chain: Vec<ChainSection>,
}

/// `[proxy]`.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(default, deny_unknown_fields)]
pub struct ProxySection {
    /// Addresses to listen on for SMTP clients: the listener named `smtp`.
    /// Default: [`DEFAULT_LISTEN`] when there is no `[[listener]]` table,
    /// none when there is.
    pub listen: Option<Vec<SocketAddr>>,
    /// Addresses to listen on behind a load balancer: every connection must
    /// start with a PROXY protocol v1 or v2 header naming the real client
    /// (the listener named `proxy`).
    pub proxy_protocol_listen: Vec<SocketAddr>,
    /// The existing mail server, `host:port`.
    pub upstream: String,
    /// More mail servers, `host:port`, tried in this order when `upstream`
    /// (and each one before) does not answer.
    pub upstream_fallbacks: Vec<String>,
    /// How long an upstream that failed to connect or greet is skipped
    /// (unless every one is down).
    #[serde(with = "humantime_serde")]
    pub upstream_back_off: Duration,
    /// How often upstreams marked down are probed, so that one that recovers
    /// takes mail again before its back-off ends.
    #[serde(with = "humantime_serde")]
    pub upstream_health_interval: Duration,
    /// Our name in the greeting and EHLO. Default: this machine's host name
    /// ([`system_hostname`]).
    pub hostname: Option<String>,
    /// SIZE limit in bytes; larger messages are refused (552).
    pub max_message_size: u64,
    /// Recipients per transaction; more get 452.
    pub max_recipients: usize,
    /// Concurrent client connections; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Errors (every 4xx/5xx reply to a command) before a session is closed
    /// with 421: Postfix's `smtpd_hard_error_limit`.
    pub max_errors: u32,
    /// Errors after which each error reply waits `error_sleep`: Postfix's
    /// `smtpd_soft_error_limit`.
    pub soft_error_limit: u32,
    /// The wait before each error reply past `soft_error_limit` (zero: none;
    /// at most 60s): Postfix's `smtpd_error_sleep_time`.
    #[serde(with = "humantime_serde")]
    pub error_sleep: Duration,
    /// Concurrent connections from one client (an IPv4 address, or an IPv6
    /// prefix of `per_client_ipv6_prefix` bits); more get 421.
    pub max_connections_per_client: usize,
    /// IPv6 clients count per prefix of this length (1 to 128; 128: each
    /// address alone).
    pub per_client_ipv6_prefix: u8,
    /// Clients not capped per client (they still count against
    /// `max_connections`); `[]` exempts none. Default: loopback and this
    /// machine's own addresses, found when the proxy starts.
    pub per_client_exempt: Option<Vec<ipnet::IpNet>>,
    /// How long a client may take to send a whole command line, and to take
    /// each reply written to it.
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// How long to wait for each chunk of message data.
    #[serde(with = "humantime_serde")]
    pub data_timeout: Duration,
    /// How long to wait for each upstream reply, and for each write to it.
    #[serde(with = "humantime_serde")]
    pub upstream_timeout: Duration,
    /// How long sessions may finish after SIGTERM/SIGINT.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Longest a session may last; it is then closed (421) at the next command.
    #[serde(with = "humantime_serde")]
    pub max_session_duration: Duration,
    /// Wait this long before the greeting and refuse clients that talk
    /// first (554); zero greets at once.
    #[serde(with = "humantime_serde")]
    pub early_talker_delay: Duration,
}

impl Default for ProxySection {
    fn default() -> Self {
        Self {
            listen: None,
            proxy_protocol_listen: Vec::new(),
            upstream: DEFAULT_UPSTREAM.to_string(),
            upstream_fallbacks: Vec::new(),
            upstream_back_off: Duration::from_secs(30),
            upstream_health_interval: Duration::from_secs(5),
            hostname: None,
            max_message_size: 35_882_577,
            max_recipients: 100,
            max_connections: 1000,
            max_errors: 20,
            soft_error_limit: 10,
            error_sleep: Duration::from_secs(1),
            max_connections_per_client: 50,
            per_client_ipv6_prefix: SUBSCRIBER_IPV6_PREFIX,
            per_client_exempt: None,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            data_timeout: Duration::from_secs(600),
            upstream_timeout: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(30),
            max_session_duration: Duration::from_secs(3600),
            early_talker_delay: Duration::ZERO,
        }
    }
}

/// One `[[listener]]` table: `name` and `address` are required.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    /// The listener's name in logs, metrics and `relaygate check`:
    /// lower-case letters, digits and `-`, unique.
    pub name: String,
    /// The address to listen on.
    pub address: SocketAddr,
    /// `starttls`: STARTTLS offered when `[tls]` is set; `implicit`: TLS from
    /// the first byte (RFC 8314, port 465; needs `[tls]`); `none`: never TLS.
    #[serde(default = "listener_default::tls")]
    pub tls: ListenerTlsName,
    /// Every connection starts with a PROXY protocol v1/v2 header naming
    /// the real client.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Our name in the greeting and EHLO here. Default: `[proxy] hostname`.
    pub hostname: Option<String>,
    /// `offered`: AUTH as the policy and `[auth]` allow; `required`: MAIL
    /// before a successful AUTH gets 530 (needs `[auth]`); `off`: never AUTH.
    #[serde(default = "listener_default::auth")]
    pub auth: ListenerAuthName,
    /// Offer AUTH only under TLS (STARTTLS or implicit). Default: `[auth]
    /// require_tls`.
    pub require_tls: Option<bool>,
    /// The policy chain its sessions are asked: a `[[chain]]` name.
    #[serde(default = "listener_default::chain")]
    pub chain: String,
}

/// The chain `[policy] module` stands for, and the default of a listener's
/// `chain`.
pub const DEFAULT_CHAIN: &str = "default";
/// The name of the one module of the chain `default` when `[policy]`
/// defines it.
pub const DEFAULT_CHAIN_MODULE: &str = "policy";

/// One `[[chain]]` table: a name and its modules, asked in order.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
pub struct ChainSection {
    /// The chain's name, which listeners refer to: lower-case letters,
    /// digits and `-`, unique. `default` replaces the chain `[policy]
    /// module` defines.
    pub name: String,
    /// `[[chain.module]]`: the modules, asked in this order (at least one).
    #[serde(default)]
    pub module: Vec<ChainModuleSection>,
}

/// One `[[chain.module]]` table: `name` and `module` are required.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
pub struct ChainModuleSection {
    /// The module's name in logs, metrics and traces: lower-case letters,
    /// digits and `-`, unique within its chain.
    pub name: String,
    /// `builtin:apple-relay` or the path of a `.wasm` component.
    pub module: String,
    /// Whether this module's refusals are applied or only logged.
    #[serde(default = "chain_default::mode")]
    pub mode: ModeName,
    /// `[chain.module.config]`: handed to this module as-is.
    pub config: Option<toml::Table>,
}

/// The defaults of `[[chain.module]]`'s optional keys.
pub mod chain_default {
    use super::ModeName;

    /// `mode`.
    pub fn mode() -> ModeName {
        ModeName::Enforce
    }
}

/// The defaults of `[[listener]]`'s optional keys.
pub mod listener_default {
    use super::{ListenerAuthName, ListenerTlsName};

    /// `tls`.
    pub fn tls() -> ListenerTlsName {
        ListenerTlsName::Starttls
    }
    /// `auth`.
    pub fn auth() -> ListenerAuthName {
        ListenerAuthName::Offered
    }
    /// `chain`.
    pub fn chain() -> String {
        super::DEFAULT_CHAIN.to_string()
    }
}

/// `[[listener]] tls`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "lowercase")]
pub enum ListenerTlsName {
    /// Plain, STARTTLS offered when `[tls]` is set.
    Starttls,
    /// TLS from the first byte.
    Implicit,
    /// Plain, never STARTTLS.
    None,
}

/// `[[listener]] auth`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "lowercase")]
pub enum ListenerAuthName {
    /// As the policy and `[auth]` allow.
    Offered,
    /// AUTH before MAIL.
    Required,
    /// Never offered.
    Off,
}

/// `[policy]`.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(default, deny_unknown_fields)]
pub struct PolicySection {
    /// `builtin:apple-relay` (the embedded default) or the path of a `.wasm`
    /// component.
    pub module: String,
    /// Reload when the module file changes.
    pub watch: bool,
    /// CPU-time budget of one hook call (at least 1ms).
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// Linear memory one policy instance may use, in bytes (at least 1 MiB);
    /// raising it needs a restart.
    pub memory_limit: u64,
    /// The answer to a failed call (trap, timeout, bad reply).
    pub on_failure: FailureModeName,
    /// Whether the policy's refusals are applied or only logged.
    pub mode: ModeName,
    /// Log a decision trace for every policy call.
    pub trace: bool,
    /// Log decision traces only for clients in these networks.
    pub trace_clients: Vec<ipnet::IpNet>,
    /// Where compiled modules are cached across restarts. Default:
    /// `$XDG_CACHE_HOME/relaygate` or `~/.cache/relaygate`
    /// ([`default_cache_dir`]).
    pub cache_dir: Option<PathBuf>,
    /// `[policy.config]`: handed to the policy as-is; the keys are the
    /// policy's own.
    pub config: Option<toml::Table>,
}

impl Default for PolicySection {
    fn default() -> Self {
        Self {
            module: BUILTIN_APPLE_RELAY.to_string(),
            watch: true,
            call_timeout: Duration::from_millis(100),
            memory_limit: 64 << 20,
            on_failure: FailureModeName::Tempfail,
            mode: ModeName::Enforce,
            trace: false,
            trace_clients: Vec::new(),
            cache_dir: None,
            config: None,
        }
    }
}

/// `[policy] mode`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "kebab-case")]
pub enum ModeName {
    /// Refusals are answered.
    Enforce,
    /// Refusals are logged ("would reject") and the command goes on.
    DryRun,
}

/// `[policy] on_failure`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "lowercase")]
pub enum FailureModeName {
    /// 451 4.3.0: fail closed.
    Tempfail,
    /// Carry on as if the policy had accepted: fail open.
    Accept,
}

/// `[dns]`.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(default, deny_unknown_fields)]
pub struct DnsSection {
    /// Name servers to ask; none: the system's (`/etc/resolv.conf`).
    pub nameservers: Vec<SocketAddr>,
    /// Timeout of one lookup.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Longest a client's whole name lookup may take (its PTR query, then
    /// the forward queries of its names); past it the client counts as
    /// unnamed, or as the name confirmed by then.
    #[serde(with = "humantime_serde")]
    pub client_name_timeout: Duration,
}

impl Default for DnsSection {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(3),
            client_name_timeout: CLIENT_NAME_TIMEOUT,
        }
    }
}

/// `[auth]`. `backend` is required, so the defaults of the other keys are
/// the functions of [`auth_default`].
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Where credentials are checked: `imap`, `pop3`, `file` or `smtp`.
    pub backend: AuthBackendName,
    /// The backend's `host:port` (required except for `file`).
    pub server: Option<String>,
    /// Offer AUTH only after STARTTLS.
    #[serde(default = "auth_default::require_tls")]
    pub require_tls: bool,
    /// How the `imap`, `pop3` and `smtp` backends secure their connection.
    #[serde(default = "auth_default::tls")]
    pub tls: AuthTlsName,
    /// PEM CA certificates to trust instead of the webpki roots.
    pub tls_ca: Option<PathBuf>,
    /// The name the backend's certificate must carry. Default: the host
    /// part of `server`.
    pub tls_server_name: Option<String>,
    /// `user:hash` lines for the `file` backend (required there).
    pub users_file: Option<PathBuf>,
    /// The SASL mechanism the `smtp` backend uses towards the server.
    #[serde(default = "auth_default::smtp_mechanism")]
    pub smtp_mechanism: SmtpMechanismName,
    /// The longest one backend check may take, from connect to answer.
    #[serde(default = "auth_default::timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How long a successful check is remembered; zero: not at all.
    #[serde(default = "auth_default::cache_ttl", with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// The most successful checks remembered at once.
    #[serde(default = "auth_default::cache_size")]
    pub cache_size: usize,
    /// Failures per client address answered without delay.
    #[serde(default = "auth_default::failures_before_delay")]
    pub failures_before_delay: u32,
    /// The delay after the first slowed failure; it doubles with each
    /// further failure (at most 30s).
    #[serde(default = "auth_default::failure_delay", with = "humantime_serde")]
    pub failure_delay: Duration,
    /// Failures (and checks in flight) within `failure_window` after which a
    /// client's attempts are refused (454) without asking the backend, and a
    /// user's checks are spaced out.
    #[serde(default = "auth_default::max_failures")]
    pub max_failures: u32,
    /// The time over which `max_failures` failures are forgotten.
    #[serde(default = "auth_default::failure_window", with = "humantime_serde")]
    pub failure_window: Duration,
    /// The least time between two checks of a user with `max_failures`
    /// failures in the window (at most 1h).
    #[serde(
        default = "auth_default::attack_check_interval",
        with = "humantime_serde"
    )]
    pub attack_check_interval: Duration,
    /// Attempts that may wait for their turn per user under attack; beyond
    /// that they get 454.
    #[serde(default = "auth_default::attack_queue_size")]
    pub attack_queue_size: usize,
    /// Backend checks running at once, all users and clients together; more
    /// wait (at most `timeout`), then get 454. Default: one per core for the
    /// `file` backend, four per core for the others
    /// ([`default_concurrent_checks`]).
    pub max_concurrent_checks: Option<usize>,
}

/// The defaults of `[auth]`'s optional keys.
pub mod auth_default {
    use super::{AuthTlsName, SmtpMechanismName};
    use std::time::Duration;

    /// `require_tls`.
    pub fn require_tls() -> bool {
        true
    }
    /// `tls`.
    pub fn tls() -> AuthTlsName {
        AuthTlsName::None
    }
    /// `smtp_mechanism`.
    pub fn smtp_mechanism() -> SmtpMechanismName {
        SmtpMechanismName::Plain
    }
    /// `timeout`.
    pub fn timeout() -> Duration {
        Duration::from_secs(10)
    }
    /// `cache_ttl`.
    pub fn cache_ttl() -> Duration {
        Duration::ZERO
    }
    /// `cache_size`.
    pub fn cache_size() -> usize {
        1024
    }
    /// `failures_before_delay`.
    pub fn failures_before_delay() -> u32 {
        3
    }
    /// `failure_delay`.
    pub fn failure_delay() -> Duration {
        Duration::from_secs(1)
    }
    /// `max_failures`.
    pub fn max_failures() -> u32 {
        10
    }
    /// `failure_window`.
    pub fn failure_window() -> Duration {
        Duration::from_secs(600)
    }
    /// `attack_check_interval`.
    pub fn attack_check_interval() -> Duration {
        Duration::from_secs(2)
    }
    /// `attack_queue_size`.
    pub fn attack_queue_size() -> usize {
        4
    }
}

/// `[auth] tls` and `[upstream_tls] mode`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "lowercase")]
pub enum AuthTlsName {
    /// Plain TCP.
    None,
    /// Plain TCP, then the protocol's STARTTLS/STLS command.
    Starttls,
    /// TLS from the first byte.
    Implicit,
}

/// `[auth] smtp_mechanism`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "lowercase")]
pub enum SmtpMechanismName {
    /// `AUTH PLAIN`.
    Plain,
    /// `AUTH LOGIN`.
    Login,
}

/// `[auth] backend`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "lowercase")]
pub enum AuthBackendName {
    /// An IMAP server (LOGIN).
    Imap,
    /// A POP3 server (USER/PASS).
    Pop3,
    /// A local file of `user:hash` lines.
    File,
    /// An SMTP submission server (AUTH).
    Smtp,
}

/// `[tls]`: both keys are required; the files are re-read on reload.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `[admin]`.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(default, deny_unknown_fields)]
pub struct AdminSection {
    /// The loopback HTTP endpoint (`/healthz`, `/readyz`, `/metrics`,
    /// `/status`, `POST /reload`). Default: none (off).
    pub listen: Option<SocketAddr>,
}

/// `[upstream_pool]`: connections to the upstream kept open after a session
/// ends and handed to the next one, which is introduced with XCLIENT (or,
/// where the upstream does not offer it, starts after RSET).
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamPoolSection {
    /// Keep and reuse upstream connections; `false` opens one per session.
    pub enabled: bool,
    /// Most idle connections kept; the oldest is closed when a newer one
    /// would exceed it.
    pub max_idle: usize,
    /// An idle connection older than this is closed, not reused.
    #[serde(with = "humantime_serde")]
    pub max_idle_time: Duration,
    /// Messages one connection carries before it is closed.
    pub max_messages: u32,
    /// A connection this old is closed when its session ends.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for UpstreamPoolSection {
    fn default() -> Self {
        Self {
            enabled: true,
            max_idle: 16,
            max_idle_time: Duration::from_secs(10),
            max_messages: 100,
            max_age: Duration::from_secs(300),
        }
    }
}

/// `[upstream_tls]`: TLS on the connections to the upstream, with its
/// certificate verified.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamTlsSection {
    /// `none`: plain SMTP; `starttls`: STARTTLS after the greeting;
    /// `implicit`: TLS from the first byte (port 465).
    pub mode: AuthTlsName,
    /// With `starttls`: an upstream that does not offer STARTTLS is refused
    /// (451 to the client); `false` sends in clear to such an upstream.
    /// A certificate that does not verify is refused either way.
    pub required: bool,
    /// PEM file of the CA certificates to trust. Default: the system's CA
    /// bundle (`/etc/ssl/certs/ca-certificates.crt`), else the Mozilla roots
    /// built in.
    pub ca: Option<PathBuf>,
    /// The name the certificate must carry. Default: the host of `[proxy]
    /// upstream`.
    pub server_name: Option<String>,
    /// SHA-256 of the upstream's certificate (DER, hex): when set, that
    /// certificate is accepted whoever signed it, and no other.
    pub pin_sha256: Option<String>,
}

impl Default for UpstreamTlsSection {
    fn default() -> Self {
        Self {
            mode: AuthTlsName::None,
            required: true,
            ca: None,
            server_name: None,
            pin_sha256: None,
        }
    }
}

/// `[state]`.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(default, deny_unknown_fields)]
pub struct StateSection {
    /// The store: `memory` (this process, lost on restart) or `redis`
    /// (shared by every proxy pointed at it).
    pub backend: StateBackendName,
    /// With `backend = "redis"`: `redis://[user:password@]host:port[/db]` or
    /// `unix:///path`.
    pub url: Option<String>,
    /// Longest wait for one state operation, connecting included (at least 1ms).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Prepended to every key, before the policy's name.
    pub prefix: String,
    /// Longest key a policy may use, in bytes.
    pub max_key_size: usize,
    /// Longest value a policy may store, in bytes (at most 1 MiB).
    pub max_value_size: usize,
    /// Most keys the memory backend holds; the ones closest to expiry are
    /// dropped first when it is full.
    pub max_entries: usize,
}

impl Default for StateSection {
    fn default() -> Self {
        Self {
            backend: StateBackendName::Memory,
            url: None,
            timeout: Duration::from_millis(500),
            prefix: "relaygate:".to_string(),
            max_key_size: 256,
            max_value_size: 4096,
            max_entries: 100_000,
        }
    }
}

/// `[state] backend`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "lowercase")]
pub enum StateBackendName {
    /// In this process's memory.
    Memory,
    /// A Redis server.
    Redis,
}

/// The default of `[proxy] hostname`: this machine's host name.
pub fn system_hostname() -> String {
    gethostname::gethostname()
        .into_string()
        .unwrap_or_else(|_| "localhost".to_string())
}

/// The default of `[policy] cache_dir`: `$XDG_CACHE_HOME/relaygate`, else
/// `$HOME/.cache/relaygate`; none when neither is known.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::home_dir().map(|home| home.join(".cache")))?;
    Some(base.join("relaygate"))
}

/// The default of `[auth] max_concurrent_checks`: one per core for the
/// `file` backend, whose every check is a CPU- and memory-hard hash; four
/// per core for the others, whose checks mostly wait on the network.
pub fn default_concurrent_checks(backend: AuthBackendName) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    match backend {
        AuthBackendName::File => cores,
        _ => cores * 4,
    }
}
