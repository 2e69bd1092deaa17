//! Scale-out with the real parts: a real HAProxy (the README's
//! configuration, addresses replaced by loopback ports) with PROXY v2 and
//! health checks in front of two relaygate processes (the built binary, two
//! OS processes) sharing one real `redis-server`, asking a chain of the
//! greylist and rate-limit policies. A client greylisted through one
//! instance passes through the other after the delay; a user's limit counts
//! across both; one instance killed (SIGKILL) under load: HAProxy routes
//! around it, every message a client got `250` for reached the upstream
//! exactly once, nothing reached it twice, and the dead instance's clients
//! saw only broken connections.

use relaygate_tests::client::SmtpClient;
use relaygate_tests::policies::built;
use relaygate_tests::redis::RedisServer;
use relaygate_tests::tools::require_tool;
use relaygate_tests::upstream::{RecordingUpstream, UpstreamBehaviour};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The load clients' address: greylisting's known-good network, and not
/// authenticated, so neither policy holds their mail back.
const LOAD_CLIENT: &str = "127.0.0.60";
const PASSWORD: &str = "alice-password";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The relaygate binary this test build made (next to the test's own
/// `deps/` folder); `cargo test --workspace` builds it.
fn relaygate_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let binary = exe.parent()?.parent()?.join("relaygate");
    if binary.is_file() {
        return Some(binary);
    }
    let required = std::env::var("RELAYGATE_REQUIRE_TOOLS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{} is missing: cargo build -p relaygate",
        binary.display()
    );
    eprintln!(
        "skipped: {} is missing (cargo build -p relaygate)",
        binary.display()
    );
    None
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One relaygate process.
struct Instance {
    name: &'static str,
    proxy_port: u16,
    process: Option<Process>,
}

fn instance_config(
    name: &str,
    proxy_port: u16,
    upstream: SocketAddr,
    redis: &str,
    users: &Path,
) -> String {
    format!(
        r#"
[proxy]
listen = ["127.0.0.1:{listen}"]
proxy_protocol_listen = ["127.0.0.1:{proxy_port}"]
upstream = "{upstream}"
hostname = "{name}.test"

[policy]
watch = false

[[chain]]
name = "default"

[[chain.module]]
name = "greylist"
module = {greylist:?}
[chain.module.config]
delay_secs = 1
retry_window_secs = 60
client_prefix_v4 = 32
known_good_networks = ["{LOAD_CLIENT}"]

[[chain.module]]
name = "rate"
module = {rate:?}
[chain.module.config]
max_per_user = 3
max_per_sender = 0
max_per_network = 0

[state]
backend = "redis"
url = "{redis}"
timeout = "500ms"

[auth]
backend = "file"
users_file = {users:?}
require_tls = false
"#,
        listen = free_port(),
        greylist = built("greylist").display().to_string(),
        rate = built("rate-limit").display().to_string(),
        users = users.display().to_string(),
    )
}

impl Instance {
    fn start(
        binary: &Path,
        dir: &Path,
        name: &'static str,
        upstream: SocketAddr,
        redis: &str,
        users: &Path,
    ) -> Self {
        let proxy_port = free_port();
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            instance_config(name, proxy_port, upstream, redis, users),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(binary)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Self {
            name,
            proxy_port,
            process: Some(Process(child)),
        }
    }

    fn kill(&mut self) {
        self.process.take();
    }
}

/// The README's HAProxy configuration, with loopback addresses.
fn haproxy_config(frontend: u16, a: u16, b: u16) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let start = readme
        .find("```haproxy\n")
        .expect("the README's HAProxy block")
        + 11;
    let block = &readme[start..];
    let block = &block[..block.find("```").unwrap()];
    for address in ["0.0.0.0:25", "10.0.0.11:2526", "10.0.0.12:2526"] {
        assert!(block.contains(address), "{address} in {block}");
    }
    block
        .replace("0.0.0.0:25", &format!("127.0.0.1:{frontend}"))
        .replace("10.0.0.11:2526", &format!("127.0.0.1:{a}"))
        .replace("10.0.0.12:2526", &format!("127.0.0.1:{b}"))
}

/// A client of the balancer from `from`, its greeting read: the client and
/// the host name of the instance that greeted it.
async fn through_balancer(
    balancer: SocketAddr,
    from: &str,
) -> anyhow::Result<(SmtpClient, String)> {
    let mut client = SmtpClient::connect_from(from.parse()?, balancer).await?;
    let greeting = client.read_reply().await?;
    anyhow::ensure!(greeting.code == 220, "greeting {greeting}");
    let host = greeting
        .text()
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    Ok((client, host))
}

/// Wait until both instances have greeted through the balancer.
async fn wait_until_both_serve(balancer: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = BTreeSet::new();
    while seen.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "only {seen:?} answered through HAProxy"
        );
        if let Ok((mut client, host)) = through_balancer(balancer, LOAD_CLIENT).await {
            let _ = client.quit().await;
            seen.insert(host);
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One recipient from `from` (logged in as alice when `login`): the RCPT
/// reply code and the instance that answered.
async fn rcpt(
    balancer: SocketAddr,
    from: &str,
    login: bool,
    sender: &str,
    recipient: &str,
) -> (u16, String) {
    let (mut client, host) = through_balancer(balancer, from).await.unwrap();
    client.ehlo("client.test").await.unwrap();
    if login {
        assert_eq!(
            client.auth_plain("alice", PASSWORD).await.unwrap().code,
            235
        );
    }
    client
        .cmd_expect(&format!("MAIL FROM:<{sender}>"), 250)
        .await
        .unwrap();
    let reply = client.cmd(&format!("RCPT TO:<{recipient}>")).await.unwrap();
    let _ = client.quit().await;
    (reply.code, host)
}

#[derive(Default)]
struct LoadRecord {
    /// Message id -> the instance that answered 250 to its DATA.
    accepted: BTreeMap<String, String>,
    /// Ids whose transaction broke (connection error) before a reply.
    broken: BTreeSet<String>,
    /// Replies other than 250 after DATA, or refusals: must stay empty.
    refused: Vec<String>,
    /// Ids accepted after the kill.
    accepted_after_kill: usize,
}

async fn load_loop(
    balancer: SocketAddr,
    worker: usize,
    until: Instant,
    killed_at: Arc<Mutex<Option<Instant>>>,
    record: Arc<Mutex<LoadRecord>>,
) {
    let mut n = 0;
    while Instant::now() < until {
        let Ok((mut client, host)) = through_balancer(balancer, LOAD_CLIENT).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        if client.ehlo("load.test").await.is_err() {
            continue;
        }
        while Instant::now() < until {
            n += 1;
            let id = format!("w{worker}-{n}");
            let body = format!("Subject: {id}\r\n\r\nmessage {id}\r\n");
            match client
                .send_message("load@example.org", &["sink@example.com"], body.as_bytes())
                .await
            {
                Ok(sent) if sent.accepted() => {
                    let mut record = record.lock().unwrap();
                    record.accepted.insert(id, host.clone());
                    if killed_at.lock().unwrap().is_some() {
                        record.accepted_after_kill += 1;
                    }
                }
                Ok(sent) => {
                    record
                        .lock()
                        .unwrap()
                        .refused
                        .push(format!("{id}: {}", sent.last_reply()));
                    break;
                }
                Err(_) => {
                    record.lock().unwrap().broken.insert(id);
                    break;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_behind_haproxy_share_state_and_survive_a_kill() {
    let (Some(haproxy), Some(binary)) = (require_tool("haproxy"), relaygate_binary()) else {
        return;
    };
    let Some(redis) = RedisServer::start().unwrap() else {
        return;
    };
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    std::fs::write(&users, format!("alice:{hash}\n")).unwrap();
    let mut a = Instance::start(
        &binary,
        dir.path(),
        "relaygate-a",
        upstream.addr(),
        &redis.url(),
        &users,
    );
    let b = Instance::start(
        &binary,
        dir.path(),
        "relaygate-b",
        upstream.addr(),
        &redis.url(),
        &users,
    );
    let frontend = free_port();
    let haproxy_cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &haproxy_cfg,
        haproxy_config(frontend, a.proxy_port, b.proxy_port),
    )
    .unwrap();
    let _haproxy = Process(
        Command::new(&haproxy)
            .arg("-db")
            .arg("-f")
            .arg(&haproxy_cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let balancer: SocketAddr = format!("127.0.0.1:{frontend}").parse().unwrap();
    wait_until_both_serve(balancer).await;

    // Greylisted through one instance, passed through the other after the delay.
    let (first, first_host) = rcpt(
        balancer,
        "127.0.0.21",
        false,
        "s@example.org",
        "r@example.com",
    )
    .await;
    assert_eq!(first, 451, "first contact is greylisted");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let mut retried = None;
    for _ in 0..4 {
        let (code, host) = rcpt(
            balancer,
            "127.0.0.21",
            false,
            "s@example.org",
            "r@example.com",
        )
        .await;
        if host != first_host {
            retried = Some(code);
            break;
        }
    }
    assert_eq!(
        retried,
        Some(250),
        "the retry through the other instance passes"
    );

    // A user's limit (3 recipients) counts across both instances.
    let mut hosts = BTreeSet::new();
    let mut codes = Vec::new();
    for n in 0..4 {
        let (code, host) = rcpt(
            balancer,
            "127.0.0.22",
            true,
            "alice@example.com",
            &format!("to{n}@example.org"),
        )
        .await;
        codes.push(code);
        hosts.insert(host);
    }
    assert_eq!(
        codes,
        [250, 250, 250, 451],
        "per-user limit across instances"
    );
    assert_eq!(hosts.len(), 2, "both instances answered: {hosts:?}");

    // Kill one instance under load.
    let record = Arc::new(Mutex::new(LoadRecord::default()));
    let killed_at = Arc::new(Mutex::new(None));
    let until = Instant::now() + Duration::from_secs(4);
    let workers: Vec<_> = (0..12)
        .map(|worker| {
            tokio::spawn(load_loop(
                balancer,
                worker,
                until,
                killed_at.clone(),
                record.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before_kill = record.lock().unwrap().accepted.len();
    a.kill();
    *killed_at.lock().unwrap() = Some(Instant::now());
    for worker in workers {
        worker.await.unwrap();
    }
    let record = record.lock().unwrap();
    let by_instance = |name: &str| {
        record
            .accepted
            .values()
            .filter(|h| h.as_str() == format!("{name}.test"))
            .count()
    };
    eprintln!(
        "accepted {} ({} before the kill: {} by {}, {} by {}), {} after the kill; {} broken",
        record.accepted.len(),
        before_kill,
        by_instance(a.name),
        a.name,
        by_instance(b.name),
        b.name,
        record.accepted_after_kill,
        record.broken.len()
    );
    assert!(record.refused.is_empty(), "{:?}", record.refused);
    assert!(
        by_instance(a.name) > 0 && by_instance(b.name) > 0,
        "both served before the kill"
    );
    assert!(
        record.accepted_after_kill > 20,
        "HAProxy routed around the dead instance"
    );

    // The upstream is the judge.
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    for message in upstream.messages() {
        let subject = message.header("Subject").unwrap_or_default();
        if subject.starts_with('w') {
            *received.entry(subject).or_default() += 1;
        }
    }
    let duplicated: Vec<_> = received.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "delivered twice: {duplicated:?}");
    let lost: Vec<_> = record
        .accepted
        .keys()
        .filter(|id| !received.contains_key(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "answered 250 but never delivered: {lost:?}"
    );
    let unexplained: Vec<_> = received
        .keys()
        .filter(|id| !record.accepted.contains_key(*id) && !record.broken.contains(*id))
        .collect();
    assert!(
        unexplained.is_empty(),
        "delivered but never sent: {unexplained:?}"
    );
    drop(b);
}
