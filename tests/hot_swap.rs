//! Hot swap: replacing the policy module (or its config) on a live proxy
//! changes decisions for new sessions, never for sessions in progress, loses
//! no connection, and a module that fails any check leaves the old one
//! serving.

use relaygate_tests::admin::http;
use relaygate_tests::client::SmtpClient;
use relaygate_tests::proxy::{TestProxy, misbehaving_reject_wasm, misbehaving_wasm};
use relaygate_tests::upstream::{RecordingUpstream, UpstreamBehaviour};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const ACCEPTS: u16 = 250;
const REJECTS: u16 = 550;

struct Site {
    dir: tempfile::TempDir,
    upstream: RecordingUpstream,
}

impl Site {
    async fn new() -> Self {
        let site = Self {
            dir: tempfile::tempdir().unwrap(),
            upstream: RecordingUpstream::start(UpstreamBehaviour::default())
                .await
                .unwrap(),
        };
        site.install(&misbehaving_wasm());
        site
    }

    fn module(&self) -> PathBuf {
        self.dir.path().join("policy.wasm")
    }

    /// Install a module the safe way: write a temporary file, then rename.
    fn install(&self, from: &Path) {
        let temp = self.dir.path().join(".policy.wasm.new");
        std::fs::copy(from, &temp).unwrap();
        std::fs::rename(&temp, self.module()).unwrap();
    }

    fn write_config(&self, watch: bool, policy_config: &str) -> PathBuf {
        let path = self.dir.path().join("relaygate.toml");
        let text = format!(
            "[proxy]\nupstream = \"{}\"\nmax_connections_per_client = 1000\n[policy]\nmodule = \"{}\"\nwatch = {watch}\ncache_dir = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[policy.config]\n{policy_config}\n",
            self.upstream.addr(),
            self.module().display(),
            self.dir.path().join("cache").display(),
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// One session: the RCPT verdict, asked twice with a pause between (a swap
/// may happen in the pause; the session must not notice).
async fn session_verdicts(
    proxy: std::net::SocketAddr,
    pause: Duration,
) -> anyhow::Result<(u16, u16)> {
    let mut c = SmtpClient::connect(proxy).await?;
    anyhow::ensure!(c.read_reply().await?.code == 220, "no greeting");
    c.ehlo("client.test").await?;
    c.cmd_expect("MAIL FROM:<a@example.com>", 250).await?;
    let first = c.cmd("RCPT TO:<b@example.com>").await?.code;
    tokio::time::sleep(pause).await;
    let second = c.cmd("RCPT TO:<c@example.com>").await?.code;
    c.quit().await?;
    Ok((first, second))
}

async fn verdict(proxy: &TestProxy) -> u16 {
    session_verdicts(proxy.addr(), Duration::ZERO)
        .await
        .unwrap()
        .0
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_swaps_under_load_keep_every_session_on_its_module() {
    let site = Site::new().await;
    let proxy = TestProxy::start_from_file(&site.write_config(false, ""))
        .await
        .unwrap();
    assert_eq!(verdict(&proxy).await, ACCEPTS);

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|worker| {
            let stop = stop.clone();
            let addr = proxy.addr();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let pause = Duration::from_millis((n * 7 + worker) % 25);
                    seen.push(session_verdicts(addr, pause).await);
                    n += 1;
                }
                seen
            })
        })
        .collect();

    let modules = [misbehaving_reject_wasm(), misbehaving_wasm()];
    let mut swap_times = Vec::new();
    for round in 0..50 {
        let next = &modules[round % 2];
        site.install(next);
        let started = Instant::now();
        proxy.reloader().reload("test").await.unwrap();
        swap_times.push(started.elapsed());
        let want = if round % 2 == 0 { REJECTS } else { ACCEPTS };
        assert_eq!(
            verdict(&proxy).await,
            want,
            "a new session after swap {round}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);

    let mut sessions = 0;
    let mut both = [false, false];
    for client in clients {
        for result in client.await.unwrap() {
            let (first, second) = result.expect("no connection error under swaps");
            assert_eq!(first, second, "a session changed its mind mid-way");
            assert!(first == ACCEPTS || first == REJECTS, "{first}");
            both[usize::from(first == REJECTS)] = true;
            sessions += 1;
        }
    }
    assert!(sessions >= 50, "only {sessions} sessions ran");
    assert!(both[0] && both[1], "sessions saw both modules");
    let status = proxy.reloader().status();
    assert_eq!((status.ok, status.failed), (50, 0));
    swap_times.sort();
    println!(
        "swap latency: median {:?}, max {:?}",
        swap_times[25], swap_times[49]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn copying_a_module_over_the_file_changes_new_sessions_within_a_second() {
    let site = Site::new().await;
    let proxy = TestProxy::start_from_file(&site.write_config(true, ""))
        .await
        .unwrap();
    assert_eq!(verdict(&proxy).await, ACCEPTS);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A plain `cp` over the file, not a rename: the watcher must wait for
    // the write to finish.
    std::fs::copy(misbehaving_reject_wasm(), site.module()).unwrap();
    let started = Instant::now();
    let mut code = ACCEPTS;
    while code != REJECTS && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        code = verdict(&proxy).await;
    }
    assert_eq!(code, REJECTS, "the new module never took over");
    println!("file change to new verdict: {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // And a rename back is seen too.
    site.install(&misbehaving_wasm());
    let started = Instant::now();
    while verdict(&proxy).await != ACCEPTS {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "rename not picked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_modules_are_refused_and_the_old_one_keeps_serving() {
    let site = Site::new().await;
    let config = site.write_config(false, "");
    let proxy = TestProxy::start_from_file(&config).await.unwrap();
    let serving = proxy.reloader().current().digest().to_string();

    let garbage = site.dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm\x0d\x00\x01\x00garbage").unwrap();
    let empty_component = site.dir.path().join("empty.wasm");
    std::fs::write(&empty_component, b"\0asm\x0d\x00\x01\x00").unwrap();
    for (bad, why) in [
        (&garbage, "not a valid WebAssembly component"),
        (&empty_component, "does not fit"),
    ] {
        site.install(bad);
        let error = proxy.reloader().reload("test").await.unwrap_err();
        assert!(error.contains(why), "{error}");
        assert_eq!(proxy.reloader().current().digest(), serving);
        assert_eq!(verdict(&proxy).await, ACCEPTS);
    }

    // A module whose smoke call (init) traps, by a config change.
    site.install(&misbehaving_wasm());
    site.write_config(false, "init = \"trap\"");
    let error = proxy.reloader().reload("test").await.unwrap_err();
    assert!(error.contains("failed in init"), "{error}");
    // A config file that no longer parses.
    std::fs::write(&config, "[proxy\n").unwrap();
    let error = proxy.reloader().reload("test").await.unwrap_err();
    assert!(error.contains("invalid TOML"), "{error}");

    assert_eq!(verdict(&proxy).await, ACCEPTS);
    let status = proxy.reloader().status();
    assert_eq!((status.ok, status.failed), (0, 4));
    assert!(status.last_error.unwrap().contains("invalid TOML"));
}

#[tokio::test(flavor = "multi_thread")]
async fn config_changes_swap_too() {
    let site = Site::new().await;
    let config = site.write_config(false, "");
    let proxy = TestProxy::start_from_file(&config).await.unwrap();
    assert_eq!(verdict(&proxy).await, ACCEPTS);
    site.write_config(false, "rcpt_to = \"reject\"");
    proxy.reloader().reload("test").await.unwrap();
    assert_eq!(verdict(&proxy).await, REJECTS);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_endpoint_reloads_and_reports() {
    let site = Site::new().await;
    let proxy = TestProxy::start_from_file(&site.write_config(false, ""))
        .await
        .unwrap();
    let admin = proxy.admin_addr().expect("[admin] listen is set");
    assert_eq!(http(admin, "GET", "/healthz").await.unwrap().0, 200);
    site.install(&misbehaving_reject_wasm());
    let (code, body) = http(admin, "POST", "/reload").await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"ok\": true"), "{body}");
    let (code, status) = http(admin, "GET", "/status").await.unwrap();
    assert_eq!(code, 200);
    assert!(
        status.contains(proxy.reloader().current().digest()),
        "{status}"
    );
    assert!(status.contains("\"ok\": 1"), "{status}");
    site.install(&site.dir.path().join("relaygate.toml"));
    let (code, body) = http(admin, "POST", "/reload").await.unwrap();
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("\"ok\": false"), "{body}");
    assert_eq!(http(admin, "GET", "/nope").await.unwrap().0, 404);
    assert_eq!(
        verdict(&proxy).await,
        REJECTS,
        "the last good module serves"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn compiled_modules_are_cached_across_restarts_and_swaps() {
    let site = Site::new().await;
    let config = site.write_config(false, "");
    let first = TestProxy::start_from_file(&config).await.unwrap();
    assert_eq!(
        format!("{:?}", first.reloader().current().origin()),
        "Compiled"
    );
    drop(first);
    let second = TestProxy::start_from_file(&config).await.unwrap();
    assert_eq!(
        format!("{:?}", second.reloader().current().origin()),
        "Disk",
        "a restart reuses the compiled module"
    );
    site.install(&misbehaving_reject_wasm());
    second.reloader().reload("test").await.unwrap();
    site.install(&misbehaving_wasm());
    second.reloader().reload("test").await.unwrap();
    assert_eq!(
        format!("{:?}", second.reloader().current().origin()),
        "Memory",
        "swapping back is instant"
    );
}
