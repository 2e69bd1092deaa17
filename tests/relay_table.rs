//! The Apple decision table for restricted relay, through the running proxy:
//! client addresses are played by binding 127.0.0.x, and the recording
//! upstream shows that refused recipients never reach it.

use relaygate_tests::client::SmtpClient;
use relaygate_tests::proxy::TestProxy;
use relaygate_tests::upstream::{RecordingUpstream, UpstreamBehaviour};
use std::net::IpAddr;
use std::time::Duration;

const RESTRICTED: &str = r#"
[proxy]
upstream = "{upstream}"
hostname = "mx.example.com"

[policy.config]
open_relay_addr_flag = 1
open_relay_addr_list = ["127.0.0.2", "127.0.1.0/24", "127.0.2.10-127.0.2.20", "::1"]
local_domains = ["example.com", "[192.0.2.1]"]
"#;

const LOCAL: &str = "user@example.com";
const REMOTE: &str = "someone@remote.example.net";

async fn setup(config: &str) -> (RecordingUpstream, TestProxy) {
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    let proxy = TestProxy::start(config, upstream.addr()).await.unwrap();
    (upstream, proxy)
}

async fn greeted(proxy: &TestProxy, from: &str) -> SmtpClient {
    let ip: IpAddr = from.parse().unwrap();
    let mut client = if ip.is_ipv6() {
        let v6 = proxy.addr_v6().expect("IPv6 loopback is available");
        SmtpClient::connect_from(ip, v6).await.unwrap()
    } else {
        SmtpClient::connect_from(ip, proxy.addr()).await.unwrap()
    };
    assert_eq!(client.read_reply().await.unwrap().code, 220);
    client.ehlo("client.test").await.unwrap();
    client
}

/// The RCPT reply code for `rcpt` from a client at `from`.
async fn rcpt_code(proxy: &TestProxy, from: &str, rcpt: &str) -> (u16, String) {
    let mut client = greeted(proxy, from).await;
    client
        .cmd_expect("MAIL FROM:<sender@elsewhere.test>", 250)
        .await
        .unwrap();
    let reply = client.cmd(&format!("RCPT TO:<{rcpt}>")).await.unwrap();
    client.quit().await.unwrap();
    (reply.code, reply.text())
}

fn upstream_recipients(upstream: &RecordingUpstream) -> Vec<String> {
    upstream
        .sessions()
        .iter()
        .flat_map(|s| s.commands.iter())
        .filter(|c| c.to_ascii_uppercase().starts_with("RCPT TO:"))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn listed_clients_relay_and_unlisted_clients_only_deliver_locally() {
    let (upstream, proxy) = setup(RESTRICTED).await;
    let cases = [
        // (client address, recipient, expected code)
        ("127.0.0.2", REMOTE, 250),              // single address
        ("127.0.1.77", REMOTE, 250),             // CIDR
        ("127.0.2.10", REMOTE, 250),             // range, first
        ("127.0.2.20", REMOTE, 250),             // range, last
        ("127.0.2.21", REMOTE, 554),             // just past the range
        ("127.0.0.3", REMOTE, 554),              // unlisted
        ("127.0.0.3", LOCAL, 250),               // unlisted, local recipient
        ("127.0.0.3", "User@EXAMPLE.COM.", 250), // case and trailing dot
        ("127.0.0.3", "postmaster", 250),
        ("127.0.0.3", "user@[192.0.2.1]", 250), // listed literal
        ("::1", REMOTE, 250),                   // IPv6 entry
    ];
    for (from, rcpt, want) in cases {
        let (code, text) = rcpt_code(&proxy, from, rcpt).await;
        assert_eq!(code, want, "client {from}, RCPT TO:<{rcpt}>: {text}");
        if code == 554 {
            assert!(
                text.starts_with("5.7.1"),
                "relay denial carries 5.7.1: {text}"
            );
        }
    }
    let seen = upstream_recipients(&upstream);
    let denied = seen.iter().filter(|c| c.contains(REMOTE)).count();
    assert_eq!(
        denied, 5,
        "exactly the accepted relays reached the upstream: {seen:?}"
    );
    assert!(
        upstream.violations().is_empty(),
        "{:?}",
        upstream.violations()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_address_trick_lets_an_unlisted_client_relay() {
    let (upstream, proxy) = setup(RESTRICTED).await;
    let tricks = [
        "someone%remote.example.net@example.com",
        "remote.example.net!someone@example.com",
        "\"someone@remote.example.net\"@example.com",
        "\"someone%remote.example.net\"@example.com",
        "\"someone\\@remote.example.net\"@example.com",
        "@example.com:someone@remote.example.net",
        "@example.com,@example.com:user@example.com",
        "user@[192.0.2.2]",
        "user@[IPv6:2001:db8::1]",
        "user@example.com.remote.example.net",
        "user@sub.example.com",
        "user@example.co",
    ];
    for rcpt in tricks {
        let (code, text) = rcpt_code(&proxy, "127.0.0.3", rcpt).await;
        assert!(
            code >= 500,
            "RCPT TO:<{rcpt}> from an unlisted client got {code} {text}"
        );
    }
    assert!(
        upstream_recipients(&upstream).is_empty(),
        "{:?}",
        upstream_recipients(&upstream)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn restricted_relay_off_is_an_open_relay() {
    let config = RESTRICTED.replace("open_relay_addr_flag = 1", "open_relay_addr_flag = 0");
    let (_upstream, proxy) = setup(&config).await;
    assert_eq!(rcpt_code(&proxy, "127.0.0.3", REMOTE).await.0, 250);
    assert!(proxy_policy_is_open(&config).await);
}

async fn proxy_policy_is_open(config: &str) -> bool {
    let text = config.replace("{upstream}", "127.0.0.1:25");
    let config = relaygate::config::Config::parse(&text).unwrap();
    let app = relaygate::app::App::with_listeners(&config, vec![])
        .await
        .unwrap();
    app.policy().info().open_relay
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_flag_without_authentication_requires_auth_for_everyone_unlisted() {
    let config = RESTRICTED.replace("local_domains", "smtp_plain_login_flag = 1\nlocal_domains");
    let (upstream, proxy) = setup(&config).await;
    // Listed clients are exempt when restricted relay is on.
    assert_eq!(rcpt_code(&proxy, "127.0.0.2", REMOTE).await.0, 250);
    // Unlisted clients must authenticate, even for local recipients ("send only").
    for rcpt in [REMOTE, LOCAL] {
        let (code, text) = rcpt_code(&proxy, "127.0.0.3", rcpt).await;
        assert_eq!(code, 530, "{rcpt}: {text}");
        assert!(text.starts_with("5.7.0"), "{text}");
    }
    // With restricted relay off, listing exempts nobody.
    let off = config.replace("open_relay_addr_flag = 1", "open_relay_addr_flag = 0");
    let proxy_off = TestProxy::start(&off, upstream.addr()).await.unwrap();
    assert_eq!(rcpt_code(&proxy_off, "127.0.0.2", LOCAL).await.0, 530);
}

#[tokio::test(flavor = "multi_thread")]
async fn blank_list_holds_the_servers_own_addresses() {
    let config = r#"
[proxy]
upstream = "{upstream}"
[policy.config]
open_relay_addr_flag = 1
local_domains = ["example.com"]
"#;
    let (_upstream, proxy) = setup(config).await;
    // Loopback is the machine's own.
    assert_eq!(rcpt_code(&proxy, "127.0.0.9", REMOTE).await.0, 250);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_default_restricts_relay() {
    let config = relaygate::config::Config::embedded_default();
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    let mut config = config;
    config.proxy.upstream = upstream.addr().to_string();
    let proxy = TestProxy::start_with(config).await.unwrap();
    let app_policy = proxy_policy_summary().await;
    assert!(app_policy.contains("ON"), "{app_policy}");
    assert_eq!(
        rcpt_code(&proxy, "127.0.0.1", REMOTE).await.0,
        250,
        "loopback is listed by default"
    );
    tokio::time::timeout(Duration::from_secs(5), proxy.shutdown())
        .await
        .unwrap();
}

async fn proxy_policy_summary() -> String {
    let config = relaygate::config::Config::embedded_default();
    let app = relaygate::app::App::with_listeners(&config, vec![])
        .await
        .unwrap();
    let info = app.policy().info().clone();
    assert!(!info.open_relay);
    info.summary
}
