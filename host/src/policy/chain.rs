//! Policy chains at run time: the loaded modules of every configured chain,
//! shared by `Arc` so that a reload reuses a module whose file and settings
//! did not change, and the rule that combines the modules' answers at one
//! hook ([`ChainVerdict`]).
//!
//! The rule (README.md, "Policy chains"): modules are asked in order; the
//! first enforcing module that refuses answers the client and the rest are
//! not asked; a dry-run module's refusal never answers and never stops the
//! chain; no module can end the chain early with an accept; a capability is
//! offered in EHLO only when every enforcing module offers it.

use super::{LoadedPolicy, PolicyAnswer, PolicyEngine, PolicyServices};
use crate::config::{BUILTIN_APPLE_RELAY, ChainConfig, Config, ModuleSource, PolicyMode};
use crate::hook::{Decision, Offer, PolicyRequest};
use anyhow::Context;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// One module of a chain, loaded.
pub struct ChainModule {
    /// Its name in logs, metrics and traces.
    pub name: Arc<str>,
    /// The loaded module, with its own mode and config in its settings.
    pub policy: Arc<LoadedPolicy>,
}

/// A chain: its name and its modules in the order they are asked.
pub struct PolicyChain {
    /// The name listeners refer to.
    pub name: Arc<str>,
    /// Never empty.
    pub modules: Vec<ChainModule>,
}

impl PolicyChain {
    /// Every module as `name:digest` (the sha256's first 12 hex digits),
    /// comma-separated in chain order: in each session's log span, so a
    /// session's lines say which code judged it.
    pub fn module_digests(&self) -> ModuleDigests<'_> {
        ModuleDigests(self)
    }

    /// Whether any module reads the client's confirmed reverse-DNS name.
    pub fn needs_client_name(&self) -> bool {
        self.modules
            .iter()
            .any(|m| m.policy.info().needs_client_name)
    }

    /// Whether the chain relays for anyone as configured: every enforcing
    /// module says it does (one that restricts relaying refuses for the
    /// chain; a chain of dry-run modules only refuses nothing). A chain of
    /// one module is open when that module says so, whatever its mode, as
    /// a lone `[policy] module` always was.
    pub fn open_relay(&self) -> bool {
        if let [only] = self.modules.as_slice() {
            return only.policy.info().open_relay;
        }
        self.modules
            .iter()
            .filter(|m| m.policy.settings().mode == PolicyMode::Enforce)
            .all(|m| m.policy.info().open_relay)
    }
}

/// [`PolicyChain::module_digests`], formatted only when logged.
pub struct ModuleDigests<'a>(&'a PolicyChain);

impl std::fmt::Display for ModuleDigests<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (at, module) in self.0.modules.iter().enumerate() {
            let digest = module.policy.digest();
            let separator = if at == 0 { "" } else { "," };
            write!(
                f,
                "{separator}{}:{}",
                module.name,
                &digest[..digest.len().min(12)]
            )?;
        }
        Ok(())
    }
}

/// Every chain the proxy serves; the first is `default`.
pub struct Chains {
    chains: Vec<Arc<PolicyChain>>,
}

impl Chains {
    /// The chain named `name`, if any.
    pub fn get(&self, name: &str) -> Option<Arc<PolicyChain>> {
        self.chains.iter().find(|c| &*c.name == name).cloned()
    }

    /// The chain `default`.
    pub fn default_chain(&self) -> &Arc<PolicyChain> {
        // Built with `default` first and never empty (see `load_chains`).
        &self.chains[0]
    }

    /// What follows `OPEN RELAY` for each chain that relays for anyone and
    /// that a listener asks (`in_use`: a chain no listener asks serves no
    /// one): nothing for the chain `default` of one module (the words it
    /// always had), the chain's name for the others.
    pub fn open_relays(&self, in_use: &[String]) -> Vec<String> {
        self.chains
            .iter()
            .filter(|chain| in_use.iter().any(|name| **name == *chain.name))
            .filter(|chain| chain.open_relay())
            .map(|chain| {
                let lone_default =
                    &*chain.name == crate::config::DEFAULT_CHAIN && chain.modules.len() == 1;
                if lone_default {
                    String::new()
                } else {
                    format!(" (policy chain {:?})", &*chain.name)
                }
            })
            .collect()
    }

    /// Every chain, `default` first.
    pub fn all(&self) -> &[Arc<PolicyChain>] {
        &self.chains
    }

    /// The loaded module of `chain`/`module`, if any.
    fn module(&self, chain: &str, module: &str) -> Option<&Arc<LoadedPolicy>> {
        self.chains
            .iter()
            .find(|c| &*c.name == chain)?
            .modules
            .iter()
            .find(|m| &*m.name == module)
            .map(|m| &m.policy)
    }

    /// A single-chain set around one loaded policy (tests and embedders).
    pub fn single(policy: Arc<LoadedPolicy>) -> Self {
        Self {
            chains: vec![Arc::new(PolicyChain {
                name: Arc::from(crate::config::DEFAULT_CHAIN),
                modules: vec![ChainModule {
                    name: Arc::from(crate::config::DEFAULT_CHAIN_MODULE),
                    policy,
                }],
            })],
        }
    }
}

/// Load every chain `config` names. A module of `previous` whose file
/// digest and settings are unchanged is reused as it is (no compile, no
/// `init`), so replacing one module's file swaps that module only. Any
/// module that fails to load fails the whole set, naming the chain and the
/// module.
pub async fn load_chains(
    engine: &PolicyEngine,
    config: &Config,
    dns: Option<crate::dns::Dns>,
    previous: Option<&Chains>,
) -> anyhow::Result<Chains> {
    load_all(engine, config, dns, None, previous).await
}

/// As [`load_chains`] with nothing reused and `own_networks` given to
/// every module in place of this host's networks: `relaygate policy test`
/// against a chain, whose cases file says what the server's networks are.
pub async fn load_chains_offline(
    engine: &PolicyEngine,
    config: &Config,
    dns: crate::dns::Dns,
    own_networks: Vec<String>,
) -> anyhow::Result<Chains> {
    load_all(engine, config, Some(dns), Some(own_networks), None).await
}

async fn load_all(
    engine: &PolicyEngine,
    config: &Config,
    dns: Option<crate::dns::Dns>,
    own_networks: Option<Vec<String>>,
    previous: Option<&Chains>,
) -> anyhow::Result<Chains> {
    let mut chains = Vec::new();
    for chain in config.chains() {
        chains.push(Arc::new(
            load_chain(
                engine,
                config,
                &chain,
                dns.clone(),
                own_networks.as_deref(),
                previous,
            )
            .await?,
        ));
    }
    Ok(Chains { chains })
}

async fn load_chain(
    engine: &PolicyEngine,
    config: &Config,
    chain: &ChainConfig,
    dns: Option<crate::dns::Dns>,
    own_networks: Option<&[String]>,
    previous: Option<&Chains>,
) -> anyhow::Result<PolicyChain> {
    // Validation refuses empty chains; every user of a chain relies on it.
    anyhow::ensure!(
        !chain.modules.is_empty(),
        "chain {:?} has no modules",
        chain.name
    );
    let mut modules = Vec::with_capacity(chain.modules.len());
    for module in &chain.modules {
        let settings = module.settings(&config.policy);
        let (source, bytes) = match &module.module {
            ModuleSource::BuiltinAppleRelay => (
                BUILTIN_APPLE_RELAY.to_string(),
                super::BUILTIN_APPLE_RELAY_WASM.to_vec(),
            ),
            ModuleSource::File(path) => (
                path.display().to_string(),
                std::fs::read(path).with_context(|| {
                    format!(
                        "chain {:?} module {:?}: reading {}",
                        chain.name,
                        module.name,
                        path.display()
                    )
                })?,
            ),
        };
        let digest = super::cache::hex(&Sha256::digest(&bytes));
        let reused = previous
            .and_then(|p| p.module(&chain.name, &module.name))
            .filter(|p| p.digest() == digest && p.name() == source && *p.settings() == settings)
            .cloned()
            // Another chain may already have loaded the same module.
            .or_else(|| {
                modules.iter().find_map(|m: &ChainModule| {
                    (m.policy.digest() == digest
                        && m.policy.name() == source
                        && *m.policy.settings() == settings)
                        .then(|| m.policy.clone())
                })
            });
        let policy = match reused {
            Some(policy) => policy,
            None => {
                let services = PolicyServices {
                    config: settings.config.clone(),
                    dns: dns.clone(),
                    own_networks: own_networks
                        .map_or_else(crate::net::own_networks, <[String]>::to_vec),
                    hostname: config.proxy.hostname.clone(),
                };
                engine
                    .load(&source, &bytes, &settings, services)
                    .await
                    .with_context(|| {
                        format!(
                            "chain {:?} module {:?}: loading policy {source}",
                            chain.name, module.name
                        )
                    })?
            }
        };
        modules.push(ChainModule {
            name: Arc::from(module.name.as_str()),
            policy,
        });
    }
    Ok(PolicyChain {
        name: Arc::from(chain.name.as_str()),
        modules,
    })
}

/// What the chain does after one module's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Ask the next module (or, after the last, act on the verdict).
    AskNext,
    /// This module refused for the chain: act on the verdict now.
    Stop,
}

/// The answers of a chain's modules at one hook, combined.
#[derive(Debug, Clone)]
pub struct ChainVerdict {
    decision: Decision,
    decided_by: Option<Arc<str>>,
    enforcing_offer: Option<Offer>,
    any_offer: Option<Offer>,
}

impl Default for ChainVerdict {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainVerdict {
    /// Nothing asked yet: accept.
    pub fn new() -> Self {
        Self {
            decision: Decision::Accept,
            decided_by: None,
            enforcing_offer: None,
            any_offer: None,
        }
    }

    /// Add the answer of module `name`: `decision` as the module gave it
    /// (a dry-run module's refusal included), `offer` its extensions.
    pub fn add(
        &mut self,
        name: &Arc<str>,
        mode: PolicyMode,
        decision: &Decision,
        offer: Offer,
    ) -> Next {
        self.any_offer = Some(intersect(self.any_offer, offer));
        if mode == PolicyMode::DryRun {
            return Next::AskNext;
        }
        self.enforcing_offer = Some(intersect(self.enforcing_offer, offer));
        match decision {
            Decision::Accept => Next::AskNext,
            refusal => {
                self.decision = refusal.clone();
                self.decided_by = Some(name.clone());
                Next::Stop
            }
        }
    }

    /// The decision the session acts on.
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// The module whose refusal is the decision; none when all accepted.
    pub fn decided_by(&self) -> Option<&Arc<str>> {
        self.decided_by.as_ref()
    }

    /// The extensions to offer: those every enforcing module offers (every
    /// module's, when none enforces).
    pub fn offer(&self) -> Offer {
        self.enforcing_offer.or(self.any_offer).unwrap_or_default()
    }
}

/// How a driver asks one module of a chain (see [`ask_in_order`]).
pub trait AskModule<M> {
    /// Ask `module` (named `name`) `request`; its mode and its answer.
    fn ask(
        &mut self,
        name: &Arc<str>,
        module: &mut M,
        request: &PolicyRequest,
    ) -> impl Future<Output = (PolicyMode, PolicyAnswer)> + Send;
}

/// Ask `modules` (name, module) in order at one hook until an enforcing
/// one refuses, combining their answers into a [`ChainVerdict`]. Both the connection
/// driver and the offline `relaygate policy test` driver ask chains
/// through this.
pub async fn ask_in_order<M, A: AskModule<M>>(
    modules: &mut [(Arc<str>, M)],
    request: PolicyRequest,
    asker: &mut A,
) -> ChainVerdict {
    let mut verdict = ChainVerdict::new();
    for (name, module) in modules {
        let (mode, answer) = asker.ask(name, module, &request).await;
        if verdict.add(name, mode, &answer.decision, answer.offer) == Next::Stop {
            tracing::debug!(hook = request.hook().name(), module = %name, "refused by chain module");
            break;
        }
    }
    verdict
}

fn intersect(so_far: Option<Offer>, next: Offer) -> Offer {
    match so_far {
        None => next,
        Some(a) => Offer {
            pipelining: a.pipelining && next.pipelining,
            auth: a.auth && next.auth,
            starttls: a.starttls && next.starttls,
            smtputf8: a.smtputf8 && next.smtputf8,
            chunking: a.chunking && next.chunking,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply::catalogue;

    fn name(text: &str) -> Arc<str> {
        Arc::from(text)
    }

    fn reject() -> Decision {
        Decision::Reject(catalogue::policy_reject())
    }

    #[test]
    fn all_accepting_modules_accept() {
        let mut verdict = ChainVerdict::new();
        for module in ["a", "b", "c"] {
            let next = verdict.add(
                &name(module),
                PolicyMode::Enforce,
                &Decision::Accept,
                Offer::default(),
            );
            assert_eq!(next, Next::AskNext);
        }
        assert_eq!(verdict.decision(), &Decision::Accept);
        assert!(verdict.decided_by().is_none());
    }

    #[test]
    fn the_first_enforcing_refusal_wins_and_stops_the_chain() {
        let mut verdict = ChainVerdict::new();
        assert_eq!(
            verdict.add(
                &name("a"),
                PolicyMode::Enforce,
                &Decision::Accept,
                Offer::default()
            ),
            Next::AskNext
        );
        assert_eq!(
            verdict.add(&name("b"), PolicyMode::Enforce, &reject(), Offer::default()),
            Next::Stop
        );
        assert_eq!(verdict.decision(), &reject());
        assert_eq!(verdict.decided_by().map(|n| &**n), Some("b"));
    }

    #[test]
    fn a_dry_run_refusal_never_answers_nor_stops() {
        let mut verdict = ChainVerdict::new();
        assert_eq!(
            verdict.add(
                &name("shadow"),
                PolicyMode::DryRun,
                &reject(),
                Offer::default()
            ),
            Next::AskNext
        );
        assert_eq!(verdict.decision(), &Decision::Accept);
        assert!(verdict.decided_by().is_none());
        let tempfail = Decision::Tempfail(catalogue::policy_reject());
        verdict.add(
            &name("real"),
            PolicyMode::Enforce,
            &tempfail,
            Offer::default(),
        );
        assert_eq!(verdict.decided_by().map(|n| &**n), Some("real"));
    }

    fn answer(decision: Decision) -> PolicyAnswer {
        PolicyAnswer {
            decision,
            offer: Offer::default(),
            failure: None,
            elapsed: std::time::Duration::ZERO,
        }
    }

    #[tokio::test]
    async fn asking_in_order_stops_at_the_first_enforcing_refusal() {
        // (mode, decision) per module; the log says who was asked.
        let mut modules = vec![
            (name("shadow"), (PolicyMode::DryRun, reject())),
            (name("open"), (PolicyMode::Enforce, Decision::Accept)),
            (name("relay"), (PolicyMode::Enforce, reject())),
            (name("never"), (PolicyMode::Enforce, Decision::Accept)),
        ];
        let mut scripted = Scripted::default();
        let verdict = ask_in_order(&mut modules, PolicyRequest::Connect, &mut scripted).await;
        assert_eq!(scripted.asked, ["shadow", "open", "relay"]);
        assert_eq!(verdict.decision(), &reject());
        assert_eq!(verdict.decided_by().map(|n| &**n), Some("relay"));

        let mut none: Vec<(Arc<str>, (PolicyMode, Decision))> = Vec::new();
        let empty = ask_in_order(&mut none, PolicyRequest::Connect, &mut scripted).await;
        assert_eq!(empty.decision(), &Decision::Accept);
    }

    /// Modules that are their (mode, decision); records who was asked.
    #[derive(Default)]
    struct Scripted {
        asked: Vec<String>,
    }

    impl AskModule<(PolicyMode, Decision)> for Scripted {
        async fn ask(
            &mut self,
            name: &Arc<str>,
            module: &mut (PolicyMode, Decision),
            _request: &PolicyRequest,
        ) -> (PolicyMode, PolicyAnswer) {
            self.asked.push(name.to_string());
            (module.0, answer(module.1.clone()))
        }
    }

    #[test]
    fn extensions_are_what_every_enforcing_module_offers() {
        let no_auth = Offer {
            auth: false,
            ..Offer::default()
        };
        let no_chunking = Offer {
            chunking: false,
            ..Offer::default()
        };
        let nothing = Offer {
            pipelining: false,
            auth: false,
            starttls: false,
            smtputf8: false,
            chunking: false,
        };
        let mut verdict = ChainVerdict::new();
        verdict.add(&name("a"), PolicyMode::Enforce, &Decision::Accept, no_auth);
        verdict.add(
            &name("b"),
            PolicyMode::Enforce,
            &Decision::Accept,
            no_chunking,
        );
        // A dry-run module's offer does not narrow (nor widen) the list.
        verdict.add(&name("c"), PolicyMode::DryRun, &Decision::Accept, nothing);
        let offer = verdict.offer();
        assert!(!offer.auth && !offer.chunking);
        assert!(offer.pipelining && offer.starttls && offer.smtputf8);

        // Only dry-run modules: their offers, as a lone dry-run policy's.
        let mut shadow = ChainVerdict::new();
        shadow.add(&name("c"), PolicyMode::DryRun, &Decision::Accept, no_auth);
        assert!(!shadow.offer().auth);
    }
}
