//! `[policy.config]`: the policy's own keys, converted to the value kinds the
//! WIT `config` interface offers.

use std::collections::BTreeMap;

/// One value of `[policy.config]`.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyValue {
    /// A string.
    Text(String),
    /// An integer.
    Integer(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Boolean(bool),
    /// An array; its elements in text form.
    TextList(Vec<String>),
}

/// The `[policy.config]` table, keys sorted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyConfig {
    values: BTreeMap<String, PolicyValue>,
}

impl PolicyConfig {
    /// Convert a TOML table; nested tables are refused, naming their key.
    pub fn from_table(table: toml::Table) -> Result<Self, Vec<String>> {
        let mut values = BTreeMap::new();
        let mut problems = Vec::new();
        for (key, value) in table {
            match convert(&value) {
                Some(v) => {
                    values.insert(key, v);
                }
                None => problems.push(format!(
                    "policy.config.{key}: tables and dates are not supported; use strings, numbers, booleans or arrays of them"
                )),
            }
        }
        if problems.is_empty() {
            Ok(Self { values })
        } else {
            Err(problems)
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&PolicyValue> {
        self.values.get(key)
    }

    /// Every key, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
}

fn convert(value: &toml::Value) -> Option<PolicyValue> {
    Some(match value {
        toml::Value::String(s) => PolicyValue::Text(s.clone()),
        toml::Value::Integer(i) => PolicyValue::Integer(*i),
        toml::Value::Float(f) => PolicyValue::Float(*f),
        toml::Value::Boolean(b) => PolicyValue::Boolean(*b),
        toml::Value::Array(items) => PolicyValue::TextList(
            items
                .iter()
                .map(|item| match item {
                    toml::Value::String(s) => Some(s.clone()),
                    toml::Value::Integer(i) => Some(i.to_string()),
                    toml::Value::Float(f) => Some(f.to_string()),
                    toml::Value::Boolean(b) => Some(b.to_string()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?,
        ),
        toml::Value::Table(_) | toml::Value::Datetime(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_convert() {
        let table: toml::Table =
            toml::from_str("a = \"x\"\nb = 1\nc = 1.5\nd = true\ne = [\"p\", 2, false]\n").unwrap();
        let config = PolicyConfig::from_table(table).unwrap();
        assert_eq!(config.get("a"), Some(&PolicyValue::Text("x".into())));
        assert_eq!(config.get("b"), Some(&PolicyValue::Integer(1)));
        assert_eq!(config.get("c"), Some(&PolicyValue::Float(1.5)));
        assert_eq!(config.get("d"), Some(&PolicyValue::Boolean(true)));
        assert_eq!(
            config.get("e"),
            Some(&PolicyValue::TextList(vec![
                "p".into(),
                "2".into(),
                "false".into()
            ]))
        );
        assert_eq!(config.keys().collect::<Vec<_>>(), ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn nested_tables_are_refused() {
        let table: toml::Table = toml::from_str("[sub]\nx = 1\n").unwrap();
        let problems = PolicyConfig::from_table(table).unwrap_err();
        assert!(problems[0].starts_with("policy.config.sub:"));
    }
}
