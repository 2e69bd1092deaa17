//! A bounded load test on loopback: 500 concurrent sessions mixing accepted
//! mail, relay attempts, smuggling attempts and clients that vanish
//! mid-message. Every accepted message must reach the upstream exactly once
//! and nothing else may.

use relaygate_tests::client::SmtpClient;
use relaygate_tests::proxy::TestProxy;
use relaygate_tests::upstream::{RecordingUpstream, UpstreamBehaviour};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Barrier;

const SESSIONS: usize = 500;

const CONFIG: &str = r#"
[proxy]
upstream = "{upstream}"
max_connections = 2000
max_connections_per_client = 2000
[policy.config]
open_relay_addr_flag = 1
open_relay_addr_list = ["127.0.0.2"]
local_domains = ["example.com"]
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Accepted,
    RelayAttempt,
    Smuggler,
    Vanishes,
}

fn kind(i: usize) -> Kind {
    match i % 5 {
        0 => Kind::RelayAttempt,
        1 => Kind::Vanishes,
        2 => Kind::Smuggler,
        _ => Kind::Accepted,
    }
}

async fn session(i: usize, proxy: std::net::SocketAddr, start: Arc<Barrier>) -> anyhow::Result<()> {
    let from = if kind(i) == Kind::RelayAttempt {
        "127.0.0.3"
    } else {
        "127.0.0.2"
    };
    let mut c = SmtpClient::connect_from(from.parse()?, proxy).await?;
    c.set_read_timeout(Duration::from_secs(60));
    start.wait().await;
    anyhow::ensure!(c.read_reply().await?.code == 220, "no greeting");
    c.ehlo("load.test").await?;
    c.cmd_expect("MAIL FROM:<load@example.com>", 250).await?;
    match kind(i) {
        Kind::RelayAttempt => {
            let reply = c
                .cmd(&format!("RCPT TO:<victim{i}@remote.example.net>"))
                .await?;
            anyhow::ensure!(reply.code == 554, "relay attempt {i} got {}", reply.code);
        }
        Kind::Vanishes => {
            c.cmd_expect(&format!("RCPT TO:<user{i}@example.com>"), 250)
                .await?;
            c.cmd_expect("DATA", 354).await?;
            c.send_raw(format!("Subject: vanished-{i}\r\n\r\nhalf a mess").as_bytes())
                .await?;
            return Ok(()); // dropped mid-message
        }
        Kind::Smuggler => {
            c.cmd_expect(&format!("RCPT TO:<user{i}@example.com>"), 250)
                .await?;
            c.cmd_expect("DATA", 354).await?;
            let data = format!(
                "Subject: smuggler-{i}\r\n\r\nx\n.\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@remote.example.net>\r\nDATA\r\nSubject: smuggled-{i}\r\n\r\n.\r\n"
            );
            c.send_raw(data.as_bytes()).await?;
            let reply = c.read_reply().await?;
            anyhow::ensure!(reply.code == 550, "smuggler {i} got {}", reply.code);
        }
        Kind::Accepted => {
            c.cmd_expect(&format!("RCPT TO:<user{i}@example.com>"), 250)
                .await?;
            c.cmd_expect("DATA", 354).await?;
            let end = c
                .send_content(format!("Subject: load-{i}\r\n\r\nmessage {i}\r\n").as_bytes())
                .await?;
            anyhow::ensure!(
                end.code == 250,
                "message {i} got {} {}",
                end.code,
                end.text()
            );
        }
    }
    c.quit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn five_hundred_concurrent_sessions_lose_and_add_nothing() {
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    let proxy = TestProxy::start(CONFIG, upstream.addr()).await.unwrap();
    let start = Arc::new(Barrier::new(SESSIONS));
    let tasks: Vec<_> = (0..SESSIONS)
        .map(|i| tokio::spawn(session(i, proxy.addr(), start.clone())))
        .collect();
    let mut failures = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        if let Err(e) = tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .expect("bounded")
            .unwrap()
        {
            failures.push(format!("session {i}: {e:#}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );

    let expected = (0..SESSIONS).filter(|&i| kind(i) == Kind::Accepted).count();
    let messages = upstream
        .wait_for_messages(expected, Duration::from_secs(30))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let accepted: Vec<_> = upstream
        .messages()
        .into_iter()
        .filter(|m| m.accepted())
        .collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for message in &accepted {
        *seen
            .entry(message.header("Subject").unwrap_or_default())
            .or_default() += 1;
    }
    assert_eq!(
        accepted.len(),
        expected,
        "{} messages reached the upstream",
        messages.len()
    );
    for i in (0..SESSIONS).filter(|&i| kind(i) == Kind::Accepted) {
        assert_eq!(seen.get(&format!("load-{i}")), Some(&1), "message {i}");
    }
    assert!(seen.keys().all(|s| s.starts_with("load-")), "{seen:?}");
    let relayed = upstream
        .sessions()
        .iter()
        .flat_map(|s| s.commands.clone())
        .filter(|c| c.contains("remote.example.net"))
        .count();
    assert_eq!(
        relayed, 0,
        "no relay attempt or smuggled command reached the upstream"
    );
}
