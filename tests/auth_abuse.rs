//! AUTH under abuse, over real sockets on loopback: a distributed burst of
//! wrong passwords for one user from 40 addresses through the running proxy
//! (how many guesses reach the backend, and the real user still getting in
//! from a fresh address meanwhile); the cap on concurrent backend checks,
//! observed by the backend; timed-out checks counted like failures; and the
//! refusal counters on the admin endpoint.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use relaygate::config::Config;
use relaygate::credentials::{Authenticator, Credentials, Verification};
use relaygate_tests::admin::http;
use relaygate_tests::client::SmtpClient;
use relaygate_tests::proxy::TestProxy;
use relaygate_tests::upstream::{RecordingUpstream, UpstreamBehaviour};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use zeroize::Zeroizing;

const USER: &str = "alice";
const PASSWORD: &str = "the-right-one";

/// What the scripted submission backend saw.
#[derive(Default)]
struct Seen {
    /// AUTH attempts with a wrong password.
    wrong: AtomicUsize,
    /// AUTH attempts with the right password.
    right: AtomicUsize,
    /// Connections accepted in all.
    connections: AtomicUsize,
    /// Connections open now, and the most open at once.
    open: AtomicUsize,
    most_open: AtomicUsize,
    /// When the first wrong guess arrived (ms since `epoch`), 0 before.
    first_wrong_ms: AtomicUsize,
    epoch: std::sync::OnceLock<Instant>,
}

/// A scripted SMTP submission server: AUTH PLAIN with [`USER`]/[`PASSWORD`]
/// is right, anything else wrong, each answered after `think`; a `silent`
/// one never answers AUTH.
struct Backend {
    address: SocketAddr,
    seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    async fn start(think: Duration, silent: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        seen.epoch.get_or_init(Instant::now);
        let shared = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = shared.clone();
                seen.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let now = seen.open.fetch_add(1, Ordering::SeqCst) + 1;
                    seen.most_open.fetch_max(now, Ordering::SeqCst);
                    let _ = serve(stream, think, silent, &seen).await;
                    seen.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            address,
            seen,
            task,
        }
    }

    fn wrong(&self) -> usize {
        self.seen.wrong.load(Ordering::SeqCst)
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    think: Duration,
    silent: bool,
    seen: &Seen,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 backend.test ESMTP\r\n").await?;
    let right = BASE64.encode(format!("\0{USER}\0{PASSWORD}"));
    while let Some(line) = lines.next_line().await? {
        let upper = line.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO ") {
            "250-backend.test\r\n250 AUTH PLAIN\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 bye\r\n").await?;
            return Ok(());
        } else if let Some(response) = line.strip_prefix("AUTH PLAIN ") {
            if silent {
                // Never answers; notices when the checker gives up and leaves.
                let _ = lines.next_line().await;
                return Ok(());
            }
            let good = response == right;
            if good {
                seen.right.fetch_add(1, Ordering::SeqCst);
            } else {
                seen.wrong.fetch_add(1, Ordering::SeqCst);
                let epoch = *seen.epoch.get().expect("set at start");
                let _ = seen.first_wrong_ms.compare_exchange(
                    0,
                    epoch.elapsed().as_millis().max(1) as usize,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
            }
            tokio::time::sleep(think).await;
            if good {
                "235 2.7.0 ok\r\n"
            } else {
                "535 5.7.8 bad credentials\r\n"
            }
        } else {
            "502 5.5.2 what\r\n"
        };
        write.write_all(reply.as_bytes()).await?;
    }
    Ok(())
}

fn authenticator(backend: &Backend, extra: &str) -> Authenticator {
    let text = format!(
        "[auth]\nbackend = \"smtp\"\nserver = \"{}\"\n{extra}\n",
        backend.address
    );
    let config = Config::parse(&text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .auth
        .expect("[auth]");
    Authenticator::new(&config).expect("authenticator")
}

fn credentials(user: &str, password: &str) -> Credentials {
    Credentials::new(user.to_string(), Zeroizing::new(password.to_string()))
}

fn address(third: u8, fourth: u8) -> IpAddr {
    IpAddr::from([127, 0, third, fourth])
}

/// One attacker: from its own address, guesses wrong passwords for
/// [`USER`] until `stop`, reconnecting when the proxy closes the session.
async fn attacker(proxy: SocketAddr, from: IpAddr, stop: Arc<AtomicBool>) {
    let mut guess = 0;
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut client) = SmtpClient::connect_from(from, proxy).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        client.set_read_timeout(Duration::from_secs(30));
        if client.read_reply().await.is_err() || client.ehlo("bot.test").await.is_err() {
            continue;
        }
        while !stop.load(Ordering::SeqCst) {
            guess += 1;
            match client
                .auth_plain(USER, &format!("guess-{from}-{guess}"))
                .await
            {
                Ok(reply) if reply.code == 454 => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
}

/// 40 addresses guess at once and keep guessing: the backend sees at most
/// `max_failures` guesses at full speed, then one per
/// `attack_check_interval`; meanwhile the real user, from an address never
/// seen before, logs in within a few seconds.
#[tokio::test]
async fn a_distributed_burst_gets_few_guesses_and_the_real_user_still_gets_in() {
    let backend = Backend::start(Duration::from_millis(20), false).await;
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    let config = format!(
        r#"
[proxy]
upstream = "{{upstream}}"
hostname = "relay.test"
[policy]
watch = false
[admin]
listen = "127.0.0.1:0"
[policy.config]
open_relay_addr_flag = 1
open_relay_addr_list = []
smtp_plain_login_flag = 1
local_domains = ["example.com"]
[auth]
backend = "smtp"
server = "{}"
require_tls = false
timeout = "10s"
max_failures = 10
failure_window = "10m"
attack_check_interval = "1s"
attack_queue_size = 4
"#,
        backend.address
    );
    let proxy = TestProxy::start(&config, upstream.addr()).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let attackers: Vec<_> = (1..=40)
        .map(|n| tokio::spawn(attacker(proxy.addr(), address(2, n), stop.clone())))
        .collect();

    // Once the burst has used the user's full-speed budget, the real user
    // comes from a fresh address.
    let waiting = Instant::now();
    while backend.wrong() < 10 {
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "the burst never reached the backend"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut user = SmtpClient::connect_from(address(3, 1), proxy.addr())
        .await
        .unwrap();
    user.set_read_timeout(Duration::from_secs(30));
    user.read_reply().await.unwrap();
    user.ehlo("laptop.test").await.unwrap();
    let started = Instant::now();
    let reply = user.auth_plain(USER, PASSWORD).await.unwrap();
    let took = started.elapsed();
    let wrong_meanwhile = backend.wrong();

    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let first_wrong =
        Duration::from_millis(backend.seen.first_wrong_ms.load(Ordering::SeqCst) as u64);
    let burst = backend.seen.epoch.get().unwrap().elapsed() - first_wrong;
    let guesses = backend.wrong();
    for attacker in attackers {
        attacker.abort();
    }

    eprintln!(
        "burst: {guesses} wrong guesses reached the backend in {burst:?}; the real user was answered {} in {took:?}",
        reply.code
    );
    assert_eq!(reply.code, 235, "the real user is not locked out: {reply}");
    assert!(
        took < Duration::from_secs(10),
        "the real user waited {took:?} (at most the queue's 4 turns of 1s, plus slack)"
    );
    // 10 at full speed, then one per second (+1 for the turn that starts at
    // once, +1 for the decay of the 10-minute window over the burst).
    let bound = 10 + burst.as_secs() as usize + 2;
    assert!(
        guesses <= bound,
        "{guesses} wrong guesses reached the backend in {burst:?} (bound {bound}); {wrong_meanwhile} before the real user's answer"
    );
    assert!(guesses >= 10, "the burst was real: {guesses}");
    // The refusals are counted apart from the backend's trouble.
    let (_, metrics) = http(proxy.admin_addr().unwrap(), "GET", "/metrics")
        .await
        .unwrap();
    let counter = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    assert!(
        counter("relaygate_auth_throttled_total") >= 1.0,
        "{metrics}"
    );
    assert_eq!(counter("relaygate_auth_unavailable_total"), 0.0);
}

/// 50 concurrent attempts with the cap at 4: the backend never has more
/// than 4 checks at once, and every attempt still gets its answer.
#[tokio::test]
async fn concurrent_checks_never_exceed_the_cap() {
    let backend = Backend::start(Duration::from_millis(100), false).await;
    let authenticator = Arc::new(authenticator(
        &backend,
        "max_concurrent_checks = 4\ntimeout = \"20s\"",
    ));
    let attempts: Vec<_> = (0..50u8)
        .map(|n| {
            let authenticator = authenticator.clone();
            tokio::spawn(async move {
                authenticator
                    .verify(
                        address(4, n + 1),
                        &credentials(&format!("user{n}"), "wrong"),
                    )
                    .await
            })
        })
        .collect();
    for attempt in attempts {
        assert_eq!(attempt.await.unwrap(), Verification::Rejected);
    }
    let most = backend.seen.most_open.load(Ordering::SeqCst);
    assert!(most <= 4, "{most} checks ran at once in the backend");
    assert!(most >= 2, "the attempts were concurrent: {most}");
    assert_eq!(backend.wrong(), 50);
}

/// Beyond the cap, an attempt waits for a slot at most `timeout`, then gets
/// 454 (unavailable) without reaching the backend.
#[tokio::test]
async fn attempts_beyond_the_cap_wait_at_most_the_timeout() {
    let backend = Backend::start(Duration::ZERO, true).await;
    let authenticator = Arc::new(authenticator(
        &backend,
        "max_concurrent_checks = 2\ntimeout = \"500ms\"",
    ));
    let started = Instant::now();
    let attempts: Vec<_> = (0..6u8)
        .map(|n| {
            let authenticator = authenticator.clone();
            tokio::spawn(async move {
                authenticator
                    .verify(address(5, n + 1), &credentials(&format!("user{n}"), "x"))
                    .await
            })
        })
        .collect();
    for attempt in attempts {
        let answer = attempt.await.unwrap();
        assert!(
            matches!(answer, Verification::Unavailable { .. }),
            "{answer:?}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let most = backend.seen.most_open.load(Ordering::SeqCst);
    assert!(most <= 2, "{most} checks ran at once");
}

/// A check that times out counts against the client like a failure: after
/// `max_failures` of them the client is refused without asking.
#[tokio::test]
async fn timed_out_checks_count_against_the_client() {
    let backend = Backend::start(Duration::ZERO, true).await;
    let authenticator = authenticator(
        &backend,
        "failures_before_delay = 1\nmax_failures = 2\ntimeout = \"300ms\"",
    );
    let client = address(6, 1);
    for n in 0..2 {
        let answer = authenticator
            .verify(client, &credentials(&format!("user{n}"), "x"))
            .await;
        assert!(
            matches!(answer, Verification::Unavailable { .. }),
            "{answer:?}"
        );
    }
    let answer = authenticator
        .verify(client, &credentials("user9", "x"))
        .await;
    assert!(
        matches!(answer, Verification::Throttled { .. }),
        "{answer:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        backend.seen.connections.load(Ordering::SeqCst),
        2,
        "the refused attempt did not reach the backend"
    );
}

/// A hash that started runs out after its check timed out, and keeps its
/// slot meanwhile: the next attempt finds no free slot until the hash ends.
#[tokio::test]
async fn a_started_hash_keeps_its_slot_after_its_check_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    // bcrypt cost 13: about half a second per check, far beyond the timeout.
    let hash = bcrypt::hash(PASSWORD, 13).unwrap();
    std::fs::write(&users, format!("{USER}:{hash}\n")).unwrap();
    let text = format!(
        "[auth]\nbackend = \"file\"\nusers_file = {:?}\nmax_concurrent_checks = 1\ntimeout = \"100ms\"\n",
        users.display().to_string()
    );
    let config = Config::parse(&text).unwrap().auth.unwrap();
    let authenticator = Authenticator::new(&config).unwrap();
    let reason = |answer: Verification| match answer {
        Verification::Unavailable { reason } => reason,
        other => panic!("{other:?}"),
    };
    let started = Instant::now();
    let first = reason(
        authenticator
            .verify(address(7, 1), &credentials(USER, PASSWORD))
            .await,
    );
    assert!(first.contains("no answer within"), "{first}");
    let second = reason(
        authenticator
            .verify(address(7, 2), &credentials("bob", "x"))
            .await,
    );
    if started.elapsed() < Duration::from_millis(400) {
        assert!(
            second.contains("max_concurrent_checks"),
            "the first hash still holds the only slot: {second}"
        );
    }
    // Once that hash has ended, the slot is free again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let third = reason(
        authenticator
            .verify(address(7, 3), &credentials("carol", "x"))
            .await,
    );
    assert!(third.contains("no answer within"), "{third}");
}

/// Clients that hang up while their check runs or waits for a slot: their
/// checks are abandoned at once (the backend connection of the running one
/// is closed, the queued ones never reach the backend) instead of running
/// until `timeout` on behalf of nobody.
#[tokio::test]
async fn checks_of_clients_that_left_are_abandoned() {
    let backend = Backend::start(Duration::ZERO, true).await;
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    let config = format!(
        r#"
[proxy]
upstream = "{{upstream}}"
hostname = "relay.test"
[policy]
watch = false
[policy.config]
open_relay_addr_flag = 1
open_relay_addr_list = []
smtp_plain_login_flag = 1
[auth]
backend = "smtp"
server = "{}"
require_tls = false
timeout = "30s"
max_concurrent_checks = 1
"#,
        backend.address
    );
    let proxy = TestProxy::start(&config, upstream.addr()).await.unwrap();
    let mut clients = Vec::new();
    for n in 1..=6u8 {
        let mut client = SmtpClient::connect_from(address(7, n), proxy.addr())
            .await
            .unwrap();
        client.read_reply().await.unwrap();
        client.ehlo("left.test").await.unwrap();
        let plain = BASE64.encode(format!("\0user{n}\0wrong"));
        client.send(&format!("AUTH PLAIN {plain}")).await.unwrap();
        clients.push(client);
        if n == 1 {
            // The first check holds the only slot, in the silent backend.
            let deadline = Instant::now() + Duration::from_secs(10);
            while backend.seen.open.load(Ordering::SeqCst) == 0 {
                assert!(Instant::now() < deadline, "the first check never started");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(clients);

    let left = Instant::now();
    while backend.seen.open.load(Ordering::SeqCst) > 0 {
        assert!(
            left.elapsed() < Duration::from_secs(10),
            "the running check outlived its client by {:?}",
            left.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Had the queued checks survived their clients, the freed slot would
    // now start the next of them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        backend.seen.connections.load(Ordering::SeqCst),
        1,
        "checks whose clients left reached the backend"
    );
}
