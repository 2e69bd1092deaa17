//! The TOML file as written by the admin: serde types that refuse unknown
//! keys. [`super::Config`] is built from these after validation.

use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub proxy: ProxySection,
    #[serde(default)]
    pub policy: PolicySection,
    #[serde(default)]
    pub dns: DnsSection,
    pub auth: Option<AuthSection>,
    pub tls: Option<TlsSection>,
    #[serde(default)]
    pub admin: AdminSection,
    #[serde(default)]
    pub state: StateSection,
}

/// `[admin]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    pub listen: Option<SocketAddr>,
}

/// `[proxy]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    pub listen: Option<Vec<SocketAddr>>,
    pub proxy_protocol_listen: Option<Vec<SocketAddr>>,
    pub upstream: Option<String>,
    pub hostname: Option<String>,
    pub max_message_size: Option<u64>,
    pub max_recipients: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_errors: Option<u32>,
    pub soft_error_limit: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub error_sleep: Option<Duration>,
    pub max_connections_per_client: Option<usize>,
    pub per_client_ipv6_prefix: Option<u8>,
    pub per_client_exempt: Option<Vec<ipnet::IpNet>>,
    #[serde(default, with = "humantime_serde")]
    pub command_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub data_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub upstream_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub shutdown_grace: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub max_session_duration: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub early_talker_delay: Option<Duration>,
}

/// `[policy]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    pub module: Option<String>,
    pub watch: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    pub call_timeout: Option<Duration>,
    pub memory_limit: Option<u64>,
    pub on_failure: Option<FailureModeName>,
    pub mode: Option<ModeName>,
    pub trace: Option<bool>,
    pub trace_clients: Option<Vec<ipnet::IpNet>>,
    pub cache_dir: Option<std::path::PathBuf>,
    pub config: Option<toml::Table>,
}

/// `[policy] mode`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ModeName {
    Enforce,
    DryRun,
}

/// `[policy] on_failure`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FailureModeName {
    Tempfail,
    Accept,
}

/// `[dns]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSection {
    pub nameservers: Option<Vec<SocketAddr>>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub client_name_timeout: Option<Duration>,
}

/// `[auth]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    pub backend: AuthBackendName,
    pub server: Option<String>,
    pub require_tls: Option<bool>,
    pub tls: Option<AuthTlsName>,
    pub tls_ca: Option<std::path::PathBuf>,
    pub tls_server_name: Option<String>,
    pub users_file: Option<std::path::PathBuf>,
    pub smtp_mechanism: Option<SmtpMechanismName>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub cache_ttl: Option<Duration>,
    pub cache_size: Option<usize>,
    pub failures_before_delay: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub failure_delay: Option<Duration>,
    pub max_failures: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub failure_window: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub attack_check_interval: Option<Duration>,
    pub attack_queue_size: Option<usize>,
    pub max_concurrent_checks: Option<usize>,
}

/// `[auth] tls`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthTlsName {
    None,
    Starttls,
    Implicit,
}

/// `[auth] smtp_mechanism`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpMechanismName {
    Plain,
    Login,
}

/// `[auth] backend`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthBackendName {
    Imap,
    Pop3,
    File,
    Smtp,
}

/// `[tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// `[state]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    pub backend: Option<StateBackendName>,
    pub url: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    pub prefix: Option<String>,
    pub max_key_size: Option<usize>,
    pub max_value_size: Option<usize>,
    pub max_entries: Option<usize>,
}

/// `[state] backend`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StateBackendName {
    Memory,
    Redis,
}
