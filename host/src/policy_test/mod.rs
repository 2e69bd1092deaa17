//! `relaygate policy test`: run a cases file (format: `policies/CASES.md`)
//! against a policy module, or a config file's chain, offline and report
//! each expected verdict.
//!
//! Each case is one [`crate::session::Session`], driven by
//! [`offline::OfflineSession`] with the client steps the
//! case implies ([`script`]), so it meets the proxy's own hook order,
//! context and replies; [`judge`] compares the answers with the case and
//! [`report`] prints them. No sockets and no real DNS: the `dns` import
//! answers from the case data.

pub mod cases;
pub mod judge;
pub mod offline;
pub mod report;
pub mod script;

use crate::config::{Config, ModuleSource, PolicyConfig};
use crate::dns::{Dns, FixedRecords};
use crate::hook::{ListenerIdentity, PolicyContext};
use crate::policy::{
    LoadError, LoadedPolicy, PolicyChain, PolicyEngine, PolicyInstance, PolicyServices,
    load_chains_offline,
};
use crate::session::{Capabilities, Session, SessionLimits};
use anyhow::Context;
use cases::{CLIENT_PORT, Case, CasesFile, InitExpectation};
use offline::{ClientStep, OfflineRun, OfflineSession, ScriptedUpstream};
use report::Report;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// How a run ended, for the exit status.
#[derive(Debug, PartialEq, Eq)]
pub enum TestOutcome {
    /// Every check passed.
    Passed,
    /// At least one check failed.
    Failed,
}

/// Why a run could not judge the policy.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// The cases file is unreadable or invalid.
    #[error("{0}")]
    Cases(String),
    /// The policy could not be loaded.
    #[error(transparent)]
    Policy(anyhow::Error),
    /// The config file, or the chain asked of it, is unusable.
    #[error("{0}")]
    Config(String),
}

/// What a run judges: one module, or a chain of a config file.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A component file or `builtin:apple-relay`.
    Module(&'a Path),
    /// The chain `name` of the config file `config` (README.md, "Policy
    /// chains"), given on the command line as `chain:NAME`.
    Chain {
        /// The chain's name.
        name: &'a str,
        /// The config file, if one was given.
        config: Option<&'a Path>,
    },
}

impl<'a> Target<'a> {
    /// `chain:NAME` names a chain of `config`; anything else a module.
    pub fn parse(argument: &'a Path, config: Option<&'a Path>) -> Self {
        match argument.to_str().and_then(|a| a.strip_prefix("chain:")) {
            Some(name) => Target::Chain { name, config },
            None => Target::Module(argument),
        }
    }
}

/// Read the module named by `module` (a path or `builtin:apple-relay`).
pub fn read_module(module: &Path) -> anyhow::Result<(String, Vec<u8>, ModuleSource)> {
    let text = module.to_string_lossy();
    if text == crate::config::BUILTIN_APPLE_RELAY {
        return Ok((
            text.into_owned(),
            crate::policy::BUILTIN_APPLE_RELAY_WASM.to_vec(),
            ModuleSource::BuiltinAppleRelay,
        ));
    }
    let bytes = std::fs::read(module).with_context(|| format!("reading {}", module.display()))?;
    Ok((
        module.display().to_string(),
        bytes,
        ModuleSource::File(module.to_path_buf()),
    ))
}

/// Read and check a cases file.
pub fn read_cases(cases_path: &Path) -> Result<CasesFile, TestError> {
    let text = std::fs::read_to_string(cases_path)
        .map_err(|e| TestError::Cases(format!("reading {}: {e}", cases_path.display())))?;
    cases::parse(&text).map_err(|e| TestError::Cases(format!("{}: {e}", cases_path.display())))
}

/// Run every case of `cases_path` against `module`, adding the checks to
/// `report` as they are made (so a run cut short by an error keeps them).
pub async fn run(
    module: &Path,
    cases_path: &Path,
    report: &mut Report,
) -> Result<TestOutcome, TestError> {
    run_target(Target::Module(module), cases_path, report).await
}

/// Run every case of `cases_path` against `target`, as [`run`] does.
pub async fn run_target(
    target: Target<'_>,
    cases_path: &Path,
    report: &mut Report,
) -> Result<TestOutcome, TestError> {
    let file = read_cases(cases_path)?;
    let mut runner = match target {
        Target::Module(module) => Runner::new(module, &file)?,
        Target::Chain { name, config } => Runner::for_chain(name, config, &file).await?,
    };
    report.cases = file.cases.len();
    for (index, case) in file.cases.iter().enumerate() {
        runner.run_case(&file, case, case_id(index), report).await?;
    }
    Ok(if report.failed() == 0 {
        TestOutcome::Passed
    } else {
        TestOutcome::Failed
    })
}

/// The session id of the case at `index` (ids start at 1).
pub fn case_id(index: usize) -> u64 {
    u64::try_from(index).unwrap_or(u64::MAX).saturating_add(1)
}

/// How one case's session went.
#[derive(Debug)]
pub enum CaseRun {
    /// The policy's `init` refused the case's configuration: its problems.
    InitRefused(Vec<String>),
    /// The session ran.
    Ran {
        /// What the client did.
        steps: Vec<ClientStep>,
        /// What happened.
        run: OfflineRun,
    },
}

/// Loads the policy once per distinct configuration and runs cases on it.
pub struct Runner {
    engine: PolicyEngine,
    name: String,
    bytes: Vec<u8>,
    config: Config,
    records: Arc<Mutex<FixedRecords>>,
    loaded: HashMap<String, Result<Arc<LoadedPolicy>, Vec<String>>>,
    chain: Option<Arc<PolicyChain>>,
}

impl Runner {
    /// A runner for `module` (a path or `builtin:apple-relay`) with the
    /// proxy settings `file` gives.
    pub fn new(module: &Path, file: &CasesFile) -> Result<Self, TestError> {
        let (name, bytes, source) = read_module(module).map_err(TestError::Policy)?;
        let engine = PolicyEngine::new(None).map_err(TestError::Policy)?;
        let mut config = Config::embedded_default();
        config.policy.module = source;
        config.proxy.hostname = file.server.hostname.clone();
        if let Some(timeout) = file.limits.call_timeout {
            config.policy.call_timeout = timeout;
        }
        if let Some(memory) = file.limits.memory_limit {
            config.policy.memory_limit = memory;
        }
        Ok(Self {
            engine,
            name,
            bytes,
            config,
            records: Arc::new(Mutex::new(FixedRecords::default())),
            loaded: HashMap::new(),
            chain: None,
        })
    }

    /// A runner for the chain `name` of the config file `config`, its
    /// modules loaded as the proxy loads them, each with its own config
    /// table (so the cases file may set none) and the case data's DNS.
    pub async fn for_chain(
        name: &str,
        config: Option<&Path>,
        file: &CasesFile,
    ) -> Result<Self, TestError> {
        let Some(path) = config else {
            return Err(TestError::Config(format!(
                "chain:{name} needs --config FILE (the chains are in the config file)"
            )));
        };
        let with_config =
            !file.config.is_empty() || file.cases.iter().any(|c| !c.config.is_empty());
        if with_config {
            return Err(TestError::Cases(
                "[config] and per-case config cannot be used against a chain: each module has its own config table in the config file".to_string(),
            ));
        }
        let mut config = Config::load(path, &crate::config::readable_is_enough)
            .map_err(|e| TestError::Config(e.problems.join("; ")))?;
        config.proxy.hostname = file.server.hostname.clone();
        if !config.chains().iter().any(|c| c.name == name) {
            return Err(TestError::Config(format!(
                "{}: no policy chain {name:?}",
                path.display()
            )));
        }
        let engine = PolicyEngine::new(None).map_err(TestError::Policy)?;
        let records = Arc::new(Mutex::new(FixedRecords::default()));
        let own_networks = file
            .server
            .own_networks
            .iter()
            .map(|n| n.to_string())
            .collect();
        let chains =
            load_chains_offline(&engine, &config, Dns::fixed(records.clone()), own_networks)
                .await
                .map_err(TestError::Policy)?;
        let chain = chains.get(name).ok_or_else(|| {
            TestError::Config(format!("{}: no policy chain {name:?}", path.display()))
        })?;
        Ok(Self {
            engine,
            name: format!("chain:{name}"),
            bytes: Vec::new(),
            config,
            records,
            loaded: HashMap::new(),
            chain: Some(chain),
        })
    }

    /// The policy loaded with `table`, or the problems its init listed.
    async fn policy(
        &mut self,
        table: toml::Table,
        file: &CasesFile,
        label: &str,
    ) -> Result<Result<Arc<LoadedPolicy>, Vec<String>>, TestError> {
        let key = toml::to_string(&table).unwrap_or_default();
        if let Some(found) = self.loaded.get(&key) {
            return Ok(found.clone());
        }
        let policy_config = PolicyConfig::from_table(table).map_err(|problems| {
            TestError::Cases(format!("{label}: config: {}", problems.join("; ")))
        })?;
        let mut settings = self.config.policy.clone();
        settings.config = policy_config.clone();
        let services = PolicyServices {
            config: policy_config,
            dns: Some(Dns::fixed(self.records.clone())),
            own_networks: file
                .server
                .own_networks
                .iter()
                .map(|n| n.to_string())
                .collect(),
            hostname: file.server.hostname.clone(),
        };
        let result = match self
            .engine
            .load(&self.name, &self.bytes, &settings, services)
            .await
        {
            Ok(policy) => Ok(policy),
            Err(LoadError::Config(problems)) => Err(problems),
            Err(other) => {
                return Err(TestError::Policy(
                    anyhow::Error::from(other).context(format!("loading policy {}", self.name)),
                ));
            }
        };
        self.loaded.insert(key, result.clone());
        Ok(result)
    }

    /// The fixed DNS answers for one case: `[dns]`, plus the PTR of the
    /// client and (unless `[dns]` names it) the forward record confirming it.
    fn set_records(&self, file: &CasesFile, case: &Case) {
        let mut records = FixedRecords::default();
        for (name, addresses) in &file.dns {
            records.forward.insert(name.clone(), addresses.clone());
        }
        if let Some(name) = &case.client_name {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let client = crate::net::canonical(case.client);
            records.reverse.insert(client, vec![name.clone()]);
            records.forward.entry(name).or_insert_with(|| vec![client]);
        }
        *self.records.lock().unwrap_or_else(|e| e.into_inner()) = records;
    }

    /// Run one case's session (`id` is its session id).
    pub async fn session(
        &mut self,
        file: &CasesFile,
        case: &Case,
        id: u64,
    ) -> Result<CaseRun, TestError> {
        let label = format!("case {id} ({:?})", case.name);
        let policy = match &self.chain {
            Some(_) => None,
            None => {
                let mut table = file.config.clone();
                table.extend(case.config.clone());
                match self.policy(table, file, &label).await? {
                    Ok(policy) => Some(policy),
                    Err(problems) => return Ok(CaseRun::InitRefused(problems)),
                }
            }
        };
        self.set_records(file, case);
        let needs_client_name = match (&policy, &self.chain) {
            (Some(policy), _) => policy.info().needs_client_name,
            (None, Some(chain)) => chain.needs_client_name(),
            (None, None) => false,
        };
        let client_name = if needs_client_name {
            Dns::fixed(self.records.clone())
                .confirmed_name(case.client)
                .await
                .ok()
                .flatten()
        } else {
            None
        };
        let client = SocketAddr::new(case.client, CLIENT_PORT);
        let listener = ListenerIdentity::new(
            case.listener.as_deref().unwrap_or(&file.server.listener),
            &file.server.hostname,
        );
        let mut context =
            PolicyContext::connected(id, listener, client, file.server.address, client_name);
        // A case with `tls = true` plays a session after STARTTLS.
        context.tls = case.tls;
        let upstream = ScriptedUpstream::default();
        let capabilities = Capabilities {
            smtputf8: upstream.smtputf8(),
            auth: true,
            auth_requires_tls: false,
            starttls: false,
            auth_required: false,
        };
        let proxy = &self.config.proxy;
        let limits = SessionLimits {
            max_message_size: proxy.max_message_size,
            max_recipients: proxy.max_recipients,
            max_errors: proxy.max_errors,
        };
        let session = Session::new(proxy.hostname.clone(), limits, capabilities, context);
        let credentials = script::credentials(case);
        let offline = match (policy, &self.chain) {
            (Some(policy), _) => OfflineSession::new(
                session,
                PolicyInstance::new(policy, id),
                upstream,
                credentials,
            ),
            (None, chain) => {
                let modules = chain
                    .iter()
                    .flat_map(|chain| chain.modules.iter())
                    .map(|m| (m.name.clone(), PolicyInstance::new(m.policy.clone(), id)))
                    .collect();
                OfflineSession::chain(session, modules, upstream, credentials)
            }
        };
        let steps = script::steps(case);
        let run = offline.run(&steps).await;
        Ok(CaseRun::Ran { steps, run })
    }

    /// Run one case and record its checks.
    pub async fn run_case(
        &mut self,
        file: &CasesFile,
        case: &Case,
        id: u64,
        report: &mut Report,
    ) -> Result<(), TestError> {
        let name = case.name.as_str();
        match self.session(file, case, id).await? {
            CaseRun::InitRefused(problems) => {
                let actual = format!("refused ({})", problems.join("; "));
                match case.expect.init {
                    Some(InitExpectation::Refused) => report.ok(name, "init", &actual),
                    Some(InitExpectation::Ok) => report.text(name, "init", "ok", &actual),
                    None => {}
                }
                judge::unreached(case, &format!("stopped at init: {actual}"), report);
            }
            CaseRun::Ran { steps, run } => {
                if let Some(init) = case.expect.init {
                    let expected = match init {
                        InitExpectation::Ok => "ok",
                        InitExpectation::Refused => "refused",
                    };
                    report.text(name, "init", expected, "ok");
                }
                judge::judge(case, &steps, &run, report);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
