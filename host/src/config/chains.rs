//! Policy chains: the `[[chain]]` tables checked into [`ChainConfig`]s, and
//! the chain `default` that `[policy] module` stands for. A chain is an
//! ordered list of modules, each with its own name, mode and config; the
//! `[policy]` budgets, `on_failure`, `watch` and tracing apply to every one.

use super::file::{
    BUILTIN_APPLE_RELAY, ChainSection, DEFAULT_CHAIN, DEFAULT_CHAIN_MODULE, ModeName,
};
use super::{Config, ModuleSource, PolicyConfig, PolicyMode, PolicySettings};
use std::collections::HashSet;
use std::path::PathBuf;

/// One policy chain: its modules, asked in order.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainConfig {
    /// The name listeners refer to.
    pub name: String,
    /// The modules, in the order they are asked (never empty once checked).
    pub modules: Vec<ChainModuleConfig>,
}

/// One module of a chain.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainModuleConfig {
    /// Its name in logs, metrics and traces, unique within the chain.
    pub name: String,
    /// The module to run.
    pub module: ModuleSource,
    /// Enforce or dry-run.
    pub mode: PolicyMode,
    /// Its own config table.
    pub config: PolicyConfig,
    /// Where its state lives: its name for a `[[chain]]` module; none (the
    /// policy's own name, as always) for `[policy] module`.
    pub state_namespace: Option<String>,
}

impl ChainModuleConfig {
    /// The settings this module is loaded with: `[policy]`'s budgets,
    /// `on_failure`, `watch` and tracing, with its own module, mode and
    /// config.
    pub fn settings(&self, global: &PolicySettings) -> PolicySettings {
        PolicySettings {
            module: self.module.clone(),
            mode: self.mode,
            config: self.config.clone(),
            state_namespace: self.state_namespace.clone(),
            ..global.clone()
        }
    }
}

/// Whether `name` is lower-case letters, digits and `-`, not empty.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Checks the `[[chain]]` tables; each problem names its key.
pub(super) fn from_sections(
    sections: Vec<ChainSection>,
    problems: &mut Vec<String>,
) -> Vec<ChainConfig> {
    let mut names = HashSet::new();
    sections
        .into_iter()
        .enumerate()
        .map(|(index, section)| {
            let key = |name: &str| format!("chain[{index}].{name}");
            if !is_plain_name(&section.name) {
                problems.push(format!(
                    "{}: {:?} is not a chain name (lower-case letters, digits and '-')",
                    key("name"),
                    section.name
                ));
            } else if !names.insert(section.name.clone()) {
                problems.push(format!(
                    "{}: {:?} names another chain too",
                    key("name"),
                    section.name
                ));
            }
            if section.module.is_empty() {
                problems.push(format!(
                    "{}: the chain {:?} has no modules; add [[chain.module]] tables",
                    key("module"),
                    section.name
                ));
            }
            let mut module_names = HashSet::new();
            let modules = section
                .module
                .into_iter()
                .enumerate()
                .map(|(at, module)| {
                    let key = |name: &str| format!("chain[{index}].module[{at}].{name}");
                    if !is_plain_name(&module.name) {
                        problems.push(format!(
                            "{}: {:?} is not a module name (lower-case letters, digits and '-')",
                            key("name"),
                            module.name
                        ));
                    } else if !module_names.insert(module.name.clone()) {
                        problems.push(format!(
                            "{}: {:?} names another module of this chain too",
                            key("name"),
                            module.name
                        ));
                    }
                    let source = module_source(&module.module).unwrap_or_else(|why| {
                        problems.push(format!("{}: {why}", key("module")));
                        ModuleSource::BuiltinAppleRelay
                    });
                    let config = PolicyConfig::from_table(module.config.unwrap_or_default())
                        .unwrap_or_else(|errors| {
                            problems.extend(
                                errors
                                    .into_iter()
                                    .map(|e| format!("{}: {e}", key("config"))),
                            );
                            PolicyConfig::default()
                        });
                    ChainModuleConfig {
                        module: source,
                        mode: match module.mode {
                            ModeName::Enforce => PolicyMode::Enforce,
                            ModeName::DryRun => PolicyMode::DryRun,
                        },
                        config,
                        state_namespace: Some(module.name.clone()),
                        name: module.name,
                    }
                })
                .collect();
            ChainConfig {
                name: section.name,
                modules,
            }
        })
        .collect()
}

/// A `module` value: the built-in or a file path.
pub(super) fn module_source(text: &str) -> Result<ModuleSource, String> {
    match text {
        BUILTIN_APPLE_RELAY => Ok(ModuleSource::BuiltinAppleRelay),
        other if other.starts_with("builtin:") => Err(format!(
            "unknown built-in {other:?} (the only one is {BUILTIN_APPLE_RELAY:?})"
        )),
        path => Ok(ModuleSource::File(PathBuf::from(path))),
    }
}

impl Config {
    /// The names of the chains some listener asks, each once, in listener
    /// order.
    pub fn chains_in_use(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for listener in self.listeners() {
            if !names.contains(&listener.chain) {
                names.push(listener.chain);
            }
        }
        names
    }

    /// Every policy chain: `default` first (the `[[chain]]` named `default`
    /// when there is one, else `[policy] module` as the one module named
    /// `policy`), then the other `[[chain]]` tables in file order.
    pub fn chains(&self) -> Vec<ChainConfig> {
        let mut chains = Vec::with_capacity(self.chain_tables.len() + 1);
        match self.chain_tables.iter().find(|c| c.name == DEFAULT_CHAIN) {
            Some(table) => chains.push(table.clone()),
            None => chains.push(ChainConfig {
                name: DEFAULT_CHAIN.to_string(),
                modules: vec![ChainModuleConfig {
                    name: DEFAULT_CHAIN_MODULE.to_string(),
                    module: self.policy.module.clone(),
                    mode: self.policy.mode,
                    config: self.policy.config.clone(),
                    state_namespace: None,
                }],
            }),
        }
        chains.extend(
            self.chain_tables
                .iter()
                .filter(|c| c.name != DEFAULT_CHAIN)
                .cloned(),
        );
        chains
    }

    /// The longest chain's length: policy instances one session may hold.
    pub fn longest_chain(&self) -> usize {
        self.chains()
            .iter()
            .map(|c| c.modules.len())
            .max()
            .unwrap_or(1)
            .max(1)
    }

    /// Listeners naming a chain that does not exist.
    pub(super) fn chain_problems(&self) -> Vec<String> {
        let chains = self.chains();
        let known: HashSet<&str> = chains.iter().map(|c| c.name.as_str()).collect();
        self.listener_tables
            .iter()
            .enumerate()
            .filter(|(_, l)| !known.contains(l.chain.as_str()))
            .map(|(index, l)| {
                let mut names: Vec<&str> = known.iter().copied().collect();
                names.sort_unstable();
                format!(
                    "listener[{index}].chain: no chain is named {:?} (chains: {})",
                    l.chain,
                    names.join(", ")
                )
            })
            .collect()
    }

    /// Every module file of every chain, for the watcher and `load`.
    pub fn module_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for chain in self.chains() {
            for module in chain.modules {
                if let ModuleSource::File(path) = module.module
                    && !files.contains(&path)
                {
                    files.push(path);
                }
            }
        }
        files
    }
}

#[cfg(test)]
mod tests {
    use super::super::problems;
    use super::*;

    const TWO: &str = r#"
[[chain]]
name = "strict"
[[chain.module]]
name = "relay"
module = "builtin:apple-relay"
[chain.module.config]
local_domains = ["example.com"]
[[chain.module]]
name = "shadow"
module = "builtin:apple-relay"
mode = "dry-run"
"#;

    #[test]
    fn policy_alone_is_the_default_chain_of_one_module() {
        let config = Config::parse("").expect("valid");
        let chains = config.chains();
        assert_eq!(chains.len(), 1);
        assert_eq!(chains[0].name, "default");
        assert_eq!(chains[0].modules.len(), 1);
        assert_eq!(chains[0].modules[0].name, "policy");
        assert_eq!(chains[0].modules[0].module, ModuleSource::BuiltinAppleRelay);
        assert!(config.listeners().iter().all(|l| l.chain == "default"));
    }

    #[test]
    fn chain_tables_keep_their_order_modes_and_configs() {
        let text = format!(
            "{TWO}[[listener]]\nname = \"mx\"\naddress = \"127.0.0.1:2600\"\nchain = \"strict\"\n"
        );
        let config = Config::parse(&text).expect("valid");
        let chains = config.chains();
        assert_eq!(chains.len(), 2);
        let strict = &chains[1];
        assert_eq!(strict.name, "strict");
        let names: Vec<&str> = strict.modules.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["relay", "shadow"]);
        assert_eq!(strict.modules[0].mode, PolicyMode::Enforce);
        assert_eq!(strict.modules[1].mode, PolicyMode::DryRun);
        assert!(strict.modules[0].config.get("local_domains").is_some());
        assert!(strict.modules[1].config.get("local_domains").is_none());
        assert_eq!(config.listener_tables[0].chain, "strict");
        assert_eq!(config.longest_chain(), 2);
        let settings = strict.modules[1].settings(&config.policy);
        assert_eq!(settings.mode, PolicyMode::DryRun);
        assert_eq!(settings.on_failure, config.policy.on_failure);
    }

    #[test]
    fn a_chain_named_default_replaces_the_policy_section() {
        let text = TWO.replace("\"strict\"", "\"default\"");
        let chains = Config::parse(&text).expect("valid").chains();
        assert_eq!(chains.len(), 1);
        assert_eq!(chains[0].modules.len(), 2);
    }

    #[test]
    fn the_serving_chains_tables_are_judged_not_a_replaced_policy_section() {
        let auth = "[auth]\nbackend = \"imap\"\nserver = \"127.0.0.1:143\"\nrequire_tls = false\n";
        let about_flag = |text: &str| -> Vec<String> {
            Config::parse(text)
                .expect("valid")
                .warnings()
                .into_iter()
                .filter(|w| w.contains("smtp_plain_login_flag"))
                .collect()
        };
        let lone = about_flag(auth);
        assert!(
            lone[0].contains("policy.config.smtp_plain_login_flag is 0"),
            "{lone:?}"
        );
        // `[policy.config]` says 1, but the chain that replaced it serves.
        let replaced = format!(
            "{auth}[policy.config]\nsmtp_plain_login_flag = 1\n{}",
            TWO.replace("\"strict\"", "\"default\"")
        );
        let chained = about_flag(&replaced);
        assert_eq!(chained.len(), 1, "{chained:?}");
        assert!(
            chained[0]
                .contains("chain \"default\" module \"relay\": config.smtp_plain_login_flag is 0"),
            "{chained:?}"
        );
        // A chain no listener asks is not judged at all.
        let unused = format!("{auth}{TWO}");
        let warned = about_flag(&unused);
        assert!(warned.iter().all(|w| !w.contains("strict")), "{warned:?}");
    }

    #[test]
    fn bad_chains_are_named_with_their_key() {
        let p = problems("[[chain]]\nname = \"Bad Name\"\n");
        assert!(p.iter().any(|p| p.starts_with("chain[0].name:")), "{p:?}");
        assert!(p.iter().any(|p| p.starts_with("chain[0].module:")), "{p:?}");
        let dup = format!("{TWO}{TWO}");
        let p = problems(&dup);
        assert!(
            p.iter()
                .any(|p| p.starts_with("chain[1].name:") && p.contains("another chain")),
            "{p:?}"
        );
        let dup_module = TWO.replace("\"shadow\"", "\"relay\"");
        let p = problems(&dup_module);
        assert!(
            p.iter().any(|p| p.starts_with("chain[0].module[1].name:")),
            "{p:?}"
        );
        let p = problems(&TWO.replace("\"builtin:apple-relay\"\nmode", "\"builtin:nope\"\nmode"));
        assert!(
            p.iter()
                .any(|p| p.starts_with("chain[0].module[1].module: unknown built-in")),
            "{p:?}"
        );
        let p = problems(&TWO.replace("mode = \"dry-run\"", "mode = \"loud\""));
        assert!(!p.is_empty(), "{p:?}");
    }

    #[test]
    fn a_listener_naming_an_unknown_chain_is_refused() {
        let p = problems(
            "[[listener]]\nname = \"mx\"\naddress = \"127.0.0.1:2600\"\nchain = \"nope\"\n",
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("listener[0].chain: no chain is named \"nope\""),
            "{p:?}"
        );
    }
}
