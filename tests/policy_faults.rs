//! A misbehaving policy costs the command a 451 4.3.0 (fail closed) and
//! never the proxy: traps, endless loops, memory blow-ups and invalid
//! replies, each followed by a session that works.

use relaygate_tests::client::SmtpClient;
use relaygate_tests::proxy::{TestProxy, misbehaving_wasm};
use relaygate_tests::upstream::{RecordingUpstream, UpstreamBehaviour};
use std::time::{Duration, Instant};

fn config(rcpt_behaviour: &str, extra: &str) -> String {
    format!(
        r#"
[proxy]
upstream = "{{upstream}}"
[policy]
module = "{}"
call_timeout = "50ms"
memory_limit = 16777216
{extra}
[policy.config]
rcpt_to = "{rcpt_behaviour}"
"#,
        misbehaving_wasm().display()
    )
}

async fn rcpt_reply(proxy: &TestProxy, rcpt: &str) -> (u16, String) {
    let mut c = SmtpClient::connect(proxy.addr()).await.unwrap();
    assert_eq!(c.read_reply().await.unwrap().code, 220);
    c.ehlo("client.test").await.unwrap();
    c.cmd_expect("MAIL FROM:<a@example.com>", 250)
        .await
        .unwrap();
    let reply = c.cmd(&format!("RCPT TO:<{rcpt}>")).await.unwrap();
    // The session goes on after the failure.
    assert_eq!(c.cmd("NOOP").await.unwrap().code, 250);
    c.quit().await.unwrap();
    (reply.code, reply.text())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_failure_is_a_451_and_the_next_session_works() {
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    for behaviour in ["trap", "loop", "hog", "bad-reply"] {
        let proxy = TestProxy::start(&config(behaviour, ""), upstream.addr())
            .await
            .unwrap();
        let started = Instant::now();
        let (code, text) = rcpt_reply(&proxy, "b@example.com").await;
        assert_eq!(code, 451, "{behaviour}: {text}");
        assert!(text.starts_with("4.3.0"), "{behaviour}: {text}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{behaviour} took {:?}",
            started.elapsed()
        );
        // A fresh session on the same proxy is served (and fails the same way, promptly).
        assert_eq!(
            rcpt_reply(&proxy, "c@example.com").await.0,
            451,
            "{behaviour}"
        );
    }
    assert!(
        upstream
            .sessions()
            .iter()
            .flat_map(|s| s.commands.iter())
            .all(|c| !c.starts_with("RCPT")),
        "no failed recipient reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_call_does_not_poison_the_session() {
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    // Only recipients containing "trap" trap; the instance is replaced after.
    let cfg = config("trap-if-recipient-contains:trap", "");
    let proxy = TestProxy::start(&cfg, upstream.addr()).await.unwrap();
    let mut c = SmtpClient::connect(proxy.addr()).await.unwrap();
    c.read_reply().await.unwrap();
    c.ehlo("client.test").await.unwrap();
    c.cmd_expect("MAIL FROM:<a@example.com>", 250)
        .await
        .unwrap();
    assert_eq!(c.cmd("RCPT TO:<trap@example.com>").await.unwrap().code, 451);
    assert_eq!(c.cmd("RCPT TO:<fine@example.com>").await.unwrap().code, 250);
    c.quit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_open_is_configurable() {
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    let proxy = TestProxy::start(&config("trap", "on_failure = \"accept\""), upstream.addr())
        .await
        .unwrap();
    assert_eq!(rcpt_reply(&proxy, "b@example.com").await.0, 250);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_whose_init_fails_is_refused_at_load() {
    let text = config("accept", "").replace("[policy.config]", "[policy.config]\ninit = \"error\"");
    let text = text.replace("{upstream}", "127.0.0.1:25");
    let config = relaygate::config::Config::parse(&text).unwrap();
    let error = match relaygate::app::App::with_listeners(&config, vec![]).await {
        Ok(_) => panic!("a policy whose init fails must not load"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("fixture init error"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_is_not_a_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.wasm");
    std::fs::write(&path, b"\0asm garbage").unwrap();
    let text = format!(
        "[proxy]\nupstream = \"127.0.0.1:25\"\n[policy]\nmodule = \"{}\"\n",
        path.display()
    );
    let config = relaygate::config::Config::parse(&text).unwrap();
    let error = match relaygate::app::App::with_listeners(&config, vec![]).await {
        Ok(_) => panic!("garbage must not load"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        error.contains("not a valid WebAssembly component"),
        "{error}"
    );
}
