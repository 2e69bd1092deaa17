//! The submission rules: configuration and decisions, independent of WIT.

use std::collections::BTreeMap;
use std::net::IpAddr;

use kit::config::{ConfigSource, Value};
use kit::net::{self, IpNetwork};

/// A reply to refuse with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// SMTP reply code (5xx).
    pub code: u16,
    /// Enhanced status code.
    pub status: &'static str,
    /// Reply text.
    pub text: String,
}

/// The effective configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// Clients that may submit without logging in.
    pub trusted_networks: Vec<IpNetwork>,
    /// Domain of logins without `@`.
    pub default_domain: Option<String>,
    /// Extra domains per login (lower case).
    pub user_domains: BTreeMap<String, Vec<String>>,
    /// Whether subdomains of a user's domain count as the user's.
    pub allow_subdomains: bool,
    /// Text of the 553 reply for a sender the user does not own.
    pub mismatch_text: String,
}

const DEFAULT_MISMATCH_TEXT: &str = "sender address is not yours";

impl Settings {
    /// Reads the settings from `source`; the error lists every problem, each
    /// naming its key.
    pub fn parse(source: &dyn ConfigSource) -> Result<Self, Vec<String>> {
        let mut settings = Settings {
            mismatch_text: DEFAULT_MISMATCH_TEXT.to_owned(),
            ..Settings::default()
        };
        let mut errors = Vec::new();

        match source.get("trusted_networks") {
            None => {}
            Some(Value::TextList(list)) => {
                for entry in list {
                    match net::parse_network(&entry) {
                        Some(net) => settings.trusted_networks.push(net),
                        None => errors.push(format!(
                            "trusted_networks: \"{entry}\" is not an address or CIDR network"
                        )),
                    }
                }
            }
            Some(_) => errors.push("trusted_networks: must be a list of networks".to_owned()),
        }

        match source.get("default_domain") {
            None => {}
            Some(Value::Text(domain)) if is_domain(&domain) => {
                settings.default_domain = Some(domain.to_ascii_lowercase());
            }
            Some(_) => errors.push("default_domain: must be a domain name".to_owned()),
        }

        match source.get("user_domains") {
            None => {}
            Some(Value::TextList(list)) => {
                for line in list {
                    if let Err(problem) = settings.add_user_domains(&line) {
                        errors.push(format!("user_domains: {problem}"));
                    }
                }
            }
            Some(_) => errors.push(
                "user_domains: must be a list of \"user: domain, domain\" entries".to_owned(),
            ),
        }

        match source.get("allow_subdomains") {
            None => {}
            Some(Value::Boolean(allow)) => settings.allow_subdomains = allow,
            Some(_) => errors.push("allow_subdomains: must be true or false".to_owned()),
        }

        match source.get("mismatch_text") {
            None => {}
            Some(Value::Text(text))
                if !text.is_empty()
                    && text.len() <= 300
                    && text.bytes().all(|b| (0x20..0x7f).contains(&b)) =>
            {
                settings.mismatch_text = text;
            }
            Some(_) => {
                errors.push("mismatch_text: must be 1 to 300 printable ASCII characters".to_owned())
            }
        }

        if errors.is_empty() {
            Ok(settings)
        } else {
            Err(errors)
        }
    }

    fn add_user_domains(&mut self, line: &str) -> Result<(), String> {
        let Some((user, domains)) = line.split_once(':') else {
            return Err(format!("\"{line}\" is not \"user: domain, domain\""));
        };
        let user = user.trim().to_ascii_lowercase();
        if user.is_empty() {
            return Err(format!("\"{line}\" names no user"));
        }
        let mut parsed = Vec::new();
        for domain in domains.split([',', ' ']).filter(|d| !d.is_empty()) {
            if !is_domain(domain) {
                return Err(format!("\"{domain}\" (for {user}) is not a domain name"));
            }
            parsed.push(domain.to_ascii_lowercase());
        }
        if parsed.is_empty() {
            return Err(format!("\"{line}\" lists no domain"));
        }
        if self.user_domains.insert(user.clone(), parsed).is_some() {
            return Err(format!("user \"{user}\" is listed twice"));
        }
        Ok(())
    }

    /// True when `client` may submit without logging in.
    pub fn is_trusted(&self, client: &str) -> bool {
        client
            .parse::<IpAddr>()
            .is_ok_and(|ip| net::contains(&self.trusted_networks, ip))
    }

    /// The sender domains a login may use; empty when it has none.
    pub fn domains_of(&self, user: &str) -> Vec<String> {
        let user = user.to_ascii_lowercase();
        let mut domains = Vec::new();
        match user.rsplit_once('@') {
            Some((_, domain)) if !domain.is_empty() => domains.push(domain.to_owned()),
            _ => domains.extend(self.default_domain.clone()),
        }
        if let Some(extra) = self.user_domains.get(&user) {
            domains.extend(extra.iter().cloned());
        }
        domains
    }

    /// One line for admins.
    pub fn summary(&self) -> String {
        format!(
            "AUTH required except from {} trusted networks; sender domain must be the user's{}",
            self.trusted_networks.len(),
            if self.allow_subdomains {
                " (subdomains too)"
            } else {
                ""
            }
        )
    }
}

/// `530 5.7.0`: the client must log in first.
pub fn auth_required() -> Refusal {
    Refusal {
        code: 530,
        status: "5.7.0",
        text: "authentication required".to_owned(),
    }
}

/// Decides a login: refused when the user would own no sender domain.
pub fn judge_login(settings: &Settings, identity: &str) -> Option<Refusal> {
    if settings.domains_of(identity).is_empty() {
        return Some(Refusal {
            code: 535,
            status: "5.7.8",
            text: "this account may not send mail here".to_owned(),
        });
    }
    None
}

/// Decides MAIL FROM (and RCPT TO, which repeats the auth check).
pub fn judge_sender(
    settings: &Settings,
    client: &str,
    auth_user: Option<&str>,
    sender: &str,
) -> Option<Refusal> {
    let Some(user) = auth_user else {
        return (!settings.is_trusted(client)).then(auth_required);
    };
    if sender.is_empty() {
        return None; // the null sender (e.g. a client's own bounce)
    }
    let domain = sender
        .rsplit_once('@')
        .map(|(_, domain)| domain.trim_end_matches('.').to_ascii_lowercase());
    let owned = domain.is_some_and(|domain| {
        settings.domains_of(user).iter().any(|own| {
            domain == *own
                || (settings.allow_subdomains
                    && domain.len() > own.len()
                    && domain.ends_with(own.as_str())
                    && domain.as_bytes()[domain.len() - own.len() - 1] == b'.')
        })
    });
    (!owned).then(|| Refusal {
        code: 553,
        status: "5.7.1",
        text: settings.mismatch_text.clone(),
    })
}

/// Decides RCPT TO: only the auth check (the sender was judged at MAIL).
pub fn judge_recipient(
    settings: &Settings,
    client: &str,
    auth_user: Option<&str>,
) -> Option<Refusal> {
    (auth_user.is_none() && !settings.is_trusted(client)).then(auth_required)
}

fn is_domain(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, Value)]) -> Result<Settings, Vec<String>> {
        Settings::parse(&pairs.to_vec())
    }

    fn list(items: &[&str]) -> Value {
        Value::TextList(items.iter().map(|s| (*s).to_owned()).collect())
    }

    fn site() -> Settings {
        settings(&[
            ("trusted_networks", list(&["192.0.2.10", "2001:db8::/64"])),
            ("default_domain", Value::Text("example.com".into())),
            ("user_domains", list(&["alice: example.org, example.net"])),
        ])
        .unwrap()
    }

    fn code(refusal: Option<Refusal>) -> u16 {
        refusal.map_or(250, |r| r.code)
    }

    #[test]
    fn unauthenticated_needs_trusted_network() {
        let s = site();
        assert_eq!(
            code(judge_sender(&s, "203.0.113.1", None, "a@example.com")),
            530
        );
        assert_eq!(code(judge_recipient(&s, "203.0.113.1", None)), 530);
        assert_eq!(code(judge_sender(&s, "192.0.2.10", None, "a@any.org")), 250);
        assert_eq!(
            code(judge_sender(&s, "::ffff:192.0.2.10", None, "a@x.org")),
            250
        );
        assert_eq!(code(judge_recipient(&s, "2001:db8::7", None)), 250);
        assert_eq!(code(judge_recipient(&s, "2001:db8:1::7", None)), 530);
    }

    #[test]
    fn sender_domain_belongs_to_user() {
        let s = site();
        let me = Some("bob@example.com");
        assert_eq!(
            code(judge_sender(&s, "203.0.113.1", me, "bob@example.com")),
            250
        );
        assert_eq!(
            code(judge_sender(&s, "203.0.113.1", me, "Bob@EXAMPLE.com")),
            250
        );
        assert_eq!(
            code(judge_sender(&s, "203.0.113.1", me, "bob@example.org")),
            553
        );
        assert_eq!(
            code(judge_sender(&s, "203.0.113.1", me, "bob@sub.example.com")),
            553
        );
        assert_eq!(code(judge_sender(&s, "203.0.113.1", me, "")), 250);
        assert_eq!(code(judge_sender(&s, "203.0.113.1", me, "nodomain")), 553);
        // A bare login gets the default domain plus its own extra domains.
        let alice = Some("alice");
        for sender in ["alice@example.com", "alice@example.org", "x@example.net"] {
            assert_eq!(
                code(judge_sender(&s, "203.0.113.1", alice, sender)),
                250,
                "{sender}"
            );
        }
        assert_eq!(
            code(judge_sender(&s, "203.0.113.1", alice, "a@evil.test")),
            553
        );
    }

    #[test]
    fn subdomains_when_allowed() {
        let s = settings(&[("allow_subdomains", Value::Boolean(true))]).unwrap();
        let me = Some("bob@example.com");
        assert_eq!(
            code(judge_sender(&s, "203.0.113.1", me, "b@lists.example.com")),
            250
        );
        assert_eq!(
            code(judge_sender(&s, "203.0.113.1", me, "b@badexample.com")),
            553
        );
    }

    #[test]
    fn login_without_any_domain_is_refused() {
        let bare = settings(&[]).unwrap();
        assert_eq!(code(judge_login(&bare, "carol")), 535);
        assert_eq!(code(judge_login(&bare, "carol@example.com")), 250);
        assert_eq!(code(judge_login(&site(), "carol")), 250);
    }

    #[test]
    fn every_bad_key_is_reported() {
        let errors = settings(&[
            ("trusted_networks", list(&["not-a-net"])),
            ("default_domain", Value::Integer(3)),
            (
                "user_domains",
                list(&["alice example.org", "bob: bad_domain"]),
            ),
            ("allow_subdomains", Value::Text("yes".into())),
            ("mismatch_text", Value::Text(String::new())),
        ])
        .unwrap_err();
        let keys: Vec<&str> = errors
            .iter()
            .map(|e| e.split(':').next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "trusted_networks",
                "default_domain",
                "user_domains",
                "user_domains",
                "allow_subdomains",
                "mismatch_text"
            ],
            "{errors:?}"
        );
    }

    #[test]
    fn custom_mismatch_text() {
        let s = settings(&[("mismatch_text", Value::Text("use your own address".into()))]).unwrap();
        let refusal = judge_sender(&s, "203.0.113.1", Some("a@x.org"), "a@y.org").unwrap();
        assert_eq!(refusal.text, "use your own address");
    }
}
