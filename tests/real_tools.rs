//! relaygate between real peers from Debian: `swaks` as the client and
//! Postfix's `smtp-sink` as the upstream; `smtp-source` for a bounded burst.
//! Skipped when the tools are missing, except in CI (RELAYGATE_REQUIRE_TOOLS=1).

use relaygate_tests::proxy::TestProxy;
use relaygate_tests::tools::{SmtpSink, require_tool, run_tool};
use std::time::Duration;

const CONFIG: &str = r#"
[proxy]
upstream = "{upstream}"
hostname = "mx.example.com"
[policy.config]
open_relay_addr_flag = 1
open_relay_addr_list = ["127.0.0.1"]
local_domains = ["example.com"]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn swaks_relays_through_relaygate_into_smtp_sink() {
    let (Some(swaks), Some(smtp_sink)) = (require_tool("swaks"), require_tool("smtp-sink")) else {
        return;
    };
    let mut sink = SmtpSink::start(&smtp_sink).await.unwrap();
    let proxy = TestProxy::start(CONFIG, sink.addr()).await.unwrap();
    let server = proxy.addr().to_string();
    let listed = run_tool(
        &swaks,
        &[
            "--server",
            &server,
            "--local-interface",
            "127.0.0.1",
            "--from",
            "alice@example.com",
            "--to",
            "bob@remote.example.net",
            "--helo",
            "client.example.com",
            "--header",
            "Subject: via relaygate",
        ],
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "swaks failed:\n{out}");
    let messages = sink
        .wait_for_messages(1, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        messages[0].content.contains("Subject: via relaygate"),
        "{:?}",
        messages[0]
    );
    assert!(
        messages[0]
            .rcpt_args
            .iter()
            .any(|r| r.contains("bob@remote.example.net")),
        "{:?}",
        messages[0]
    );

    // From an unlisted address the same relay is refused, and swaks says why.
    let unlisted = run_tool(
        &swaks,
        &[
            "--server",
            &server,
            "--local-interface",
            "127.0.0.5",
            "--from",
            "alice@example.com",
            "--to",
            "bob@remote.example.net",
        ],
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&unlisted.stdout);
    assert!(
        !unlisted.status.success(),
        "relay from an unlisted client succeeded:\n{out}"
    );
    assert!(out.contains("554 5.7.1"), "{out}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sink.messages().len(),
        1,
        "the refused message never reached the sink"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn smtp_source_burst_arrives_complete() {
    let (Some(smtp_source), Some(smtp_sink)) =
        (require_tool("smtp-source"), require_tool("smtp-sink"))
    else {
        return;
    };
    let mut sink = SmtpSink::start(&smtp_sink).await.unwrap();
    let proxy = TestProxy::start(CONFIG, sink.addr()).await.unwrap();
    let output = run_tool(
        &smtp_source,
        &[
            "-s",
            "5",
            "-m",
            "100",
            "-l",
            "2048",
            "-f",
            "load@example.com",
            "-t",
            "sink@remote.example.net",
            "-M",
            "client.example.com",
            &proxy.addr().to_string(),
        ],
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let messages = sink
        .wait_for_messages(100, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(messages.len(), 100);
}
