//! SMTP AUTH through the running proxy with the `file` backend: the whole
//! decision matrix of the README's decision table (restricted relay x SMTP AUTH x listed
//! client x no/good/bad credentials x local/remote recipient), checking the
//! replies and what reached the upstream; the RFC 4954 edge cases; a backend
//! that is down; repeated failures slowed, then refused for the guessing
//! client but not for the user elsewhere; and that the password appears in
//! no log line.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use relaygate_tests::client::{Reply, SmtpClient};
use relaygate_tests::proxy::TestProxy;
use relaygate_tests::upstream::{Extension, RecordingUpstream, UpstreamBehaviour};
use tempfile::TempDir;

/// The user the users file knows, and its password.
const USER: &str = "alice";
const PASSWORD: &str = "c0rrect-h0rse";

/// Listed in `open_relay_addr_list`.
const LISTED: &str = "127.0.0.7";
/// Not listed.
const UNLISTED: &str = "127.0.0.9";

const LOCAL_RCPT: &str = "bob@example.com";
const REMOTE_RCPT: &str = "carol@example.org";

/// A users file with [`USER`] (bcrypt at its lowest cost: tests need no real cost).
fn users_file(dir: &Path) -> PathBuf {
    let path = dir.join("users");
    let hash = bcrypt::hash(PASSWORD, 4).expect("bcrypt hash");
    std::fs::write(&path, format!("# test users\n{USER}:{hash}\n")).expect("users file");
    path
}

fn flag(on: bool) -> u8 {
    u8::from(on)
}

/// The proxy's config: the Apple policy with these switches, the file
/// backend, AUTH allowed in clear (these tests are about AUTH, STARTTLS has
/// its own), and `auth_extra` lines added to `[auth]`.
fn config(restricted: bool, auth: bool, users: &Path, auth_extra: &str) -> String {
    format!(
        r#"
[proxy]
upstream = "{{upstream}}"
hostname = "relay.test"

[policy]
watch = false
trace = true

[policy.config]
open_relay_addr_flag = {restricted}
open_relay_addr_list = ["{LISTED}"]
smtp_plain_login_flag = {auth}
local_domains = ["example.com"]

[auth]
backend = "file"
users_file = {users:?}
require_tls = false
{auth_extra}
"#,
        restricted = flag(restricted),
        auth = flag(auth),
        users = users.display().to_string(),
    )
}

struct Setup {
    proxy: TestProxy,
    upstream: RecordingUpstream,
    _dir: TempDir,
}

async fn start(restricted: bool, auth: bool, auth_extra: &str) -> Setup {
    capture_logs();
    let dir = tempfile::tempdir().expect("temp dir");
    let users = users_file(dir.path());
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default().with(Extension::Xclient))
        .await
        .expect("upstream");
    let proxy = TestProxy::start(
        &config(restricted, auth, &users, auth_extra),
        upstream.addr(),
    )
    .await
    .expect("proxy");
    Setup {
        proxy,
        upstream,
        _dir: dir,
    }
}

async fn connect(setup: &Setup, from: &str) -> SmtpClient {
    let ip: IpAddr = from.parse().unwrap();
    let mut client = SmtpClient::connect_from(ip, setup.proxy.addr())
        .await
        .expect("connect");
    assert_eq!(client.read_reply().await.unwrap().code, 220);
    client
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credentials {
    None,
    Good,
    Bad,
}

/// The README's decision table: the RCPT TO reply code, or 250.
fn expected_rcpt(
    restricted: bool,
    auth: bool,
    listed: bool,
    authenticated: bool,
    local: bool,
) -> u16 {
    if !restricted && !auth {
        return 250;
    }
    let listed = restricted && listed;
    if auth {
        if authenticated || listed { 250 } else { 530 }
    } else if listed || local {
        250
    } else {
        554
    }
}

async fn login(client: &mut SmtpClient, plain: bool, password: &str) -> Reply {
    if plain {
        client.auth_plain(USER, password).await.unwrap()
    } else {
        client.auth_login(USER, password).await.unwrap()
    }
}

#[tokio::test]
async fn the_whole_decision_matrix_through_the_proxy() {
    let mut failures = Vec::new();
    for restricted in [false, true] {
        for auth in [false, true] {
            let setup = start(restricted, auth, "").await;
            let mut expected_delivered = Vec::new();
            let mut case = 0;
            for client_ip in [LISTED, UNLISTED] {
                for credentials in [Credentials::None, Credentials::Good, Credentials::Bad] {
                    for local in [true, false] {
                        case += 1;
                        let row = format!(
                            "restricted {restricted}, auth {auth}, client {client_ip}, {credentials:?} credentials, {} recipient",
                            if local { "local" } else { "remote" }
                        );
                        let mut client = connect(&setup, client_ip).await;
                        let ehlo = client.ehlo("client.test").await.unwrap();
                        if ehlo.has_extension("AUTH") != auth {
                            failures.push(format!("{row}: EHLO AUTH offer wrong:\n{ehlo}"));
                        }
                        // PLAIN for local recipients, LOGIN for remote ones.
                        let auth_reply = match credentials {
                            Credentials::None => None,
                            Credentials::Good => Some(login(&mut client, local, PASSWORD).await),
                            Credentials::Bad => Some(login(&mut client, local, "wrong").await),
                        };
                        let expected_auth = match (credentials, auth) {
                            (Credentials::None, _) => None,
                            (_, false) => Some(503),
                            (Credentials::Good, true) => Some(235),
                            (Credentials::Bad, true) => Some(535),
                        };
                        if auth_reply.as_ref().map(|r| r.code) != expected_auth {
                            failures.push(format!(
                                "{row}: AUTH reply {auth_reply:?}, expected {expected_auth:?}"
                            ));
                        }
                        let authenticated = auth && credentials == Credentials::Good;
                        let want = expected_rcpt(
                            restricted,
                            auth,
                            client_ip == LISTED,
                            authenticated,
                            local,
                        );
                        let rcpt = if local { LOCAL_RCPT } else { REMOTE_RCPT };
                        let subject = format!("case {case}");
                        let outcome = client
                            .send_message(
                                "sender@example.net",
                                &[rcpt],
                                format!("Subject: {subject}\r\n\r\nhello\r\n").as_bytes(),
                            )
                            .await
                            .unwrap();
                        let got = outcome.rcpts.first().map_or(0, |r| r.code);
                        if got != want {
                            failures.push(format!("{row}: RCPT got {got}, expected {want}"));
                        }
                        let status = outcome.rcpts.first().and_then(Reply::enhanced_status);
                        match want {
                            530 if status != Some("5.7.0") => {
                                failures.push(format!("{row}: 530 without 5.7.0: {status:?}"));
                            }
                            554 if status != Some("5.7.1") => {
                                failures.push(format!("{row}: 554 without 5.7.1: {status:?}"));
                            }
                            250 if !outcome.accepted() => {
                                failures.push(format!("{row}: not delivered: {outcome:?}"));
                            }
                            _ => {}
                        }
                        if want == 250 {
                            expected_delivered.push((subject, rcpt, authenticated));
                        }
                        client.quit().await.unwrap();
                    }
                }
            }
            // What reached the upstream: exactly the accepted messages, each
            // with the authenticated identity passed in XCLIENT LOGIN.
            let messages = setup.upstream.messages();
            let delivered: Vec<_> = messages
                .iter()
                .map(|m| {
                    (
                        m.header("Subject").unwrap_or_default(),
                        m.recipients.clone(),
                        // A kept connection's next client clears the
                        // previous login explicitly: LOGIN=[UNAVAILABLE].
                        m.xclient
                            .get("LOGIN")
                            .filter(|login| *login != "[UNAVAILABLE]")
                            .cloned(),
                    )
                })
                .collect();
            let expected: Vec<_> = expected_delivered
                .iter()
                .map(|(subject, rcpt, authenticated)| {
                    (
                        subject.clone(),
                        vec![rcpt.to_string()],
                        authenticated.then(|| USER.to_string()),
                    )
                })
                .collect();
            if delivered != expected {
                failures.push(format!(
                    "restricted {restricted}, auth {auth}: upstream received {delivered:?}, expected {expected:?}"
                ));
            }
            let violations = setup.upstream.violations();
            if !violations.is_empty() {
                failures.push(format!("upstream protocol violations: {violations:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn rfc4954_edge_cases() {
    let setup = start(true, true, "").await;
    let mut c = connect(&setup, UNLISTED).await;
    // Before EHLO.
    assert_eq!(c.cmd("AUTH PLAIN").await.unwrap().code, 503);
    let ehlo = c.ehlo("client.test").await.unwrap();
    assert_eq!(ehlo.extension("AUTH"), Some("PLAIN LOGIN"));
    // A mechanism not offered, undecodable data, the empty response.
    let reply = c.cmd("AUTH CRAM-MD5").await.unwrap();
    assert_eq!((reply.code, reply.enhanced_status()), (504, Some("5.5.4")));
    let reply = c.cmd("AUTH PLAIN @@@").await.unwrap();
    assert_eq!((reply.code, reply.enhanced_status()), (501, Some("5.5.2")));
    assert_eq!(c.cmd("AUTH PLAIN =").await.unwrap().code, 501);
    // Cancelled with "*", in PLAIN and in both LOGIN steps.
    let challenge = c.cmd("AUTH PLAIN").await.unwrap();
    assert_eq!((challenge.code, challenge.text()), (334, String::new()));
    let reply = c.cmd("*").await.unwrap();
    assert_eq!((reply.code, reply.enhanced_status()), (501, Some("5.0.0")));
    assert_eq!(c.cmd("AUTH LOGIN").await.unwrap().code, 334);
    assert_eq!(c.cmd("*").await.unwrap().code, 501);
    assert_eq!(c.cmd("AUTH LOGIN").await.unwrap().code, 334);
    assert_eq!(c.cmd(&BASE64.encode(USER)).await.unwrap().code, 334);
    assert_eq!(c.cmd("*").await.unwrap().code, 501);
    // An authorization identity other than the user.
    let foreign = BASE64.encode(format!("root\0{USER}\0{PASSWORD}"));
    let reply = c.cmd(&format!("AUTH PLAIN {foreign}")).await.unwrap();
    assert_eq!((reply.code, reply.enhanced_status()), (535, Some("5.7.8")));
    // Not authenticated yet: relaying is refused.
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
    // Inside a transaction.
    assert_eq!(c.cmd("AUTH PLAIN").await.unwrap().code, 503);
    c.cmd_expect("RSET", 250).await.unwrap();
    // PLAIN without an initial response, authzid equal to the user.
    assert_eq!(c.cmd("AUTH PLAIN").await.unwrap().code, 334);
    let same = BASE64.encode(format!("{USER}\0{USER}\0{PASSWORD}"));
    let reply = c.cmd(&same).await.unwrap();
    assert_eq!((reply.code, reply.enhanced_status()), (235, Some("2.7.0")));
    // Twice.
    assert_eq!(c.auth_plain(USER, PASSWORD).await.unwrap().code, 503);
    // LOGIN with an initial response (user name) on a second connection.
    let mut d = connect(&setup, UNLISTED).await;
    d.ehlo("client.test").await.unwrap();
    let prompt = d
        .cmd(&format!("AUTH LOGIN {}", BASE64.encode(USER)))
        .await
        .unwrap();
    assert_eq!(
        (prompt.code, prompt.text()),
        (334, "UGFzc3dvcmQ6".to_string())
    );
    assert_eq!(d.cmd(&BASE64.encode(PASSWORD)).await.unwrap().code, 235);
    let outcome = d
        .send_message(
            "a@example.net",
            &[REMOTE_RCPT],
            b"Subject: login ir\r\n\r\nx\r\n",
        )
        .await
        .unwrap();
    assert!(outcome.accepted(), "{outcome:?}");
    // HELO clients are not offered AUTH.
    let mut e = connect(&setup, UNLISTED).await;
    e.cmd_expect("HELO client.test", 250).await.unwrap();
    assert_eq!(e.auth_plain(USER, PASSWORD).await.unwrap().code, 503);
    // The password is in no log line (the policy trace is on, so every
    // decision with its session is logged).
    let logs = logged();
    assert!(logs.contains(USER), "the log capture works: {logs}");
    for secret in [
        PASSWORD.to_string(),
        BASE64.encode(PASSWORD),
        foreign,
        same,
        BASE64.encode(format!("\0{USER}\0{PASSWORD}")),
    ] {
        assert!(!logs.contains(&secret), "{secret:?} logged");
    }
}

#[tokio::test]
async fn a_backend_that_is_down_answers_454_never_235() {
    capture_logs();
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = closed.local_addr().unwrap();
    drop(closed);
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    let config = format!(
        r#"
[proxy]
upstream = "{{upstream}}"
[policy]
watch = false
[policy.config]
open_relay_addr_flag = 1
open_relay_addr_list = ["{LISTED}"]
smtp_plain_login_flag = 1
local_domains = ["example.com"]
[auth]
backend = "imap"
server = "{server}"
require_tls = false
timeout = "2s"
"#
    );
    let proxy = TestProxy::start(&config, upstream.addr()).await.unwrap();
    let mut c = SmtpClient::connect_from(UNLISTED.parse().unwrap(), proxy.addr())
        .await
        .unwrap();
    c.read_reply().await.unwrap();
    c.ehlo("client.test").await.unwrap();
    for reply in [
        c.auth_plain(USER, PASSWORD).await.unwrap(),
        c.auth_login(USER, PASSWORD).await.unwrap(),
    ] {
        assert_eq!(
            (reply.code, reply.enhanced_status()),
            (454, Some("4.7.0")),
            "{reply}"
        );
    }
    let outcome = c
        .send_message("a@example.net", &[LOCAL_RCPT], b"Subject: x\r\n\r\nx\r\n")
        .await
        .unwrap();
    assert_eq!(outcome.rcpts[0].code, 530, "still not authenticated");
    assert!(upstream.messages().is_empty());
}

#[tokio::test]
async fn repeated_failures_are_slowed_then_refused() {
    let setup = start(
        true,
        true,
        "failures_before_delay = 2\nfailure_delay = \"300ms\"\nmax_failures = 4\nfailure_window = \"10m\"",
    )
    .await;
    let mut c = connect(&setup, UNLISTED).await;
    c.ehlo("client.test").await.unwrap();
    let mut times = Vec::new();
    for _ in 0..4 {
        let started = Instant::now();
        let reply = c.auth_plain(USER, "guess").await.unwrap();
        assert_eq!(reply.code, 535, "{reply}");
        times.push(started.elapsed());
    }
    assert!(
        times[2] >= Duration::from_millis(300) && times[3] >= Duration::from_millis(600),
        "failures after the second are slowed, more each time: {times:?}"
    );
    // The bucket is empty: refused without asking, even the right password.
    let reply = c.auth_plain(USER, PASSWORD).await.unwrap();
    assert_eq!(
        (reply.code, reply.enhanced_status()),
        (454, Some("4.7.0")),
        "{reply}"
    );
    // From another address the user is not locked out: its failures come
    // from the guessing client, which alone is refused.
    let mut d = connect(&setup, "127.0.0.11").await;
    d.ehlo("client.test").await.unwrap();
    let started = Instant::now();
    assert_eq!(d.auth_login(USER, PASSWORD).await.unwrap().code, 235);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "at most one spaced-out turn: {:?}",
        started.elapsed()
    );
}

// Log capture: one subscriber for the whole test binary, writing to memory.

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Send every relaygate log line at trace level into memory.
fn capture_logs() {
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buffer.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("relaygate=trace,warn")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
        buffer
    });
}

fn logged() -> String {
    let buffer = LOGS.get().expect("capture_logs was called");
    let mut text = Vec::new();
    text.write_all(&buffer.lock().unwrap()).unwrap();
    String::from_utf8_lossy(&text).into_owned()
}
