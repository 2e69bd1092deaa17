//! Hostile and broken peers: connection caps, early talkers, slow clients,
//! session lifetime, graceful shutdown, broken upstreams, and a policy that
//! keeps failing while other sessions go on.

use relaygate_tests::client::SmtpClient;
use relaygate_tests::proxy::{TestProxy, misbehaving_wasm};
use relaygate_tests::upstream::{RecordingUpstream, UpstreamBehaviour};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn config(extra_proxy: &str) -> String {
    format!(
        r#"
[proxy]
upstream = "{{upstream}}"
hostname = "mx.example.com"
upstream_timeout = "2s"
{extra_proxy}
[policy.config]
open_relay_addr_flag = 1
local_domains = ["example.com"]
"#
    )
}

async fn start(extra_proxy: &str) -> (RecordingUpstream, TestProxy) {
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    let proxy = TestProxy::start(&config(extra_proxy), upstream.addr())
        .await
        .unwrap();
    (upstream, proxy)
}

async fn greeting_from(proxy: &TestProxy, from: &str) -> (SmtpClient, u16) {
    let mut c = SmtpClient::connect_from(from.parse().unwrap(), proxy.addr())
        .await
        .unwrap();
    let code = c.read_reply().await.unwrap().code;
    (c, code)
}

#[tokio::test(flavor = "multi_thread")]
async fn one_address_cannot_hold_every_connection() {
    // Loopback is exempt from the cap by default: these tests connect from
    // loopback addresses, so the list is emptied.
    let (_upstream, proxy) = start("max_connections_per_client = 2\nper_client_exempt = []").await;
    let (first, code) = greeting_from(&proxy, "127.0.0.4").await;
    assert_eq!(code, 220);
    let (_second, code) = greeting_from(&proxy, "127.0.0.4").await;
    assert_eq!(code, 220);
    let (mut third, code) = greeting_from(&proxy, "127.0.0.4").await;
    assert_eq!(code, 421);
    assert!(
        third.read_to_close().await.unwrap().is_empty(),
        "closed after the 421"
    );
    let (_other, code) = greeting_from(&proxy, "127.0.0.5").await;
    assert_eq!(code, 220, "other addresses are not affected");
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_again, code) = greeting_from(&proxy, "127.0.0.4").await;
    assert_eq!(code, 220, "a closed connection frees its slot");
}

#[tokio::test(flavor = "multi_thread")]
async fn early_talkers_are_refused() {
    let (_upstream, proxy) = start("early_talker_delay = \"300ms\"").await;
    let mut rude = TcpStream::connect(proxy.addr()).await.unwrap();
    rude.write_all(b"EHLO rude.example\r\n").await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), rude.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("554 5.5.1"), "{answer:?}");
    let started = Instant::now();
    let (_polite, code) = greeting_from(&proxy, "127.0.0.1").await;
    assert_eq!(code, 220);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "greeting waited"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_dripping_a_command_is_dropped() {
    let (_upstream, proxy) = start("command_timeout = \"1s\"").await;
    let (mut c, _) = greeting_from(&proxy, "127.0.0.1").await;
    let started = Instant::now();
    for byte in b"NOOP\r\n" {
        if c.send_raw(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let rest = String::from_utf8_lossy(&c.read_to_close().await.unwrap()).into_owned();
    assert!(rest.starts_with("421 4.4.2"), "{rest:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_have_a_lifetime() {
    let (_upstream, proxy) = start("max_session_duration = \"1s\"").await;
    let (mut c, _) = greeting_from(&proxy, "127.0.0.1").await;
    assert_eq!(c.cmd("NOOP").await.unwrap().code, 250);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let reply = c.cmd("NOOP").await.unwrap();
    assert_eq!(reply.code, 421, "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_lets_the_transaction_finish_then_says_421() {
    let (upstream, mut proxy) = start("shutdown_grace = \"10s\"").await;
    let addr = proxy.addr();
    let (mut c, _) = greeting_from(&proxy, "127.0.0.1").await;
    c.ehlo("client.test").await.unwrap();
    c.start_data("a@example.com", "b@example.com")
        .await
        .unwrap();
    proxy.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // New clients are no longer served.
    let refused = match TcpStream::connect(addr).await {
        Err(_) => true,
        Ok(mut s) => {
            let mut buf = [0u8; 64];
            matches!(
                tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await,
                Ok(Ok(0)) | Ok(Err(_)) | Err(_)
            )
        }
    };
    assert!(refused, "a new connection was greeted during shutdown");
    // The message in flight is delivered...
    let end = c
        .send_content(b"Subject: in flight\r\n\r\nbody")
        .await
        .unwrap();
    assert_eq!(end.code, 250, "{}", end.text());
    upstream
        .wait_for_messages(1, Duration::from_secs(5))
        .await
        .unwrap();
    // ...and the next command is told the service is going away.
    let reply = c.cmd("MAIL FROM:<a@example.com>").await.unwrap();
    assert_eq!(reply.code, 421, "{}", reply.text());
    tokio::time::timeout(Duration::from_secs(10), proxy.stopped())
        .await
        .expect("the proxy stops");
}

/// A "mail server" that answers with whatever `reply` is.
async fn fake_upstream(reply: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.write_all(reply).await;
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_upstreams_give_temporary_failures() {
    for (reply, want) in [
        (&b"HTTP/1.1 400 Bad Request\r\n\r\n"[..], "4.4.0"),
        (b"554 5.3.2 go away\r\n", "4.4.1"),
        (b"220-partial multi-line greeting\r\n", "4.4.1"),
    ] {
        let upstream = fake_upstream(reply).await;
        let proxy = TestProxy::start(&config(""), upstream).await.unwrap();
        let (mut c, _) = greeting_from(&proxy, "127.0.0.1").await;
        c.ehlo("client.test").await.unwrap();
        let answer = c.cmd("MAIL FROM:<a@example.com>").await.unwrap();
        assert_eq!(
            answer.code,
            451,
            "{:?}: {}",
            String::from_utf8_lossy(reply),
            answer.text()
        );
        assert!(
            answer.text().starts_with(want),
            "{:?}: {}",
            String::from_utf8_lossy(reply),
            answer.text()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_looping_policy_does_not_hold_up_other_sessions() {
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    let text = format!(
        "[proxy]\nupstream = \"{{upstream}}\"\n[policy]\nmodule = \"{}\"\ncall_timeout = \"2s\"\n[policy.config]\nrcpt_to = \"loop-if-recipient-contains:loop\"\n",
        misbehaving_wasm().display()
    );
    let proxy = TestProxy::start(&text, upstream.addr()).await.unwrap();
    let (mut stuck, _) = greeting_from(&proxy, "127.0.0.1").await;
    stuck.ehlo("stuck.test").await.unwrap();
    stuck
        .cmd_expect("MAIL FROM:<a@example.com>", 250)
        .await
        .unwrap();
    let started = Instant::now();
    stuck.send("RCPT TO:<loop@example.com>").await.unwrap();
    // Meanwhile another session does a whole transaction.
    let (mut other, _) = greeting_from(&proxy, "127.0.0.1").await;
    other.ehlo("other.test").await.unwrap();
    let t = other
        .send_message("a@example.com", &["b@example.com"], b"Subject: x\r\n\r\nhi")
        .await
        .unwrap();
    assert!(t.accepted());
    let other_done = started.elapsed();
    let stuck_reply = stuck.read_reply().await.unwrap();
    assert_eq!(stuck_reply.code, 451);
    assert!(
        other_done < started.elapsed() && other_done < Duration::from_millis(1500),
        "the other session took {other_done:?} while the loop ran {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_bytes_in_commands() {
    let (upstream, proxy) = start("max_errors = 5").await;
    let (mut c, _) = greeting_from(&proxy, "127.0.0.1").await;
    for bad in [
        &b"HELO a\0b\r\n"[..],
        b"HELO \xff\xfe\r\n",
        b"MAIL FROM:<a@b>\rRCPT TO:<c@d>\r\n",
        b"HELO x\x07\r\n",
    ] {
        c.send_raw(bad).await.unwrap();
        assert_eq!(
            c.read_reply().await.unwrap().code,
            500,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // The fifth error ends the session.
    c.send_raw(b"BOGUS\r\n").await.unwrap();
    assert_eq!(c.read_reply().await.unwrap().code, 421);
    assert!(c.read_to_close().await.unwrap().is_empty());
    assert!(
        upstream
            .sessions()
            .iter()
            .all(|s| s.commands.iter().all(|c| !c.starts_with("MAIL")))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn listed_exempt_clients_pass_the_per_client_cap_and_others_do_not() {
    let (_upstream, proxy) = start(
        "max_connections_per_client = 2\nper_client_exempt = [\"127.0.0.5/32\", \"192.0.2.0/24\"]",
    )
    .await;
    let mut exempt = Vec::new();
    for i in 0..12 {
        let (c, code) = greeting_from(&proxy, "127.0.0.5").await;
        assert_eq!(code, 220, "exempt connection {i}");
        exempt.push(c);
    }
    let (_first, code) = greeting_from(&proxy, "127.0.0.6").await;
    assert_eq!(code, 220);
    let (_second, code) = greeting_from(&proxy, "127.0.0.6").await;
    assert_eq!(code, 220);
    let (_third, code) = greeting_from(&proxy, "127.0.0.6").await;
    assert_eq!(code, 421, "a client outside the list is still capped");
}

#[tokio::test(flavor = "multi_thread")]
async fn loopback_is_exempt_from_the_per_client_cap_by_default() {
    let (_upstream, proxy) = start("max_connections_per_client = 1").await;
    let mut open = Vec::new();
    for i in 0..5 {
        let (c, code) = greeting_from(&proxy, "127.0.0.7").await;
        assert_eq!(code, 220, "connection {i}");
        open.push(c);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_global_cap_still_applies_to_exempt_clients() {
    let (_upstream, proxy) = start(
        "max_connections = 3\nmax_connections_per_client = 1\nper_client_exempt = [\"127.0.0.5/32\"]",
    )
    .await;
    // A connection permit is taken before each accept, so the IPv6
    // listener's idle accept holds one of the three where there is one.
    let served = 3 - usize::from(proxy.addr_v6().is_some());
    let mut open = Vec::new();
    for _ in 0..served {
        let (c, code) = greeting_from(&proxy, "127.0.0.5").await;
        assert_eq!(code, 220);
        open.push(c);
    }
    // The next waits in the backlog: connected, but not served.
    let mut waiting = SmtpClient::connect_from("127.0.0.5".parse().unwrap(), proxy.addr())
        .await
        .unwrap();
    waiting.set_read_timeout(Duration::from_millis(700));
    assert!(
        waiting.read_reply().await.is_err(),
        "served beyond max_connections"
    );
    open.pop().unwrap().quit().await.unwrap();
    waiting.set_read_timeout(Duration::from_secs(10));
    assert_eq!(waiting.read_reply().await.unwrap().code, 220);
}
