//! Stateful policies (`policies/greylist`, `policies/rate-limit`) with their state in the
//! proxy's memory and in a real `redis-server` started by the test: two proxies sharing
//! one Redis enforce one greylist and one rate limit, two proxies with in-process state do
//! not share, Redis killed mid-test gives prompt tempfails and service comes back with it,
//! and components of the plain `policy` world load without the state import.

use relaygate::policy::PolicyEngine;
use relaygate_tests::client::{Reply, SmtpClient};
use relaygate_tests::policies::built;
use relaygate_tests::proxy::TestProxy;
use relaygate_tests::redis::RedisServer;
use relaygate_tests::upstream::{RecordingUpstream, UpstreamBehaviour};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Greylisting with a one-second delay, each 127.0.0.x its own client (/32), and
/// 127.0.0.50 known-good.
const GREYLIST: &str = r#"
delay_secs = 1
retry_window_secs = 60
client_prefix_v4 = 32
known_good_networks = ["127.0.0.50"]
"#;

/// `[state]` for a Redis server, with a short timeout.
fn redis_state(url: &str) -> String {
    format!("backend = \"redis\"\nurl = \"{url}\"\ntimeout = \"300ms\"\n")
}

fn config(policy: &str, policy_config: &str, state: &str) -> String {
    format!(
        r#"
[proxy]
upstream = "{{upstream}}"
proxy_protocol_listen = ["127.0.0.1:0"]
[policy]
module = "{}"
watch = false
[policy.config]
{policy_config}
[state]
{state}
"#,
        built(policy).display()
    )
}

async fn upstream() -> RecordingUpstream {
    RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .expect("upstream starts")
}

/// `count` proxies started from one config text in front of one recording
/// upstream, which lives as long as they do.
struct Site {
    proxies: Vec<TestProxy>,
    _upstream: RecordingUpstream,
}

impl Site {
    async fn start(count: usize, config_text: &str) -> Self {
        let upstream = upstream().await;
        let mut proxies = Vec::new();
        for _ in 0..count {
            proxies.push(
                TestProxy::start(config_text, upstream.addr())
                    .await
                    .unwrap(),
            );
        }
        Self {
            proxies,
            _upstream: upstream,
        }
    }

    /// One proxy running `policy` with the in-process store.
    async fn embedded(policy: &str, policy_config: &str) -> Self {
        Self::start(1, &config(policy, policy_config, "")).await
    }

    /// Two proxies running `policy` with their state in `redis`.
    async fn sharing(policy: &str, policy_config: &str, redis: &RedisServer) -> Self {
        Self::start(
            2,
            &config(policy, policy_config, &redis_state(&redis.url())),
        )
        .await
    }

    /// The SMTP address of proxy `n`.
    fn addr(&self, n: usize) -> SocketAddr {
        self.proxies[n].addr()
    }
}

/// One session from `client`: MAIL FROM `sender`, then the reply to RCPT TO `recipient`.
async fn rcpt(proxy: SocketAddr, client: &str, sender: &str, recipient: &str) -> Reply {
    let client: IpAddr = client.parse().unwrap();
    let mut c = SmtpClient::connect_from(client, proxy).await.unwrap();
    assert_eq!(c.read_reply().await.unwrap().code, 220);
    c.ehlo("client.test").await.unwrap();
    c.cmd_expect(&format!("MAIL FROM:<{sender}>"), 250)
        .await
        .unwrap();
    let reply = c.cmd(&format!("RCPT TO:<{recipient}>")).await.unwrap();
    c.quit().await.unwrap();
    reply
}

fn is_greylisted(reply: &Reply) -> bool {
    reply.code == 451 && reply.enhanced_status() == Some("4.7.1")
}

fn is_state_failure(reply: &Reply) -> bool {
    reply.code == 451 && reply.enhanced_status() == Some("4.3.0")
}

/// The greylisting sequence: the first attempts go through `first`, the retry after the
/// delay through `second`, which passes it only if it sees what `first` stored.
async fn greylist_sequence(first: SocketAddr, second: SocketAddr) {
    let (a, b) = ("a@example.org", "b@example.com");
    let reply = rcpt(first, "127.0.0.11", a, b).await;
    assert!(is_greylisted(&reply), "first attempt: {reply:?}");
    let reply = rcpt(first, "127.0.0.11", a, b).await;
    assert!(is_greylisted(&reply), "retry before the delay: {reply:?}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let reply = rcpt(second, "127.0.0.11", a, b).await;
    assert_eq!(reply.code, 250, "retry after the delay: {reply:?}");
    let reply = rcpt(first, "127.0.0.11", a, b).await;
    assert_eq!(reply.code, 250, "known triplet: {reply:?}");
    // Another client, sender or recipient is a new triplet.
    let reply = rcpt(first, "127.0.0.12", a, b).await;
    assert!(is_greylisted(&reply), "other client: {reply:?}");
    let reply = rcpt(second, "127.0.0.11", a, "c@example.com").await;
    assert!(is_greylisted(&reply), "other recipient: {reply:?}");
    // A known-good client is never greylisted.
    let reply = rcpt(first, "127.0.0.50", a, "d@example.com").await;
    assert_eq!(reply.code, 250, "known-good client: {reply:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn greylisting_with_the_embedded_store() {
    let site = Site::embedded("greylist", GREYLIST).await;
    greylist_sequence(site.addr(0), site.addr(0)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn greylisting_shared_by_two_proxies_through_redis() {
    let Some(redis) = RedisServer::start().unwrap() else {
        return;
    };
    let site = Site::sharing("greylist", GREYLIST, &redis).await;
    greylist_sequence(site.addr(0), site.addr(1)).await;
    // The state is in Redis, under the policy's namespace.
    let keys = redis.keys("*").unwrap();
    assert!(!keys.is_empty());
    assert!(
        keys.iter().all(|k| k.starts_with("relaygate:greylist:")),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn proxies_with_embedded_state_do_not_share_it() {
    let site = Site::start(2, &config("greylist", GREYLIST, "")).await;
    let (a, b) = ("a@example.org", "b@example.com");
    assert!(is_greylisted(&rcpt(site.addr(0), "127.0.0.11", a, b).await));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(rcpt(site.addr(0), "127.0.0.11", a, b).await.code, 250);
    // The second proxy never saw the first attempt.
    assert!(is_greylisted(&rcpt(site.addr(1), "127.0.0.11", a, b).await));
}

const RATE_LIMIT: &str = r#"
window_secs = 60
max_per_user = 0
max_per_network = 0
max_per_sender = 3
reply_code = 452
reply_status = "4.7.1"
reply_text = "Sending quota exceeded, try again in an hour"
"#;

async fn rate_limit_sequence(first: SocketAddr, second: SocketAddr) {
    let sender = "bulk@example.org";
    for (n, via) in [first, second, first].into_iter().enumerate() {
        let reply = rcpt(via, "127.0.0.21", sender, &format!("r{n}@example.com")).await;
        assert_eq!(reply.code, 250, "recipient {n}: {reply:?}");
    }
    let reply = rcpt(second, "127.0.0.22", sender, "r4@example.com").await;
    assert_eq!(reply.code, 452, "over the limit: {reply:?}");
    assert!(reply.text().contains("Sending quota exceeded"), "{reply:?}");
    // Another sender has its own counter.
    let reply = rcpt(first, "127.0.0.21", "other@example.org", "r5@example.com").await;
    assert_eq!(reply.code, 250, "{reply:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_with_the_embedded_store() {
    let site = Site::embedded("rate-limit", RATE_LIMIT).await;
    rate_limit_sequence(site.addr(0), site.addr(0)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_shared_by_two_proxies_through_redis() {
    let Some(redis) = RedisServer::start().unwrap() else {
        return;
    };
    let site = Site::sharing("rate-limit", RATE_LIMIT, &redis).await;
    rate_limit_sequence(site.addr(0), site.addr(1)).await;
    let keys = redis.keys("relaygate:rate-limit:sender:*").unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
}

/// While the store fails, every attempt from `client` gets the state-failure
/// tempfail, promptly: well under the session's command timeout and near
/// `[state] timeout`.
async fn prompt_state_failures(proxy: SocketAddr, client: &str, attempts: usize, what: &str) {
    for attempt in 0..attempts {
        let started = Instant::now();
        let reply = rcpt(proxy, client, "a@example.org", "b@example.com").await;
        let took = started.elapsed();
        eprintln!("{what} attempt {attempt}: answered in {took:?}");
        assert!(
            is_state_failure(&reply),
            "{what} attempt {attempt}: {reply:?}"
        );
        assert!(
            took < Duration::from_secs(3),
            "{what} attempt {attempt} took {took:?}"
        );
    }
}

/// Once the store is back, `client`'s triplet is greylisted again within ten
/// seconds, with only state failures before.
async fn greylisting_resumes(proxy: SocketAddr, client: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = rcpt(proxy, client, "a@example.org", "b@example.com").await;
        if is_greylisted(&reply) {
            return;
        }
        assert!(is_state_failure(&reply), "{reply:?}");
        assert!(
            Instant::now() < deadline,
            "no recovery after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_outage_gives_prompt_tempfails_and_service_returns_with_it() {
    let Some(mut redis) = RedisServer::start().unwrap() else {
        return;
    };
    let text = config("greylist", GREYLIST, &redis_state(&redis.url()))
        + "[admin]\nlisten = \"127.0.0.1:0\"\n";
    let site = Site::start(1, &text).await;
    let proxy = site.addr(0);
    let (a, b) = ("a@example.org", "b@example.com");
    assert!(is_greylisted(&rcpt(proxy, "127.0.0.31", a, b).await));

    redis.kill();
    prompt_state_failures(proxy, "127.0.0.31", 3, "outage").await;
    // The known-good client needs no state and is served throughout.
    assert_eq!(rcpt(proxy, "127.0.0.50", a, b).await.code, 250);
    // The failures are counted for the admin.
    let admin = site.proxies[0].admin_addr().unwrap();
    let (status, metrics) = relaygate_tests::admin::http(admin, "GET", "/metrics")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("relaygate_state_errors_total{kind=\"unavailable\"} ")),
        "{metrics}"
    );

    redis.restart().unwrap();
    // The restarted server is empty: the triplet is new again, greylisted, not a failure.
    greylisting_resumes(proxy, "127.0.0.31").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(rcpt(proxy, "127.0.0.31", a, b).await.code, 250);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_redis_gives_tempfails_within_the_timeout_not_hangs() {
    let Some(redis) = RedisServer::start().unwrap() else {
        return;
    };
    let site = Site::start(1, &config("greylist", GREYLIST, &redis_state(&redis.url()))).await;
    let proxy = site.addr(0);
    assert!(is_greylisted(
        &rcpt(proxy, "127.0.0.61", "a@example.org", "b@example.com").await
    ));

    // Connections stay open, nothing is answered: only the timeout (300ms) helps.
    redis.freeze(true).unwrap();
    prompt_state_failures(proxy, "127.0.0.61", 2, "frozen").await;
    redis.freeze(false).unwrap();
    greylisting_resumes(proxy, "127.0.0.61").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_starts_while_redis_is_down_and_fails_open_when_told_to() {
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let open = format!("{GREYLIST}on_state_error = \"accept\"\n");
    let state = redis_state(&format!("redis://127.0.0.1:{port}"));
    let site = Site::start(1, &config("greylist", &open, &state)).await;
    let reply = rcpt(site.addr(0), "127.0.0.41", "a@example.org", "b@example.com").await;
    assert_eq!(reply.code, 250, "{reply:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_size_limit_reaches_the_policy_as_an_error() {
    // Greylisting keys are longer than 8 bytes: every state call is refused, and the
    // policy answers its state-failure tempfail.
    let site = Site::start(1, &config("greylist", GREYLIST, "max_key_size = 8\n")).await;
    let reply = rcpt(site.addr(0), "127.0.0.11", "a@example.org", "b@example.com").await;
    assert!(is_state_failure(&reply), "{reply:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_stateful_components_import_state_and_plain_ones_still_load() {
    let engine = PolicyEngine::new(None).unwrap();
    let state_import = "relaygate:policy/state@0.1.1";
    let stateful = engine
        .compile(&std::fs::read(built("greylist")).unwrap())
        .unwrap();
    let (_, imports) = engine.interface_names(&stateful);
    assert!(imports.iter().any(|i| i == state_import), "{imports:?}");
    let plain = engine
        .compile(relaygate::policy::BUILTIN_APPLE_RELAY_WASM)
        .unwrap();
    let (_, imports) = engine.interface_names(&plain);
    assert!(!imports.iter().any(|i| i == state_import), "{imports:?}");
    // The built-in policy (plain world) serves with a Redis state backend configured,
    // even one that is down: it never touches state.
    let text = format!(
        "[proxy]\nupstream = \"{{upstream}}\"\n[policy.config]\nopen_relay_addr_flag = 1\n[state]\n{}",
        redis_state("redis://127.0.0.1:1")
    );
    let site = Site::start(1, &text).await;
    let reply = rcpt(site.addr(0), "127.0.0.1", "a@example.org", "b@example.com").await;
    assert_eq!(reply.code, 250, "{reply:?}");
}

/// A TCP load balancer on one loopback address: connections go to the backends in turn,
/// each preceded by a PROXY protocol v1 header naming the real client, as HAProxy's
/// `send-proxy` does. Stops when dropped.
struct Balancer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Balancer {
    async fn start(backends: Vec<SocketAddr>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let next = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            while let Ok((mut client, peer)) = listener.accept().await {
                let backend = backends[next.fetch_add(1, Ordering::Relaxed) % backends.len()];
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(backend).await else {
                        return;
                    };
                    let header = format!(
                        "PROXY TCP4 {} {} {} {}\r\n",
                        peer.ip(),
                        addr.ip(),
                        peer.port(),
                        addr.port()
                    );
                    if server.write_all(header.as_bytes()).await.is_ok() {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self { addr, task }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Two proxies sharing one Redis behind one balanced address, as the README's "Running
/// several instances" describes; the caller keeps both alive.
async fn two_behind_one_address(
    policy: &str,
    policy_config: &str,
    redis: &RedisServer,
) -> (Balancer, Site) {
    let site = Site::sharing(policy, policy_config, redis).await;
    let backends = site
        .proxies
        .iter()
        .map(|proxy| proxy.proxy_protocol_addr().unwrap())
        .collect();
    (Balancer::start(backends).await, site)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_proxies_behind_one_address_enforce_one_greylist() {
    let Some(redis) = RedisServer::start().unwrap() else {
        return;
    };
    let (balancer, _site) = two_behind_one_address("greylist", GREYLIST, &redis).await;
    let (a, b) = ("a@example.org", "b@example.com");
    // Connections alternate: 1st to one proxy, 2nd to the other, and so on.
    let reply = rcpt(balancer.addr, "127.0.0.71", a, b).await;
    assert!(is_greylisted(&reply), "first attempt: {reply:?}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let reply = rcpt(balancer.addr, "127.0.0.71", a, b).await;
    assert_eq!(reply.code, 250, "retry, through the other proxy: {reply:?}");
    let reply = rcpt(balancer.addr, "127.0.0.71", a, b).await;
    assert_eq!(reply.code, 250, "known, through the first again: {reply:?}");
    // The client address comes from the PROXY header: another client is another triplet.
    let reply = rcpt(balancer.addr, "127.0.0.72", a, b).await;
    assert!(is_greylisted(&reply), "other client: {reply:?}");
    let keys = redis.keys("relaygate:greylist:*127.0.0.7*").unwrap();
    assert!(keys.len() >= 2, "{keys:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_proxies_behind_one_address_enforce_one_rate_limit() {
    let Some(redis) = RedisServer::start().unwrap() else {
        return;
    };
    let (balancer, _site) = two_behind_one_address("rate-limit", RATE_LIMIT, &redis).await;
    let sender = "bulk@example.org";
    for n in 0..5 {
        let reply = rcpt(
            balancer.addr,
            "127.0.0.81",
            sender,
            &format!("r{n}@example.com"),
        )
        .await;
        let limit = if n < 3 { 250 } else { 452 };
        assert_eq!(reply.code, limit, "recipient {n}: {reply:?}");
    }
}
