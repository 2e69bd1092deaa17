//! Upstream connection reuse (`[upstream_pool]`) through the running proxy:
//! many interleaved clients, some authenticated, each reach the upstream as
//! themselves (XCLIENT address, port, HELO and login, never a previous
//! client's); a transaction left open is reset before the next client; the
//! pool's limits (messages, idle time, idle count) close connections as
//! configured; a kept connection the upstream closed is replaced without the
//! client noticing; `enabled = false` opens one connection per session; and a
//! real Postfix records each of many interleaved clients as itself.

use relaygate_tests::admin;
use relaygate_tests::client::SmtpClient;
use relaygate_tests::postfix::Postfix;
use relaygate_tests::proxy::TestProxy;
use relaygate_tests::tools::{REQUIRE_TOOLS_ENV, require_tool};
use relaygate_tests::upstream::{Extension, RecordingUpstream, UpstreamBehaviour};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const USER: &str = "alice";
const PASSWORD: &str = "pool-s3cret";
const WAIT: Duration = Duration::from_secs(10);

/// Local recipients only (no relaying needed), AUTH offered in clear, the
/// admin endpoint for the pool's metrics, and `pool` as `[upstream_pool]`.
fn config(users: &Path, pool: &str) -> String {
    format!(
        r#"
[proxy]
upstream = "{{upstream}}"
hostname = "mx.example.com"
upstream_timeout = "5s"

[admin]
listen = "127.0.0.1:0"

[policy.config]
open_relay_addr_flag = 1
open_relay_addr_list = []
smtp_plain_login_flag = 1
local_domains = ["example.com"]

[auth]
backend = "file"
users_file = {users:?}
require_tls = false

[upstream_pool]
{pool}
"#,
        users = users.display().to_string(),
    )
}

struct Setup {
    proxy: TestProxy,
    upstream: RecordingUpstream,
    _dir: tempfile::TempDir,
}

async fn start(behaviour: UpstreamBehaviour, pool: &str) -> Setup {
    let upstream = RecordingUpstream::start(behaviour).await.unwrap();
    let (proxy, dir) = proxy_for(upstream.addr(), pool).await;
    Setup {
        proxy,
        upstream,
        _dir: dir,
    }
}

/// The proxy of [`config`] in front of `upstream`, and the folder of its
/// users file (keep it while the proxy runs).
async fn proxy_for(upstream: SocketAddr, pool: &str) -> (TestProxy, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    std::fs::write(&users, format!("{USER}:{hash}\n")).unwrap();
    let proxy = TestProxy::start(&config(&users, pool), upstream)
        .await
        .unwrap();
    (proxy, dir)
}

fn with_xclient() -> UpstreamBehaviour {
    UpstreamBehaviour::default().with(Extension::Xclient)
}

/// The value of one series of the proxy's `/metrics`.
async fn metric(proxy: &TestProxy, series: &str) -> u64 {
    admin::metric(proxy.admin_addr().unwrap(), series).await
}

async fn opened(proxy: &TestProxy) -> u64 {
    metric(
        proxy,
        "relaygate_upstream_connections_total{kind=\"opened\"}",
    )
    .await
}

async fn reused(proxy: &TestProxy) -> u64 {
    metric(
        proxy,
        "relaygate_upstream_connections_total{kind=\"reused\"}",
    )
    .await
}

async fn discarded(proxy: &TestProxy, reason: &str) -> u64 {
    metric(
        proxy,
        &format!("relaygate_upstream_pool_discards_total{{reason=\"{reason}\"}}"),
    )
    .await
}

/// One session from `from`: EHLO `helo`, AUTH when `login`, one message with
/// `subject`, QUIT. Returns the client's own address (port included).
async fn one_message(
    proxy: SocketAddr,
    from: IpAddr,
    helo: &str,
    login: bool,
    subject: &str,
) -> SocketAddr {
    let mut c = SmtpClient::connect_from(from, proxy).await.unwrap();
    assert_eq!(c.read_reply().await.unwrap().code, 220);
    let local = c.local_addr().unwrap();
    c.ehlo(helo).await.unwrap();
    if login {
        assert_eq!(c.auth_plain(USER, PASSWORD).await.unwrap().code, 235);
    }
    let sent = c
        .send_message(
            "sender@example.com",
            &["bob@example.com"],
            format!("Subject: {subject}\r\n\r\nhello\r\n").as_bytes(),
        )
        .await
        .unwrap();
    assert!(sent.accepted(), "{subject}: {sent:?}");
    c.quit().await.unwrap();
    local
}

/// Wait until no session is open: the proxy answers QUIT before its session
/// has given its upstream connection back, so a test that wants the next
/// session to find it kept waits for this first.
async fn sessions_ended(proxy: &TestProxy) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while metric(proxy, "relaygate_sessions_active").await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sessions never ended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// [`one_message`] from 127.0.0.2, then [`sessions_ended`].
async fn message_then_wait(proxy: &TestProxy, subject: &str) {
    one_message(
        proxy.addr(),
        "127.0.0.2".parse().unwrap(),
        "client.test",
        false,
        subject,
    )
    .await;
    sessions_ended(proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interleaved_clients_each_reach_the_upstream_as_themselves() {
    let setup = start(with_xclient(), "max_idle = 4").await;
    const CLIENTS: usize = 24;
    const ROUNDS: usize = 4;
    let proxy = setup.proxy.addr();
    // What each message must carry: address, port, HELO and login of the
    // session that sent it.
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        tasks.push(tokio::spawn(async move {
            let from: IpAddr = format!("127.0.0.{}", 10 + client).parse().unwrap();
            let mut expected = Vec::new();
            for round in 0..ROUNDS {
                // Authenticated and anonymous sessions alternate differently
                // per client, so kept connections pass between both kinds.
                let login = (client + round) % 3 == 0;
                let helo = format!("c{client}-r{round}.test");
                let subject = format!("c{client} r{round}");
                let local = one_message(proxy, from, &helo, login, &subject).await;
                expected.push((subject, local, helo, login));
            }
            expected
        }));
    }
    let mut expected = Vec::new();
    for task in tasks {
        expected.extend(task.await.unwrap());
    }
    let messages = setup
        .upstream
        .wait_for_messages(CLIENTS * ROUNDS, WAIT)
        .await
        .unwrap();
    let by_subject: BTreeMap<String, BTreeMap<String, String>> = messages
        .iter()
        .map(|m| (m.header("Subject").unwrap(), m.xclient.clone()))
        .collect();
    assert_eq!(by_subject.len(), CLIENTS * ROUNDS, "each message once");
    for (subject, local, helo, login) in expected {
        let xclient = &by_subject[&subject];
        let attribute = |name: &str| xclient.get(name).map(String::as_str);
        assert_eq!(
            attribute("ADDR"),
            Some(local.ip().to_string().as_str()),
            "{subject}"
        );
        assert_eq!(
            attribute("PORT"),
            Some(local.port().to_string().as_str()),
            "{subject}"
        );
        assert_eq!(attribute("HELO"), Some(helo.as_str()), "{subject}");
        if login {
            assert_eq!(attribute("LOGIN"), Some(USER), "{subject}");
        } else {
            assert!(
                matches!(attribute("LOGIN"), None | Some("[UNAVAILABLE]")),
                "{subject} is anonymous but the upstream holds {:?}",
                attribute("LOGIN")
            );
        }
    }
    assert!(
        setup.upstream.violations().is_empty(),
        "{:?}",
        setup.upstream.violations()
    );
    let (opened, reused) = (opened(&setup.proxy).await, reused(&setup.proxy).await);
    assert_eq!(
        opened + reused,
        (CLIENTS * ROUNDS) as u64,
        "one connection handed to each session"
    );
    assert!(
        reused > 0,
        "sessions took kept connections ({opened} opened)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_left_open_is_reset_before_the_next_client() {
    let setup = start(with_xclient(), "").await;
    let mut first = SmtpClient::connect_from("127.0.0.2".parse().unwrap(), setup.proxy.addr())
        .await
        .unwrap();
    first.read_reply().await.unwrap();
    first.ehlo("first.test").await.unwrap();
    first
        .cmd_expect("MAIL FROM:<left@example.com>", 250)
        .await
        .unwrap();
    first
        .cmd_expect("RCPT TO:<bob@example.com>", 250)
        .await
        .unwrap();
    first.quit().await.unwrap();
    sessions_ended(&setup.proxy).await;
    one_message(
        setup.proxy.addr(),
        "127.0.0.3".parse().unwrap(),
        "second.test",
        false,
        "second",
    )
    .await;
    let messages = setup.upstream.wait_for_messages(1, WAIT).await.unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].sender, "sender@example.com");
    assert_eq!(
        messages[0].xclient.get("ADDR").map(String::as_str),
        Some("127.0.0.3")
    );
    assert!(
        setup.upstream.violations().is_empty(),
        "{:?}",
        setup.upstream.violations()
    );
    assert_eq!(reused(&setup.proxy).await, 1);
    let reused_session = &setup.upstream.sessions()[messages[0].session];
    let commands = &reused_session.commands;
    let rset = commands.iter().position(|c| c == "RSET");
    let second_xclient = commands
        .iter()
        .rposition(|c| c.starts_with("XCLIENT"))
        .unwrap();
    assert!(
        rset.is_some_and(|rset| rset < second_xclient),
        "RSET before the next XCLIENT: {commands:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_closes_after_max_messages() {
    let setup = start(with_xclient(), "max_messages = 2").await;
    for round in 0..5 {
        message_then_wait(&setup.proxy, &format!("round {round}")).await;
    }
    setup.upstream.wait_for_messages(5, WAIT).await.unwrap();
    assert_eq!(opened(&setup.proxy).await, 3);
    assert_eq!(reused(&setup.proxy).await, 2);
    assert_eq!(discarded(&setup.proxy, "messages").await, 2);
    let per_connection: BTreeMap<usize, usize> =
        setup
            .upstream
            .messages()
            .iter()
            .fold(BTreeMap::new(), |mut counts, m| {
                *counts.entry(m.session).or_default() += 1;
                counts
            });
    assert!(
        per_connection.values().all(|&n| n <= 2),
        "{per_connection:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_connection_past_max_idle_time_is_closed_not_reused() {
    let setup = start(with_xclient(), "max_idle_time = \"300ms\"").await;
    message_then_wait(&setup.proxy, "before").await;
    // The sweeper closes it (politely: the upstream sees QUIT).
    let first = setup.upstream.messages()[0].session;
    setup
        .upstream
        .wait_until(WAIT, |log| log.sessions[first].closed)
        .await
        .unwrap();
    assert_eq!(
        setup.upstream.sessions()[first]
            .commands
            .last()
            .map(String::as_str),
        Some("QUIT")
    );
    message_then_wait(&setup.proxy, "after").await;
    assert_eq!(opened(&setup.proxy).await, 2);
    assert_eq!(reused(&setup.proxy).await, 0);
    assert_eq!(discarded(&setup.proxy, "idle_time").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_more_than_max_idle_connections_are_kept() {
    let setup = start(with_xclient(), "max_idle = 2").await;
    const SESSIONS: usize = 6;
    // Six sessions hold a connection each at once, then all end.
    let mut clients = Vec::new();
    for i in 0..SESSIONS {
        let mut c = SmtpClient::connect_from(
            format!("127.0.0.{}", 2 + i).parse().unwrap(),
            setup.proxy.addr(),
        )
        .await
        .unwrap();
        c.read_reply().await.unwrap();
        c.ehlo("client.test").await.unwrap();
        c.cmd_expect("MAIL FROM:<a@example.com>", 250)
            .await
            .unwrap();
        clients.push(c);
    }
    assert_eq!(opened(&setup.proxy).await, SESSIONS as u64);
    for mut c in clients {
        c.cmd_expect("RSET", 250).await.unwrap();
        c.quit().await.unwrap();
    }
    let full = || async { discarded(&setup.proxy, "full").await };
    let deadline = tokio::time::Instant::now() + WAIT;
    while full().await < (SESSIONS - 2) as u64 {
        assert!(tokio::time::Instant::now() < deadline, "evictions counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(full().await, (SESSIONS - 2) as u64);
    assert_eq!(
        metric(&setup.proxy, "relaygate_upstream_pool_idle").await,
        2
    );
    // The evicted ones were closed; the upstream holds only the kept two.
    let log = setup
        .upstream
        .wait_until(WAIT, |log| {
            log.sessions
                .iter()
                .filter(|s| s.commands.iter().any(|c| c.starts_with("MAIL")) && !s.closed)
                .count()
                == 2
        })
        .await;
    assert!(log.is_ok(), "{:?}", setup.upstream.sessions());
}

#[tokio::test(flavor = "multi_thread")]
async fn disabled_pool_opens_one_connection_per_session() {
    let setup = start(with_xclient(), "enabled = false").await;
    for round in 0..3 {
        message_then_wait(&setup.proxy, &format!("round {round}")).await;
    }
    let messages = setup.upstream.wait_for_messages(3, WAIT).await.unwrap();
    let sessions: std::collections::BTreeSet<_> = messages.iter().map(|m| m.session).collect();
    assert_eq!(sessions.len(), 3);
    assert_eq!(opened(&setup.proxy).await, 3);
    assert_eq!(reused(&setup.proxy).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_xclient_a_kept_connection_starts_over_with_rset() {
    let setup = start(UpstreamBehaviour::default(), "").await;
    for round in 0..3 {
        one_message(
            setup.proxy.addr(),
            format!("127.0.0.{}", 2 + round).parse().unwrap(),
            "client.test",
            false,
            &format!("round {round}"),
        )
        .await;
        sessions_ended(&setup.proxy).await;
    }
    let messages = setup.upstream.wait_for_messages(3, WAIT).await.unwrap();
    let sessions: std::collections::BTreeSet<_> = messages.iter().map(|m| m.session).collect();
    assert_eq!(sessions.len(), 1, "all three on one connection");
    assert_eq!(reused(&setup.proxy).await, 2);
    let commands = &setup.upstream.sessions()[messages[0].session].commands;
    assert_eq!(
        commands.iter().filter(|c| *c == "RSET").count(),
        2,
        "{commands:?}"
    );
    assert!(
        setup.upstream.violations().is_empty(),
        "{:?}",
        setup.upstream.violations()
    );
}

/// What the scripted upstream does with a connection after accepting a
/// message on it.
#[derive(Clone, Copy)]
enum AfterMessage {
    /// Close it, as an upstream whose idle timeout is shorter than the pool's.
    Close,
    /// Keep it open but never answer again, as a stuck upstream process.
    GoSilent,
}

/// An upstream that treats each connection as `after` says once a message
/// is accepted on it.
async fn scripted_upstream(
    after: AfterMessage,
) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let messages = Arc::new(AtomicUsize::new(0));
    let (conn_count, message_count) = (connections.clone(), messages.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            conn_count.fetch_add(1, Ordering::SeqCst);
            let messages = message_count.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 closing.test\r\n").await?;
                while let Some(line) = lines.next_line().await? {
                    let verb = line.get(..4).unwrap_or(&line).to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-closing.test\r\n250 8BITMIME\r\n",
                        "DATA" => {
                            write.write_all(b"354 go ahead\r\n").await?;
                            while let Some(data) = lines.next_line().await? {
                                if data == "." {
                                    break;
                                }
                            }
                            messages.fetch_add(1, Ordering::SeqCst);
                            write.write_all(b"250 queued\r\n").await?;
                            if let AfterMessage::GoSilent = after {
                                while lines.next_line().await?.is_some() {}
                            }
                            return Ok::<_, std::io::Error>(());
                        }
                        "QUIT" => {
                            write.write_all(b"221 bye\r\n").await?;
                            return Ok(());
                        }
                        _ => b"250 ok\r\n",
                    };
                    write.write_all(reply).await?;
                }
                Ok(())
            });
        }
    });
    (addr, connections, messages)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_connection_the_upstream_closed_is_replaced_unnoticed() {
    let (upstream, connections, messages) = scripted_upstream(AfterMessage::Close).await;
    let (proxy, _dir) = proxy_for(upstream, "").await;
    for round in 0..3 {
        // Back to back: the close may or may not have arrived when the
        // next session takes the connection.
        message_then_wait(&proxy, &format!("round {round}")).await;
    }
    assert_eq!(messages.load(Ordering::SeqCst), 3);
    assert_eq!(reused(&proxy).await, 0);
    assert_eq!(opened(&proxy).await, 3);
    // The last one is noticed when its session ends or by the sweeper.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let gone = loop {
        let gone = discarded(&proxy, "closed").await + discarded(&proxy, "reset_failed").await;
        if gone >= 3 || tokio::time::Instant::now() > deadline {
            break gone;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(gone, 3, "each closed connection noticed once");
    // The start-up probe made one more.
    assert_eq!(connections.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_connection_that_no_longer_answers_is_given_up_for_a_fresh_one() {
    let (upstream, connections, messages) = scripted_upstream(AfterMessage::GoSilent).await;
    let (proxy, _dir) = proxy_for(upstream, "").await;
    for round in 0..2 {
        message_then_wait(&proxy, &format!("round {round}")).await;
    }
    // The second session waited for the kept connection's answer to the
    // handover (at most 5s), then delivered on a fresh one.
    assert_eq!(messages.load(Ordering::SeqCst), 2);
    assert_eq!(discarded(&proxy, "reset_failed").await, 1);
    assert_eq!(opened(&proxy).await, 2);
    assert_eq!(reused(&proxy).await, 0);
    assert_eq!(connections.load(Ordering::SeqCst), 3, "the probe and two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_postfix_records_each_interleaved_client_as_itself() {
    let Some(binary) = require_tool("postfix") else {
        return;
    };
    let postfix = match Postfix::start(&binary).await {
        Ok(postfix) => postfix,
        Err(e) if std::env::var(REQUIRE_TOOLS_ENV).is_ok_and(|v| v == "1") => {
            panic!("a private Postfix did not start: {e:#}")
        }
        Err(e) => {
            eprintln!("skipping: {e:#}");
            return;
        }
    };
    let (proxy, _dir) = proxy_for(postfix.addr(), "max_idle = 4").await;
    const CLIENTS: usize = 8;
    const ROUNDS: usize = 3;
    let addr = proxy.addr();
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        tasks.push(tokio::spawn(async move {
            let from: IpAddr = format!("127.0.0.{}", 40 + client).parse().unwrap();
            let mut expected = Vec::new();
            for round in 0..ROUNDS {
                let login = (client + round) % 3 == 0;
                let helo = format!("c{client}-r{round}.test");
                let subject = format!("postfix c{client} r{round}");
                let local = one_message(addr, from, &helo, login, &subject).await;
                expected.push((subject, local.ip(), helo, login));
            }
            expected
        }));
    }
    let mut expected = Vec::new();
    for task in tasks {
        expected.extend(task.await.unwrap());
    }
    let held = postfix.held(CLIENTS * ROUNDS, WAIT).await.unwrap();
    let received: BTreeMap<String, String> = held
        .into_iter()
        .map(|message| (message.subject, message.received))
        .collect();
    assert_eq!(received.len(), CLIENTS * ROUNDS, "each message once");
    for (subject, ip, helo, login) in expected {
        let header = &received[&subject];
        assert!(
            header.starts_with(&format!("from {helo} (")) && header.contains(&format!("[{ip}])")),
            "{subject}: Postfix recorded {header:?}"
        );
        assert_eq!(
            header.contains(&format!("(Authenticated sender: {USER})")),
            login,
            "{subject}: Postfix recorded {header:?}"
        );
    }
    assert!(reused(&proxy).await > 0, "sessions took kept connections");
}
