//! `relaygate policy test` against the real proxy: each case of a fixture
//! under `tests/fixtures/parity/` is played offline (the sans-IO session
//! with a scripted upstream) and then through the running proxy over
//! loopback, the client bound to the case's address, a recording upstream
//! behind it; at every step (the greeting, EHLO, AUTH, MAIL, each RCPT,
//! DATA) both must give the same reply code, and the same enhanced status
//! for refusals. The offline report must pass the fixture's expectations too.

use relaygate::policy_test::cases::{Case, CasesFile};
use relaygate::policy_test::offline::{ClientStep, OfflineRun, SCRIPTED_PASSWORD};
use relaygate::policy_test::report::Report;
use relaygate::policy_test::{CaseRun, Runner, case_id, read_cases};
use relaygate::smtp::Reply;
use relaygate_tests::client::SmtpClient;
use relaygate_tests::proxy::{TestProxy, misbehaving_wasm};
use relaygate_tests::upstream::{RecordingUpstream, UpstreamBehaviour};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/parity")
        .join(name)
}

/// What the client heard at one step: the code, and the enhanced status of
/// a refusal (successes differ in text: the upstream's own, say).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Heard {
    code: u16,
    status: Option<String>,
}

impl Heard {
    fn new(code: u16, first_line: Option<&str>) -> Self {
        let status = (code >= 400)
            .then(|| first_line.and_then(|l| l.split_whitespace().next()))
            .flatten()
            .map(str::to_string);
        Self { code, status }
    }

    fn of(reply: &Reply) -> Self {
        Self::new(reply.code(), reply.lines().first().map(String::as_str))
    }
}

/// The greeting, then one entry per step the offline client sent.
fn heard_offline(run: &OfflineRun) -> Vec<Heard> {
    std::iter::once(&run.connection)
        .chain(&run.steps)
        .map(|exchange| {
            Heard::of(
                exchange
                    .reply
                    .as_ref()
                    .expect("every exchange ends in a reply"),
            )
        })
        .collect()
}

/// A message of the case's size (when its headers leave room), with its headers.
fn message(case: &Case) -> Vec<u8> {
    let mut text = String::new();
    for (name, value) in &case.headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    let size = usize::try_from(case.size).unwrap();
    while text.len() + 3 <= size {
        let line = (size - text.len() - 2).min(70);
        text.push_str(&"x".repeat(line));
        text.push_str("\r\n");
    }
    text.into_bytes()
}

/// Play the same steps through the proxy, stopping where the offline
/// client stops (and where the proxy closes, at a 421).
async fn heard_live(proxy: &TestProxy, case: &Case, steps: &[ClientStep]) -> Vec<Heard> {
    let mut client = SmtpClient::connect_from(case.client, proxy.addr())
        .await
        .unwrap();
    let greeting = client.read_reply().await.unwrap();
    let mut heard = vec![Heard::new(
        greeting.code,
        greeting.lines.first().map(String::as_str),
    )];
    let mut goes_on = (200..300).contains(&greeting.code);
    for step in steps {
        if !goes_on {
            break;
        }
        let mut reply = client.cmd(&step.command_line()).await.unwrap();
        for response in step.challenge_responses() {
            if reply.code != 334 {
                break;
            }
            reply = client.cmd(&response).await.unwrap();
        }
        if matches!(step, ClientStep::Data { .. }) && reply.code == 354 {
            reply = client.send_content(&message(case)).await.unwrap();
        }
        let first = reply.lines.first().map(String::as_str);
        let offline_view = Reply::new(reply.code, first.unwrap_or_default());
        goes_on = step.goes_on_after(&offline_view) && reply.code != 421;
        heard.push(Heard::new(reply.code, first));
    }
    heard
}

/// The proxy configuration of one case: its policy config, a users file
/// holding every identity of the fixture, AUTH without TLS.
fn proxy_config(module: &str, file: &CasesFile, case: &Case, users: &Path) -> String {
    let mut table = file.config.clone();
    table.extend(case.config.clone());
    let policy_config = toml::to_string(&table).unwrap();
    format!(
        "[proxy]\nupstream = \"{{upstream}}\"\nhostname = {:?}\n\
         [policy]\nmodule = {module:?}\n\
         [auth]\nbackend = \"file\"\nusers_file = {:?}\nrequire_tls = false\n\
         [policy.config]\n{policy_config}",
        file.server.hostname,
        users.display().to_string(),
    )
}

async fn parity(module: &str, cases: &str) {
    let file = read_cases(&fixture(cases)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    let identities: BTreeSet<&str> = file
        .cases
        .iter()
        .filter_map(|c| c.auth.as_deref())
        .collect();
    let hash = bcrypt::hash(SCRIPTED_PASSWORD, 4).unwrap();
    let lines: String = identities
        .iter()
        .map(|user| format!("{user}:{hash}\n"))
        .collect();
    std::fs::write(&users, lines).unwrap();
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();

    let mut runner = Runner::new(Path::new(module), &file).unwrap();
    let mut report = Report::default();
    for (index, case) in file.cases.iter().enumerate() {
        assert!(
            case.client.is_loopback() && case.client_name.is_none() && !case.tls,
            "{}: loopback cannot play this case",
            case.name
        );
        let id = case_id(index);
        runner.run_case(&file, case, id, &mut report).await.unwrap();
        let CaseRun::Ran { steps, run } = runner.session(&file, case, id).await.unwrap() else {
            panic!("{}: init refused", case.name);
        };
        let offline = heard_offline(&run);
        let proxy = TestProxy::start(&proxy_config(module, &file, case, &users), upstream.addr())
            .await
            .unwrap();
        let live = heard_live(&proxy, case, &steps).await;
        proxy.shutdown().await;
        assert_eq!(
            offline, live,
            "{}: offline (left) and through the proxy (right) disagree; steps {steps:?}",
            case.name
        );
    }
    let failed: Vec<String> = report
        .checks
        .iter()
        .filter(|c| !c.passed())
        .map(ToString::to_string)
        .collect();
    assert!(
        failed.is_empty(),
        "offline checks failed:\n{}",
        failed.join("\n")
    );
}

#[tokio::test]
async fn the_builtin_policy_gives_the_same_replies_offline_and_live() {
    parity("builtin:apple-relay", "builtin-relay.toml").await;
}

#[tokio::test]
async fn refusals_and_failures_at_every_hook_give_the_same_replies() {
    let module = misbehaving_wasm();
    parity(&module.display().to_string(), "misbehaving.toml").await;
}
