//! `relaygate policy test FILE CASES`: run a policy offline against the
//! cases of a file (format: `policies/CASES.md`) and compare its verdicts.
//! No sockets and no real DNS: the `dns` import answers from the case data.

use super::policy_cases::{self, CLIENT_PORT, Case, CasesFile, Expected, InitExpectation};
use anyhow::Context;
use relaygate::config::{Config, ModuleSource, PolicyConfig};
use relaygate::dns::{Dns, FixedRecords};
use relaygate::hook::{Decision, MessageSummary, Offer, PolicyContext, PolicyRequest};
use relaygate::policy::{LoadError, LoadedPolicy, PolicyEngine, PolicyInstance, PolicyServices};
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
}

/// Read the module named by `module` (a path or `builtin:apple-relay`).
pub fn read_module(module: &Path) -> anyhow::Result<(String, Vec<u8>, ModuleSource)> {
    let text = module.to_string_lossy();
    if text == relaygate::config::BUILTIN_APPLE_RELAY {
        return Ok((
            text.into_owned(),
            relaygate::policy::BUILTIN_APPLE_RELAY_WASM.to_vec(),
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

/// `relaygate policy test FILE CASES`.
pub async fn policy_test(module: &Path, cases_path: &Path) -> Result<TestOutcome, TestError> {
    let text = std::fs::read_to_string(cases_path)
        .map_err(|e| TestError::Cases(format!("reading {}: {e}", cases_path.display())))?;
    let file = policy_cases::parse(&text)
        .map_err(|e| TestError::Cases(format!("{}: {e}", cases_path.display())))?;
    let (name, bytes, source) = read_module(module).map_err(TestError::Policy)?;
    let engine = PolicyEngine::new(None).map_err(TestError::Policy)?;
    let mut runner = Runner::new(engine, name, bytes, source, &file)?;
    let mut tally = Tally::default();
    for (index, case) in file.cases.iter().enumerate() {
        let id = u64::try_from(index).unwrap_or(u64::MAX) + 1;
        runner.run_case(&file, case, id, &mut tally).await?;
    }
    println!(
        "{} cases, {} checks: {} ok, {} FAILED",
        file.cases.len(),
        tally.ok + tally.failed,
        tally.ok,
        tally.failed
    );
    Ok(if tally.failed == 0 {
        TestOutcome::Passed
    } else {
        TestOutcome::Failed
    })
}

#[derive(Default)]
struct Tally {
    ok: usize,
    failed: usize,
}

impl Tally {
    fn check(&mut self, case: &str, stage: &str, expected: &Expected, actual: &Actual) {
        if actual.matches(expected) {
            self.ok += 1;
            println!("ok   {case} / {stage}: {actual}");
        } else {
            self.failed += 1;
            println!("FAIL {case} / {stage}: expected {expected}, got {actual}");
        }
    }

    fn check_text(&mut self, case: &str, stage: &str, expected: &str, actual: &str) {
        if expected == actual {
            self.ok += 1;
            println!("ok   {case} / {stage}: {actual}");
        } else {
            self.failed += 1;
            println!("FAIL {case} / {stage}: expected {expected}, got {actual}");
        }
    }

    fn not_reached(&mut self, case: &str, stage: &str, expected: &str, why: &str) {
        self.failed += 1;
        println!("FAIL {case} / {stage}: expected {expected}, got not reached ({why})");
    }
}

/// What a hook answered, as compared and printed.
enum Actual {
    Decision(Decision),
    Failure(String),
}

impl Actual {
    fn from_answer(answer: &relaygate::policy::PolicyAnswer) -> Self {
        match &answer.failure {
            Some(failure) => Actual::Failure(format!("{}: {failure}", failure.kind())),
            None => Actual::Decision(answer.decision.clone()),
        }
    }

    fn accepted(&self) -> bool {
        matches!(self, Actual::Decision(Decision::Accept))
    }

    fn matches(&self, expected: &Expected) -> bool {
        let Actual::Decision(decision) = self else {
            return false;
        };
        if decision.label() != expected.action {
            return false;
        }
        let reply = match decision {
            Decision::Accept => return true,
            Decision::Reject(reply) | Decision::Tempfail(reply) => reply,
        };
        let first_word = reply
            .lines()
            .first()
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("");
        expected.code.is_none_or(|code| code == reply.code())
            && expected
                .enhanced
                .as_deref()
                .is_none_or(|status| status == first_word)
    }
}

impl std::fmt::Display for Actual {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actual::Failure(why) => write!(f, "failure {why}"),
            Actual::Decision(Decision::Accept) => f.write_str("accept"),
            Actual::Decision(d @ (Decision::Reject(reply) | Decision::Tempfail(reply))) => {
                write!(
                    f,
                    "{} {} {}",
                    d.label(),
                    reply.code(),
                    reply.lines().join(" ")
                )
            }
        }
    }
}

/// The extensions of an offer in the file's order and spelling.
fn offer_names(offer: &Offer) -> String {
    let mut names = Vec::new();
    for (on, name) in [
        (offer.pipelining, "PIPELINING"),
        (offer.auth, "AUTH"),
        (offer.starttls, "STARTTLS"),
        (offer.smtputf8, "SMTPUTF8"),
        (offer.chunking, "CHUNKING"),
    ] {
        if on {
            names.push(name);
        }
    }
    names.sort_unstable();
    format!("[{}]", names.join(", "))
}

/// Loads the policy once per distinct configuration and runs cases on it.
struct Runner {
    engine: PolicyEngine,
    name: String,
    bytes: Vec<u8>,
    config: Config,
    records: Arc<Mutex<FixedRecords>>,
    loaded: HashMap<String, Result<Arc<LoadedPolicy>, Vec<String>>>,
}

impl Runner {
    fn new(
        engine: PolicyEngine,
        name: String,
        bytes: Vec<u8>,
        source: ModuleSource,
        file: &CasesFile,
    ) -> Result<Self, TestError> {
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
            let client = relaygate::net::canonical(case.client);
            records.reverse.insert(client, vec![name.clone()]);
            records.forward.entry(name).or_insert_with(|| vec![client]);
        }
        *self.records.lock().unwrap_or_else(|e| e.into_inner()) = records;
    }

    async fn run_case(
        &mut self,
        file: &CasesFile,
        case: &Case,
        id: u64,
        tally: &mut Tally,
    ) -> Result<(), TestError> {
        let label = format!("case {id} ({:?})", case.name);
        let mut table = file.config.clone();
        table.extend(case.config.clone());
        let name = case.name.as_str();
        let expect = &case.expect;
        let policy = match self.policy(table, file, &label).await? {
            Ok(policy) => {
                if let Some(init) = expect.init {
                    tally.check_text(name, "init", init_text(init), "ok");
                }
                policy
            }
            Err(problems) => {
                let actual = format!("refused ({})", problems.join("; "));
                match expect.init {
                    Some(InitExpectation::Refused) => {
                        tally.ok += 1;
                        println!("ok   {name} / init: {actual}");
                    }
                    Some(InitExpectation::Ok) => tally.check_text(name, "init", "ok", &actual),
                    None => {}
                }
                let mut stopped = Stopped::new(name, "init", &actual);
                stopped.rest(case, 0, tally);
                return Ok(());
            }
        };
        self.set_records(file, case);
        let client_name = if policy.info().needs_client_name {
            Dns::fixed(self.records.clone())
                .confirmed_name(case.client)
                .await
                .ok()
                .flatten()
        } else {
            None
        };
        let client = SocketAddr::new(case.client, CLIENT_PORT);
        let mut context = PolicyContext::connected(id, client, file.server.address, client_name);
        context.tls = case.tls;
        let mut instance = PolicyInstance::new(policy, id);
        run_stages(&mut instance, &mut context, case, tally).await;
        Ok(())
    }
}

fn init_text(init: InitExpectation) -> &'static str {
    match init {
        InitExpectation::Ok => "ok",
        InitExpectation::Refused => "refused",
    }
}

/// Report the expected stages after the one that ended the case.
struct Stopped<'a> {
    case: &'a str,
    why: String,
}

impl<'a> Stopped<'a> {
    fn new(case: &'a str, stage: &str, actual: &str) -> Self {
        Self {
            case,
            why: format!("stopped at {stage}: {actual}"),
        }
    }

    /// Every expected stage from `from` on (0 connect, 1 helo, 2 extensions,
    /// 3 auth, 4 mail, 5 rcpt, 6 data) is not reached.
    fn rest(&mut self, case: &Case, from: usize, tally: &mut Tally) {
        let e = &case.expect;
        let single = [
            (0, "connect", e.connect.as_ref().map(ToString::to_string)),
            (1, "helo", e.helo.as_ref().map(ToString::to_string)),
            (
                2,
                "extensions",
                e.extensions.as_ref().map(|list| {
                    let mut names: Vec<_> = list.iter().map(|x| x.name()).collect();
                    names.sort_unstable();
                    format!("[{}]", names.join(", "))
                }),
            ),
            (3, "auth", e.auth.as_ref().map(ToString::to_string)),
            (4, "mail", e.mail.as_ref().map(ToString::to_string)),
        ];
        for (order, stage, expected) in single {
            if let Some(expected) = expected.filter(|_| order >= from) {
                tally.not_reached(self.case, stage, &expected, &self.why);
            }
        }
        if from <= 5 {
            for (recipient, expected) in case.recipients.iter().zip(case.rcpt_expectations()) {
                if let Some(expected) = expected {
                    let stage = format!("rcpt {recipient}");
                    tally.not_reached(self.case, &stage, &expected.to_string(), &self.why);
                }
            }
        }
        if let Some(expected) = &e.data {
            tally.not_reached(self.case, "data", &expected.to_string(), &self.why);
        }
    }
}

/// Run the hooks in SMTP order, checking the expected ones.
async fn run_stages(
    instance: &mut PolicyInstance,
    context: &mut PolicyContext,
    case: &Case,
    tally: &mut Tally,
) {
    let name = case.name.as_str();
    let e = &case.expect;
    macro_rules! stage {
        ($order:expr, $stage:expr, $expected:expr, $request:expr) => {{
            let answer = instance.ask(context, $request).await;
            let actual = Actual::from_answer(&answer);
            if let Some(expected) = $expected {
                tally.check(name, $stage, expected, &actual);
            }
            if !actual.accepted() {
                Stopped::new(name, $stage, &actual.to_string()).rest(case, $order + 1, tally);
                return;
            }
        }};
    }
    stage!(0, "connect", e.connect.as_ref(), PolicyRequest::Connect);
    if let Some(helo) = &case.helo {
        let request = PolicyRequest::Helo {
            name: helo.clone(),
            extended: case.ehlo,
        };
        stage!(1, "helo", e.helo.as_ref(), request);
        context.helo = Some(helo.clone());
        context.esmtp = case.ehlo;
        if case.ehlo {
            let answer = instance.ask(context, PolicyRequest::Extensions).await;
            if let Some(expected) = &e.extensions {
                let mut names: Vec<_> = expected.iter().map(|x| x.name()).collect();
                names.sort_unstable();
                let expected = format!("[{}]", names.join(", "));
                let actual = match &answer.failure {
                    Some(failure) => format!("failure {}: {failure}", failure.kind()),
                    None => offer_names(&answer.offer),
                };
                tally.check_text(name, "extensions", &expected, &actual);
            }
        }
    }
    if let Some(identity) = &case.auth {
        let request = PolicyRequest::Auth {
            mechanism: case
                .auth_mechanism
                .clone()
                .unwrap_or_else(|| "PLAIN".to_string()),
            identity: identity.clone(),
        };
        stage!(3, "auth", e.auth.as_ref(), request);
        context.auth_user = Some(identity.clone());
    }
    let Some(sender) = &case.sender else {
        return;
    };
    let request = PolicyRequest::MailFrom {
        sender: sender.clone(),
        params: Vec::new(),
    };
    stage!(4, "mail", e.mail.as_ref(), request);
    context.sender = Some(sender.clone());
    for (recipient, expected) in case.recipients.iter().zip(case.rcpt_expectations()) {
        let request = PolicyRequest::RcptTo {
            recipient: recipient.clone(),
            params: Vec::new(),
        };
        let answer = instance.ask(context, request).await;
        let actual = Actual::from_answer(&answer);
        if let Some(expected) = &expected {
            tally.check(name, &format!("rcpt {recipient}"), expected, &actual);
        }
        if actual.accepted() {
            context.recipients.push(recipient.clone());
        }
    }
    if let Some(expected) = &e.data {
        if context.recipients.is_empty() {
            tally.not_reached(
                name,
                "data",
                &expected.to_string(),
                "no recipient was accepted",
            );
            return;
        }
        let message = MessageSummary {
            size: case.size,
            headers: case.headers.clone(),
            headers_truncated: false,
        };
        let answer = instance.ask(context, PolicyRequest::Data(message)).await;
        tally.check(name, "data", expected, &Actual::from_answer(&answer));
    }
}
