//! Turning the parsed file into the runtime [`Config`]: every value checked
//! beyond its syntax, and every problem collected (each naming its key)
//! rather than stopping at the first. Nothing here reads the filesystem;
//! those checks are `load`'s. Defaults come from the typed definition in
//! `file`, never from here.

use super::file::{
    AuthBackendName, AuthSection, AuthTlsName, BUILTIN_APPLE_RELAY, ConfigFile, DEFAULT_LISTEN,
    DnsSection, FailureModeName, ModeName, PolicySection, ProxySection, SmtpMechanismName,
    default_cache_dir, default_concurrent_checks, system_hostname,
};
use super::{
    AuthConfig, Config, DnsConfig, FailureMode, ModuleSource, PolicyConfig, PolicyMode,
    PolicySettings, ProxyConfig, SmtpMechanism, TlsConfig, TlsMode, listeners, state,
    upstream_pool, upstream_tls,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The runtime config built from `file`, and every problem found; the config
/// is only to be used when there are none.
pub(super) fn validate(file: ConfigFile) -> (Config, Vec<String>) {
    let mut problems = Vec::new();
    let proxy = proxy_config(file.proxy, !file.listener.is_empty(), &mut problems);
    let policy = policy_settings(file.policy, &mut problems);
    let dns = dns_config(file.dns, &mut problems);
    let auth = file
        .auth
        .map(|auth| auth_config(auth, &proxy.hostname, &mut problems));
    let tls = file.tls.map(|tls| TlsConfig {
        cert: tls.cert,
        key: tls.key,
    });
    let state = state::from_section(file.state, &mut problems);
    let upstream_pool = upstream_pool::from_section(file.upstream_pool, &mut problems);
    let upstream_tls = upstream_tls::from_section(file.upstream_tls, &mut problems);
    let listeners = listeners::from_sections(
        file.listener,
        &proxy.hostname,
        auth.as_ref(),
        tls.as_ref(),
        &mut problems,
    );
    let chain_tables = super::chains::from_sections(file.chain, &mut problems);
    let config = Config {
        proxy,
        policy,
        chain_tables,
        dns,
        auth,
        tls,
        admin_listen: file.admin.listen,
        state,
        upstream_pool,
        upstream_tls,
        listener_tables: listeners,
        source: None,
    };
    problems.extend(config.overridable_problems());
    (config, problems)
}

impl Config {
    /// Problems with the values that command-line flags can override, short
    /// of reading files (`load` checks that the policy module can be read).
    pub(super) fn overridable_problems(&self) -> Vec<String> {
        let mut problems = self.listener_problems();
        problems.extend(self.chain_problems());
        if let Err(why) = check_host_port(&self.proxy.upstream) {
            problems.push(format!("proxy.upstream: {:?} {why}", self.proxy.upstream));
        }
        for (at, fallback) in self.proxy.upstream_fallbacks.iter().enumerate() {
            if let Err(why) = check_host_port(fallback) {
                problems.push(format!(
                    "proxy.upstream_fallbacks[{at}]: {fallback:?} {why}"
                ));
            } else if *fallback == self.proxy.upstream
                || self.proxy.upstream_fallbacks[..at].contains(fallback)
            {
                problems.push(format!(
                    "proxy.upstream_fallbacks[{at}]: {fallback:?} is listed twice"
                ));
            }
        }
        problems
    }
}

/// Letters, digits, '-' and '.', not empty: what a greeting may name.
pub(super) fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Checks `[proxy]`; each problem names its key. `listener_tables`: the
/// file has `[[listener]]` tables, so `listen` has no default address.
fn proxy_config(
    proxy: ProxySection,
    listener_tables: bool,
    problems: &mut Vec<String>,
) -> ProxyConfig {
    let hostname = proxy.hostname.unwrap_or_else(system_hostname);
    if !is_host_name(&hostname) {
        problems.push(format!(
            "proxy.hostname: {hostname:?} is not a host name (letters, digits, '-' and '.')"
        ));
    }
    let positive = |key: &str, value: u64, problems: &mut Vec<String>| {
        if value == 0 {
            problems.push(format!("proxy.{key}: must be greater than 0"));
        }
    };
    positive("max_message_size", proxy.max_message_size, problems);
    positive("max_recipients", proxy.max_recipients as u64, problems);
    positive("max_connections", proxy.max_connections as u64, problems);
    positive("max_errors", u64::from(proxy.max_errors), problems);
    if proxy.error_sleep > Duration::from_secs(60) {
        // Each delayed reply holds a session slot; past a minute it is the
        // proxy that is tied up, not the client.
        problems.push("proxy.error_sleep: must be at most 60s".to_string());
    }
    positive(
        "max_connections_per_client",
        proxy.max_connections_per_client as u64,
        problems,
    );
    if !(1..=128).contains(&proxy.per_client_ipv6_prefix) {
        problems.push(format!(
            "proxy.per_client_ipv6_prefix: {} is not a prefix length from 1 to 128 (64: one subscriber's block)",
            proxy.per_client_ipv6_prefix
        ));
    }
    for (key, value) in [
        ("command_timeout", proxy.command_timeout),
        ("data_timeout", proxy.data_timeout),
        ("upstream_timeout", proxy.upstream_timeout),
        ("upstream_back_off", proxy.upstream_back_off),
        ("upstream_health_interval", proxy.upstream_health_interval),
        ("shutdown_grace", proxy.shutdown_grace),
        ("max_session_duration", proxy.max_session_duration),
    ] {
        if value.is_zero() {
            problems.push(format!("proxy.{key}: must be longer than 0s"));
        }
    }
    ProxyConfig {
        listen: proxy.listen.unwrap_or_else(|| {
            if listener_tables {
                Vec::new()
            } else {
                vec![DEFAULT_LISTEN]
            }
        }),
        proxy_protocol_listen: proxy.proxy_protocol_listen,
        upstream: proxy.upstream,
        upstream_fallbacks: proxy.upstream_fallbacks,
        upstream_back_off: proxy.upstream_back_off,
        upstream_health_interval: proxy.upstream_health_interval,
        hostname,
        max_message_size: proxy.max_message_size,
        max_recipients: proxy.max_recipients,
        max_connections: proxy.max_connections,
        max_errors: proxy.max_errors,
        soft_error_limit: proxy.soft_error_limit,
        error_sleep: proxy.error_sleep,
        max_connections_per_client: proxy.max_connections_per_client,
        per_client_ipv6_prefix: proxy.per_client_ipv6_prefix,
        per_client_exempt: proxy.per_client_exempt,
        max_session_duration: proxy.max_session_duration,
        early_talker_delay: proxy.early_talker_delay,
        command_timeout: proxy.command_timeout,
        data_timeout: proxy.data_timeout,
        upstream_timeout: proxy.upstream_timeout,
        shutdown_grace: proxy.shutdown_grace,
    }
}

/// Checks `[policy]`; each problem names its key.
fn policy_settings(policy: PolicySection, problems: &mut Vec<String>) -> PolicySettings {
    let module = match policy.module.as_str() {
        BUILTIN_APPLE_RELAY => ModuleSource::BuiltinAppleRelay,
        other if other.starts_with("builtin:") => {
            problems.push(format!(
                "policy.module: unknown built-in {other:?} (the only one is {BUILTIN_APPLE_RELAY:?})"
            ));
            ModuleSource::BuiltinAppleRelay
        }
        path => ModuleSource::File(PathBuf::from(path)),
    };
    if policy.call_timeout < Duration::from_millis(1) {
        problems.push("policy.call_timeout: must be at least 1ms".to_string());
    }
    if policy.memory_limit < (1 << 20) {
        problems.push("policy.memory_limit: must be at least 1048576 bytes (1 MiB)".to_string());
    }
    let config =
        PolicyConfig::from_table(policy.config.unwrap_or_default()).unwrap_or_else(|errors| {
            problems.extend(errors);
            PolicyConfig::default()
        });
    PolicySettings {
        module,
        watch: policy.watch,
        cache_dir: policy.cache_dir.or_else(default_cache_dir),
        call_timeout: policy.call_timeout,
        memory_limit: usize::try_from(policy.memory_limit).unwrap_or(usize::MAX),
        on_failure: match policy.on_failure {
            FailureModeName::Tempfail => FailureMode::Tempfail,
            FailureModeName::Accept => FailureMode::Accept,
        },
        mode: match policy.mode {
            ModeName::Enforce => PolicyMode::Enforce,
            ModeName::DryRun => PolicyMode::DryRun,
        },
        trace: policy.trace,
        trace_clients: policy.trace_clients,
        config,
        state_namespace: None,
    }
}

/// Checks `[dns]`; each problem names its key.
fn dns_config(dns: DnsSection, problems: &mut Vec<String>) -> DnsConfig {
    if dns.timeout.is_zero() {
        problems.push("dns.timeout: must be longer than 0s".to_string());
    }
    if dns.client_name_timeout.is_zero() {
        problems.push("dns.client_name_timeout: must be longer than 0s".to_string());
    }
    DnsConfig {
        nameservers: dns.nameservers,
        timeout: dns.timeout,
        client_name_timeout: dns.client_name_timeout,
    }
}

/// Checks `[auth]` beyond its syntax; each problem names its key.
fn auth_config(auth: AuthSection, hostname: &str, problems: &mut Vec<String>) -> AuthConfig {
    if auth.backend != AuthBackendName::File && auth.server.is_none() {
        problems.push("auth.server: required for this backend".to_string());
    }
    if let Some(server) = &auth.server
        && let Err(why) = check_host_port(server)
    {
        problems.push(format!("auth.server: {server:?} {why}"));
    }
    if auth.timeout.is_zero() {
        problems.push("auth.timeout: must be longer than 0s".to_string());
    }
    if auth.cache_size == 0 {
        problems.push("auth.cache_size: must be at least 1".to_string());
    }
    if auth.max_failures == 0 {
        problems.push("auth.max_failures: must be at least 1".to_string());
    } else if auth.failures_before_delay > auth.max_failures {
        problems.push(format!(
            "auth.failures_before_delay: {} is more than auth.max_failures ({})",
            auth.failures_before_delay, auth.max_failures
        ));
    }
    if auth.failure_window.is_zero() {
        problems.push("auth.failure_window: must be longer than 0s".to_string());
    }
    if auth.attack_check_interval > Duration::from_secs(3600) {
        problems.push("auth.attack_check_interval: must be at most 1h".to_string());
    }
    let max_concurrent_checks = auth
        .max_concurrent_checks
        .unwrap_or_else(|| default_concurrent_checks(auth.backend));
    if max_concurrent_checks == 0 {
        problems.push("auth.max_concurrent_checks: must be at least 1".to_string());
    }
    if auth.backend == AuthBackendName::File && auth.users_file.is_none() {
        problems.push("auth.users_file: required for the file backend".to_string());
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
        require_tls: auth.require_tls,
        tls: match auth.tls {
            AuthTlsName::None => TlsMode::None,
            AuthTlsName::Starttls => TlsMode::Starttls,
            AuthTlsName::Implicit => TlsMode::Implicit,
        },
        tls_ca: auth.tls_ca,
        tls_server_name: auth.tls_server_name,
        users_file: auth.users_file,
        smtp_mechanism: match auth.smtp_mechanism {
            SmtpMechanismName::Plain => SmtpMechanism::Plain,
            SmtpMechanismName::Login => SmtpMechanism::Login,
        },
        timeout: auth.timeout,
        cache_ttl: auth.cache_ttl,
        cache_size: auth.cache_size,
        failures_before_delay: auth.failures_before_delay,
        failure_delay: auth.failure_delay,
        max_failures: auth.max_failures,
        failure_window: auth.failure_window,
        attack_check_interval: auth.attack_check_interval,
        attack_queue_size: auth.attack_queue_size,
        max_concurrent_checks,
        ehlo_name: hostname.to_string(),
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

#[cfg(test)]
mod tests {
    use super::super::problems;
    use super::super::{DEFAULT_UPSTREAM, PolicyValue};
    use super::*;

    #[test]
    fn empty_file_gives_the_defaults() {
        let config = Config::parse("").expect("valid");
        assert_eq!(config.proxy.listen, vec![DEFAULT_LISTEN]);
        assert_eq!(config.proxy.upstream, DEFAULT_UPSTREAM);
        assert_eq!(config.proxy.max_message_size, 35_882_577);
        assert_eq!(config.proxy.max_recipients, 100);
        assert_eq!(config.policy.module, ModuleSource::BuiltinAppleRelay);
        assert_eq!(config.policy.on_failure, FailureMode::Tempfail);
    }

    #[test]
    fn a_full_example_parses() {
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
    fn bad_values_are_named_with_their_key() {
        let p = problems("[proxy]\nlisten = [\"127.0.0.1:2525\", \"nonsense\"]\n");
        assert!(p[0].starts_with("proxy.listen[1]:"), "{p:?}");
        let p = problems("[proxy]\nmax_recipients = -1\n");
        assert!(p[0].starts_with("proxy.max_recipients:"), "{p:?}");
        let p = problems("[proxy]\ncommand_timeout = \"soon\"\n");
        assert!(p[0].starts_with("proxy.command_timeout:"), "{p:?}");
        let p = problems("[proxy]\nlisten = []\n");
        assert_eq!(p, ["proxy.listen: needs at least one address"]);
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
