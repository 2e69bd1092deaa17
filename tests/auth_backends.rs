//! The `[auth]` credential backends against real servers on loopback: a real Dovecot for
//! `imap` and `pop3` (plain, STARTTLS and implicit TLS with certificates made at test
//! time), real users files for `file`, and a scripted submission server for `smtp`; plus
//! the success cache and the brute-force control around them.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use relaygate::config::{AuthConfig, Config};
use relaygate::credentials::{Authenticator, Credentials, Verification};
use relaygate_tests::certs::TestCerts;
use relaygate_tests::dovecot::Dovecot;
use relaygate_tests::tools::require_tool;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use zeroize::Zeroizing;

/// Quotes and a backslash: must travel as an escaped IMAP quoted string.
const ALICE_PASSWORD: &str = r#"pa ss"wo\rd"#;
/// 8-bit text: must travel as an IMAP literal.
const BOB_PASSWORD: &str = "pässwörd-2";

fn client() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

fn credentials(user: &str, password: &str) -> Credentials {
    Credentials::new(user.to_string(), Zeroizing::new(password.to_string()))
}

/// What `authenticator` answers `user` with `password` from `client`.
async fn verify(
    authenticator: &Authenticator,
    client: IpAddr,
    user: &str,
    password: &str,
) -> Verification {
    authenticator
        .verify(client, &credentials(user, password))
        .await
}

/// `[auth]` from TOML lines, through the real config parser. Brute-force control is
/// loose unless the test sets it.
fn auth_config(lines: &str) -> AuthConfig {
    let loose = if lines.contains("max_failures") {
        ""
    } else {
        "failures_before_delay = 50\nmax_failures = 100\n"
    };
    let text = format!("[auth]\n{loose}{lines}\n");
    Config::parse(&text)
        .unwrap_or_else(|e| panic!("config {text}: {e}"))
        .auth
        .expect("[auth] present")
}

fn toml_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

async fn start_dovecot(certs: &TestCerts) -> Option<Dovecot> {
    let binary = require_tool("dovecot")?;
    Some(
        Dovecot::start(
            &binary,
            certs,
            &[("alice", ALICE_PASSWORD), ("bob", BOB_PASSWORD)],
        )
        .await
        .expect("dovecot starts"),
    )
}

/// The answers for: right password, wrong password, unknown user, 8-bit password.
async fn standard_answers(authenticator: &Authenticator) -> [Verification; 4] {
    [
        verify(authenticator, client(), "alice", ALICE_PASSWORD).await,
        verify(authenticator, client(), "alice", "pa ss\"wo\\rD").await,
        verify(authenticator, client(), "mallory", ALICE_PASSWORD).await,
        verify(authenticator, client(), "bob", BOB_PASSWORD).await,
    ]
}

const EXPECTED: [Verification; 4] = [
    Verification::Accepted,
    Verification::Rejected,
    Verification::Rejected,
    Verification::Accepted,
];

async fn check_backend(dovecot: &Dovecot, lines: &str) {
    let authenticator = Authenticator::new(&auth_config(lines)).expect("authenticator");
    let answers = standard_answers(&authenticator).await;
    assert_eq!(
        answers,
        EXPECTED,
        "config:\n{lines}\ndovecot log:\n{}",
        dovecot.log()
    );
}

/// Each way to reach a Dovecot service gives the standard answers: in clear
/// (the default), upgraded with STARTTLS (STLS for POP3) and implicit TLS.
async fn check_every_transport(
    backend: &str,
    clear: fn(&Dovecot) -> SocketAddr,
    implicit: fn(&Dovecot) -> SocketAddr,
) {
    let certs = TestCerts::generate(&["localhost", "127.0.0.1"]).unwrap();
    let Some(dovecot) = start_dovecot(&certs).await else {
        return;
    };
    let ca = toml_path(certs.ca_pem());
    let (clear, implicit) = (clear(&dovecot), implicit(&dovecot));
    for transport in [
        format!("server = \"{clear}\""),
        format!(
            "server = \"{clear}\"\ntls = \"starttls\"\ntls_ca = {ca}\ntls_server_name = \"localhost\""
        ),
        format!("server = \"{implicit}\"\ntls = \"implicit\"\ntls_ca = {ca}"),
    ] {
        check_backend(&dovecot, &format!("backend = \"{backend}\"\n{transport}")).await;
    }
}

#[tokio::test]
async fn imap_over_plain_starttls_and_implicit_tls() {
    check_every_transport("imap", Dovecot::imap_addr, Dovecot::imaps_addr).await;
}

#[tokio::test]
async fn pop3_over_plain_stls_and_implicit_tls() {
    check_every_transport("pop3", Dovecot::pop3_addr, Dovecot::pop3s_addr).await;
}

#[tokio::test]
async fn an_untrusted_certificate_is_unavailable_never_accepted() {
    let certs = TestCerts::generate(&["localhost", "127.0.0.1"]).unwrap();
    let Some(dovecot) = start_dovecot(&certs).await else {
        return;
    };
    let other_ca = TestCerts::generate(&["localhost"]).unwrap();
    for (backend, address) in [
        ("imap", dovecot.imaps_addr()),
        ("pop3", dovecot.pop3s_addr()),
    ] {
        let config = auth_config(&format!(
            "backend = \"{backend}\"\nserver = \"{address}\"\ntls = \"implicit\"\ntls_ca = {}",
            toml_path(other_ca.ca_pem())
        ));
        let authenticator = Authenticator::new(&config).unwrap();
        let answer = verify(&authenticator, client(), "alice", ALICE_PASSWORD).await;
        assert!(
            matches!(answer, Verification::Unavailable { .. }),
            "{backend}: {answer:?}"
        );
    }
    // The right CA but a name the certificate does not carry.
    let config = auth_config(&format!(
        "backend = \"imap\"\nserver = \"{}\"\ntls = \"starttls\"\ntls_ca = {}\ntls_server_name = \"mail.example.org\"",
        dovecot.imap_addr(),
        toml_path(certs.ca_pem())
    ));
    let authenticator = Authenticator::new(&config).unwrap();
    let answer = verify(&authenticator, client(), "alice", ALICE_PASSWORD).await;
    assert!(
        matches!(answer, Verification::Unavailable { .. }),
        "{answer:?}"
    );
}

#[tokio::test]
async fn file_backend_with_argon2_and_bcrypt_reloads_on_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users");
    let argon = relaygate::credentials::file::hash_password(ALICE_PASSWORD).unwrap();
    let bcrypt = bcrypt::hash(BOB_PASSWORD, 4).unwrap();
    std::fs::write(
        &path,
        format!("# test users\nalice:{argon}\n\nbob:{bcrypt}\n"),
    )
    .unwrap();
    let config = auth_config(&format!(
        "backend = \"file\"\nusers_file = {}",
        toml_path(&path)
    ));
    let authenticator = Authenticator::new(&config).unwrap();
    assert_eq!(standard_answers(&authenticator).await, EXPECTED);

    // A new password for bob (and a different size, so the change is seen even
    // within the file system's time resolution).
    let new_bcrypt = bcrypt::hash("new-password", 5).unwrap();
    std::fs::write(
        &path,
        format!("alice:{argon}\nbob:{new_bcrypt}\n# changed\n"),
    )
    .unwrap();
    assert_eq!(
        verify(&authenticator, client(), "bob", BOB_PASSWORD).await,
        Verification::Rejected
    );
    assert_eq!(
        verify(&authenticator, client(), "bob", "new-password").await,
        Verification::Accepted
    );

    // A broken file is unavailable, not an answer from the old contents.
    std::fs::write(&path, "alice:{PLAIN}secret\n").unwrap();
    let answer = verify(&authenticator, client(), "alice", ALICE_PASSWORD).await;
    assert!(
        matches!(answer, Verification::Unavailable { .. }),
        "{answer:?}"
    );

    // A bad file is a startup error naming the key and line.
    let error = Authenticator::new(&config).unwrap_err();
    let text = format!("{error:#}");
    assert!(
        text.contains("auth.users_file") && text.contains("line 1"),
        "{text}"
    );
}

/// What the scripted submission server does with AUTH.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SubmissionMode {
    /// PLAIN and LOGIN; alice/ALICE_PASSWORD is right.
    Both,
    /// Only LOGIN (PLAIN is 504).
    LoginOnly,
    /// Every AUTH is 454 (the server's own backend is down).
    TempFail,
    /// Greets with something that is not SMTP.
    Garbage,
    /// Accepts the connection and says nothing.
    Silent,
}

/// A scripted SMTP submission server on loopback that counts AUTH attempts.
struct Submission {
    address: SocketAddr,
    auth_attempts: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Submission {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Submission {
    async fn start(mode: SubmissionMode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let auth_attempts = Arc::new(AtomicUsize::new(0));
        let counter = auth_attempts.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let _ = serve_submission(stream, mode, &counter).await;
                });
            }
        });
        Self {
            address,
            auth_attempts,
            task,
        }
    }

    fn auth_attempts(&self) -> usize {
        self.auth_attempts.load(Ordering::SeqCst)
    }
}

async fn serve_submission(
    stream: tokio::net::TcpStream,
    mode: SubmissionMode,
    attempts: &AtomicUsize,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    match mode {
        SubmissionMode::Garbage => {
            write.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await?;
            return Ok(());
        }
        SubmissionMode::Silent => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return Ok(());
        }
        _ => write.write_all(b"220 submission.test ESMTP\r\n").await?,
    }
    let right_plain = BASE64.encode(format!("\0alice\0{ALICE_PASSWORD}"));
    while let Some(line) = lines.next_line().await? {
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO ") {
            "250-submission.test\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n".into()
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 bye\r\n").await?;
            return Ok(());
        } else if upper.starts_with("AUTH ") {
            attempts.fetch_add(1, Ordering::SeqCst);
            match mode {
                SubmissionMode::TempFail => "454 4.7.0 temporary authentication failure\r\n".into(),
                SubmissionMode::LoginOnly if upper.starts_with("AUTH PLAIN") => {
                    "504 5.5.4 mechanism not supported\r\n".into()
                }
                _ if upper.starts_with("AUTH PLAIN ") => {
                    if line[11..] == right_plain {
                        "235 2.7.0 ok\r\n".into()
                    } else {
                        "535 5.7.8 bad credentials\r\n".into()
                    }
                }
                _ if upper == "AUTH LOGIN" => {
                    write.write_all(b"334 VXNlcm5hbWU6\r\n").await?;
                    let user = lines.next_line().await?.unwrap_or_default();
                    write.write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
                    let password = lines.next_line().await?.unwrap_or_default();
                    if user == BASE64.encode("alice") && password == BASE64.encode(ALICE_PASSWORD) {
                        "235 2.7.0 ok\r\n".into()
                    } else {
                        "535 5.7.8 bad credentials\r\n".into()
                    }
                }
                _ => "504 5.5.4 mechanism not supported\r\n".into(),
            }
        } else {
            "502 5.5.2 command not recognized\r\n".into()
        };
        write.write_all(reply.as_bytes()).await?;
    }
    Ok(())
}

fn smtp_authenticator(server: &Submission, extra: &str) -> Authenticator {
    Authenticator::new(&auth_config(&format!(
        "backend = \"smtp\"\nserver = \"{}\"\ntimeout = \"2s\"\n{extra}",
        server.address
    )))
    .unwrap()
}

#[tokio::test]
async fn smtp_backend_with_plain_and_login() {
    let server = Submission::start(SubmissionMode::Both).await;
    for mechanism in ["plain", "login"] {
        let authenticator =
            smtp_authenticator(&server, &format!("smtp_mechanism = \"{mechanism}\""));
        let answers = standard_answers(&authenticator).await;
        assert_eq!(answers[..3], EXPECTED[..3], "{mechanism}");
    }
    assert_eq!(server.auth_attempts(), 8);

    // A server that takes only LOGIN: PLAIN cannot get an answer, LOGIN can.
    let login_only = Submission::start(SubmissionMode::LoginOnly).await;
    let plain = smtp_authenticator(&login_only, "smtp_mechanism = \"plain\"");
    let answer = verify(&plain, client(), "alice", ALICE_PASSWORD).await;
    assert!(
        matches!(answer, Verification::Unavailable { .. }),
        "{answer:?}"
    );
    let login = smtp_authenticator(&login_only, "smtp_mechanism = \"login\"");
    let answer = verify(&login, client(), "alice", ALICE_PASSWORD).await;
    assert_eq!(answer, Verification::Accepted);
}

#[tokio::test]
async fn backends_that_cannot_answer_are_unavailable_never_accepted() {
    // Nothing listening.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let tempfail = Submission::start(SubmissionMode::TempFail).await;
    let garbage = Submission::start(SubmissionMode::Garbage).await;
    let silent = Submission::start(SubmissionMode::Silent).await;
    for (backend, address) in [
        ("smtp", closed),
        ("imap", closed),
        ("pop3", closed),
        ("smtp", tempfail.address),
        ("smtp", garbage.address),
        ("imap", garbage.address),
        ("pop3", garbage.address),
        ("smtp", silent.address),
        ("imap", silent.address),
    ] {
        let authenticator = Authenticator::new(&auth_config(&format!(
            "backend = \"{backend}\"\nserver = \"{address}\"\ntimeout = \"300ms\"\ncache_ttl = \"1m\""
        )))
        .unwrap();
        let started = Instant::now();
        let answer = verify(&authenticator, client(), "alice", ALICE_PASSWORD).await;
        assert!(
            matches!(&answer, Verification::Unavailable { reason } if !reason.contains(ALICE_PASSWORD)),
            "{backend} at {address}: {answer:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the timeout bounds the wait"
        );
        // Nothing was cached: asking again asks again, and is still unavailable.
        let again = verify(&authenticator, client(), "alice", ALICE_PASSWORD).await;
        assert!(
            matches!(again, Verification::Unavailable { .. }),
            "{again:?}"
        );
    }
    assert_eq!(tempfail.auth_attempts(), 2);
}

#[tokio::test]
async fn successes_are_cached_only_when_configured_and_only_successes() {
    let server = Submission::start(SubmissionMode::Both).await;
    let uncached = smtp_authenticator(&server, "");
    for _ in 0..2 {
        assert_eq!(
            verify(&uncached, client(), "alice", ALICE_PASSWORD).await,
            Verification::Accepted
        );
    }
    assert_eq!(
        server.auth_attempts(),
        2,
        "cache off by default: each attempt asks"
    );

    let cached = smtp_authenticator(&server, "cache_ttl = \"3s\"");
    for _ in 0..3 {
        assert_eq!(
            verify(&cached, client(), "alice", ALICE_PASSWORD).await,
            Verification::Accepted
        );
    }
    assert_eq!(server.auth_attempts(), 3, "two answers came from the cache");
    // A wrong password is no cache hit, and its failure is not cached either.
    for _ in 0..2 {
        assert_eq!(
            verify(&cached, client(), "alice", "wrong").await,
            Verification::Rejected
        );
    }
    assert_eq!(server.auth_attempts(), 5);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        verify(&cached, client(), "alice", ALICE_PASSWORD).await,
        Verification::Accepted
    );
    assert_eq!(server.auth_attempts(), 6, "expired entries ask again");
}

#[tokio::test]
async fn failures_slow_down_then_refuse_per_client_and_per_user() {
    let server = Submission::start(SubmissionMode::Both).await;
    let authenticator = Authenticator::new(&auth_config(&format!(
        "backend = \"smtp\"\nserver = \"{}\"\nfailures_before_delay = 2\nfailure_delay = \"150ms\"\nmax_failures = 4\nfailure_window = \"1h\"",
        server.address
    )))
    .unwrap();
    let attacker: IpAddr = "127.0.0.9".parse().unwrap();
    let mut took = Vec::new();
    for _ in 0..4 {
        let started = Instant::now();
        let answer = verify(&authenticator, attacker, "alice", "guess").await;
        took.push(started.elapsed());
        assert_eq!(answer, Verification::Rejected);
    }
    assert!(took[2] >= Duration::from_millis(150), "{took:?}");
    assert!(
        took[3] >= Duration::from_millis(300),
        "the delay doubles: {took:?}"
    );
    assert_eq!(server.auth_attempts(), 4);

    // Beyond max_failures this client is refused without asking, even with
    // the right password, for any user.
    for user in ["alice", "carol"] {
        let answer = verify(&authenticator, attacker, user, ALICE_PASSWORD).await;
        assert!(
            matches!(answer, Verification::Throttled { retry_after } if retry_after > Duration::ZERO),
            "{user}: {answer:?}"
        );
    }
    assert_eq!(
        server.auth_attempts(),
        4,
        "throttled attempts never reach the backend"
    );
    // The user is not locked out: from another address the right password
    // is checked (the user is under attack, so its checks are spaced out).
    let other: IpAddr = "127.0.0.10".parse().unwrap();
    let started = Instant::now();
    let answer = verify(&authenticator, other, "alice", ALICE_PASSWORD).await;
    assert_eq!(answer, Verification::Accepted);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.auth_attempts(), 5);

    // Another user from another address is not affected.
    let answer = verify(&authenticator, other, "ALICE2", "x").await;
    assert_eq!(answer, Verification::Rejected);
    assert_eq!(server.auth_attempts(), 6);
}

/// A scripted IMAP server for what a real Dovecot on loopback never does:
/// `LOGINDISABLED` (Dovecot counts loopback as secure) and `NO [UNAVAILABLE]`.
async fn scripted_imap(login_disabled: bool) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = serve_imap(stream, login_disabled).await;
            });
        }
    });
    (address, task)
}

async fn serve_imap(stream: tokio::net::TcpStream, login_disabled: bool) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"* OK scripted IMAP ready\r\n").await?;
    let right_plain = BASE64.encode(format!("\0alice\0{ALICE_PASSWORD}"));
    while let Some(line) = lines.next_line().await? {
        let (tag, command) = line.split_once(' ').unwrap_or((&line, ""));
        let upper = command.to_ascii_uppercase();
        let reply = if upper == "CAPABILITY" {
            let extra = if login_disabled {
                " LOGINDISABLED AUTH=PLAIN"
            } else {
                ""
            };
            format!("* CAPABILITY IMAP4rev1{extra}\r\n{tag} OK done\r\n")
        } else if upper == "LOGOUT" {
            write
                .write_all(format!("* BYE bye\r\n{tag} OK done\r\n").as_bytes())
                .await?;
            return Ok(());
        } else if upper.starts_with("LOGIN ") {
            if login_disabled {
                format!("{tag} BAD LOGIN is disabled\r\n")
            } else {
                format!("{tag} NO [UNAVAILABLE] user database is down\r\n")
            }
        } else if upper == "AUTHENTICATE PLAIN" && login_disabled {
            write.write_all(b"+ \r\n").await?;
            let response = lines.next_line().await?.unwrap_or_default();
            if response == right_plain {
                format!("{tag} OK logged in\r\n")
            } else {
                format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
            }
        } else {
            format!("{tag} BAD unexpected\r\n")
        };
        write.write_all(reply.as_bytes()).await?;
    }
    Ok(())
}

#[tokio::test]
async fn imap_uses_authenticate_plain_when_login_is_disabled() {
    let (address, task) = scripted_imap(true).await;
    let authenticator = Authenticator::new(&auth_config(&format!(
        "backend = \"imap\"\nserver = \"{address}\"\ntimeout = \"2s\""
    )))
    .unwrap();
    let answers = standard_answers(&authenticator).await;
    assert_eq!(answers[..3], EXPECTED[..3]);
    task.abort();
}

#[tokio::test]
async fn imap_no_with_unavailable_code_is_unavailable_not_rejected() {
    let (address, task) = scripted_imap(false).await;
    let authenticator = Authenticator::new(&auth_config(&format!(
        "backend = \"imap\"\nserver = \"{address}\"\ntimeout = \"2s\""
    )))
    .unwrap();
    let answer = verify(&authenticator, client(), "alice", ALICE_PASSWORD).await;
    assert!(
        matches!(&answer, Verification::Unavailable { reason } if reason.contains("UNAVAILABLE")),
        "{answer:?}"
    );
    task.abort();
}

/// A server that answers each line it receives from a script: the first
/// entry whose text starts the line (case-insensitive) gives the reply;
/// lines no entry matches end the connection. Records what it received.
struct Scripted {
    address: SocketAddr,
    received: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    async fn start(
        greeting: &'static str,
        script: &'static [(&'static str, &'static str)],
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    write.write_all(greeting.as_bytes()).await?;
                    while let Some(line) = lines.next_line().await? {
                        log.lock().unwrap().push(line.clone());
                        let upper = line.to_ascii_uppercase();
                        let Some((_, reply)) = script
                            .iter()
                            .find(|(start, _)| upper.starts_with(&start.to_ascii_uppercase()))
                        else {
                            break;
                        };
                        write.write_all(reply.as_bytes()).await?;
                    }
                    std::io::Result::Ok(())
                });
            }
        });
        Self {
            address,
            received,
            task,
        }
    }

    /// Whether any line received contained `text`.
    fn received(&self, text: &str) -> bool {
        self.received
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains(text))
    }
}

/// A server's script: (start of a received line, the reply to send).
type Script = &'static [(&'static str, &'static str)];

/// How a hostile script must be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Rejected,
    Unavailable,
    Accepted,
}

async fn scripted_answer(
    backend: &str,
    extra: &str,
    greeting: &'static str,
    script: Script,
) -> (Verification, Scripted) {
    let server = Scripted::start(greeting, script).await;
    let authenticator = Authenticator::new(&auth_config(&format!(
        "backend = \"{backend}\"\nserver = \"{}\"\ntimeout = \"2s\"\n{extra}",
        server.address
    )))
    .unwrap();
    let answer = verify(&authenticator, client(), "alice", "pw").await;
    (answer, server)
}

fn check(case: &str, answer: &Verification, expect: Expect, failures: &mut Vec<String>) {
    let ok = match expect {
        Expect::Rejected => *answer == Verification::Rejected,
        Expect::Accepted => *answer == Verification::Accepted,
        Expect::Unavailable => matches!(answer, Verification::Unavailable { .. }),
    };
    if !ok {
        failures.push(format!("{case}: {answer:?}, expected {expect:?}"));
    }
}

/// Only +OK to PASS accepts; what USER gets is never acceptance, and no
/// reply other than the one to PASS is taken as its answer.
#[tokio::test]
async fn pop3_accepts_only_a_positive_reply_to_pass() {
    const GREETING: &str = "+OK scripted POP3\r\n";
    let cases: [(&str, Script, Expect, bool); 7] = [
        (
            "-ERR [IN-USE] to USER",
            &[
                ("USER", "-ERR [IN-USE] mailbox locked\r\n"),
                ("QUIT", "+OK\r\n"),
            ],
            Expect::Unavailable,
            false,
        ),
        (
            "-ERR [AUTH] to USER",
            &[("USER", "-ERR [AUTH] no\r\n"), ("QUIT", "+OK\r\n")],
            Expect::Rejected,
            false,
        ),
        (
            "-ERR [SYS/TEMP] to USER",
            &[("USER", "-ERR [SYS/TEMP] later\r\n"), ("QUIT", "+OK\r\n")],
            Expect::Unavailable,
            false,
        ),
        (
            "-ERR [IN-USE] to PASS",
            &[
                ("USER", "+OK\r\n"),
                ("PASS", "-ERR [IN-USE] locked\r\n"),
                ("QUIT", "+OK\r\n"),
            ],
            Expect::Unavailable,
            true,
        ),
        (
            "two +OK to USER, then -ERR to PASS",
            &[
                ("USER", "+OK\r\n+OK\r\n"),
                ("PASS", "-ERR [AUTH] wrong\r\n"),
                ("QUIT", "+OK\r\n"),
            ],
            Expect::Unavailable,
            false,
        ),
        (
            "-ERR [AUTH] to PASS",
            &[
                ("USER", "+OK\r\n"),
                ("PASS", "-ERR [AUTH] wrong\r\n"),
                ("QUIT", "+OK\r\n"),
            ],
            Expect::Rejected,
            true,
        ),
        (
            "+OK to PASS",
            &[
                ("USER", "+OK\r\n"),
                ("PASS", "+OK logged in\r\n"),
                ("QUIT", "+OK\r\n"),
            ],
            Expect::Accepted,
            true,
        ),
    ];
    let mut failures = Vec::new();
    for (case, script, expect, pass_sent) in cases {
        let (answer, server) = scripted_answer("pop3", "", GREETING, script).await;
        check(case, &answer, expect, &mut failures);
        if server.received("PASS") != pass_sent {
            failures.push(format!("{case}: PASS sent: {}", !pass_sent));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Only the tagged OK with the login command's own tag accepts.
#[tokio::test]
async fn imap_accepts_only_its_own_tagged_ok() {
    const READY: &str = "* OK scripted IMAP\r\n";
    const CAPABILITY: (&str, &str) = (
        "rg1 CAPABILITY",
        "* CAPABILITY IMAP4rev1\r\nrg1 OK done\r\n",
    );
    const LOGOUT: (&str, &str) = ("rg5 LOGOUT", "* BYE\r\nrg5 OK\r\n");
    let cases: [(&str, &str, Script, Expect); 7] = [
        (
            "PREAUTH greeting",
            "* PREAUTH already in\r\n",
            &[CAPABILITY, ("rg4 LOGIN", "rg4 OK\r\n"), LOGOUT],
            Expect::Unavailable,
        ),
        (
            "untagged OK, then tagged NO",
            READY,
            &[
                CAPABILITY,
                (
                    "rg4 LOGIN",
                    "* OK [ALERT] hello\r\nrg4 NO [AUTHENTICATIONFAILED] no\r\n",
                ),
                LOGOUT,
            ],
            Expect::Rejected,
        ),
        (
            "only an untagged OK",
            READY,
            &[CAPABILITY, ("rg4 LOGIN", "* OK logged in\r\n"), LOGOUT],
            Expect::Unavailable,
        ),
        (
            "tagged OK to another tag",
            READY,
            &[CAPABILITY, ("rg4 LOGIN", "rg3 OK logged in\r\n"), LOGOUT],
            Expect::Unavailable,
        ),
        (
            "continuation request to LOGIN",
            READY,
            &[CAPABILITY, ("rg4 LOGIN", "+ go on\r\n"), LOGOUT],
            Expect::Unavailable,
        ),
        (
            "rg4 OK sent ahead with CAPABILITY",
            READY,
            &[
                (
                    "rg1 CAPABILITY",
                    "* CAPABILITY IMAP4rev1\r\nrg1 OK done\r\nrg4 OK logged in\r\n",
                ),
                ("rg4 LOGIN", "rg4 NO [AUTHENTICATIONFAILED] no\r\n"),
                LOGOUT,
            ],
            Expect::Unavailable,
        ),
        (
            "tagged OK",
            READY,
            &[CAPABILITY, ("rg4 LOGIN", "rg4 OK logged in\r\n"), LOGOUT],
            Expect::Accepted,
        ),
    ];
    let mut failures = Vec::new();
    for (case, greeting, script, expect) in cases {
        let (answer, _server) = scripted_answer("imap", "", greeting, script).await;
        check(case, &answer, expect, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Only 235 to the exchange's last step accepts.
#[tokio::test]
async fn smtp_accepts_only_235_to_the_last_step() {
    const GREETING: &str = "220 scripted ESMTP\r\n";
    const EHLO: (&str, &str) = ("EHLO", "250-scripted\r\n250 AUTH PLAIN LOGIN\r\n");
    const QUIT: (&str, &str) = ("QUIT", "221 bye\r\n");
    // The LOGIN steps: the user name and the password, base64.
    const USER_B64: &str = "YWxpY2U=";
    const PASSWORD_B64: &str = "cHc=";
    let login = "smtp_mechanism = \"login\"";
    let cases: [(&str, &str, Script, Expect, bool); 7] = [
        (
            "235 to AUTH LOGIN itself",
            login,
            &[EHLO, ("AUTH LOGIN", "235 2.7.0 ok\r\n"), QUIT],
            Expect::Unavailable,
            false,
        ),
        (
            "235 to the LOGIN user name",
            login,
            &[
                EHLO,
                ("AUTH LOGIN", "334 VXNlcm5hbWU6\r\n"),
                (USER_B64, "235 2.7.0 ok\r\n"),
                QUIT,
            ],
            Expect::Unavailable,
            false,
        ),
        (
            "334 again after the password",
            login,
            &[
                EHLO,
                ("AUTH LOGIN", "334 VXNlcm5hbWU6\r\n"),
                (USER_B64, "334 UGFzc3dvcmQ6\r\n"),
                (PASSWORD_B64, "334 more\r\n"),
                QUIT,
            ],
            Expect::Unavailable,
            true,
        ),
        (
            "235 to the LOGIN password",
            login,
            &[
                EHLO,
                ("AUTH LOGIN", "334 VXNlcm5hbWU6\r\n"),
                (USER_B64, "334 UGFzc3dvcmQ6\r\n"),
                (PASSWORD_B64, "235 2.7.0 ok\r\n"),
                QUIT,
            ],
            Expect::Accepted,
            true,
        ),
        (
            "multi-line 535 then 235",
            "",
            &[
                EHLO,
                ("AUTH PLAIN", "535-5.7.8 no\r\n235 2.7.0 ok\r\n"),
                QUIT,
            ],
            Expect::Unavailable,
            true,
        ),
        (
            "235 sent ahead with EHLO",
            "",
            &[
                ("EHLO", "250 scripted\r\n235 2.7.0 ok\r\n"),
                ("AUTH PLAIN", "535 5.7.8 no\r\n"),
                QUIT,
            ],
            Expect::Unavailable,
            false,
        ),
        (
            "334 to PLAIN with initial response",
            "",
            &[EHLO, ("AUTH PLAIN", "334 \r\n"), QUIT],
            Expect::Unavailable,
            true,
        ),
    ];
    let mut failures = Vec::new();
    for (case, extra, script, expect, password_sent) in cases {
        let (answer, server) = scripted_answer("smtp", extra, GREETING, script).await;
        check(case, &answer, expect, &mut failures);
        let sent = server.received(PASSWORD_B64) || server.received("AUTH PLAIN ");
        if sent != password_sent {
            failures.push(format!("{case}: password sent: {sent}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
