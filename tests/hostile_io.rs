//! Peers that stop reading, and early talkers behind a load balancer: every
//! write has a deadline (a client that never reads its replies, an upstream
//! that stops reading mid-message), and bytes that come in with a PROXY
//! protocol header are judged like any other talk before the greeting.

use relaygate_tests::admin::http;
use relaygate_tests::client::SmtpClient;
use relaygate_tests::proxy::TestProxy;
use relaygate_tests::upstream::{RecordingUpstream, UpstreamBehaviour};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

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

/// The value of one line of `/metrics` (0 when the series does not exist yet).
async fn metric(proxy: &TestProxy, series: &str) -> u64 {
    let (code, text) = http(proxy.admin_addr().unwrap(), "GET", "/metrics")
        .await
        .unwrap();
    assert_eq!(code, 200);
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Connect with a small receive buffer, then pipeline NOOPs as fast as the proxy
/// takes them without ever reading a reply. Returns how long until the proxy
/// dropped the connection (a write fails), or None if it still holds it after
/// `give_up`.
async fn pipeline_without_reading(server: SocketAddr, give_up: Duration) -> Option<Duration> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(server).await.unwrap();
    let burst = b"NOOP\r\n".repeat(10_000);
    let started = Instant::now();
    let written = tokio::time::timeout(give_up, async {
        while stream.write_all(&burst).await.is_ok() {}
    })
    .await;
    written.ok().map(|()| started.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_that_never_read_their_replies_are_dropped_at_the_command_timeout() {
    let (_upstream, proxy) = start(UpstreamBehaviour::default(), "command_timeout = \"1s\"").await;
    let addr = proxy.addr();
    let hogs: Vec<_> = (0..4)
        .map(|_| tokio::spawn(pipeline_without_reading(addr, Duration::from_secs(30))))
        .collect();
    // Meanwhile a client that reads is served as usual.
    let mut polite = SmtpClient::connect(addr).await.unwrap();
    assert_eq!(polite.read_reply().await.unwrap().code, 220);
    polite.ehlo("polite.test").await.unwrap();
    while !hogs.iter().all(tokio::task::JoinHandle::is_finished) {
        assert_eq!(polite.cmd("NOOP").await.unwrap().code, 250);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for hog in hogs {
        let held = hog.await.unwrap();
        // Without a write deadline the session lasts max_session_duration +
        // data_timeout (over an hour); with it, the command timeout after the
        // buffers fill, plus however long filling them took.
        let held = held.expect("the proxy still held a client that never reads after 30s");
        assert!(held < Duration::from_secs(20), "{held:?}");
    }
    assert_eq!(polite.cmd("NOOP").await.unwrap().code, 250);
    assert_eq!(
        metric(&proxy, "relaygate_write_timeouts_total{kind=\"client\"}").await,
        4
    );
    polite.quit().await.unwrap();
    let mut active = u64::MAX;
    for _ in 0..50 {
        active = metric(&proxy, "relaygate_sessions_active").await;
        if active == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(active, 0, "every session ended");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_stops_reading_mid_message_ends_the_session_with_a_4xx() {
    let (upstream, proxy) = start(
        UpstreamBehaviour::default().stall_mid_message(64 * 1024),
        "upstream_timeout = \"1s\"",
    )
    .await;
    let mut c = SmtpClient::connect(proxy.addr()).await.unwrap();
    assert_eq!(c.read_reply().await.unwrap().code, 220);
    c.ehlo("client.test").await.unwrap();
    c.start_data("a@example.com", "b@example.com")
        .await
        .unwrap();
    // Far more than the socket buffers between the proxy and the upstream hold.
    let mut content = b"Subject: big\r\n\r\n".to_vec();
    content.extend_from_slice(format!("{}\r\n", "y".repeat(998)).repeat(24_000).as_bytes());
    let started = Instant::now();
    let end = c.send_content(&content).await.unwrap();
    let took = started.elapsed();
    assert_eq!(end.code, 421, "{}", end.text());
    assert!(
        end.text().starts_with("4.4.2"),
        "a timeout, never a false 250: {}",
        end.text()
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(15),
        "{took:?}"
    );
    assert!(
        c.read_to_close().await.unwrap().is_empty(),
        "the session ends after the 421"
    );
    assert_eq!(
        metric(&proxy, "relaygate_write_timeouts_total{kind=\"upstream\"}").await,
        1
    );
    assert!(upstream.messages().is_empty(), "{:?}", upstream.messages());
}

/// A PROXY protocol v1 header for a client at 192.0.2.7.
const V1_HEADER: &[u8] = b"PROXY TCP4 192.0.2.7 198.51.100.1 5555 25\r\n";

/// The same in v2's binary form.
fn v2_header() -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12]); // v2 PROXY, TCP over IPv4, 12 bytes
    header.extend_from_slice(&[192, 0, 2, 7, 198, 51, 100, 1, 0x15, 0xb3, 0, 25]);
    header
}

#[tokio::test(flavor = "multi_thread")]
async fn early_talk_that_arrives_with_the_proxy_header_is_refused() {
    let (_upstream, proxy) = start(
        UpstreamBehaviour::default(),
        "proxy_protocol_listen = [\"127.0.0.1:0\"]\nearly_talker_delay = \"300ms\"",
    )
    .await;
    let addr = proxy.proxy_protocol_addr().unwrap();
    let rude = |header: Vec<u8>| async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // One write: the header and the client's first command in one segment.
        stream
            .write_all(&[header, b"EHLO rude.example\r\n".to_vec()].concat())
            .await
            .unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
            .await
            .expect("the proxy closes the connection")
            .unwrap();
        answer
    };
    let polite = |header: Vec<u8>| async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(&header).await.unwrap();
        let mut c = SmtpClient::from_stream(stream);
        let started = Instant::now();
        let greeting = c.read_reply().await.unwrap();
        assert_eq!(greeting.code, 220, "{}", greeting.text());
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "greeting waited"
        );
        c.ehlo("polite.example").await.unwrap();
        c.quit().await.unwrap();
    };
    // Several at once, rude and polite, v1 and v2.
    let mut rude_ones = Vec::new();
    let mut polite_ones = Vec::new();
    for _ in 0..3 {
        rude_ones.push(tokio::spawn(rude(V1_HEADER.to_vec())));
        rude_ones.push(tokio::spawn(rude(v2_header())));
        polite_ones.push(tokio::spawn(polite(V1_HEADER.to_vec())));
        polite_ones.push(tokio::spawn(polite(v2_header())));
    }
    for answer in rude_ones {
        let answer = answer.await.unwrap();
        assert!(answer.starts_with("554 5.5.1"), "{answer:?}");
        assert!(!answer.contains("220"), "never greeted: {answer:?}");
    }
    for done in polite_ones {
        done.await.unwrap();
    }
}
