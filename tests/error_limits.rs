//! Relay probing and directory harvesting: every refused command counts as
//! an error (as Postfix's smtpd counts them), error replies past the soft
//! limit are slowed down, the hard limit closes the session with 421 4.7.0,
//! and an upstream that closes on its own error limit is never silently
//! replaced by a fresh connection for the same client.

use relaygate_tests::admin::http;
use relaygate_tests::client::SmtpClient;
use relaygate_tests::proxy::TestProxy;
use relaygate_tests::upstream::{RecordingUpstream, UpstreamBehaviour};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Clients at 127.0.0.2 may relay; everyone else only to example.com.
fn config(extra_proxy: &str) -> String {
    format!(
        r#"
[proxy]
upstream = "{{upstream}}"
hostname = "mx.example.com"
{extra_proxy}
[admin]
listen = "127.0.0.1:0"
[policy.config]
open_relay_addr_flag = 1
open_relay_addr_list = ["127.0.0.2"]
local_domains = ["example.com"]
"#
    )
}

async fn start(behaviour: UpstreamBehaviour, extra_proxy: &str) -> (RecordingUpstream, TestProxy) {
    let upstream = RecordingUpstream::start(behaviour).await.unwrap();
    let proxy = TestProxy::start(&config(extra_proxy), upstream.addr())
        .await
        .unwrap();
    (upstream, proxy)
}

async fn greeted(proxy: SocketAddr, from: &str) -> SmtpClient {
    let mut c = SmtpClient::connect_from(from.parse().unwrap(), proxy)
        .await
        .unwrap();
    assert_eq!(c.read_reply().await.unwrap().code, 220);
    c.ehlo("client.test").await.unwrap();
    c
}

/// `error_sleep` of the probing test.
const SLEEP: Duration = Duration::from_millis(200);

/// One prober: up to 50 relay recipients, one at a time. Returns the time each
/// refusal took and the reply that ended the session.
async fn probe(proxy: SocketAddr, session: usize) -> (Vec<(u16, Duration)>, u16) {
    let mut c = greeted(proxy, "127.0.0.9").await;
    c.cmd_expect("MAIL FROM:<probe@example.com>", 250)
        .await
        .unwrap();
    let mut answers = Vec::new();
    for i in 0..50 {
        let asked = Instant::now();
        let reply = c
            .cmd(&format!("RCPT TO:<victim{session}-{i}@elsewhere.test>"))
            .await
            .unwrap();
        if reply.code == 421 {
            assert!(reply.text().starts_with("4.7.0"), "{}", reply.text());
            assert!(
                c.read_to_close().await.unwrap().is_empty(),
                "the session ends after the 421"
            );
            return (answers, 421);
        }
        answers.push((reply.code, asked.elapsed()));
    }
    (answers, 0)
}

#[tokio::test(flavor = "multi_thread")]
async fn relay_probes_are_slowed_down_then_cut_off_at_the_hard_limit() {
    let (_upstream, proxy) = start(
        UpstreamBehaviour::default(),
        "max_errors = 20\nsoft_error_limit = 10\nerror_sleep = \"200ms\"",
    )
    .await;
    let started = Instant::now();
    let probes: Vec<_> = (0..20)
        .map(|session| tokio::spawn(probe(proxy.addr(), session)))
        .collect();
    let mut results = Vec::new();
    for probe in probes {
        results.push(probe.await.unwrap());
    }
    let wall = started.elapsed();
    for (answers, end) in &results {
        assert_eq!(end, &421, "the session was not closed: {answers:?}");
        // The 20th error is the 421: 19 refusals answered before it.
        assert_eq!(answers.len(), 19, "{answers:?}");
        assert!(answers.iter().all(|(code, _)| *code == 554), "{answers:?}");
        // Past the soft limit (10 errors) each refusal waited error_sleep.
        for (n, (_, took)) in answers.iter().enumerate().skip(10) {
            assert!(*took >= SLEEP, "refusal {} came after {took:?}", n + 1);
        }
    }
    // The delays run side by side: twenty sessions of nine delays each took
    // far less than 20 * 9 * 200ms = 36s.
    assert!(wall < Duration::from_secs(20), "{wall:?}");
    let (_, metrics) = http(proxy.admin_addr().unwrap(), "GET", "/metrics")
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "relaygate_error_limit_closes_total 20"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_few_refused_recipients_do_not_hurt_and_a_delivery_forgives_errors() {
    let sleep = Duration::from_secs(2);
    let (upstream, proxy) = start(
        UpstreamBehaviour::default(),
        "max_errors = 12\nsoft_error_limit = 10\nerror_sleep = \"2s\"",
    )
    .await;
    let mut c = greeted(proxy.addr(), "127.0.0.9").await;
    // Three refused relay recipients among a local one, a delivered message:
    // nothing is delayed and the session goes on.
    let started = Instant::now();
    let t = c
        .send_message(
            "a@example.com",
            &[
                "x@elsewhere.test",
                "b@example.com",
                "y@elsewhere.test",
                "z@elsewhere.test",
            ],
            b"Subject: fine\r\n\r\nhi",
        )
        .await
        .unwrap();
    assert!(t.accepted(), "{t:?}");
    assert_eq!(
        t.rcpts.iter().map(|r| r.code).collect::<Vec<_>>(),
        [554, 250, 554, 554]
    );
    assert!(started.elapsed() < sleep, "{:?}", started.elapsed());
    // Twice: eleven refusals (the last one slowed down), then a delivered
    // message. Each delivery forgives the errors before it, as in Postfix,
    // so the session never reaches max_errors.
    for round in 0..2 {
        c.cmd_expect("MAIL FROM:<a@example.com>", 250)
            .await
            .unwrap();
        for i in 0..11 {
            let asked = Instant::now();
            let reply = c
                .cmd(&format!("RCPT TO:<r{round}-{i}@elsewhere.test>"))
                .await
                .unwrap();
            assert_eq!(reply.code, 554, "{}", reply.text());
            if i == 10 {
                assert!(asked.elapsed() >= sleep, "{:?}", asked.elapsed());
            }
        }
        c.cmd_expect("RCPT TO:<b@example.com>", 250).await.unwrap();
        c.cmd_expect("DATA", 354).await.unwrap();
        let end = c.send_content(b"Subject: again\r\n\r\nhi").await.unwrap();
        assert_eq!(end.code, 250, "{}", end.text());
    }
    c.quit().await.unwrap();
    let messages = upstream
        .wait_for_messages(3, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(messages.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_closes_on_its_error_limit_ends_the_session() {
    // The upstream gives up after three unknown users; relaygate's own limit
    // is far away, so only the upstream's 421 can end the session.
    let (upstream, proxy) = start(
        UpstreamBehaviour::default()
            .reject_unknown_users()
            .close_after_errors(3),
        "max_errors = 50\nerror_sleep = \"0s\"",
    )
    .await;
    let mut c = greeted(proxy.addr(), "127.0.0.2").await;
    c.cmd_expect("MAIL FROM:<a@example.com>", 250)
        .await
        .unwrap();
    for i in 0..3 {
        let reply = c
            .cmd(&format!("RCPT TO:<unknown{i}@example.com>"))
            .await
            .unwrap();
        assert_eq!(reply.code, 550, "{}", reply.text());
    }
    let reply = c.cmd("RCPT TO:<unknown3@example.com>").await.unwrap();
    assert_eq!(reply.code, 421, "{}", reply.text());
    assert!(
        c.read_to_close().await.unwrap().is_empty(),
        "the session ends with the upstream's 421"
    );
    // One connection for this client (the other one is the proxy's start-up
    // probe, which only says EHLO and QUIT).
    let sessions = upstream.sessions();
    let for_client = sessions
        .iter()
        .filter(|s| s.commands.iter().any(|c| c.starts_with("MAIL")))
        .count();
    assert_eq!(for_client, 1, "{sessions:#?}");
    assert_eq!(sessions.len(), 2, "{sessions:#?}");
}
