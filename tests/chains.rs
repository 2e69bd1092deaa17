//! Policy chains over real sockets: Apple's relay rules then greylisting
//! (the relay refusal comes first and greylisting is never asked), three
//! modules each refusing what the others accept (each refusal counted for
//! the right module), a dry-run module whose refusals are counted but let
//! through, one module's file swapped on a running proxy (sessions pinned,
//! the other module kept as it was, a bad file leaving the old chain
//! serving), the watcher following every module file, two listeners
//! asking different chains (a reload may not drop one a bound listener
//! asks), each module told its session's listener, and traces, transaction lines and the session
//! span naming the module and chain.

use relaygate_tests::admin::http;
use relaygate_tests::client::{Reply, SmtpClient};
use relaygate_tests::logs::captured_json_logs;
use relaygate_tests::policies::built;
use relaygate_tests::proxy::{TestProxy, misbehaving_reject_wasm, misbehaving_wasm};
use relaygate_tests::upstream::{RecordingUpstream, UpstreamBehaviour};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

async fn upstream() -> RecordingUpstream {
    RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .expect("upstream starts")
}

/// `[proxy]` and `[policy]` ahead of the chains under test.
const HEAD: &str = r#"
[proxy]
upstream = "{upstream}"
[policy]
watch = false
"#;

/// Apple's relay rules: 127.0.0.11 may relay, anyone may mail example.com.
const RELAY: &str = r#"
[[chain.module]]
name = "relay"
module = "builtin:apple-relay"
[chain.module.config]
open_relay_addr_flag = 1
open_relay_addr_list = ["127.0.0.11"]
local_domains = ["example.com"]
"#;

/// The reply to RCPT TO `recipient` in a session from `client`.
async fn rcpt(proxy: SocketAddr, client: &str, recipient: &str) -> Reply {
    let client: IpAddr = client.parse().unwrap();
    let mut c = SmtpClient::connect_from(client, proxy).await.unwrap();
    assert_eq!(c.read_reply().await.unwrap().code, 220);
    c.ehlo("client.test").await.unwrap();
    c.cmd_expect("MAIL FROM:<a@example.org>", 250)
        .await
        .unwrap();
    let reply = c.cmd(&format!("RCPT TO:<{recipient}>")).await.unwrap();
    c.quit().await.unwrap();
    reply
}

/// The count of `relaygate_policy_calls_total` for these labels (0 when
/// the series does not exist).
fn calls(proxy: &TestProxy, hook: &str, verdict: &str, module: &str) -> f64 {
    let text = proxy.reloader().metrics().encode();
    let series = format!(
        "relaygate_policy_calls_total{{hook=\"{hook}\",verdict=\"{verdict}\",module=\"{module}\"}}"
    );
    text.lines()
        .find(|line| line.starts_with(&series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// Every `rcpt-to` call of `module`, whatever its verdict.
fn rcpt_calls(proxy: &TestProxy, module: &str) -> f64 {
    ["accept", "reject", "tempfail"]
        .iter()
        .map(|verdict| calls(proxy, "rcpt-to", verdict, module))
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn relay_rules_answer_before_greylisting_is_asked() {
    let upstream = upstream().await;
    let config = format!(
        r#"{HEAD}
[[chain]]
name = "default"
{RELAY}
[[chain.module]]
name = "greylist"
module = "{}"
[chain.module.config]
delay_secs = 1
retry_window_secs = 60
client_prefix_v4 = 32
"#,
        built("greylist").display()
    );
    let proxy = TestProxy::start(&config, upstream.addr()).await.unwrap();
    // An unlisted client relaying: apple-relay's 554, greylist never asked.
    let reply = rcpt(proxy.addr(), "127.0.0.3", "x@remote.example.net").await;
    assert_eq!(reply.code, 554, "{reply:?}");
    assert_eq!(calls(&proxy, "rcpt-to", "reject", "relay"), 1.0);
    assert_eq!(rcpt_calls(&proxy, "greylist"), 0.0);
    // A listed client: greylisted on first contact, through after the delay.
    let reply = rcpt(proxy.addr(), "127.0.0.11", "x@remote.example.net").await;
    assert!(
        reply.code == 451 && reply.enhanced_status() == Some("4.7.1"),
        "{reply:?}"
    );
    assert_eq!(calls(&proxy, "rcpt-to", "tempfail", "greylist"), 1.0);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let reply = rcpt(proxy.addr(), "127.0.0.11", "x@remote.example.net").await;
    assert_eq!(reply.code, 250, "{reply:?}");
    assert_eq!(calls(&proxy, "rcpt-to", "accept", "relay"), 2.0);
}

/// The relay rules, then two fixture modules refusing different recipients.
fn three_modules(second_mode: &str) -> String {
    format!(
        r#"{HEAD}
[[chain]]
name = "default"
{RELAY}
[[chain.module]]
name = "bad-words"
module = "{mis}"
mode = "{second_mode}"
[chain.module.config]
rcpt_to = "reject-if-recipient-contains:bad"
[[chain.module]]
name = "slow-words"
module = "{mis}"
[chain.module.config]
rcpt_to = "tempfail-if-recipient-contains:slow"
"#,
        mis = misbehaving_wasm().display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn each_refusal_comes_from_the_module_that_made_it() {
    let upstream = upstream().await;
    let proxy = TestProxy::start(&three_modules("enforce"), upstream.addr())
        .await
        .unwrap();
    // Relaying from an unlisted client: the first module refuses.
    let reply = rcpt(proxy.addr(), "127.0.0.3", "bad@remote.example.net").await;
    assert_eq!(reply.code, 554, "{reply:?}");
    assert_eq!(calls(&proxy, "rcpt-to", "reject", "relay"), 1.0);
    assert_eq!(rcpt_calls(&proxy, "bad-words"), 0.0);
    // A local recipient with a bad word: the second module's 550.
    let reply = rcpt(proxy.addr(), "127.0.0.3", "bad-slow@example.com").await;
    assert_eq!(reply.code, 550, "{reply:?}");
    assert!(reply.text().contains("fixture reject"), "{reply:?}");
    assert_eq!(calls(&proxy, "rcpt-to", "reject", "bad-words"), 1.0);
    // The third module was not asked about it.
    assert_eq!(rcpt_calls(&proxy, "slow-words"), 0.0);
    // A slow word only: the third module's 451.
    let reply = rcpt(proxy.addr(), "127.0.0.3", "slow@example.com").await;
    assert_eq!(reply.code, 451, "{reply:?}");
    assert_eq!(calls(&proxy, "rcpt-to", "tempfail", "slow-words"), 1.0);
    // Neither: all three accept.
    let reply = rcpt(proxy.addr(), "127.0.0.3", "fine@example.com").await;
    assert_eq!(reply.code, 250, "{reply:?}");
    assert_eq!(calls(&proxy, "rcpt-to", "accept", "slow-words"), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_module_is_counted_but_never_answers() {
    let upstream = upstream().await;
    let proxy = TestProxy::start(&three_modules("dry-run"), upstream.addr())
        .await
        .unwrap();
    let client: IpAddr = "127.0.0.3".parse().unwrap();
    let mut c = SmtpClient::connect_from(client, proxy.addr())
        .await
        .unwrap();
    c.read_reply().await.unwrap();
    c.ehlo("client.test").await.unwrap();
    let sent = c
        .send_message(
            "a@example.org",
            &["bad@example.com"],
            b"Subject: hi\r\n\r\nbody",
        )
        .await
        .unwrap();
    c.quit().await.unwrap();
    assert!(sent.accepted(), "{:?}", sent.last_reply());
    // Counted as the refusal it would have been, for its module; the
    // module after it was still asked.
    assert_eq!(calls(&proxy, "rcpt-to", "reject", "bad-words"), 1.0);
    assert_eq!(calls(&proxy, "rcpt-to", "accept", "slow-words"), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn swapping_one_module_file_keeps_the_others_and_pins_sessions() {
    let upstream = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("fixture.wasm");
    std::fs::copy(misbehaving_wasm(), &module).unwrap();
    let file = dir.path().join("relaygate.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[proxy]
upstream = "{}"
[policy]
watch = false
[[chain]]
name = "default"
{RELAY}
[[chain.module]]
name = "fixture"
module = "{}"
"#,
            upstream.addr(),
            module.display()
        ),
    )
    .unwrap();
    let proxy = TestProxy::start_from_file(&file).await.unwrap();
    let digests = |proxy: &TestProxy| relaygate::reload::chain_digests(&proxy.reloader().chains());
    let before = digests(&proxy);
    let relay_before = proxy.reloader().chains().default_chain().modules[0]
        .policy
        .clone();
    // A session that starts on the old chain...
    let mut pinned = SmtpClient::connect_from("127.0.0.3".parse().unwrap(), proxy.addr())
        .await
        .unwrap();
    pinned.read_reply().await.unwrap();
    pinned.ehlo("client.test").await.unwrap();
    // ...then the fixture is replaced by its rejecting build.
    let staged = dir.path().join("fixture.wasm.new");
    std::fs::copy(misbehaving_reject_wasm(), &staged).unwrap();
    std::fs::rename(&staged, &module).unwrap();
    let swapped = proxy.reloader().reload("test").await.expect("reload");
    let after = digests(&proxy);
    assert_eq!(after[0], before[0], "the relay module is unchanged");
    assert_ne!(after[1].1, before[1].1, "the fixture is swapped");
    assert_eq!(swapped.modules, after);
    let chains = proxy.reloader().chains();
    assert!(
        Arc::ptr_eq(&chains.default_chain().modules[0].policy, &relay_before),
        "the unchanged module is reused, not loaded again"
    );
    // The pinned session still has the accepting fixture; new ones do not.
    pinned
        .cmd_expect("MAIL FROM:<a@example.org>", 250)
        .await
        .unwrap();
    let reply = pinned.cmd("RCPT TO:<x@example.com>").await.unwrap();
    assert_eq!(reply.code, 250, "pinned session: {reply:?}");
    pinned.quit().await.unwrap();
    let reply = rcpt(proxy.addr(), "127.0.0.3", "x@example.com").await;
    assert_eq!(reply.code, 550, "new session: {reply:?}");

    // A bad file: the reload names the module and the old chain serves on.
    std::fs::write(&module, b"not a component").unwrap();
    let error = proxy
        .reloader()
        .reload("test")
        .await
        .expect_err("a bad module is refused");
    assert!(error.contains("\"fixture\""), "{error}");
    assert_eq!(digests(&proxy), after);
    let reply = rcpt(proxy.addr(), "127.0.0.3", "x@example.com").await;
    assert_eq!(reply.code, 550, "still the swapped fixture: {reply:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_listeners_ask_different_chains() {
    let upstream = upstream().await;
    let config = format!(
        r#"{HEAD}
[policy.config]
local_domains = ["example.com"]
[admin]
listen = "127.0.0.1:0"
[[listener]]
name = "open"
address = "127.0.0.1:0"
[[listener]]
name = "strict"
address = "127.0.0.1:1"
chain = "strict"
[[chain]]
name = "strict"
{RELAY}
[[chain.module]]
name = "no-bad"
module = "{}"
[chain.module.config]
rcpt_to = "reject-if-recipient-contains:bad"
"#,
        misbehaving_wasm().display()
    );
    let proxy = TestProxy::start(&config, upstream.addr()).await.unwrap();
    let open = proxy.listener_addr("open");
    let strict = proxy.listener_addr("strict");
    let reply = rcpt(open, "127.0.0.3", "bad@example.com").await;
    assert_eq!(reply.code, 250, "default chain: {reply:?}");
    let reply = rcpt(strict, "127.0.0.3", "bad@example.com").await;
    assert_eq!(reply.code, 550, "strict chain: {reply:?}");
    assert_eq!(calls(&proxy, "rcpt-to", "reject", "no-bad"), 1.0);
    assert_eq!(calls(&proxy, "rcpt-to", "accept", "policy"), 1.0);
    // `/status` lists every chain's modules with their sha256.
    let (code, body) = http(proxy.admin_addr().unwrap(), "GET", "/status")
        .await
        .unwrap();
    assert_eq!(code, 200);
    let json = body.split_once("\r\n\r\n").map_or("", |(_, json)| json);
    let status: serde_json::Value = serde_json::from_str(json).unwrap();
    let chains = status["chains"].as_array().expect("chains");
    assert_eq!(chains[0]["name"], "default");
    assert_eq!(chains[0]["modules"][0]["name"], "policy");
    assert_eq!(chains[1]["name"], "strict");
    let strict: Vec<&str> = chains[1]["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(strict, ["relay", "no-bad"]);
    for (chain, module) in relaygate::reload::chain_digests(&proxy.reloader().chains()) {
        assert!(body.contains(&module), "{chain} {module} in {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_module_is_told_the_listener_and_host_name_of_its_session() {
    // `server.listener` and `server.hostname` (WIT 0.1.1) answer for the
    // session asked about, even when one instance serves several listeners.
    let upstream = upstream().await;
    let config = format!(
        r#"
[proxy]
upstream = "{{upstream}}"
hostname = "relay.test"
[policy]
watch = false
module = "{}"
[policy.config]
helo = "introduce"
[[listener]]
name = "mx"
address = "127.0.0.1:0"
hostname = "mx.test"
[[listener]]
name = "submission"
address = "127.0.0.1:1"
hostname = "smtp.test"
"#,
        misbehaving_wasm().display()
    );
    let proxy = TestProxy::start(&config, upstream.addr()).await.unwrap();
    let ehlo = |addr: SocketAddr| async move {
        let mut c = SmtpClient::connect_from("127.0.0.3".parse().unwrap(), addr)
            .await
            .unwrap();
        assert_eq!(c.read_reply().await.unwrap().code, 220);
        c.cmd("EHLO client.test").await.unwrap().to_string()
    };
    for _ in 0..3 {
        let (mx, submission, default) = tokio::join!(
            ehlo(proxy.listener_addr("mx")),
            ehlo(proxy.listener_addr("submission")),
            ehlo(proxy.addr())
        );
        assert!(
            mx.contains("550 5.7.1 listener mx greeting as mx.test"),
            "{mx}"
        );
        assert!(
            submission.contains("550 5.7.1 listener submission greeting as smtp.test"),
            "{submission}"
        );
        assert!(
            default.contains("550 5.7.1 listener smtp greeting as relay.test"),
            "{default}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_watcher_sees_every_module_file() {
    let upstream = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    // Each module in a folder of its own: the last one is watched too.
    let (first_dir, last_dir) = (dir.path().join("first"), dir.path().join("last"));
    std::fs::create_dir_all(&first_dir).unwrap();
    std::fs::create_dir_all(&last_dir).unwrap();
    let (first, last) = (first_dir.join("m.wasm"), last_dir.join("m.wasm"));
    std::fs::copy(misbehaving_wasm(), &first).unwrap();
    std::fs::copy(misbehaving_wasm(), &last).unwrap();
    let file = dir.path().join("relaygate.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[proxy]
upstream = "{}"
[policy]
watch = true
[[chain]]
name = "default"
[[chain.module]]
name = "first"
module = "{}"
[[chain.module]]
name = "last"
module = "{}"
"#,
            upstream.addr(),
            first.display(),
            last.display()
        ),
    )
    .unwrap();
    let proxy = TestProxy::start_from_file(&file).await.unwrap();
    let kept = proxy.reloader().chains().default_chain().modules[0]
        .policy
        .clone();
    assert_eq!(
        rcpt(proxy.addr(), "127.0.0.3", "x@example.com").await.code,
        250
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let staged = last_dir.join("m.wasm.new");
    std::fs::copy(misbehaving_reject_wasm(), &staged).unwrap();
    std::fs::rename(&staged, &last).unwrap();
    let started = std::time::Instant::now();
    while rcpt(proxy.addr(), "127.0.0.3", "x@example.com").await.code != 550 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the last module's file change was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let chains = proxy.reloader().chains();
    assert!(Arc::ptr_eq(
        &chains.default_chain().modules[0].policy,
        &kept
    ));
    assert_eq!(calls(&proxy, "rcpt-to", "reject", "last"), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn traces_and_transaction_lines_name_the_deciding_module() {
    let logs = captured_json_logs();
    let upstream = upstream().await;
    let config = three_modules("dry-run").replace(
        "[policy]\nwatch = false\n",
        "[policy]\nwatch = false\ntrace_clients = [\"127.0.0.4/32\"]\n",
    );
    let proxy = TestProxy::start(&config, upstream.addr()).await.unwrap();
    let reply = rcpt(proxy.addr(), "127.0.0.4", "bad-slow@example.com").await;
    assert_eq!(reply.code, 451, "{reply:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON log line"))
        .filter(|e: &serde_json::Value| {
            e["span"]["client"]
                .as_str()
                .is_some_and(|c| c.starts_with("127.0.0.4:"))
        })
        .collect();
    let rcpt_trace = |module: &str| {
        events
            .iter()
            .find(|e| {
                e["target"] == "relaygate::trace"
                    && e["fields"]["hook"] == "rcpt-to"
                    && e["fields"]["module"] == module
            })
            .unwrap_or_else(|| panic!("no rcpt-to trace of {module} in {events:?}"))
    };
    assert_eq!(rcpt_trace("relay")["fields"]["verdict"], "accept");
    assert_eq!(rcpt_trace("bad-words")["fields"]["verdict"], "reject");
    assert_eq!(rcpt_trace("slow-words")["fields"]["verdict"], "tempfail");
    assert!(
        events.iter().any(|e| e["fields"]["module"] == "bad-words"
            && e["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("dry-run"))),
        "the dry-run refusal is logged with its module"
    );
    let transaction = events
        .iter()
        .find(|e| e["fields"]["message"] == "transaction")
        .unwrap_or_else(|| panic!("no transaction line in {events:?}"));
    assert!(
        transaction["fields"]["refused_by"]
            .as_str()
            .unwrap()
            .contains("rcpt-to:slow-words"),
        "{transaction}"
    );
    assert_eq!(transaction["span"]["chain"], "default", "{transaction}");
    // The span names every module with its digest, in chain order.
    let modules = transaction["span"]["modules"].as_str().unwrap();
    let names: Vec<&str> = modules
        .split(',')
        .map(|module| module.split_once(':').expect("name:digest").0)
        .collect();
    assert_eq!(names, ["relay", "bad-words", "slow-words"], "{modules}");
    assert!(
        modules
            .split(',')
            .all(|m| m.split_once(':').unwrap().1.len() == 12),
        "{modules}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_may_not_remove_a_chain_a_bound_listener_asks() {
    let upstream = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relaygate.toml");
    let text = |chain: &str| {
        format!(
            r#"
[proxy]
upstream = "{}"
[policy]
watch = false
[[listener]]
name = "mx"
address = "127.0.0.1:1"
chain = "{chain}"
[[chain]]
name = "strict"
{RELAY}
"#,
            upstream.addr()
        )
    };
    std::fs::write(&file, text("strict")).unwrap();
    let proxy = TestProxy::start_from_file(&file).await.unwrap();
    let before = relaygate::reload::chain_digests(&proxy.reloader().chains());
    // The new file moves the listener to `default` and drops `strict`; the
    // bound listener still asks `strict` until a restart.
    std::fs::write(
        &file,
        text("default").replace("name = \"strict\"", "name = \"other\""),
    )
    .unwrap();
    let error = proxy
        .reloader()
        .reload("test")
        .await
        .expect_err("the bound listener's chain must stay");
    assert!(
        error.contains("\"mx\"") && error.contains("\"strict\""),
        "{error}"
    );
    assert_eq!(
        relaygate::reload::chain_digests(&proxy.reloader().chains()),
        before
    );
    let reply = rcpt(
        proxy.listener_addr("mx"),
        "127.0.0.3",
        "x@remote.example.net",
    )
    .await;
    assert_eq!(reply.code, 554, "still the strict chain: {reply:?}");
}
