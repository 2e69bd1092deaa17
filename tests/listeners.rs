//! Several listeners in one proxy, each with its own rules: an MX-like one
//! (no AUTH, relaying refused for an unlisted client), submission with
//! STARTTLS and AUTH required, and submission over implicit TLS (RFC 8314);
//! a TLS handshake that never completes dropped after the command timeout
//! while other clients are served; a reload bringing a new certificate to
//! the implicit-TLS listener too; and swaks with `--tls-on-connect` and
//! `--tls` against the two submission listeners, also with the MX and the
//! submission listeners asking different policy chains.

use std::path::Path;
use std::time::{Duration, Instant};

use relaygate_tests::admin::http;
use relaygate_tests::certs::TestCerts;
use relaygate_tests::client::SmtpClient;
use relaygate_tests::proxy::{TestProxy, misbehaving_wasm};
use relaygate_tests::tools::run_tool;
use relaygate_tests::tools::swaks_with_tls;
use relaygate_tests::upstream::{Extension, RecordingUpstream, UpstreamBehaviour};
use tokio::io::AsyncReadExt;

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-submission";
const REMOTE_RCPT: &str = "carol@example.org";
/// Not in `open_relay_addr_list`.
const CLIENT: &str = "127.0.0.9";

fn toml_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// The Apple policy with restricted relay and AUTH on, a bcrypt users file,
/// `[tls]` from `certs`, and the three listeners.
fn config(certs: &TestCerts, users: &Path, command_timeout: &str) -> String {
    config_with(certs, users, command_timeout, "")
}

/// [`config`] with `extra` (more `[[listener]]` tables) at its end.
fn config_with(certs: &TestCerts, users: &Path, command_timeout: &str, extra: &str) -> String {
    format!(
        r#"
[proxy]
upstream = "{{upstream}}"
hostname = "relay.test"
command_timeout = "{command_timeout}"

[admin]
listen = "127.0.0.1:0"

[policy]
watch = false

[policy.config]
open_relay_addr_flag = 1
open_relay_addr_list = ["127.0.0.7"]
smtp_plain_login_flag = 1
local_domains = ["example.com"]

[tls]
cert = {cert}
key = {key}

[auth]
backend = "file"
users_file = {users}

[[listener]]
name = "mx"
address = "127.0.0.1:25"
hostname = "mx.test"
auth = "off"

[[listener]]
name = "submission"
address = "127.0.0.1:587"
hostname = "smtp.test"
auth = "required"

[[listener]]
name = "submissions"
address = "127.0.0.1:465"
tls = "implicit"
hostname = "smtp.test"
auth = "required"
{extra}
"#,
        cert = toml_path(certs.cert_pem()),
        key = toml_path(certs.key_pem()),
        users = toml_path(users),
    )
}

struct Setup {
    certs: TestCerts,
    proxy: TestProxy,
    upstream: RecordingUpstream,
    _dir: tempfile::TempDir,
}

async fn start(command_timeout: &str) -> Setup {
    let certs = TestCerts::generate(&["localhost", "127.0.0.1"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    std::fs::write(&users, format!("{USER}:{hash}\n")).unwrap();
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default().with(Extension::Xclient))
        .await
        .unwrap();
    let proxy = TestProxy::start(&config(&certs, &users, command_timeout), upstream.addr())
        .await
        .unwrap();
    Setup {
        certs,
        proxy,
        upstream,
        _dir: dir,
    }
}

/// A client of the listener `name`, its greeting read and checked to name `host`.
async fn greeted(setup: &Setup, name: &str, host: &str) -> SmtpClient {
    let mut client =
        SmtpClient::connect_from(CLIENT.parse().unwrap(), setup.proxy.listener_addr(name))
            .await
            .unwrap();
    if name == "submissions" {
        client
            .tls_handshake(setup.certs.ca_pem(), "localhost")
            .await
            .unwrap();
    }
    let greeting = client.read_reply().await.unwrap();
    assert_eq!(greeting.code, 220, "{greeting}");
    assert!(greeting.text().starts_with(host), "{greeting}");
    client
}

async fn metric(setup: &Setup, series: &str) -> f64 {
    let (code, text) = http(setup.proxy.admin_addr().unwrap(), "GET", "/metrics")
        .await
        .unwrap();
    assert_eq!(code, 200);
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn mx_listener_offers_no_auth_and_refuses_relay() {
    let setup = start("30s").await;
    let mut mx = greeted(&setup, "mx", "mx.test").await;
    let ehlo = mx.ehlo("client.test").await.unwrap();
    assert!(!ehlo.has_extension("AUTH"), "{ehlo}");
    assert!(ehlo.has_extension("STARTTLS"), "{ehlo}");
    assert!(ehlo.text().starts_with("mx.test"), "{ehlo}");
    assert_eq!(mx.auth_plain(USER, PASSWORD).await.unwrap().code, 503);
    // Not even under TLS.
    mx.starttls(setup.certs.ca_pem(), "localhost")
        .await
        .unwrap();
    let secure = mx.ehlo("client.test").await.unwrap();
    assert!(!secure.has_extension("AUTH"), "{secure}");
    let refused = mx
        .send_message(
            "bob@example.net",
            &[REMOTE_RCPT],
            b"Subject: relay\r\n\r\nhi\r\n",
        )
        .await
        .unwrap();
    assert!(refused.mail.is_positive(), "MAIL needs no AUTH here");
    assert!(refused.rcpts[0].is_permanent(), "{}", refused.rcpts[0]);
    assert!(!refused.accepted());
    mx.quit().await.unwrap();
    assert!(setup.upstream.messages().is_empty());
    assert!(metric(&setup, "relaygate_connections_total{listener=\"mx\"}").await >= 1.0);
}

#[tokio::test]
async fn submission_listener_wants_starttls_then_auth_then_mail() {
    let setup = start("30s").await;
    let mut c = greeted(&setup, "submission", "smtp.test").await;
    let clear = c.ehlo("laptop.test").await.unwrap();
    assert!(clear.has_extension("STARTTLS"), "{clear}");
    assert!(!clear.has_extension("AUTH"), "AUTH in clear: {clear}");
    let early = c.cmd("MAIL FROM:<alice@example.com>").await.unwrap();
    assert_eq!(
        (early.code, early.enhanced_status()),
        (530, Some("5.7.0")),
        "{early}"
    );
    c.starttls(setup.certs.ca_pem(), "localhost").await.unwrap();
    let secure = c.ehlo("laptop.test").await.unwrap();
    assert_eq!(secure.extension("AUTH"), Some("PLAIN LOGIN"), "{secure}");
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.com>").await.unwrap().code,
        530
    );
    assert_eq!(c.auth_plain(USER, PASSWORD).await.unwrap().code, 235);
    let sent = c
        .send_message(
            "alice@example.com",
            &[REMOTE_RCPT],
            b"Subject: via submission\r\n\r\nhello\r\n",
        )
        .await
        .unwrap();
    assert!(sent.accepted(), "{}", sent.last_reply());
    c.quit().await.unwrap();
    let messages = setup.upstream.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].recipients, [REMOTE_RCPT]);
    assert_eq!(
        messages[0].xclient.get("LOGIN").map(String::as_str),
        Some(USER)
    );
}

#[tokio::test]
async fn implicit_tls_listener_is_under_tls_from_the_first_byte() {
    let setup = start("30s").await;
    let mut c = greeted(&setup, "submissions", "smtp.test").await;
    assert!(c.is_tls());
    let ehlo = c.ehlo("laptop.test").await.unwrap();
    assert_eq!(ehlo.extension("AUTH"), Some("PLAIN LOGIN"), "{ehlo}");
    assert!(!ehlo.has_extension("STARTTLS"), "{ehlo}");
    assert_eq!(c.cmd("STARTTLS").await.unwrap().code, 503);
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.com>").await.unwrap().code,
        530
    );
    assert_eq!(c.auth_login(USER, PASSWORD).await.unwrap().code, 235);
    let sent = c
        .send_message(
            "alice@example.com",
            &[REMOTE_RCPT],
            b"Subject: via submissions\r\n\r\nhello\r\n",
        )
        .await
        .unwrap();
    assert!(sent.accepted(), "{}", sent.last_reply());
    c.quit().await.unwrap();
    assert_eq!(setup.upstream.messages().len(), 1);

    // A client that speaks SMTP in clear to it gets no greeting: the bytes
    // are not a TLS handshake.
    let mut clear = tokio::net::TcpStream::connect(setup.proxy.listener_addr("submissions"))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut clear, b"EHLO clear.test\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(10), clear.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(
        !matches!(read, Ok(n) if n > 0 && buf.starts_with(b"220")),
        "greeted in clear"
    );
}

#[tokio::test]
async fn a_stalled_handshake_is_dropped_after_the_command_timeout() {
    let setup = start("1s").await;
    let addr = setup.proxy.listener_addr("submissions");
    let started = Instant::now();
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Meanwhile other clients are served, on this listener and the others.
    let mut other = greeted(&setup, "submissions", "smtp.test").await;
    other.ehlo("laptop.test").await.unwrap();
    let mut mx = greeted(&setup, "mx", "mx.test").await;
    mx.ehlo("client.test").await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), stalled.read(&mut buf))
        .await
        .expect("the stalled connection is closed within the command timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed after {waited:?}"
    );
    // The others are still served.
    assert_eq!(other.cmd("NOOP").await.unwrap().code, 250);
    assert_eq!(mx.cmd("NOOP").await.unwrap().code, 250);
    assert!(
        metric(
            &setup,
            "relaygate_tls_handshake_failures_total{listener=\"submissions\"}"
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn a_reload_brings_the_new_certificate_to_the_implicit_tls_listener() {
    let old = TestCerts::generate(&["localhost"]).unwrap();
    let new = TestCerts::generate(&["localhost"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(
        &users,
        format!("{USER}:{}\n", bcrypt::hash(PASSWORD, 4).unwrap()),
    )
    .unwrap();
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    let path = dir.path().join("relaygate.toml");
    let write = |certs: &TestCerts| {
        let text = config(certs, &users, "30s").replace("{upstream}", &upstream.addr().to_string());
        std::fs::write(&path, text).unwrap();
    };
    write(&old);
    let proxy = TestProxy::start_from_file(&path).await.unwrap();
    let connect = |ca: std::path::PathBuf| {
        let addr = proxy.listener_addr("submissions");
        async move {
            let mut c = SmtpClient::connect_from(CLIENT.parse().unwrap(), addr).await?;
            c.tls_handshake(&ca, "localhost").await?;
            anyhow::ensure!(c.read_reply().await?.code == 220, "no greeting");
            Ok(())
        }
    };
    connect(old.ca_pem().to_path_buf()).await.unwrap();
    write(&new);
    proxy.reloader().reload("test").await.unwrap();
    connect(new.ca_pem().to_path_buf()).await.unwrap();
    assert!(
        connect(old.ca_pem().to_path_buf()).await.is_err(),
        "the old certificate is still served after the reload"
    );
}

#[tokio::test]
async fn implicit_tls_behind_a_load_balancer_reads_the_proxy_header_first() {
    let certs = TestCerts::generate(&["localhost", "127.0.0.1"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(
        &users,
        format!("{USER}:{}\n", bcrypt::hash(PASSWORD, 4).unwrap()),
    )
    .unwrap();
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default().with(Extension::Xclient))
        .await
        .unwrap();
    let balanced = "[[listener]]\nname = \"balanced\"\naddress = \"127.0.0.1:4650\"\ntls = \"implicit\"\nproxy_protocol = true\nauth = \"required\"\n";
    let proxy = TestProxy::start(
        &config_with(&certs, &users, "30s", balanced),
        upstream.addr(),
    )
    .await
    .unwrap();
    let mut c = SmtpClient::connect(proxy.listener_addr("balanced"))
        .await
        .unwrap();
    // The header and the ClientHello right behind it, as a balancer sends them.
    c.send_raw(b"PROXY TCP4 192.0.2.7 198.51.100.1 5555 465\r\n")
        .await
        .unwrap();
    c.tls_handshake(certs.ca_pem(), "localhost").await.unwrap();
    assert_eq!(c.read_reply().await.unwrap().code, 220);
    let ehlo = c.ehlo("laptop.test").await.unwrap();
    assert_eq!(ehlo.extension("AUTH"), Some("PLAIN LOGIN"), "{ehlo}");
    assert_eq!(c.auth_plain(USER, PASSWORD).await.unwrap().code, 235);
    let sent = c
        .send_message(
            "alice@example.com",
            &[REMOTE_RCPT],
            b"Subject: balanced\r\n\r\nhi\r\n",
        )
        .await
        .unwrap();
    assert!(sent.accepted(), "{}", sent.last_reply());
    let messages = upstream.messages();
    assert_eq!(
        messages[0].xclient.get("ADDR").map(String::as_str),
        Some("192.0.2.7"),
        "the client named in the PROXY header"
    );
}

#[tokio::test]
async fn swaks_submits_over_implicit_tls_and_over_starttls() {
    let Some(swaks) = swaks_with_tls() else {
        return;
    };
    let setup = start("30s").await;
    for (listener, tls_flag, subject) in [
        ("submissions", "--tls-on-connect", "via implicit tls"),
        ("submission", "--tls", "via starttls"),
    ] {
        let server = setup.proxy.listener_addr(listener).to_string();
        let header = format!("Subject: {subject}");
        let args = [
            "--server",
            server.as_str(),
            tls_flag,
            "--auth",
            "PLAIN",
            "--auth-user",
            USER,
            "--auth-password",
            PASSWORD,
            "--from",
            "alice@example.com",
            "--to",
            REMOTE_RCPT,
            "--header",
            header.as_str(),
            "--ehlo",
            "laptop.test",
        ];
        let output = run_tool(&swaks, &args, Duration::from_secs(60))
            .await
            .unwrap();
        let transcript = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "swaks {tls_flag} failed:\n{transcript}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(transcript.contains("<~  235"), "{transcript}");
        if listener == "submissions" {
            assert!(!transcript.contains("STARTTLS"), "{transcript}");
        }
    }
    let subjects: Vec<_> = setup
        .upstream
        .messages()
        .iter()
        .map(|m| m.header("Subject").unwrap_or_default())
        .collect();
    assert_eq!(subjects, ["via implicit tls", "via starttls"]);
}

/// The three listeners of [`config`], the MX one asking the chain `inbound`
/// (Apple's rules without AUTH, then a module refusing recipients with
/// "spam"), the two submission ones the chain `submission` (Apple's "send
/// only", then a module refusing recipients with "quota").
fn chained_config(certs: &TestCerts, users: &Path) -> String {
    let fixture = misbehaving_wasm();
    let module = |name: &str, chain: &str, flag: u8, word: &str| {
        format!(
            r#"
[[chain]]
name = "{chain}"
[[chain.module]]
name = "relay"
module = "builtin:apple-relay"
[chain.module.config]
open_relay_addr_flag = 1
open_relay_addr_list = ["127.0.0.7"]
smtp_plain_login_flag = {flag}
local_domains = ["example.com"]
[[chain.module]]
name = "{name}"
module = {path}
[chain.module.config]
rcpt_to = "reject-if-recipient-contains:{word}"
"#,
            path = toml_path(&fixture)
        )
    };
    config(certs, users, "30s")
        .replace(
            "hostname = \"mx.test\"\n",
            "hostname = \"mx.test\"\nchain = \"inbound\"\n",
        )
        .replace(
            "hostname = \"smtp.test\"\n",
            "hostname = \"smtp.test\"\nchain = \"submission\"\n",
        )
        + &module("no-spam", "inbound", 0, "spam")
        + &module("quota", "submission", 1, "quota")
}

#[tokio::test]
async fn swaks_meets_each_listener_with_its_own_chain() {
    let Some(swaks) = swaks_with_tls() else {
        return;
    };
    let certs = TestCerts::generate(&["localhost", "127.0.0.1"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    std::fs::write(&users, format!("{USER}:{hash}\n")).unwrap();
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    let config = chained_config(&certs, &users);
    assert_eq!(
        config.matches("chain = \"submission\"").count(),
        2,
        "{config}"
    );
    let proxy = TestProxy::start(&config, upstream.addr()).await.unwrap();
    // (listener, swaks TLS flags, recipient, the reply code swaks must meet)
    let sessions: [(&str, &[&str], &str, u16); 6] = [
        ("mx", &[], "bob@example.com", 250),
        ("mx", &[], "spam@example.com", 550),
        ("mx", &[], REMOTE_RCPT, 554),
        (
            "submissions",
            &["--tls-on-connect"],
            "spam@example.org",
            250,
        ),
        (
            "submissions",
            &["--tls-on-connect"],
            "quota@example.org",
            550,
        ),
        ("submission", &["--tls"], "quota@example.com", 550),
    ];
    let mut delivered = Vec::new();
    for (listener, tls, recipient, code) in sessions {
        let server = proxy.listener_addr(listener).to_string();
        let mut args = vec!["--server", server.as_str(), "--to", recipient];
        args.extend_from_slice(tls);
        if listener != "mx" {
            args.extend_from_slice(&[
                "--auth",
                "PLAIN",
                "--auth-user",
                USER,
                "--auth-password",
                PASSWORD,
            ]);
        }
        args.extend_from_slice(&["--from", "alice@example.com", "--ehlo", "laptop.test"]);
        let output = run_tool(&swaks, &args, Duration::from_secs(60))
            .await
            .unwrap();
        let transcript = String::from_utf8_lossy(&output.stdout);
        let rcpt_reply = transcript
            .lines()
            .skip_while(|line| !line.contains("RCPT TO:"))
            .nth(1)
            .unwrap_or_default();
        assert!(
            rcpt_reply.contains(&format!(" {code} ")),
            "{listener} {recipient}: want {code}, swaks saw:\n{transcript}"
        );
        assert_eq!(output.status.success(), code == 250, "{transcript}");
        if code == 250 {
            delivered.push(recipient);
        }
    }
    let received: Vec<String> = upstream
        .messages()
        .iter()
        .flat_map(|m| m.recipients.clone())
        .collect();
    assert_eq!(received, delivered);
    // Each refusal was counted for the module of the listener's chain.
    let metrics = proxy.reloader().metrics().encode();
    for (module, refusals) in [("no-spam", "1"), ("quota", "2"), ("relay", "1")] {
        let series = format!(
            "relaygate_policy_calls_total{{hook=\"rcpt-to\",verdict=\"reject\",module=\"{module}\"}} {refusals}"
        );
        assert!(
            metrics.lines().any(|l| l == series),
            "{series} in {metrics}"
        );
    }
}
