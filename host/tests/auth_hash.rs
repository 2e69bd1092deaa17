//! `relaygate auth hash`: the hash it prints works in a users file.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use relaygate::config::Config;
use relaygate::credentials::{Authenticator, Credentials, Verification};
use zeroize::Zeroizing;

fn hash(stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_relaygate"))
        .args(["auth", "hash"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("relaygate runs");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn the_printed_hash_lets_the_file_backend_accept_that_password() {
    let out = hash(b"correct horse battery\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    let hash = printed.trim_end();
    assert!(hash.starts_with("$argon2id$"), "{printed}");
    assert!(
        !printed.contains("correct horse"),
        "the password is not echoed"
    );

    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, format!("alice:{hash}\n")).unwrap();
    let config = Config::parse(&format!(
        "[auth]\nbackend = \"file\"\nusers_file = {:?}\n",
        users.display().to_string()
    ))
    .unwrap();
    let authenticator = Authenticator::new(config.auth.as_ref().unwrap()).unwrap();
    let client = "127.0.0.1".parse().unwrap();
    let attempt = |password: &str| {
        Credentials::new("alice".to_string(), Zeroizing::new(password.to_string()))
    };
    assert_eq!(
        authenticator
            .verify(client, &attempt("correct horse battery"))
            .await,
        Verification::Accepted
    );
    assert_eq!(
        authenticator
            .verify(client, &attempt("correct horse battery\n"))
            .await,
        Verification::Rejected
    );
}

#[test]
fn no_password_is_an_error() {
    let out = hash(b"");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no password"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = hash(b"two\nlines\n");
    assert!(!out.status.success());
}
