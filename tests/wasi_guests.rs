//! A policy that imports WASI, served by the real proxy over SMTP: it gets
//! WASI with no capabilities (its connect hook probes files, environment,
//! stdin, name lookups and sockets, and refuses the session if it reached
//! any), mail flows through it, and the call timeout still stops it.

use relaygate_tests::client::SmtpClient;
use relaygate_tests::proxy::TestProxy;
use relaygate_tests::upstream::{RecordingUpstream, UpstreamBehaviour};
use std::path::PathBuf;

fn wasi_probe() -> PathBuf {
    relaygate_tests::policies::repository_root().join("tests/fixtures/wasi-probe.wasm")
}

fn config() -> String {
    format!(
        r#"
[proxy]
upstream = "{{upstream}}"
[policy]
module = "{}"
call_timeout = "1s"
memory_limit = 16777216
"#,
        wasi_probe().display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasi_guest_reaches_nothing_and_relays_mail() {
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    let proxy = TestProxy::start(&config(), upstream.addr()).await.unwrap();

    let mut c = SmtpClient::connect(proxy.addr()).await.unwrap();
    let greeting = c.read_reply().await.unwrap();
    // A 554 here would name what the guest could reach.
    assert_eq!(greeting.code, 220, "{}", greeting.text());
    c.ehlo("client.test").await.unwrap();
    let reply = c
        .send_message(
            "a@example.com",
            &["b@example.org"],
            b"Subject: hi\r\n\r\nhello\r\n",
        )
        .await
        .unwrap();
    assert!(reply.accepted(), "{:?}", reply.last_reply().text());
    c.quit().await.unwrap();
    assert_eq!(upstream.messages().len(), 1);

    // An endless loop in a WASI guest is stopped like any other: 451 4.3.0.
    let mut c = SmtpClient::connect(proxy.addr()).await.unwrap();
    assert_eq!(c.read_reply().await.unwrap().code, 220);
    let reply = c.cmd("EHLO loop").await.unwrap();
    assert_eq!(reply.code, 451, "{}", reply.text());
    assert!(reply.text().starts_with("4.3.0"), "{}", reply.text());
}
