//! The site-specific policy variants under `policies/`, one per guest
//! language, each built from source, loaded by the real proxy and judged
//! over SMTP: what a variant accepts reaches the recording upstream, what it
//! refuses does not.

use relaygate_tests::client::{Reply, SmtpClient};
use relaygate_tests::policies;
use relaygate_tests::proxy::TestProxy;
use relaygate_tests::upstream::{RecordingUpstream, UpstreamBehaviour};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

/// How long to wait for the upstream to see what it should.
const WAIT: Duration = Duration::from_secs(10);

/// A loopback client address (every test binds its client to one).
fn client(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// Starts an upstream and a proxy running the variant `name` with
/// `policy_config` as its `[policy.config]`.
async fn start(
    name: &str,
    proxy_extra: &str,
    policy_config: &str,
) -> (TestProxy, RecordingUpstream) {
    let module = policies::built(name);
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    let proxy = TestProxy::start(
        &config_text(&module, proxy_extra, policy_config),
        upstream.addr(),
    )
    .await
    .unwrap_or_else(|err| panic!("the proxy refused policy {name}: {err:#}"));
    (proxy, upstream)
}

fn config_text(module: &Path, proxy_extra: &str, policy_config: &str) -> String {
    format!(
        "[proxy]\nupstream = \"{{upstream}}\"\n{proxy_extra}\n\
         [policy]\nmodule = \"{}\"\nwatch = false\ncache_dir = \"{}\"\n\
         [policy.config]\n{policy_config}\n",
        module.display(),
        policies::output_dir().join("cache").display(),
    )
}

/// Connects from `from`, reads the greeting and says EHLO `name`.
async fn session(proxy: &TestProxy, from: IpAddr, helo: &str) -> SmtpClient {
    let mut c = SmtpClient::connect_from(from, proxy.addr()).await.unwrap();
    assert_eq!(c.read_reply().await.unwrap().code, 220);
    c.ehlo(helo).await.unwrap();
    c
}

fn assert_refused(reply: &Reply, code: u16, status: &str, text: Option<&str>) {
    assert_eq!(reply.code, code, "{reply}");
    assert_eq!(reply.enhanced_status(), Some(status), "{reply}");
    if let Some(text) = text {
        assert!(reply.text().contains(text), "{reply} should say {text:?}");
    }
}

const MESSAGE: &[u8] = b"Subject: hello\r\n\r\nbody\r\n";

/// C: `recipient-limits` counts recipients per transaction by client class
/// and refuses the one over the limit with the site's text.
#[tokio::test]
async fn c_recipient_limits_by_client_class() {
    let (proxy, upstream) = start(
        "recipient-limits",
        "",
        "trusted_networks = [\"127.0.0.1/32\"]\nmax_recipients_trusted = 3\n\
         max_recipients_other = 2\nreply_text = \"at most a few recipients, split the message\"",
    )
    .await;

    // Another client: two recipients pass, the third gets 452 4.5.3.
    let mut other = session(&proxy, client(2), "other.example.net").await;
    let sent = other
        .send_message(
            "a@example.net",
            &["r1@example.com", "r2@example.com", "r3@example.com"],
            MESSAGE,
        )
        .await
        .unwrap();
    assert!(
        sent.rcpts[0].is_positive() && sent.rcpts[1].is_positive(),
        "{sent:?}"
    );
    assert_refused(
        &sent.rcpts[2],
        452,
        "4.5.3",
        Some("at most a few recipients, split the message"),
    );
    assert!(sent.accepted(), "{sent:?}");
    other.quit().await.unwrap();

    // A trusted client gets three.
    let mut trusted = session(&proxy, client(1), "trusted.example.net").await;
    let sent = trusted
        .send_message(
            "b@example.net",
            &[
                "t1@example.com",
                "t2@example.com",
                "t3@example.com",
                "t4@example.com",
            ],
            MESSAGE,
        )
        .await
        .unwrap();
    assert!(sent.rcpts[..3].iter().all(Reply::is_positive), "{sent:?}");
    assert_refused(&sent.rcpts[3], 452, "4.5.3", None);
    assert!(sent.accepted(), "{sent:?}");
    trusted.quit().await.unwrap();

    let messages = upstream.wait_for_messages(2, WAIT).await.unwrap();
    let recipients: Vec<Vec<String>> = messages.iter().map(|m| m.recipients.clone()).collect();
    assert_eq!(
        recipients,
        [
            vec!["r1@example.com", "r2@example.com"],
            vec!["t1@example.com", "t2@example.com", "t3@example.com"]
        ]
    );
    proxy.shutdown().await;
}

/// Every MAIL FROM line the upstream received.
fn upstream_senders(upstream: &RecordingUpstream) -> Vec<String> {
    upstream
        .sessions()
        .into_iter()
        .flat_map(|session| session.commands)
        .filter(|line| line.to_ascii_uppercase().starts_with("MAIL FROM"))
        .collect()
}

/// Python: `sender-domains` lets a mapped sender domain be used only from
/// its networks, with the site's reply.
#[tokio::test]
async fn python_sender_domains_bound_to_networks() {
    let (proxy, upstream) = start(
        "sender-domains",
        "",
        "sender_networks = [\"example.com: 127.0.0.1/32, ::1\", \"*.example.org: 127.0.0.3\"]\n\
         reject_text = \"{domain} mail must leave through the office relay, not {client}\"",
    )
    .await;

    // From the office network: accepted and delivered upstream.
    let mut office = session(&proxy, client(1), "office.example.com").await;
    let sent = office
        .send_message("alice@example.com", &["bob@example.net"], MESSAGE)
        .await
        .unwrap();
    assert!(sent.accepted(), "{sent:?}");
    office.quit().await.unwrap();

    // From elsewhere: refused at MAIL FROM with the configured text.
    let mut roaming = session(&proxy, client(2), "laptop.example.net").await;
    let refused = roaming
        .cmd("MAIL FROM:<mallory@example.com>")
        .await
        .unwrap();
    assert_refused(
        &refused,
        550,
        "5.7.1",
        Some("example.com mail must leave through the office relay, not 127.0.0.2"),
    );
    let refused = roaming
        .cmd("MAIL FROM:<x@lists.example.org>")
        .await
        .unwrap();
    assert_refused(&refused, 550, "5.7.1", None);
    // A domain the map does not mention passes.
    let sent = roaming
        .send_message("carol@elsewhere.test", &["bob@example.net"], MESSAGE)
        .await
        .unwrap();
    assert!(sent.accepted(), "{sent:?}");
    roaming.quit().await.unwrap();

    let messages = upstream.wait_for_messages(2, WAIT).await.unwrap();
    let senders: Vec<&str> = messages.iter().map(|m| m.sender.as_str()).collect();
    assert_eq!(senders, ["alice@example.com", "carol@elsewhere.test"]);
    let seen = upstream_senders(&upstream);
    assert!(
        !seen
            .iter()
            .any(|line| line.contains("mallory") || line.contains("lists.example.org")),
        "a refused sender reached the upstream: {seen:?}"
    );
    proxy.shutdown().await;
}

/// JavaScript: `helo-sanity` refuses implausible HELO/EHLO names from
/// clients outside the internal networks.
#[tokio::test]
async fn javascript_helo_sanity() {
    let (proxy, upstream) = start(
        "helo-sanity",
        "hostname = \"mx.relaygate.test\"",
        "internal_networks = [\"127.0.0.1/32\"]",
    )
    .await;

    let mut outside = SmtpClient::connect_from(client(2), proxy.addr())
        .await
        .unwrap();
    assert_eq!(outside.read_reply().await.unwrap().code, 220);
    for (name, status) in [
        ("localhost", "5.7.1"),
        ("mx.relaygate.test", "5.7.1"),
        ("[127.0.0.9]", "5.7.1"),
        ("127.0.0.2", "5.5.2"),
        ("workstation", "5.5.2"),
    ] {
        let reply = outside.cmd(&format!("EHLO {name}")).await.unwrap();
        assert_refused(&reply, 550, status, None);
        // Nothing is accepted without a greeting the policy liked.
        let mail = outside.cmd("MAIL FROM:<a@example.net>").await.unwrap();
        assert!(
            !mail.is_positive(),
            "MAIL after refused EHLO {name}: {mail}"
        );
    }
    outside.ehlo("[127.0.0.2]").await.unwrap();
    outside.ehlo("client.example.net").await.unwrap();
    let sent = outside
        .send_message("a@example.net", &["b@example.com"], MESSAGE)
        .await
        .unwrap();
    assert!(sent.accepted(), "{sent:?}");
    outside.quit().await.unwrap();

    // An internal client is not judged.
    let mut inside = session(&proxy, client(1), "localhost").await;
    let sent = inside
        .send_message("c@example.net", &["d@example.com"], MESSAGE)
        .await
        .unwrap();
    assert!(sent.accepted(), "{sent:?}");
    inside.quit().await.unwrap();

    let messages = upstream.wait_for_messages(2, WAIT).await.unwrap();
    let senders: Vec<&str> = messages.iter().map(|m| m.sender.as_str()).collect();
    assert_eq!(senders, ["a@example.net", "c@example.net"]);
    let seen = upstream_senders(&upstream);
    assert_eq!(
        seen.len(),
        2,
        "only the two accepted transactions reach the upstream: {seen:?}"
    );
    proxy.shutdown().await;
}

/// Rust: `submission` wants SMTP AUTH for everything (530 5.7.0) except
/// from its trusted networks.
#[tokio::test]
async fn rust_submission_requires_auth() {
    let (proxy, upstream) = start(
        "submission",
        "",
        "trusted_networks = [\"127.0.0.3/32\"]\ndefault_domain = \"example.com\"",
    )
    .await;

    let mut anonymous = session(&proxy, client(2), "laptop.example.net").await;
    let mail = anonymous
        .cmd("MAIL FROM:<alice@example.com>")
        .await
        .unwrap();
    assert_refused(&mail, 530, "5.7.0", None);
    anonymous.quit().await.unwrap();

    let mut webmail = session(&proxy, client(3), "webmail.example.com").await;
    let sent = webmail
        .send_message("alice@example.com", &["bob@example.net"], MESSAGE)
        .await
        .unwrap();
    assert!(sent.accepted(), "{sent:?}");
    webmail.quit().await.unwrap();

    let messages = upstream.wait_for_messages(1, WAIT).await.unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        upstream_senders(&upstream).len(),
        1,
        "the refused MAIL reached the upstream"
    );
    proxy.shutdown().await;
}

/// Zig: `bounce-guard` refuses bounces (`MAIL FROM:<>`) to addresses that
/// send no mail and bounces with more than one recipient; other mail passes.
#[tokio::test]
async fn zig_bounce_guard_refuses_backscatter() {
    let (proxy, upstream) = start(
        "bounce-guard",
        "",
        "no_bounce_recipients = [\"noreply@example.com\", \"*@lists.example.com\"]",
    )
    .await;

    let mut mx = session(&proxy, client(2), "mx.example.net").await;
    let bounce = mx
        .send_message(
            "",
            &[
                "alice@example.com",
                "NoReply@example.com",
                "owner@lists.example.com",
                "bob@example.com",
            ],
            MESSAGE,
        )
        .await
        .unwrap();
    assert!(bounce.rcpts[0].is_positive(), "{bounce:?}");
    assert_refused(&bounce.rcpts[1], 550, "5.7.1", Some("takes no bounces"));
    assert_refused(&bounce.rcpts[2], 550, "5.7.1", None);
    assert_refused(&bounce.rcpts[3], 550, "5.5.3", None);
    assert!(bounce.accepted(), "{bounce:?}");

    // Ordinary mail is not judged, whatever its recipients.
    let sent = mx
        .send_message(
            "shop@example.net",
            &["noreply@example.com", "alice@example.com"],
            MESSAGE,
        )
        .await
        .unwrap();
    assert!(sent.rcpts.iter().all(Reply::is_positive), "{sent:?}");
    mx.quit().await.unwrap();

    let messages = upstream.wait_for_messages(2, WAIT).await.unwrap();
    let recipients: Vec<Vec<String>> = messages.iter().map(|m| m.recipients.clone()).collect();
    assert_eq!(
        recipients,
        [
            vec!["alice@example.com"],
            vec!["noreply@example.com", "alice@example.com"]
        ]
    );
    proxy.shutdown().await;
}

/// Swapping languages on a live proxy: the C module serves, a Rust module
/// replaces it in the same file (write, then rename) and a reload later,
/// new sessions get the Rust policy's verdicts while a session that began
/// before the swap finishes under the C one.
#[tokio::test]
async fn swap_a_c_policy_for_a_rust_one_on_a_live_proxy() {
    let (c_module, rust_module) = (
        policies::built("recipient-limits"),
        policies::built("submission"),
    );
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("policy.wasm");
    let install = |from: &Path| {
        let temp = dir.path().join(".policy.wasm.new");
        std::fs::copy(from, &temp).unwrap();
        std::fs::rename(&temp, &module).unwrap();
    };
    install(&c_module);
    // Keys of both policies; each ignores the other's.
    let config = dir.path().join("relaygate.toml");
    std::fs::write(
        &config,
        config_text(
            &module,
            "",
            "trusted_networks = [\"127.0.0.3/32\"]\nmax_recipients_other = 1\ndefault_domain = \"example.com\"",
        )
        .replace("{upstream}", &upstream.addr().to_string()),
    )
    .unwrap();
    let proxy = TestProxy::start_from_file(&config).await.unwrap();

    // Under the C policy an anonymous client may send, one recipient at a time.
    let mut before = session(&proxy, client(2), "before.example.net").await;
    before
        .cmd_expect("MAIL FROM:<a@example.com>", 250)
        .await
        .unwrap();

    install(&rust_module);
    proxy.reloader().reload("test").await.unwrap();

    // A new session gets the Rust policy: AUTH required.
    let mut after = session(&proxy, client(2), "after.example.net").await;
    let mail = after.cmd("MAIL FROM:<a@example.com>").await.unwrap();
    assert_refused(&mail, 530, "5.7.0", None);
    after.quit().await.unwrap();

    // The session from before the swap is still judged by the C policy.
    before
        .cmd_expect("RCPT TO:<r1@example.net>", 250)
        .await
        .unwrap();
    let second = before.cmd("RCPT TO:<r2@example.net>").await.unwrap();
    assert_refused(&second, 452, "4.5.3", None);
    before.cmd_expect("DATA", 354).await.unwrap();
    assert!(before.send_content(MESSAGE).await.unwrap().is_positive());
    before.quit().await.unwrap();

    let messages = upstream.wait_for_messages(1, WAIT).await.unwrap();
    assert_eq!(messages[0].recipients, ["r1@example.net"]);
    assert_eq!(upstream_senders(&upstream).len(), 1);
    proxy.shutdown().await;
}
