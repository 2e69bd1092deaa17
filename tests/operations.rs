//! Operating relaygate: metrics scraped after real sessions, dry-run letting
//! through what enforce refuses, decision traces for a refused recipient,
//! PROXY protocol v1 and v2 (and refused where not configured), readiness.

use relaygate_tests::admin::http;
use relaygate_tests::client::SmtpClient;
use relaygate_tests::logs::captured_json_logs;
use relaygate_tests::proxy::TestProxy;
use relaygate_tests::upstream::{RecordingUpstream, UpstreamBehaviour};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(extra_policy: &str, extra_proxy: &str) -> String {
    format!(
        r#"
[proxy]
upstream = "{{upstream}}"
{extra_proxy}
[policy]
{extra_policy}
[admin]
listen = "127.0.0.1:0"
[policy.config]
open_relay_addr_flag = 1
open_relay_addr_list = ["127.0.0.2", "192.0.2.7", "2001:db8::7"]
local_domains = ["example.com"]
"#
    )
}

async fn start(extra_policy: &str, extra_proxy: &str) -> (RecordingUpstream, TestProxy) {
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    let proxy = TestProxy::start(&config(extra_policy, extra_proxy), upstream.addr())
        .await
        .unwrap();
    (upstream, proxy)
}

/// RCPT reply code for a remote recipient from `from`, after a whole
/// transaction attempt (DATA when the recipient is accepted).
async fn relay_from(proxy: &TestProxy, from: &str) -> u16 {
    let mut c = SmtpClient::connect_from(from.parse().unwrap(), proxy.addr())
        .await
        .unwrap();
    c.read_reply().await.unwrap();
    c.ehlo("client.test").await.unwrap();
    let t = c
        .send_message(
            "a@example.com",
            &["x@remote.example.net"],
            b"Subject: hi\r\n\r\nbody",
        )
        .await
        .unwrap();
    c.quit().await.unwrap();
    t.rcpts[0].code
}

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(name_and_labels))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name_and_labels} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_real_sessions() {
    let (_upstream, proxy) = start("", "").await;
    let admin = proxy.admin_addr().unwrap();
    assert_eq!(http(admin, "GET", "/readyz").await.unwrap().0, 200);
    assert_eq!(relay_from(&proxy, "127.0.0.2").await, 250);
    assert_eq!(relay_from(&proxy, "127.0.0.3").await, 554);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (code, text) = http(admin, "GET", "/metrics").await.unwrap();
    assert_eq!(code, 200);
    assert!(metric(&text, "relaygate_connections_total") >= 2.0);
    assert_eq!(
        metric(&text, "relaygate_transactions_total{kind=\"delivered\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "relaygate_transactions_total{kind=\"abandoned\"}"),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "relaygate_policy_calls_total{hook=\"rcpt-to\",verdict=\"reject\",module=\"policy\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "relaygate_policy_calls_total{hook=\"rcpt-to\",verdict=\"accept\",module=\"policy\"}"
        ),
        1.0
    );
    assert!(metric(&text, "relaygate_policy_call_seconds_count") >= 8.0);
    assert_eq!(metric(&text, "relaygate_sessions_active"), 0.0);
    // The upstream's address may label its series (the config bounds
    // those); a client's never may.
    for client in ["127.0.0.2", "127.0.0.3"] {
        assert!(!text.contains(client), "no per-client labels:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_lets_through_what_enforce_refuses() {
    let (upstream, enforcing) = start("", "").await;
    assert_eq!(relay_from(&enforcing, "127.0.0.3").await, 554);
    let dry = TestProxy::start(&config("mode = \"dry-run\"", ""), upstream.addr())
        .await
        .unwrap();
    assert_eq!(relay_from(&dry, "127.0.0.3").await, 250);
    let messages = upstream
        .wait_for_messages(1, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(messages[0].recipients, ["x@remote.example.net"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_recipient_leaves_a_decision_trace_and_a_transaction_line() {
    let logs = captured_json_logs();
    let (_upstream, proxy) = start("trace_clients = [\"127.0.0.3/32\"]", "").await;
    assert_eq!(relay_from(&proxy, "127.0.0.3").await, 554);
    assert_eq!(relay_from(&proxy, "127.0.0.2").await, 250, "not traced");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON log line"))
        .collect();
    let traces: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["target"] == "relaygate::trace")
        .collect();
    let rejected = traces
        .iter()
        .find(|e| e["fields"]["hook"] == "rcpt-to")
        .unwrap_or_else(|| panic!("no rcpt-to trace in {traces:?}"));
    assert_eq!(rejected["fields"]["verdict"], "reject");
    assert!(
        rejected["fields"]["reply"]
            .as_str()
            .unwrap()
            .contains("554 5.7.1"),
        "{rejected}"
    );
    assert!(
        rejected["fields"]["request"]
            .as_str()
            .unwrap()
            .contains("x@remote.example.net")
    );
    assert!(rejected["fields"]["digest"].as_str().unwrap().len() == 64);
    assert!(
        traces.iter().all(|e| e["fields"]["client"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.3:")),
        "only the traced client"
    );
    let transactions: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["fields"]["message"] == "transaction")
        .collect();
    assert!(
        transactions
            .iter()
            .any(|e| e["fields"]["outcome"] == "delivered"),
        "{transactions:?}"
    );
    assert!(!text.contains("Subject: hi"), "bodies never reach the logs");
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_protocol_headers_name_the_client_where_configured() {
    let (upstream, proxy) = start("", "proxy_protocol_listen = [\"127.0.0.1:0\"]").await;
    let behind = proxy.proxy_protocol_addr().unwrap();
    let v1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 5555 25\r\n".to_vec();
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend_from_slice(&[0x21, 0x21, 0, 36]); // v2, PROXY, TCP over IPv6, 36 bytes
    v2.extend_from_slice(
        &"2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    v2.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    v2.extend_from_slice(&[0x15, 0xb3, 0, 25]);
    for header in [v1.clone(), v2] {
        let mut stream = tokio::net::TcpStream::connect(behind).await.unwrap();
        stream.write_all(&header).await.unwrap();
        let mut c = SmtpClient::from_stream(stream);
        assert_eq!(c.read_reply().await.unwrap().code, 220);
        c.ehlo("client.test").await.unwrap();
        c.cmd_expect("MAIL FROM:<a@example.com>", 250)
            .await
            .unwrap();
        assert_eq!(
            c.cmd("RCPT TO:<x@remote.example.net>").await.unwrap().code,
            250,
            "the listed address from the header relays"
        );
        c.quit().await.unwrap();
    }
    // Without a header the load-balanced listener hangs up.
    let mut bare = tokio::net::TcpStream::connect(behind).await.unwrap();
    bare.write_all(b"EHLO sneaky.test\r\n").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), bare.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(
        read.is_err() || buf.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    // On a plain listener a PROXY header is just a bad command, and the
    // client stays what the socket says.
    let mut c = SmtpClient::connect_from("127.0.0.3".parse().unwrap(), proxy.addr())
        .await
        .unwrap();
    c.read_reply().await.unwrap();
    assert_eq!(
        c.cmd(std::str::from_utf8(&v1[..v1.len() - 2]).unwrap())
            .await
            .unwrap()
            .code,
        500
    );
    c.ehlo("client.test").await.unwrap();
    c.cmd_expect("MAIL FROM:<a@example.com>", 250)
        .await
        .unwrap();
    assert_eq!(
        c.cmd("RCPT TO:<x@remote.example.net>").await.unwrap().code,
        554
    );
    drop(upstream);
}
