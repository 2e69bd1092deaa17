//! Tests that the README's configuration block and
//! `dist/relaygate.example.toml` agree with the typed definition in `file`:
//! every key documented, no key documented that does not exist, every shown
//! value of the right type, and every default shown the one the code uses.
//!
//! The README block writes a key's default in brackets at the end of its
//! comment (`[5m]`; `[0s: off]` explains it after a colon; a list's default
//! is its items, or `none`). A key whose default is computed at run time
//! (its type in `file` is an `Option`) may explain it in words instead.
//! The example file sets keys to their defaults; a value that is not the
//! default says so in its comment (`Default: ...`).

use super::Config;
use super::load::decode;
use serde_json::Value;
use std::collections::BTreeMap;

const README: &str = include_str!("../../../README.md");
const EXAMPLE: &str = include_str!("../../../dist/relaygate.example.toml");

/// Values for the keys without a default, so that every section can be built.
const REQUIRED: &str = "[auth]\nbackend = \"imap\"\n[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n[[listener]]\nname = \"x\"\naddress = \"127.0.0.1:1\"\n[[chain]]\nname = \"c\"\n[[chain.module]]\nname = \"m\"\nmodule = \"builtin:apple-relay\"\n";
/// The keys without a default.
const REQUIRED_KEYS: [&str; 8] = [
    "auth.backend",
    "tls.cert",
    "tls.key",
    "listener.name",
    "listener.address",
    "chain.name",
    "chain.module.name",
    "chain.module.module",
];
/// The tables whose keys are the policy's own, not relaygate's.
const POLICY_TABLES: [&str; 2] = ["policy.config", "chain.module.config"];

/// Whether `key` is a policy's own key (inside a policy config table).
fn in_policy_table(key: &str) -> bool {
    POLICY_TABLES
        .iter()
        .any(|table| key.starts_with(&format!("{table}.")))
}

/// Every key of the typed definition with the default the code uses, as
/// JSON; null where the default is computed at run time.
fn definition() -> BTreeMap<String, Value> {
    let file = decode(REQUIRED).expect("the required keys alone parse");
    let Value::Object(sections) = serde_json::to_value(file).expect("the definition serializes")
    else {
        panic!("the definition is a table of sections");
    };
    let mut keys = BTreeMap::new();
    for (section, table) in sections {
        // An array of tables (`[[listener]]`): its one table's keys.
        let table = match table {
            Value::Array(mut tables) if tables.len() == 1 => tables.remove(0),
            table => table,
        };
        let Value::Object(table) = table else {
            panic!("[{section}] is a table");
        };
        for (key, default) in table {
            match default {
                // A nested array of tables (`[[chain.module]]`): its keys.
                Value::Array(mut nested) if nested.len() == 1 && nested[0].is_object() => {
                    if let Value::Object(inner) = nested.remove(0) {
                        for (leaf, default) in inner {
                            keys.insert(format!("{section}.{key}.{leaf}"), default);
                        }
                    }
                }
                default => {
                    keys.insert(format!("{section}.{key}"), default);
                }
            }
        }
    }
    keys
}

/// `value` for `key` as the code reads it (durations and names in the
/// code's own spelling), or why it does not fit the key's type.
fn as_code_reads_it(key: &str, value: &toml::Value) -> Result<Value, String> {
    let (section, name) = key.split_once('.').expect("keys are section.key");
    // `chain.module.name`: the key `name` of the nested table `module`.
    let (nested, name) = match name.split_once('.') {
        Some((nested, leaf)) => (Some(nested), leaf),
        None => (None, name),
    };
    let mut table: toml::Table = toml::from_str(REQUIRED).expect("the required keys are TOML");
    let section_table = table
        .entry(section)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let Some(keys) = first_table(section_table) {
        let keys = match nested {
            Some(nested) => keys.get_mut(nested).and_then(first_table),
            None => Some(keys),
        };
        if let Some(keys) = keys {
            keys.insert(name.to_string(), value.clone());
        }
    }
    let text = toml::to_string(&table).map_err(|e| e.to_string())?;
    let file = decode(&text).map_err(|e| e.to_string())?;
    let json = serde_json::to_value(file).map_err(|e| e.to_string())?;
    let section = match &json[section] {
        Value::Array(tables) => &tables[0],
        table => table,
    };
    let section = match nested {
        Some(nested) => match &section[nested] {
            Value::Array(tables) => &tables[0],
            table => table,
        },
        None => section,
    };
    Ok(section[name].clone())
}

/// The table `value` is, or the first of the array of tables it is.
fn first_table(value: &mut toml::Value) -> Option<&mut toml::Table> {
    match value {
        toml::Value::Table(keys) => Some(keys),
        toml::Value::Array(tables) => match tables.first_mut() {
            Some(toml::Value::Table(keys)) => Some(keys),
            _ => None,
        },
        _ => None,
    }
}

/// A default the way the README writes it.
fn written(default: &Value) -> String {
    match default {
        Value::String(text) => text.clone(),
        Value::Array(items) if items.is_empty() => "none".to_string(),
        Value::Array(items) => items.iter().map(written).collect::<Vec<_>>().join(", "),
        Value::Null => "none".to_string(),
        other => other.to_string(),
    }
}

/// One key as a document shows it.
#[derive(Debug)]
struct Shown {
    /// `section.key`.
    key: String,
    /// The value written.
    value: toml::Value,
    /// Its line in the document (from 1).
    line: usize,
    /// The comment on its line and the comment lines that continue it.
    trailing: String,
    /// The comment block above it (shared by keys written together).
    above: String,
}

/// What a document shows: its section headers and keys.
#[derive(Debug, Default)]
struct Document {
    sections: Vec<String>,
    keys: Vec<Shown>,
}

/// `line` split into its TOML part and its comment (after the first `#`
/// outside a string).
fn split_comment(line: &str) -> (&str, Option<&str>) {
    let mut in_string = false;
    let mut escaped = false;
    for (at, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '#' if !in_string => return (&line[..at], Some(line[at + 1..].trim())),
            _ => {}
        }
    }
    (line, None)
}

/// The section name of a header line such as `[dns]   # comment`, or of
/// an array of tables such as `[[listener]]`.
fn header(text: &str) -> Option<String> {
    let (toml, _) = split_comment(text);
    let toml = toml.trim();
    let name = match toml.strip_prefix("[[") {
        Some(rest) => rest.strip_suffix("]]")?,
        None => toml.strip_prefix('[')?.strip_suffix(']')?,
    };
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
    valid.then(|| name.to_string())
}

/// A `key = value   # comment` line: the key, the value and the comment.
fn key_line(text: &str) -> Option<(String, Result<toml::Value, String>, String)> {
    let (toml, comment) = split_comment(text);
    let (key, value) = toml.split_once('=')?;
    let key = key.trim();
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .map_err(|e| e.message().to_string())
        .map(|mut table| table.remove("v").unwrap_or(toml::Value::Boolean(false)));
    Some((
        key.to_string(),
        value,
        comment.unwrap_or_default().to_string(),
    ))
}

/// Read the keys `text` shows; with `commented_out`, also those written as
/// comments (`# key = value`), as the example file shows optional sections.
/// `first_line` is the line number of `text`'s first line in its file.
fn scan(text: &str, first_line: usize, commented_out: bool) -> Result<Document, Vec<String>> {
    let mut document = Document::default();
    let mut problems = Vec::new();
    let mut section: Option<String> = None;
    let mut above = String::new();
    // Whether the previous line was a key (so a comment may continue it),
    // and whether the comment block above was followed by keys already.
    let mut after_key = false;
    for (index, raw) in text.lines().enumerate() {
        let line = first_line + index;
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            above.clear();
            after_key = false;
            continue;
        }
        let (is_comment, content) = match trimmed.strip_prefix('#') {
            Some(rest) => (true, rest.trim()),
            None => (false, trimmed),
        };
        if !is_comment || commented_out {
            if let Some(name) = header(content) {
                section = Some(name);
                document.sections.extend(section.clone());
                above.clear();
                after_key = false;
                continue;
            }
            if let Some((key, value, comment)) = key_line(content) {
                let Some(section) = &section else {
                    problems.push(format!("line {line}: {key} is outside any section"));
                    continue;
                };
                match value {
                    Ok(value) => document.keys.push(Shown {
                        key: format!("{section}.{key}"),
                        value,
                        line,
                        trailing: comment,
                        above: above.clone(),
                    }),
                    Err(_) if is_comment => continue,
                    Err(why) => problems.push(format!("line {line}: {key}: {why}")),
                }
                after_key = true;
                continue;
            }
        }
        if !is_comment {
            problems.push(format!(
                "line {line}: neither a header, a key nor a comment"
            ));
            continue;
        }
        // A comment: it continues the key above when indented (or, among
        // commented-out keys, written as a second comment); otherwise it
        // starts or extends the block above the next keys.
        let continues = after_key
            && (raw.starts_with(char::is_whitespace)
                || (commented_out && content.starts_with('#')));
        if continues {
            if let Some(last) = document.keys.last_mut() {
                last.trailing.push('\n');
                last.trailing
                    .push_str(content.trim_start_matches('#').trim());
            }
            continue;
        }
        if after_key {
            above.clear();
            after_key = false;
        }
        above.push_str(content);
        above.push('\n');
    }
    if problems.is_empty() {
        Ok(document)
    } else {
        Err(problems)
    }
}

/// The README's configuration block and the line number of its first line.
fn readme_block() -> (&'static str, usize) {
    let fence = "```toml\n[proxy]\n";
    let start = README
        .find(fence)
        .expect("README.md has a ```toml block starting with [proxy]")
        + "```toml\n".len();
    let length = README[start..]
        .find("\n```")
        .expect("the README's configuration block ends");
    let first_line = README[..start].matches('\n').count() + 1;
    (&README[start..start + length + 1], first_line)
}

/// The default a README comment shows: the bracketed text ending it,
/// without the explanation after a colon (`[0s: off]` shows `0s`).
fn bracketed_default(comment: &str) -> Option<&str> {
    let inner = comment.trim_end().strip_suffix(']')?;
    let open = inner.rfind('[')?;
    let shown = &inner[open + 1..];
    Some(shown.split_once(": ").map_or(shown, |(value, _)| value))
}

/// Whether the README's `shown` default is the code's `default`.
fn same_default(shown: &str, default: &Value) -> bool {
    if shown == written(default) {
        return true;
    }
    // Sizes in MiB: `[64 MiB]`.
    match (default.as_u64(), shown.strip_suffix(" MiB")) {
        (Some(bytes), Some(mib)) => mib.parse::<u64>().is_ok_and(|mib| mib << 20 == bytes),
        _ => false,
    }
}

/// Keys documented that relaygate does not know, and keys it knows that are
/// not documented (`name` names the document).
fn key_sets_differ(name: &str, document: &Document, keys: &BTreeMap<String, Value>) -> Vec<String> {
    let mut problems = Vec::new();
    for shown in &document.keys {
        if !keys.contains_key(&shown.key) && !in_policy_table(&shown.key) {
            problems.push(format!(
                "{name} line {}: {} is documented but is not a key relaygate knows",
                shown.line, shown.key
            ));
        }
    }
    for (key, default) in keys {
        let documented = if POLICY_TABLES.contains(&key.as_str()) {
            document.sections.iter().any(|section| section == key)
        } else {
            document.keys.iter().any(|shown| &shown.key == key)
        };
        if !documented {
            problems.push(format!(
                "{name}: {key} (default {}) is not documented",
                written(default)
            ));
        }
    }
    problems
}

/// Shown values the typed definition cannot read.
fn unreadable_values(name: &str, document: &Document) -> Vec<String> {
    document
        .keys
        .iter()
        .filter(|shown| !in_policy_table(&shown.key))
        .filter_map(|shown| {
            as_code_reads_it(&shown.key, &shown.value).err().map(|why| {
                format!(
                    "{name} line {}: {} = {} does not parse: {why}",
                    shown.line, shown.key, shown.value
                )
            })
        })
        .collect()
}

/// Everything wrong with the README's configuration block.
fn readme_problems() -> Vec<String> {
    let name = "README.md";
    let (block, first_line) = readme_block();
    let document = match scan(block, first_line, false) {
        Ok(document) => document,
        Err(problems) => return problems.iter().map(|p| format!("{name} {p}")).collect(),
    };
    let keys = definition();
    let mut problems = key_sets_differ(name, &document, &keys);
    problems.extend(unreadable_values(name, &document));
    for shown in &document.keys {
        let Some(default) = keys.get(&shown.key) else {
            continue;
        };
        let bracketed = bracketed_default(&shown.trailing);
        if REQUIRED_KEYS.contains(&shown.key.as_str()) {
            if let Some(bracketed) = bracketed {
                problems.push(format!(
                    "{name} line {}: {} is required, yet shows the default [{bracketed}]",
                    shown.line, shown.key
                ));
            }
            continue;
        }
        if default.is_null() {
            // Computed at run time: explained in words, if at all.
            continue;
        }
        match bracketed {
            None => problems.push(format!(
                "{name} line {}: {} does not show its default [{}] at the end of its comment",
                shown.line,
                shown.key,
                written(default)
            )),
            Some(bracketed) if !same_default(bracketed, default) => problems.push(format!(
                "{name} line {}: {} shows the default [{bracketed}], but the code's default is [{}]",
                shown.line,
                shown.key,
                written(default)
            )),
            Some(_) => {}
        }
    }
    problems
}

/// Everything wrong with `dist/relaygate.example.toml`.
fn example_problems() -> Vec<String> {
    let name = "dist/relaygate.example.toml";
    let mut problems = Vec::new();
    if let Err(e) = Config::parse(EXAMPLE) {
        problems.extend(e.problems.iter().map(|p| format!("{name}: {p}")));
    }
    let document = match scan(EXAMPLE, 1, true) {
        Ok(document) => document,
        Err(scanned) => {
            problems.extend(scanned.iter().map(|p| format!("{name} {p}")));
            return problems;
        }
    };
    let keys = definition();
    problems.extend(key_sets_differ(name, &document, &keys));
    problems.extend(unreadable_values(name, &document));
    for shown in &document.keys {
        let Some(default) = keys.get(&shown.key) else {
            continue;
        };
        if default.is_null() || REQUIRED_KEYS.contains(&shown.key.as_str()) {
            continue;
        }
        let Ok(value) = as_code_reads_it(&shown.key, &shown.value) else {
            continue;
        };
        let says_so = format!("{}\n{}", shown.above, shown.trailing)
            .to_lowercase()
            .contains("default");
        if &value != default && !says_so {
            problems.push(format!(
                "{name} line {}: {} = {} is not the code's default ({}), and its comment does not say so",
                shown.line,
                shown.key,
                shown.value,
                written(default)
            ));
        }
    }
    problems
}

#[test]
fn the_readme_documents_every_key_with_the_codes_default() {
    let problems = readme_problems();
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_example_file_parses_and_shows_the_codes_defaults() {
    let problems = example_problems();
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    let config = Config::parse(EXAMPLE).expect("dist/relaygate.example.toml parses");
    assert_eq!(config.admin_listen, Some("127.0.0.1:8025".parse().unwrap()));
    assert_eq!(config.policy.mode, super::PolicyMode::Enforce);
}

#[test]
fn a_wrong_default_or_an_unknown_key_is_named() {
    let keys = definition();
    let document = scan(
        "[proxy]\nmax_recipients = 50   # per transaction [50]\nlsiten = [] # typo [none]\n",
        1,
        false,
    )
    .expect("scans");
    let shown = &document.keys[0];
    assert_eq!(shown.key, "proxy.max_recipients");
    let bracketed = bracketed_default(&shown.trailing).expect("shows a default");
    assert!(!same_default(bracketed, &keys["proxy.max_recipients"]));
    let problems = key_sets_differ("doc", &document, &keys);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("proxy.lsiten is documented but is not a key")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("doc: proxy.upstream (default 127.0.0.1:25) is not documented")),
        "{problems:?}"
    );
}

#[test]
fn defaults_are_read_the_way_the_readme_writes_them() {
    let keys = definition();
    assert!(same_default("5m", &keys["proxy.command_timeout"]));
    assert!(same_default("64 MiB", &keys["policy.memory_limit"]));
    assert!(same_default("none", &keys["proxy.proxy_protocol_listen"]));
    assert!(same_default("127.0.0.1:25", &keys["proxy.upstream"]));
    assert!(same_default("starttls", &keys["listener.tls"]));
    assert!(keys["proxy.listen"].is_null(), "depends on [[listener]]");
    assert!(keys["proxy.hostname"].is_null(), "computed at run time");
    assert_eq!(bracketed_default("off [0s: off]"), Some("0s"));
    assert_eq!(bracketed_default("no default here"), None);
    assert_eq!(
        as_code_reads_it("proxy.command_timeout", &toml::Value::String("300s".into())),
        Ok(Value::String("5m".into()))
    );
}

/// The README's three-port example, as shipped in `dist/`.
const MAILHOST: &str = include_str!("../../../dist/relaygate.mailhost.toml");

#[test]
fn the_mail_host_example_is_valid_and_warns_of_nothing() {
    // Its module files and certificate live on the mail host, not here:
    // everything but the file checks.
    let file = super::load::decode(MAILHOST).expect("the example decodes");
    let (config, problems) = super::validate::validate(file);
    assert_eq!(problems, Vec::<String>::new());
    assert_eq!(config.unworkable(), Vec::<String>::new());
    assert_eq!(config.warnings(), Vec::<String>::new());
    assert_eq!(config.chains_in_use(), ["inbound", "submission"]);
    // The README shows the same text.
    let readme = include_str!("../../../README.md");
    let body = &MAILHOST[MAILHOST.find("[proxy]").expect("[proxy] table")..];
    assert!(
        readme.contains(body),
        "README and dist/relaygate.mailhost.toml differ"
    );
}
