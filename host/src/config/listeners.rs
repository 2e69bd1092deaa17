//! The listeners: `[[listener]]` tables checked into [`ListenerConfig`]s,
//! and [`Config::listeners`], every listener the proxy binds, the ones
//! `[proxy] listen` (named `smtp`) and `proxy_protocol_listen` (named
//! `proxy`) stand for included. Each problem names its key.

use super::file::{ListenerAuthName, ListenerSection, ListenerTlsName};
use super::{
    AuthConfig, Config, ListenerAuth, ListenerConfig, ListenerTls, PROXY_LISTENER, SMTP_LISTENER,
    TlsConfig,
};
use std::collections::HashSet;

/// Checks the `[[listener]]` tables against the other sections; `hostname`
/// is `[proxy] hostname`.
pub(super) fn from_sections(
    sections: Vec<ListenerSection>,
    hostname: &str,
    auth: Option<&AuthConfig>,
    tls: Option<&TlsConfig>,
    problems: &mut Vec<String>,
) -> Vec<ListenerConfig> {
    let mut names = HashSet::new();
    sections
        .into_iter()
        .enumerate()
        .map(|(index, section)| {
            let key = |name: &str| format!("listener[{index}].{name}");
            let name = section.name;
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                problems.push(format!(
                    "{}: {name:?} is not a listener name (lower-case letters, digits and '-')",
                    key("name")
                ));
            } else if name == SMTP_LISTENER || name == PROXY_LISTENER {
                problems.push(format!(
                    "{}: {name:?} is the name of the [proxy] {} addresses; choose another",
                    key("name"),
                    if name == SMTP_LISTENER {
                        "listen"
                    } else {
                        "proxy_protocol_listen"
                    }
                ));
            } else if !names.insert(name.clone()) {
                problems.push(format!(
                    "{}: {name:?} names another listener already",
                    key("name")
                ));
            }
            let tls_kind = match section.tls {
                ListenerTlsName::Starttls => ListenerTls::Starttls,
                ListenerTlsName::Implicit => ListenerTls::Implicit,
                ListenerTlsName::None => ListenerTls::None,
            };
            if tls_kind == ListenerTls::Implicit && tls.is_none() {
                problems.push(format!(
                    "{}: \"implicit\" needs a [tls] section (cert, key)",
                    key("tls")
                ));
            }
            let auth_mode = match section.auth {
                ListenerAuthName::Offered => ListenerAuth::Offered,
                ListenerAuthName::Required => ListenerAuth::Required,
                ListenerAuthName::Off => ListenerAuth::Off,
            };
            let require_tls = section
                .require_tls
                .unwrap_or_else(|| auth.is_none_or(|auth| auth.require_tls));
            if auth_mode == ListenerAuth::Required {
                if auth.is_none() {
                    problems.push(format!(
                        "{}: \"required\" needs an [auth] section naming a credential backend",
                        key("auth")
                    ));
                } else if require_tls && tls_kind != ListenerTls::Implicit && tls.is_none() {
                    problems.push(format!(
                        "{}: \"required\" with require_tls needs TLS, but there is no [tls] certificate, so no client could ever send here; add [tls] or set {} = false",
                        key("auth"),
                        key("require_tls")
                    ));
                } else if require_tls && tls_kind == ListenerTls::None {
                    problems.push(format!(
                        "{}: \"required\" with require_tls needs TLS, but tls = \"none\" here, so no client could ever send; use tls = \"starttls\" or \"implicit\", or set {} = false",
                        key("auth"),
                        key("require_tls")
                    ));
                }
            }
            let hostname = section.hostname.unwrap_or_else(|| hostname.to_string());
            if !super::validate::is_host_name(&hostname) {
                problems.push(format!(
                    "{}: {hostname:?} is not a host name (letters, digits, '-' and '.')",
                    key("hostname")
                ));
            }
            ListenerConfig {
                name,
                address: section.address,
                tls: tls_kind,
                proxy_protocol: section.proxy_protocol,
                hostname,
                auth: auth_mode,
                require_tls,
                chain: section.chain,
            }
        })
        .collect()
}

impl Config {
    /// Every listener to bind: `[proxy] listen` (named `smtp`), `[proxy]
    /// proxy_protocol_listen` (named `proxy`), then the `[[listener]]`
    /// tables. The first two take `[proxy] hostname`, STARTTLS when `[tls]`
    /// is set, and AUTH as offered, as they always have.
    pub fn listeners(&self) -> Vec<ListenerConfig> {
        let derived = |name: &str, address, proxy_protocol| ListenerConfig {
            name: name.to_string(),
            address,
            tls: ListenerTls::Starttls,
            proxy_protocol,
            hostname: self.proxy.hostname.clone(),
            auth: ListenerAuth::Offered,
            require_tls: self.auth.as_ref().is_none_or(|auth| auth.require_tls),
            chain: super::DEFAULT_CHAIN.to_string(),
        };
        let plain = self
            .proxy
            .listen
            .iter()
            .map(|addr| derived(SMTP_LISTENER, *addr, false));
        let proxied = self
            .proxy
            .proxy_protocol_listen
            .iter()
            .map(|addr| derived(PROXY_LISTENER, *addr, true));
        plain
            .chain(proxied)
            .chain(self.listener_tables.iter().cloned())
            .collect()
    }

    /// Listening problems that command-line flags can change: no listener
    /// at all, or an address twice.
    pub(super) fn listener_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.proxy.listen.is_empty() && self.listener_tables.is_empty() {
            problems.push("proxy.listen: needs at least one address".to_string());
        }
        let mut seen = HashSet::new();
        for listener in self.listeners() {
            if !seen.insert(listener.address) {
                problems.push(format!(
                    "listener {:?}: address {} is used by another listener",
                    listener.name, listener.address
                ));
            }
        }
        problems
    }
}

impl Config {
    /// How `relaygate check` and the start-up log describe `listener`: its
    /// name, address and settings, noting a STARTTLS or AUTH that this
    /// config can never offer (no `[tls]`, no `[auth]`).
    pub fn describe_listener(&self, listener: &ListenerConfig) -> String {
        let tls = match listener.tls {
            ListenerTls::Starttls if self.tls.is_none() => {
                "starttls (no [tls] certificate: not offered)"
            }
            ListenerTls::Starttls => "starttls",
            ListenerTls::Implicit => "implicit",
            ListenerTls::None => "none",
        };
        let auth = match listener.auth {
            ListenerAuth::Off => "off",
            _ if self.auth.is_none() => "offered (no [auth]: not offered)",
            ListenerAuth::Offered if listener.require_tls => "offered (after TLS)",
            ListenerAuth::Offered => "offered",
            ListenerAuth::Required if listener.require_tls => "required (after TLS)",
            ListenerAuth::Required => "required",
        };
        format!(
            "{} {} tls={tls} proxy_protocol={} hostname={} auth={auth}",
            listener.name,
            listener.address,
            if listener.proxy_protocol { "yes" } else { "no" },
            listener.hostname,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::problems;
    use super::*;

    const TLS: &str = "[tls]\ncert = \"Cargo.toml\"\nkey = \"Cargo.toml\"\n";
    const AUTH: &str = "[auth]\nbackend = \"imap\"\nserver = \"127.0.0.1:143\"\n";

    fn listener(body: &str) -> String {
        format!("[[listener]]\nname = \"submission\"\naddress = \"127.0.0.1:587\"\n{body}")
    }

    #[test]
    fn without_listener_tables_the_proxy_keys_are_the_listeners() {
        let config = Config::parse(
            "[proxy]\nhostname = \"mx.example\"\nproxy_protocol_listen = [\"127.0.0.1:2626\"]\n",
        )
        .unwrap();
        let all = config.listeners();
        assert_eq!(all.len(), 2);
        assert_eq!(
            (all[0].name.as_str(), all[0].address.to_string()),
            ("smtp", "127.0.0.1:2525".to_string())
        );
        assert_eq!(all[1].name, "proxy");
        assert!(all[1].proxy_protocol && !all[0].proxy_protocol);
        assert!(all.iter().all(|l| l.tls == ListenerTls::Starttls
            && l.auth == ListenerAuth::Offered
            && l.hostname == "mx.example"));
    }

    #[test]
    fn listener_tables_replace_the_default_address_and_take_defaults() {
        let text = format!("{TLS}{AUTH}require_tls = false\n{}", listener(""));
        let config = Config::parse(&text).unwrap();
        assert!(config.proxy.listen.is_empty(), "no default smtp listener");
        let all = config.listeners();
        assert_eq!(all.len(), 1);
        let submission = &all[0];
        assert_eq!(submission.tls, ListenerTls::Starttls);
        assert_eq!(submission.auth, ListenerAuth::Offered);
        assert!(!submission.proxy_protocol);
        assert!(!submission.require_tls, "from [auth] require_tls");
        assert_eq!(submission.hostname, config.proxy.hostname);

        // Combined with the old keys.
        let both = format!(
            "[proxy]\nlisten = [\"127.0.0.1:25\"]\nhostname = \"mx.example\"\n{TLS}{}tls = \"implicit\"\nhostname = \"smtp.example\"\nrequire_tls = true\n",
            listener("")
        );
        let all = Config::parse(&both).unwrap().listeners();
        assert_eq!(all.len(), 2);
        assert_eq!(
            (all[0].name.as_str(), all[0].hostname.as_str()),
            ("smtp", "mx.example")
        );
        assert_eq!(all[1].tls, ListenerTls::Implicit);
        assert_eq!(all[1].hostname, "smtp.example");
    }

    #[test]
    fn each_refusal_names_its_key() {
        let p = problems(&listener("tls = \"implicit\"\n"));
        assert!(
            p.iter()
                .any(|p| p.starts_with("listener[0].tls:") && p.contains("[tls]")),
            "{p:?}"
        );
        let p = problems(&listener("auth = \"required\"\n"));
        assert!(
            p.iter()
                .any(|p| p.starts_with("listener[0].auth:") && p.contains("[auth]")),
            "{p:?}"
        );
        let p = problems(&format!("{AUTH}{}", listener("auth = \"required\"\n")));
        assert!(
            p.iter()
                .any(|p| p.starts_with("listener[0].auth:") && p.contains("[tls]")),
            "{p:?}"
        );
        let p = problems(&format!(
            "{AUTH}{TLS}{}",
            listener("auth = \"required\"\ntls = \"none\"\n")
        ));
        assert!(
            p.iter()
                .any(|p| p.starts_with("listener[0].auth:") && p.contains("tls = \"none\"")),
            "{p:?}"
        );
        let p = problems("[[listener]]\nname = \"Sub mission\"\naddress = \"127.0.0.1:587\"\n");
        assert!(p[0].starts_with("listener[0].name:"), "{p:?}");
        let p = problems("[[listener]]\nname = \"smtp\"\naddress = \"127.0.0.1:587\"\n");
        assert!(
            p[0].starts_with("listener[0].name:") && p[0].contains("[proxy] listen"),
            "{p:?}"
        );
        let p = problems(&format!(
            "{}{}",
            listener(""),
            listener("").replace("587", "588")
        ));
        assert!(p[0].starts_with("listener[1].name:"), "{p:?}");
        let p = problems(&listener("hostname = \"not a name\"\n"));
        assert!(p[0].starts_with("listener[0].hostname:"), "{p:?}");
        let p = problems(&listener("tls = \"sometimes\"\n"));
        assert!(p[0].contains("tls"), "{p:?}");
        let p = problems("[[listener]]\nname = \"x\"\n");
        assert!(p[0].contains("address"), "{p:?}");
    }

    #[test]
    fn an_address_twice_is_refused() {
        let p = problems(&format!(
            "[proxy]\nlisten = [\"127.0.0.1:587\"]\n{}",
            listener("")
        ));
        assert!(
            p[0].contains("127.0.0.1:587 is used by another listener"),
            "{p:?}"
        );
        let p = problems(
            "[proxy]\nlisten = [\"127.0.0.1:25\"]\nproxy_protocol_listen = [\"127.0.0.1:25\"]\n",
        );
        assert!(p[0].contains("is used by another listener"), "{p:?}");
    }

    #[test]
    fn describe_names_every_setting() {
        let text = format!(
            "{TLS}{AUTH}{}",
            listener("tls = \"implicit\"\nauth = \"required\"\nproxy_protocol = true\n")
        );
        let all = Config::parse(&text).unwrap().listeners();
        let config = Config::parse(&text).unwrap();
        let line = config.describe_listener(&all[0]);
        assert!(
            line.starts_with("submission 127.0.0.1:587 tls=implicit proxy_protocol=yes hostname="),
            "{line}"
        );
        assert!(line.ends_with("auth=required (after TLS)"), "{line}");
        let bare = Config::parse("").unwrap();
        let line = bare.describe_listener(&bare.listeners()[0]);
        assert_eq!(
            line,
            format!(
                "smtp 127.0.0.1:2525 tls=starttls (no [tls] certificate: not offered) proxy_protocol=no hostname={} auth=offered (no [auth]: not offered)",
                bare.proxy.hostname
            )
        );
    }
}
