//! The admin endpoint's status page (`GET /`) after real traffic: the
//! serving chain with every module's sha256, the reload history (one
//! swap, one refused reload), live sessions, and the last refusals with
//! their decision traces, escaped, with no password, header value or body
//! text on it; served only on `[admin] listen` (the SMTP port answers an
//! HTTP request as SMTP). Rendered in headless Chromium, which leaves a
//! screenshot whose path the test prints.

use relaygate_tests::admin::http;
use relaygate_tests::client::SmtpClient;
use relaygate_tests::proxy::{TestProxy, misbehaving_wasm};
use relaygate_tests::tools::{require_tool, run_tool};
use relaygate_tests::upstream::{RecordingUpstream, UpstreamBehaviour};
use std::time::Duration;

const PASSWORD: &str = "hunter2-password-never-shown";

fn config(upstream: std::net::SocketAddr, users: &std::path::Path) -> String {
    format!(
        r#"
[proxy]
upstream = "{upstream}"
hostname = "relay.test"

[admin]
listen = "127.0.0.1:0"

[policy]
watch = false

[[chain]]
name = "default"

[[chain.module]]
name = "relay"
module = "builtin:apple-relay"
[chain.module.config]
open_relay_addr_flag = 1
open_relay_addr_list = ["127.0.0.7"]
smtp_plain_login_flag = 1
local_domains = ["example.com"]

[[chain.module]]
name = "content"
module = {fixture:?}
[chain.module.config]
data = "reject"

[auth]
backend = "file"
users_file = {users:?}
require_tls = false
"#,
        fixture = misbehaving_wasm().display().to_string(),
        users = users.display().to_string(),
    )
}

/// The body of a response from [`http`] (headers cut off).
fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_says_what_serves_what_changed_and_why_mail_was_refused() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    std::fs::write(&users, format!("alice:{hash}\n")).unwrap();
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    let path = dir.path().join("relaygate.toml");
    std::fs::write(&path, config(upstream.addr(), &users)).unwrap();
    let proxy = TestProxy::start_from_file(&path).await.unwrap();
    let admin = proxy.admin_addr().unwrap();

    // An unlisted client relaying: refused by `relay` at RCPT.
    let mut relay = SmtpClient::connect_from("127.0.0.20".parse().unwrap(), proxy.addr())
        .await
        .unwrap();
    relay.read_reply().await.unwrap();
    relay.ehlo("stranger.test").await.unwrap();
    relay
        .cmd_expect("MAIL FROM:<a&b@example.org>", 250)
        .await
        .unwrap();
    assert_eq!(
        relay
            .cmd("RCPT TO:<carol@elsewhere.org>")
            .await
            .unwrap()
            .code,
        530
    );
    // A user logging in, whose message `content` refuses at the end of DATA.
    let mut user = SmtpClient::connect_from("127.0.0.21".parse().unwrap(), proxy.addr())
        .await
        .unwrap();
    user.read_reply().await.unwrap();
    user.ehlo("laptop.test").await.unwrap();
    assert_eq!(user.auth_plain("alice", PASSWORD).await.unwrap().code, 235);
    let sent = user
        .send_message(
            "alice@example.com",
            &["bob@example.com"],
            b"Subject: SECRET-SUBJECT\r\n\r\nBODY-SECRET\r\n",
        )
        .await
        .unwrap();
    assert!(!sent.accepted());
    // One reload that swaps, one that is refused.
    assert_eq!(http(admin, "POST", "/reload").await.unwrap().0, 200);
    std::fs::write(&path, "[proxy\nbroken").unwrap();
    assert_eq!(http(admin, "POST", "/reload").await.unwrap().0, 500);

    let (code, response) = http(admin, "GET", "/").await.unwrap();
    assert_eq!(code, 200, "{response}");
    assert!(response.contains("text/html"), "{response}");
    assert!(
        response.contains("Content-Security-Policy: default-src 'none'")
            || response
                .to_lowercase()
                .contains("content-security-policy: default-src 'none'"),
        "{response}"
    );
    let page = body(&response);
    for expected in [
        "<h2>Policy chains serving new sessions</h2>",
        "builtin:apple-relay",
        ">enforce<",
        "1 succeeded, 1 failed since start",
        "swapped in",
        "refused</span>",
        "RCPT TO:&lt;carol@elsewhere.org&gt;",
        "<code>a&amp;b@example.org</code>",
        "end of DATA: ",
        "authenticated as</dt><dd><code>alice</code>",
        "530 5.7.0",
        "fixture reject",
        "127.0.0.20:",
        "sessions open now",
        "rates appear 10 s after start",
        "<h2>Upstream servers</h2>",
        &format!(
            "<code>{}</code></td><td><span class=\"ok\">taking mail",
            upstream.addr()
        ),
        "connection pool: ",
    ] {
        assert!(
            page.contains(expected),
            "{expected:?} missing from:\n{page}"
        );
    }
    // Every serving module's full sha256.
    for chain in proxy.reloader().chains().all() {
        for module in &chain.modules {
            assert!(page.contains(module.policy.digest()), "{page}");
        }
    }
    for secret in [PASSWORD, "SECRET-SUBJECT", "BODY-SECRET"] {
        assert!(!page.contains(secret), "{secret} shown:\n{page}");
    }
    // The newest refusal first: the data refusal, then the relay one.
    let data_at = page.find("end of DATA").unwrap();
    let rcpt_at = page.find("RCPT TO:&lt;carol").unwrap();
    assert!(data_at < rcpt_at, "{page}");

    // The SMTP port does not serve it.
    let mut smtp = SmtpClient::connect(proxy.addr()).await.unwrap();
    smtp.read_reply().await.unwrap();
    let reply = smtp.cmd("GET / HTTP/1.1").await.unwrap();
    assert!(reply.code >= 500, "{reply}");

    let Some(chromium) = require_tool("chromium") else {
        return;
    };
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&out);
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{admin}/");
    let screenshot = format!("--screenshot={}", out.display());
    let user_data = format!("--user-data-dir={}", profile.path().display());
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        user_data.as_str(),
    ];
    let mut args = common.to_vec();
    args.extend(["--window-size=1280,1600", screenshot.as_str(), url.as_str()]);
    let shot = run_tool(&chromium, &args, Duration::from_secs(120))
        .await
        .unwrap();
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let png = std::fs::read(&out).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    println!("status page screenshot: {}", out.display());
    // The DOM as the browser parsed it: the escaped text came back as text.
    let mut args = common.to_vec();
    args.extend(["--dump-dom", url.as_str()]);
    let dom = run_tool(&chromium, &args, Duration::from_secs(120))
        .await
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("<title>relaygate status</title>"), "{dom}");
    assert!(dom.contains("RCPT TO:&lt;carol@elsewhere.org&gt;"), "{dom}");
    assert!(!dom.contains("<script"), "{dom}");
}
