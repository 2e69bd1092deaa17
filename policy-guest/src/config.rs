//! Reading `[policy.config]`: typed getters with defaults that collect every
//! problem (each naming its key), and a final check for unknown keys.

use ipnet::IpNet;

/// A configuration value, as the WIT `config.value` variant.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A TOML string.
    Text(String),
    /// A TOML integer.
    Integer(i64),
    /// A TOML float.
    Float(f64),
    /// A TOML boolean.
    Boolean(bool),
    /// A TOML array, elements in text form.
    TextList(Vec<String>),
}

/// Where the configuration comes from: the host's `config` import, or a
/// table in tests.
pub trait ConfigSource {
    /// Every key, sorted.
    fn keys(&self) -> Vec<String>;
    /// The value of `key`.
    fn get(&self, key: &str) -> Option<Value>;
}

/// A fixed table, for tests.
impl ConfigSource for Vec<(&str, Value)> {
    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.iter().map(|(k, _)| (*k).to_string()).collect();
        keys.sort();
        keys
    }

    fn get(&self, key: &str) -> Option<Value> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
    }
}

/// Reads keys with defaults and collects problems.
pub struct Reader<'a> {
    source: &'a dyn ConfigSource,
    known: Vec<&'static str>,
    problems: Vec<String>,
}

impl<'a> Reader<'a> {
    /// A reader over `source`.
    pub fn new(source: &'a dyn ConfigSource) -> Self {
        Self {
            source,
            known: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Record a problem with `key`.
    pub fn problem(&mut self, key: &str, why: impl std::fmt::Display) {
        self.problems.push(format!("{key}: {why}"));
    }

    /// An integer in `min..=max`, or `default` when absent.
    pub fn integer(&mut self, key: &'static str, default: i64, min: i64, max: i64) -> i64 {
        self.known.push(key);
        match self.source.get(key) {
            None => default,
            Some(Value::Integer(n)) if (min..=max).contains(&n) => n,
            Some(Value::Integer(n)) => {
                self.problem(key, format!("{n} is not between {min} and {max}"));
                default
            }
            Some(other) => {
                self.problem(key, format!("expected an integer, found {other:?}"));
                default
            }
        }
    }

    /// A boolean (or 0/1), or `default` when absent.
    pub fn boolean(&mut self, key: &'static str, default: bool) -> bool {
        self.known.push(key);
        match self.source.get(key) {
            None => default,
            Some(Value::Boolean(b)) => b,
            Some(Value::Integer(0)) => false,
            Some(Value::Integer(1)) => true,
            Some(other) => {
                self.problem(key, format!("expected true or false, found {other:?}"));
                default
            }
        }
    }

    /// A string, or `default` when absent.
    pub fn text(&mut self, key: &'static str, default: &str) -> String {
        self.known.push(key);
        match self.source.get(key) {
            None => default.to_string(),
            Some(Value::Text(text)) => text,
            Some(other) => {
                self.problem(key, format!("expected a string, found {other:?}"));
                default.to_string()
            }
        }
    }

    /// One of `choices`, or the first choice when absent.
    pub fn choice(&mut self, key: &'static str, choices: &[&'static str]) -> &'static str {
        let text = self.text(key, choices[0]);
        match choices.iter().find(|c| **c == text) {
            Some(choice) => choice,
            None => {
                self.problem(
                    key,
                    format!("{text:?} is not one of {}", choices.join(", ")),
                );
                choices[0]
            }
        }
    }

    /// A list of strings (a single string counts as a list of one).
    pub fn text_list(&mut self, key: &'static str) -> Vec<String> {
        self.known.push(key);
        match self.source.get(key) {
            None => Vec::new(),
            Some(Value::TextList(items)) => items,
            Some(Value::Text(item)) => vec![item],
            Some(other) => {
                self.problem(key, format!("expected a list of strings, found {other:?}"));
                Vec::new()
            }
        }
    }

    /// A list of networks ("192.0.2.0/24", "2001:db8::/32", or a single
    /// address meaning just that host).
    pub fn networks(&mut self, key: &'static str) -> Vec<IpNet> {
        let mut networks = Vec::new();
        for item in self.text_list(key) {
            match crate::net::parse_network(&item) {
                Some(network) => networks.push(network),
                None => self.problem(key, format!("{item:?} is not an address or CIDR network")),
            }
        }
        networks
    }

    /// A key this policy no longer reads: a problem naming what to do
    /// `instead` when the table still sets it, so an old configuration is
    /// refused loudly rather than half obeyed.
    pub fn removed(&mut self, key: &'static str, instead: &str) {
        self.known.push(key);
        if self.source.get(key).is_some() {
            self.problem(key, format!("no longer read by this policy: {instead}"));
        }
    }

    /// Finish: the problems found, plus one per key nobody asked for.
    pub fn finish(mut self) -> Result<(), Vec<String>> {
        for key in self.source.keys() {
            if !self.known.contains(&key.as_str()) {
                self.problems.push(format!(
                    "{key}: unknown key (known: {})",
                    self.known.join(", ")
                ));
            }
        }
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(self.problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_their_keys_and_unknown_keys_are_refused() {
        let table = vec![
            ("delay", Value::Text("soon".into())),
            ("count", Value::Integer(-1)),
            (
                "nets",
                Value::TextList(vec!["10.0.0.0/8".into(), "nope".into()]),
            ),
            ("typo", Value::Integer(1)),
        ];
        let mut reader = Reader::new(&table);
        assert_eq!(reader.integer("delay", 5, 0, 10), 5);
        assert_eq!(reader.integer("count", 5, 0, 10), 5);
        assert_eq!(reader.networks("nets").len(), 1);
        assert!(reader.boolean("flag", true));
        let problems = reader.finish().unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].starts_with("delay:"));
        assert!(problems[1].starts_with("count:"));
        assert!(problems[2].starts_with("nets:"));
        assert!(problems[3].starts_with("typo: unknown key"));
    }

    #[test]
    fn choices_and_defaults() {
        let table = vec![("mode", Value::Text("accept".into()))];
        let mut reader = Reader::new(&table);
        assert_eq!(reader.choice("mode", &["tempfail", "accept"]), "accept");
        assert_eq!(reader.text("reply", "hi"), "hi");
        reader.finish().unwrap();
    }
}
