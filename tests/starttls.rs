//! STARTTLS through the running proxy, with certificates made at test time:
//! the upgrade, the session reset it implies, AUTH offered only under TLS
//! with `require_tls`, commands pipelined behind STARTTLS discarded, bad
//! certificate files refused with their key named, a reload changing the
//! certificate; and swaks relaying with AUTH PLAIN and LOGIN over STARTTLS
//! against a real Dovecot as the IMAP credential backend.

use std::path::Path;
use std::time::Duration;

use relaygate::config::Config;
use relaygate_tests::certs::TestCerts;
use relaygate_tests::client::SmtpClient;
use relaygate_tests::dovecot::Dovecot;
use relaygate_tests::proxy::TestProxy;
use relaygate_tests::tools::swaks_with_tls;
use relaygate_tests::tools::{require_tool, run_tool};
use relaygate_tests::upstream::{Extension, RecordingUpstream, UpstreamBehaviour};

const USER: &str = "alice";
const PASSWORD: &str = "imap-s3cret";
const REMOTE_RCPT: &str = "carol@example.org";
const CLIENT: &str = "127.0.0.9";

fn toml_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// The Apple policy with restricted relay on (nobody listed) and AUTH on,
/// `[tls]` from `certs`, and `auth` as the `[auth]` section's lines.
fn config(certs: &TestCerts, auth: &str) -> String {
    format!(
        r#"
[proxy]
upstream = "{{upstream}}"
hostname = "relay.test"

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
require_tls = true
{auth}
"#,
        cert = toml_path(certs.cert_pem()),
        key = toml_path(certs.key_pem()),
    )
}

/// `[auth]` lines for the file backend with [`USER`].
fn file_backend(dir: &Path) -> String {
    let users = dir.join("users");
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    std::fs::write(&users, format!("{USER}:{hash}\n")).unwrap();
    format!("backend = \"file\"\nusers_file = {}", toml_path(&users))
}

struct Setup {
    certs: TestCerts,
    proxy: TestProxy,
    upstream: RecordingUpstream,
    _dir: tempfile::TempDir,
}

async fn start() -> Setup {
    let certs = TestCerts::generate(&["localhost", "127.0.0.1"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default().with(Extension::Xclient))
        .await
        .unwrap();
    let proxy = TestProxy::start(&config(&certs, &file_backend(dir.path())), upstream.addr())
        .await
        .unwrap();
    Setup {
        certs,
        proxy,
        upstream,
        _dir: dir,
    }
}

async fn connect(setup: &Setup) -> SmtpClient {
    let mut client = SmtpClient::connect_from(CLIENT.parse().unwrap(), setup.proxy.addr())
        .await
        .unwrap();
    assert_eq!(client.read_reply().await.unwrap().code, 220);
    client
}

#[tokio::test]
async fn upgrade_then_auth_then_relay() {
    let setup = start().await;
    let mut c = connect(&setup).await;
    let clear = c.ehlo("client.test").await.unwrap();
    assert!(clear.has_extension("STARTTLS"), "{clear}");
    assert!(
        !clear.has_extension("AUTH"),
        "AUTH offered in clear: {clear}"
    );
    let reply = c.auth_plain(USER, PASSWORD).await.unwrap();
    assert_eq!((reply.code, reply.enhanced_status()), (538, Some("5.7.11")));

    c.starttls(setup.certs.ca_pem(), "localhost").await.unwrap();
    assert!(c.is_tls());
    // The session starts over: EHLO is needed again.
    assert_eq!(c.cmd("MAIL FROM:<a@example.net>").await.unwrap().code, 503);
    let secure = c.ehlo("client.test").await.unwrap();
    assert_eq!(secure.extension("AUTH"), Some("PLAIN LOGIN"), "{secure}");
    assert!(!secure.has_extension("STARTTLS"), "{secure}");
    assert_eq!(c.cmd("STARTTLS").await.unwrap().code, 503, "STARTTLS twice");

    // Unauthenticated, nobody relays; authenticated, the message goes through.
    c.cmd_expect("MAIL FROM:<a@example.net>", 250)
        .await
        .unwrap();
    assert_eq!(
        c.cmd(&format!("RCPT TO:<{REMOTE_RCPT}>"))
            .await
            .unwrap()
            .code,
        530
    );
    c.cmd_expect("RSET", 250).await.unwrap();
    let reply = c.auth_login(USER, "wrong").await.unwrap();
    assert_eq!((reply.code, reply.enhanced_status()), (535, Some("5.7.8")));
    assert_eq!(c.auth_login(USER, PASSWORD).await.unwrap().code, 235);
    let outcome = c
        .send_message(
            "a@example.net",
            &[REMOTE_RCPT],
            b"Subject: over tls\r\n\r\nhi\r\n",
        )
        .await
        .unwrap();
    assert!(outcome.accepted(), "{outcome:?}");
    c.quit().await.unwrap();

    let messages = setup.upstream.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].xclient.get("LOGIN").map(String::as_str),
        Some(USER)
    );
    assert_eq!(messages[0].recipients, [REMOTE_RCPT]);
    assert!(
        setup.upstream.violations().is_empty(),
        "{:?}",
        setup.upstream.violations()
    );
}

#[tokio::test]
async fn commands_pipelined_behind_starttls_are_discarded() {
    let setup = start().await;
    let mut c = connect(&setup).await;
    c.ehlo("client.test").await.unwrap();
    // The CVE-2011-0411 attack: commands sent in clear in the same packet as
    // STARTTLS, hoping they are taken as coming from inside TLS.
    c.send_raw(b"STARTTLS\r\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.org>\r\n")
        .await
        .unwrap();
    let ready = c.read_reply().await.unwrap();
    assert_eq!(ready.code, 220, "{ready}");
    // No reply to the injected commands, in clear (it would be pending here
    // or break the handshake) ...
    c.tls_handshake(setup.certs.ca_pem(), "localhost")
        .await
        .unwrap();
    // ... nor under TLS: the next reply answers EHLO, and there is no
    // transaction to nest in.
    let ehlo = c.ehlo("client.test").await.unwrap();
    assert_eq!(ehlo.lines[0], "relay.test", "{ehlo}");
    c.cmd_expect("NOOP", 250).await.unwrap();
    c.cmd_expect("MAIL FROM:<ok@example.net>", 250)
        .await
        .unwrap();
    c.quit().await.unwrap();
    let sessions = setup.upstream.sessions();
    let seen: Vec<String> = sessions.iter().flat_map(|s| s.commands.clone()).collect();
    assert!(
        !seen
            .iter()
            .any(|line| line.contains("evil") || line.contains("victim")),
        "the upstream saw the injected commands: {seen:?}"
    );
}

#[tokio::test]
async fn a_failed_handshake_ends_only_that_session() {
    let setup = start().await;
    let mut c = connect(&setup).await;
    c.ehlo("client.test").await.unwrap();
    c.cmd_expect("STARTTLS", 220).await.unwrap();
    // Not a TLS ClientHello.
    c.send_raw(b"EHLO still-in-clear\r\n").await.unwrap();
    c.set_read_timeout(Duration::from_secs(10));
    let rest = c.read_to_close().await.unwrap();
    assert!(
        !String::from_utf8_lossy(&rest).contains("250"),
        "clear text answered after STARTTLS: {rest:?}"
    );
    // The proxy still serves others.
    let mut d = connect(&setup).await;
    d.ehlo("client.test").await.unwrap();
    d.starttls(setup.certs.ca_pem(), "localhost").await.unwrap();
    d.ehlo("client.test").await.unwrap();
}

#[test]
fn unusable_certificate_files_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let certs = TestCerts::generate(&["localhost"]).unwrap();
    let with = |cert: &Path, key: &Path| {
        Config::parse_with(
            &format!(
                "[tls]\ncert = {}\nkey = {}\n",
                toml_path(cert),
                toml_path(key)
            ),
            &relaygate::tls::check,
        )
        .err()
        .map(|e| e.problems.join("\n"))
    };
    assert_eq!(with(certs.cert_pem(), certs.key_pem()), None);
    let problem = with(&garbage, certs.key_pem()).expect("garbage cert refused");
    assert!(problem.starts_with("tls.cert:"), "{problem}");
    let problem = with(certs.cert_pem(), &garbage).expect("garbage key refused");
    assert!(problem.starts_with("tls.key:"), "{problem}");
    let other = TestCerts::generate(&["localhost"]).unwrap();
    let problem = with(certs.cert_pem(), other.key_pem()).expect("mismatched key refused");
    assert!(
        problem.starts_with("tls.key:") && problem.contains("does not fit"),
        "{problem}"
    );
    let problem = with(&dir.path().join("missing.pem"), certs.key_pem()).expect("missing");
    assert!(problem.starts_with("tls.cert: cannot read"), "{problem}");
}

#[tokio::test]
async fn a_reload_brings_the_new_certificate_to_new_sessions() {
    let old = TestCerts::generate(&["localhost"]).unwrap();
    let new = TestCerts::generate(&["localhost"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    let auth = file_backend(dir.path());
    let path = dir.path().join("relaygate.toml");
    let write = |certs: &TestCerts| {
        let text = config(certs, &auth).replace("{upstream}", &upstream.addr().to_string());
        std::fs::write(&path, text).unwrap();
    };
    write(&old);
    let proxy = TestProxy::start_from_file(&path).await.unwrap();
    let upgrade = |ca: std::path::PathBuf| {
        let addr = proxy.addr();
        async move {
            let mut c = SmtpClient::connect_from(CLIENT.parse().unwrap(), addr).await?;
            c.read_reply().await?;
            c.ehlo("client.test").await?;
            c.starttls(&ca, "localhost").await
        }
    };
    upgrade(old.ca_pem().to_path_buf()).await.unwrap();
    write(&new);
    proxy.reloader().reload("test").await.unwrap();
    upgrade(new.ca_pem().to_path_buf()).await.unwrap();
    assert!(
        upgrade(old.ca_pem().to_path_buf()).await.is_err(),
        "the old certificate is still served after the reload"
    );
}

#[tokio::test]
async fn swaks_relays_with_the_imap_password_over_starttls() {
    let Some(swaks) = swaks_with_tls() else {
        return;
    };
    let Some(dovecot_binary) = require_tool("dovecot") else {
        return;
    };
    let certs = TestCerts::generate(&["localhost", "127.0.0.1"]).unwrap();
    let dovecot = Dovecot::start(&dovecot_binary, &certs, &[(USER, PASSWORD)])
        .await
        .unwrap();
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default().with(Extension::Xclient))
        .await
        .unwrap();
    let auth = format!(
        "backend = \"imap\"\nserver = \"{}\"\ntls = \"none\"\nfailures_before_delay = 10\nmax_failures = 20",
        dovecot.imap_addr()
    );
    let proxy = TestProxy::start(&config(&certs, &auth), upstream.addr())
        .await
        .unwrap();
    let server = proxy.addr().to_string();
    let swaks_run = |mechanism: &'static str, password: &'static str, subject: &'static str| {
        let swaks = swaks.clone();
        let server = server.clone();
        async move {
            let header = format!("Subject: {subject}");
            let args = [
                "--server",
                server.as_str(),
                "--tls",
                "--auth",
                mechanism,
                "--auth-user",
                USER,
                "--auth-password",
                password,
                "--from",
                "alice@example.com",
                "--to",
                REMOTE_RCPT,
                "--header",
                header.as_str(),
                "--ehlo",
                "laptop.test",
            ];
            run_tool(&swaks, &args, Duration::from_secs(60))
                .await
                .unwrap()
        }
    };
    for (mechanism, subject) in [("PLAIN", "via plain"), ("LOGIN", "via login")] {
        let output = swaks_run(mechanism, PASSWORD, subject).await;
        let transcript = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "swaks {mechanism} failed:\n{transcript}\n{}\ndovecot:\n{}",
            String::from_utf8_lossy(&output.stderr),
            dovecot.log()
        );
        assert!(transcript.contains("<~  235"), "{transcript}");
    }
    let output = swaks_run("PLAIN", "not-the-password", "refused").await;
    let transcript = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{transcript}");
    assert!(transcript.contains("535 5.7.8"), "{transcript}");

    let messages = upstream.messages();
    let subjects: Vec<_> = messages
        .iter()
        .map(|m| m.header("Subject").unwrap_or_default())
        .collect();
    assert_eq!(subjects, ["via plain", "via login"]);
    for message in &messages {
        assert_eq!(message.xclient.get("LOGIN").map(String::as_str), Some(USER));
        assert_eq!(message.recipients, [REMOTE_RCPT]);
    }
}
