//! Hostile peers at the I/O level: every write has a deadline (a client that
//! never reads its replies, an upstream that stops reading mid-message);
//! relay probing and directory harvesting meet Postfix's error limits (every
//! refused command counts, replies past the soft limit are slowed down, the
//! hard limit closes with 421 4.7.0, and an upstream that closes on its own
//! error limit is never silently replaced by a fresh connection); and bytes
//! that come in with a PROXY protocol header are judged like any other talk
//! before the greeting.

use relaygate_tests::admin::{self, http};
use relaygate_tests::client::SmtpClient;
use relaygate_tests::proxy::TestProxy;
use relaygate_tests::upstream::{RecordingUpstream, UpstreamBehaviour};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

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

/// The value of one series of the proxy's `/metrics`.
async fn metric(proxy: &TestProxy, series: &str) -> u64 {
    admin::metric(proxy.admin_addr().unwrap(), series).await
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

#[tokio::test(flavor = "multi_thread")]
async fn recipients_over_max_recipients_are_flow_control_not_errors() {
    let (upstream, proxy) = start(
        UpstreamBehaviour::default(),
        "max_recipients = 2\nmax_errors = 5",
    )
    .await;
    let mut c = greeted(proxy.addr(), "127.0.0.2").await;
    let rcpts: Vec<String> = (0..12).map(|i| format!("r{i}@example.com")).collect();
    let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    let t = c
        .send_message("a@example.com", &rcpts, b"Subject: list\r\n\r\nhi")
        .await
        .unwrap();
    let codes: Vec<u16> = t.rcpts.iter().map(|r| r.code).collect();
    assert_eq!(codes[..2], [250, 250]);
    assert!(codes[2..].iter().all(|&code| code == 452), "{codes:?}");
    assert!(t.accepted(), "ten 452s did not reach max_errors = 5: {t:?}");
    c.quit().await.unwrap();
    upstream
        .wait_for_messages(1, Duration::from_secs(5))
        .await
        .unwrap();
}
