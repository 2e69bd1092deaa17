//! The cases file of `relaygate policy test` (format: `policies/CASES.md`):
//! parsed and checked up front, so a bad file is refused with the case and
//! key at fault before any policy runs.

use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};

/// The client port every case connects from.
pub const CLIENT_PORT: u16 = 40000;

/// A whole cases file.
#[derive(Debug)]
pub struct CasesFile {
    /// `[config]`: the base `[policy.config]`.
    pub config: toml::Table,
    /// `[server]`.
    pub server: ServerFacts,
    /// `[dns]`: forward records, names lower case without trailing dot.
    pub dns: BTreeMap<String, Vec<IpAddr>>,
    /// `[limits]`: overrides of the proxy's default call limits.
    pub limits: Limits,
    /// `[[case]]`, in file order.
    pub cases: Vec<Case>,
}

/// What the `server` import says, and where the client connected.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFacts {
    /// `[proxy] hostname`.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// The listener clients connect to, unless a case names another.
    #[serde(default = "default_listener")]
    pub listener: String,
    /// The machine's own networks as CIDR text.
    #[serde(default = "default_own_networks")]
    pub own_networks: Vec<ipnet::IpNet>,
    /// The local address clients reach.
    #[serde(default = "default_address")]
    pub address: SocketAddr,
}

impl Default for ServerFacts {
    fn default() -> Self {
        Self {
            hostname: default_hostname(),
            listener: default_listener(),
            own_networks: default_own_networks(),
            address: default_address(),
        }
    }
}

/// `[limits]`: the per-call limits, as `[policy]` sets them in the proxy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// `[policy] call_timeout`, e.g. "250ms".
    #[serde(default, with = "humantime_serde")]
    pub call_timeout: Option<std::time::Duration>,
    /// `[policy] memory_limit` in bytes.
    pub memory_limit: Option<usize>,
}

fn default_listener() -> String {
    "smtp".to_string()
}

fn default_hostname() -> String {
    "mx.example.com".to_string()
}

fn default_own_networks() -> Vec<ipnet::IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .map(|n| n.parse().expect("valid network"))
        .collect()
}

fn default_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 25))
}

fn yes() -> bool {
    true
}

/// One `[[case]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Unique name.
    pub name: String,
    /// Client IP.
    pub client: IpAddr,
    /// PTR name of the client.
    pub client_name: Option<String>,
    /// HELO/EHLO name.
    pub helo: Option<String>,
    /// EHLO (default) rather than HELO.
    #[serde(default = "yes")]
    pub ehlo: bool,
    /// TLS active.
    #[serde(default)]
    pub tls: bool,
    /// The listener the client connects to, when not `[server] listener`.
    pub listener: Option<String>,
    /// Authenticated identity.
    pub auth: Option<String>,
    /// AUTH mechanism, default PLAIN.
    pub auth_mechanism: Option<String>,
    /// MAIL FROM reverse path.
    pub sender: Option<String>,
    /// RCPT TO forward paths.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Message size for the data hook.
    #[serde(default)]
    pub size: u64,
    /// Header fields for the data hook.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Overrides of `[config]` keys.
    #[serde(default)]
    pub config: toml::Table,
    /// What each stage should answer.
    pub expect: Expectations,
}

/// `expect = { ... }` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    /// "ok" or "refused".
    pub init: Option<InitExpectation>,
    /// Verdict of connect.
    pub connect: Option<Expected>,
    /// Verdict of helo.
    pub helo: Option<Expected>,
    /// Extensions offered after EHLO.
    pub extensions: Option<Vec<Extension>>,
    /// Verdict of auth.
    pub auth: Option<Expected>,
    /// Verdict of mail-from.
    pub mail: Option<Expected>,
    /// Verdict of each rcpt-to.
    pub rcpt: Option<OneOrEach>,
    /// Verdict of data.
    pub data: Option<Expected>,
}

/// The outcome of `init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitExpectation {
    /// init accepted the configuration.
    Ok,
    /// init refused it.
    Refused,
}

/// An ESMTP extension name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Extension {
    /// PIPELINING.
    Pipelining,
    /// AUTH.
    Auth,
    /// STARTTLS.
    Starttls,
    /// SMTPUTF8.
    Smtputf8,
    /// CHUNKING.
    Chunking,
}

impl Extension {
    /// The keyword.
    pub fn name(self) -> &'static str {
        match self {
            Extension::Pipelining => "PIPELINING",
            Extension::Auth => "AUTH",
            Extension::Starttls => "STARTTLS",
            Extension::Smtputf8 => "SMTPUTF8",
            Extension::Chunking => "CHUNKING",
        }
    }
}

/// One verdict for every recipient, or one each.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "toml::Value")]
pub enum OneOrEach {
    /// The same for all.
    One(Expected),
    /// One per recipient, in order.
    Each(Vec<Expected>),
}

impl TryFrom<toml::Value> for OneOrEach {
    type Error = String;

    fn try_from(value: toml::Value) -> Result<Self, String> {
        let verdict = |value: toml::Value| match value {
            toml::Value::String(text) => Expected::try_from(text),
            other => Err(format!("{other} is not a verdict string")),
        };
        match value {
            toml::Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| verdict(item).map_err(|e| format!("[{i}]: {e}")))
                .collect::<Result<Vec<_>, _>>()
                .map(OneOrEach::Each),
            other => verdict(other).map(OneOrEach::One),
        }
    }
}

/// An expected verdict: `accept`, `reject 554`, `tempfail 451 4.7.1`, ...
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Expected {
    /// accept, reject or tempfail.
    pub action: String,
    /// Reply code, when given.
    pub code: Option<u16>,
    /// Enhanced status, when given.
    pub enhanced: Option<String>,
}

impl TryFrom<String> for Expected {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let mut words = text.split_whitespace();
        let action = words.next().unwrap_or_default().to_string();
        if !matches!(action.as_str(), "accept" | "reject" | "tempfail") {
            return Err(format!(
                "{text:?}: must start with accept, reject or tempfail"
            ));
        }
        let code = match words.next() {
            None => None,
            Some(code) => {
                let code: u16 = code
                    .parse()
                    .ok()
                    .filter(|c| (200..600).contains(c))
                    .ok_or_else(|| format!("{text:?}: {code:?} is not a reply code"))?;
                let class = match action.as_str() {
                    "reject" => 5,
                    "tempfail" => 4,
                    _ => return Err(format!("{text:?}: accept takes no reply code")),
                };
                if code / 100 != class {
                    return Err(format!("{text:?}: {action} needs a {class}xx code"));
                }
                Some(code)
            }
        };
        let enhanced = words.next().map(str::to_string);
        if let Some(status) = &enhanced {
            let parts: Vec<&str> = status.split('.').collect();
            let numeric = parts.len() == 3
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            if !numeric {
                return Err(format!(
                    "{text:?}: {status:?} is not an enhanced status code (like 5.7.1)"
                ));
            }
        }
        if let Some(extra) = words.next() {
            return Err(format!(
                "{text:?}: unexpected {extra:?} (the reply text is not compared)"
            ));
        }
        Ok(Self {
            action,
            code,
            enhanced,
        })
    }
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.action)?;
        if let Some(code) = self.code {
            write!(f, " {code}")?;
        }
        if let Some(enhanced) = &self.enhanced {
            write!(f, " {enhanced}")?;
        }
        Ok(())
    }
}

impl Case {
    /// The expected verdict of each recipient, in order.
    pub fn rcpt_expectations(&self) -> Vec<Option<Expected>> {
        match &self.expect.rcpt {
            None => vec![None; self.recipients.len()],
            Some(OneOrEach::One(e)) => vec![Some(e.clone()); self.recipients.len()],
            Some(OneOrEach::Each(list)) => list.iter().cloned().map(Some).collect(),
        }
    }

    /// Problems a well-typed case can still have: expectations of stages
    /// that never run.
    fn check(&self) -> Result<(), String> {
        let e = &self.expect;
        let named = [
            e.init.is_some(),
            e.connect.is_some(),
            e.helo.is_some(),
            e.extensions.is_some(),
            e.auth.is_some(),
            e.mail.is_some(),
            e.rcpt.is_some(),
            e.data.is_some(),
        ];
        if !named.contains(&true) {
            return Err("expect: names no stage".to_string());
        }
        let missing =
            |key: &str, needs: &str| Err(format!("expect.{key}: the case has no {needs}"));
        if e.helo.is_some() && self.helo.is_none() {
            return missing("helo", "helo");
        }
        if e.extensions.is_some() && (self.helo.is_none() || !self.ehlo) {
            return missing("extensions", "helo with ehlo = true");
        }
        if e.auth.is_some() && self.auth.is_none() {
            return missing("auth", "auth");
        }
        if e.mail.is_some() && self.sender.is_none() {
            return missing("mail", "sender");
        }
        if !self.recipients.is_empty() && self.sender.is_none() {
            return Err("recipients: need a sender (MAIL comes before RCPT)".to_string());
        }
        match &e.rcpt {
            Some(_) if self.recipients.is_empty() => return missing("rcpt", "recipients"),
            Some(OneOrEach::Each(list)) if list.len() != self.recipients.len() => {
                return Err(format!(
                    "expect.rcpt: {} entries for {} recipients",
                    list.len(),
                    self.recipients.len()
                ));
            }
            _ => {}
        }
        if e.data.is_some() && self.recipients.is_empty() {
            return missing("data", "recipients");
        }
        Ok(())
    }
}

/// Raw top level, before the cases are looked at one by one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    config: toml::Table,
    #[serde(default)]
    server: Option<toml::Value>,
    #[serde(default)]
    dns: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    limits: Option<toml::Value>,
    #[serde(default)]
    case: Vec<toml::Value>,
}

/// Parse and check a cases file; the error names the case and key.
pub fn parse(text: &str) -> Result<CasesFile, String> {
    let raw: RawFile = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
    let server = match raw.server {
        None => ServerFacts::default(),
        Some(value) => {
            serde_path_to_error::deserialize(value).map_err(|e| format!("[server]: {e}"))?
        }
    };
    let limits: Limits = match raw.limits {
        None => Limits::default(),
        Some(value) => {
            serde_path_to_error::deserialize(value).map_err(|e| format!("[limits]: {e}"))?
        }
    };
    if limits.memory_limit.is_some_and(|m| m < 1 << 20) {
        return Err("[limits] memory_limit: must be at least 1048576 bytes (1 MiB)".to_string());
    }
    if limits
        .call_timeout
        .is_some_and(|t| t < std::time::Duration::from_millis(1))
    {
        return Err("[limits] call_timeout: must be at least 1ms".to_string());
    }
    let mut dns = BTreeMap::new();
    for (name, addresses) in raw.dns {
        let parsed = addresses
            .iter()
            .map(|a| a.parse::<IpAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| format!("[dns] {name:?}: every entry must be an IP address"))?;
        dns.insert(name.trim_end_matches('.').to_ascii_lowercase(), parsed);
    }
    if raw.case.is_empty() {
        return Err("no [[case]] in the file".to_string());
    }
    let mut cases = Vec::new();
    let mut names = HashSet::new();
    for (index, value) in raw.case.into_iter().enumerate() {
        let number = index + 1;
        let label = value.get("name").and_then(toml::Value::as_str).map_or_else(
            || format!("case {number}"),
            |n| format!("case {number} ({n:?})"),
        );
        let case: Case = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                format!("{label}: {}", e.into_inner())
            } else {
                format!("{label}: {path}: {}", e.into_inner())
            }
        })?;
        case.check().map_err(|why| format!("{label}: {why}"))?;
        if !names.insert(case.name.clone()) {
            return Err(format!("{label}: name: used by an earlier case"));
        }
        cases.push(case);
    }
    Ok(CasesFile {
        config: raw.config,
        server,
        dns,
        limits,
        cases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[config]
open_relay_addr_flag = 1
[dns]
"GW.example.com." = ["192.0.2.7"]
[[case]]
name = "one"
client = "203.0.113.5"
sender = "a@b.example"
recipients = ["x@example.com", "y@elsewhere.org"]
expect = { connect = "accept", rcpt = ["accept", "reject 554 5.7.1"] }
"#;

    #[test]
    fn a_good_file_parses() {
        let file = parse(GOOD).unwrap();
        assert_eq!(file.cases.len(), 1);
        assert_eq!(
            file.dns["gw.example.com"],
            vec!["192.0.2.7".parse::<IpAddr>().unwrap()]
        );
        let rcpt = file.cases[0].rcpt_expectations();
        assert_eq!(rcpt[1].as_ref().unwrap().to_string(), "reject 554 5.7.1");
        assert_eq!(file.server.own_networks.len(), 2);
    }

    #[test]
    fn errors_name_the_case_and_key() {
        let bad = GOOD.replace("\"reject 554 5.7.1\"", "\"reject 454\"");
        let error = parse(&bad).unwrap_err();
        assert!(error.contains("case 1 (\"one\")"), "{error}");
        assert!(error.contains("5xx"), "{error}");
        let bad = GOOD.replace("[\"accept\", \"reject 554 5.7.1\"]", "[\"accept\"]");
        let error = parse(&bad).unwrap_err();
        assert!(
            error.contains("expect.rcpt: 1 entries for 2 recipients"),
            "{error}"
        );
        let bad = GOOD.replace("client = ", "clinet = ");
        let error = parse(&bad).unwrap_err();
        assert!(
            error.contains("case 1 (\"one\")") && error.contains("clinet"),
            "{error}"
        );
        let bad = GOOD.replace("connect = \"accept\"", "helo = \"accept\"");
        let error = parse(&bad).unwrap_err();
        assert!(
            error.contains("expect.helo: the case has no helo"),
            "{error}"
        );
    }

    #[test]
    fn duplicate_names_are_refused() {
        let twice = format!("{GOOD}\n{}", &GOOD[GOOD.find("[[case]]").unwrap()..]);
        let error = parse(&twice).unwrap_err();
        assert!(
            error.contains("case 2") && error.contains("earlier case"),
            "{error}"
        );
    }
}
