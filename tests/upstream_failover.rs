//! Several upstream servers (`[proxy] upstream` then `upstream_fallbacks`)
//! through the running proxy: mail goes to the first server that answers
//! while the ones before are down, each down server counted and shown on
//! `/metrics`; the client gets 451 only when none answers, never a 250; and
//! a primary that recovers takes mail again after a health check, well
//! before its back-off ends.

use relaygate_tests::admin;
use relaygate_tests::client::SmtpClient;
use relaygate_tests::proxy::TestProxy;
use relaygate_tests::upstream::{RecordingUpstream, UpstreamBehaviour};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(10);

/// The proxy with `upstream` first and `fallbacks` after it.
async fn proxy(upstream: SocketAddr, fallbacks: &[SocketAddr], extra: &str) -> TestProxy {
    let fallbacks: Vec<String> = fallbacks.iter().map(|a| format!("\"{a}\"")).collect();
    let config = format!(
        r#"
[proxy]
upstream = "{{upstream}}"
upstream_fallbacks = [{fallbacks}]
hostname = "mx.example.com"
upstream_timeout = "5s"
{extra}

[admin]
listen = "127.0.0.1:0"

[policy.config]
open_relay_addr_flag = 1
open_relay_addr_list = []
local_domains = ["example.com"]
"#,
        fallbacks = fallbacks.join(", ")
    );
    TestProxy::start(&config, upstream).await.unwrap()
}

/// A loopback port nothing listens on (connections are refused).
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// One message; the replies to MAIL and to the end of data.
async fn send(proxy: &TestProxy, subject: &str) -> (u16, Option<u16>) {
    let sent = SmtpClient::one_message_session(
        "127.0.0.2".parse().unwrap(),
        proxy.addr(),
        "client.test",
        "sender@example.com",
        &["bob@example.com"],
        format!("Subject: {subject}\r\n\r\nhello\r\n").as_bytes(),
    )
    .await
    .unwrap();
    (sent.mail.code, sent.end.map(|end| end.code))
}

async fn metric(proxy: &TestProxy, series: &str) -> u64 {
    admin::metric(proxy.admin_addr().unwrap(), series).await
}

#[tokio::test(flavor = "multi_thread")]
async fn mail_goes_to_the_first_server_that_answers() {
    let (first, second) = (closed_port().await, closed_port().await);
    let third = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    let proxy = proxy(first, &[second, third.addr()], "").await;
    for round in 0..3 {
        assert_eq!(
            send(&proxy, &format!("round {round}")).await,
            (250, Some(250))
        );
    }
    assert_eq!(third.wait_for_messages(3, WAIT).await.unwrap().len(), 3);
    for down in [first, second] {
        assert_eq!(
            metric(
                &proxy,
                &format!("relaygate_upstream_up{{upstream=\"{down}\"}}")
            )
            .await,
            0
        );
        // Marked once: later sessions skip it during its back-off.
        assert_eq!(
            metric(
                &proxy,
                &format!("relaygate_upstream_marked_down_total{{upstream=\"{down}\"}}")
            )
            .await,
            1
        );
    }
    let up = third.addr();
    assert_eq!(
        metric(
            &proxy,
            &format!("relaygate_upstream_up{{upstream=\"{up}\"}}")
        )
        .await,
        1
    );
    assert!(
        metric(
            &proxy,
            &format!("relaygate_upstream_server_connections_total{{upstream=\"{up}\"}}")
        )
        .await
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn when_no_server_answers_the_client_gets_451_and_never_250() {
    let proxy = proxy(closed_port().await, &[closed_port().await], "").await;
    for round in 0..3 {
        // Every server is down: each session tries them all again.
        assert_eq!(send(&proxy, &format!("round {round}")).await, (451, None));
    }
}

/// An upstream that answers its greeting with 421 while `up` is false, and
/// accepts mail while it is true; counts the messages it accepted.
async fn switchable_upstream(up: Arc<AtomicBool>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let messages = Arc::new(AtomicUsize::new(0));
    let counted = messages.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (up, messages) = (up.clone(), counted.clone());
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                if !up.load(Ordering::SeqCst) {
                    return write.write_all(b"421 down for maintenance\r\n").await;
                }
                write.write_all(b"220 primary.test\r\n").await?;
                let mut lines = BufReader::new(read).lines();
                while let Some(line) = lines.next_line().await? {
                    let verb = line.get(..4).unwrap_or(&line).to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "DATA" => {
                            write.write_all(b"354 go ahead\r\n").await?;
                            while let Some(data) = lines.next_line().await? {
                                if data == "." {
                                    break;
                                }
                            }
                            messages.fetch_add(1, Ordering::SeqCst);
                            b"250 queued\r\n"
                        }
                        "QUIT" => {
                            return write.write_all(b"221 bye\r\n").await;
                        }
                        _ => b"250 ok\r\n",
                    };
                    write.write_all(reply).await?;
                }
                Ok::<_, std::io::Error>(())
            });
        }
    });
    (addr, messages)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recovered_primary_takes_mail_again_after_a_health_check() {
    let primary_up = Arc::new(AtomicBool::new(false));
    let (primary, primary_messages) = switchable_upstream(primary_up.clone()).await;
    let fallback = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    // A back-off far longer than the test: only a health check can bring
    // the primary back.
    let proxy = proxy(
        primary,
        &[fallback.addr()],
        "upstream_back_off = \"1h\"\nupstream_health_interval = \"200ms\"",
    )
    .await;
    assert_eq!(send(&proxy, "while down").await, (250, Some(250)));
    assert_eq!(fallback.wait_for_messages(1, WAIT).await.unwrap().len(), 1);
    assert_eq!(primary_messages.load(Ordering::SeqCst), 0);
    let up_series = format!("relaygate_upstream_up{{upstream=\"{primary}\"}}");
    assert_eq!(metric(&proxy, &up_series).await, 0);

    primary_up.store(true, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + WAIT;
    while metric(&proxy, &up_series).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "primary never up again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(send(&proxy, "after recovery").await, (250, Some(250)));
    assert_eq!(
        primary_messages.load(Ordering::SeqCst),
        1,
        "the primary took the message, not the fallback's kept connection"
    );
    assert_eq!(fallback.messages().len(), 1);
}
