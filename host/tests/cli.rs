//! The `relaygate` binary as users and outside tools run it (README, "Command line").

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn relaygate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_relaygate"))
}

fn run(args: &[&str]) -> Output {
    relaygate().args(args).output().expect("relaygate runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/misbehaving.wasm")
}

fn write_config(body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relaygate.toml");
    std::fs::write(&path, body).unwrap();
    (dir, path)
}

#[test]
fn check_with_the_embedded_default_reports_restricted_relay() {
    let out = run(&["check"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("embedded default"), "{stdout}");
    assert!(stdout.contains("builtin:apple-relay"), "{stdout}");
    assert!(stdout.contains("restricted relay ON"), "{stdout}");
    assert!(!stdout.contains("OPEN RELAY"), "{stdout}");
}

#[test]
fn check_warns_loudly_about_an_open_relay() {
    let (_dir, path) = write_config("[policy.config]\nopen_relay_addr_flag = 0\n");
    let out = run(&["check", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("OPEN RELAY"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn bad_config_is_refused_with_one_line_per_problem_and_exit_78() {
    let (_dir, path) = write_config("[proxy]\nlsiten = [\"127.0.0.1:2525\"]\n");
    let out = run(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("proxy.lsiten"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let (_dir, path) = write_config(
        "[policy.config]\nopen_relay_addr_flag = 1\nopen_relay_addr_list = [\"10.0.0.300\"]\n",
    );
    let out = run(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains("open_relay_addr_list"),
        "{}",
        text(&out.stderr)
    );

    let out = run(&["check", "--config", "/nonexistent/relaygate.toml"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains("cannot read"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn policy_check_names_the_world_and_refuses_garbage() {
    let out = run(&["policy", "check", fixture().to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("relaygate:policy/hooks@0.1.0"), "{stdout}");
    assert!(stdout.contains("fits:      yes"), "{stdout}");

    let (_dir, path) = write_config("not wasm");
    let out = run(&["policy", "check", path.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not usable"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn runs_with_flags_greets_and_stops_on_sigterm() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = relaygate()
        .args(["--listen", &listen, "--upstream", "127.0.0.1:9"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_port(port);
    let stream = TcpStream::connect(&listen).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("220 "), "{line}");
    (&stream).write_all(b"QUIT\r\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("221 "), "{line}");
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "relaygate did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "port {port} never opened"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sighup_and_relaygate_reload_swap_the_policy_and_status_shows_it() {
    let (smtp, admin) = (free_port(), free_port());
    let config = |flag: u8| {
        format!(
            "[proxy]\nlisten = [\"127.0.0.1:{smtp}\"]\nupstream = \"127.0.0.1:9\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[policy.config]\nopen_relay_addr_flag = {flag}\n"
        )
    };
    let (_dir, path) = write_config(&config(1));
    let path_text = path.to_str().unwrap();
    let mut child = relaygate()
        .args(["--config", path_text])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(admin);
    let status = run(&["status", "--config", path_text]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(
        text(&status.stdout).contains("restricted relay ON"),
        "{}",
        text(&status.stdout)
    );

    // SIGHUP re-reads the file.
    std::fs::write(&path, config(0)).unwrap();
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    loop {
        let status = text(&run(&["status", "--config", path_text]).stdout);
        if status.contains("\"open_relay\": true") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "SIGHUP did not reload: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // `relaygate reload` does the same, and reports a refusal.
    std::fs::write(
        &path,
        config(1).replace("open_relay_addr_flag", "open_relay_adr_flag"),
    )
    .unwrap();
    let refused = run(&["reload", "--config", path_text]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stdout).contains("open_relay_adr_flag"),
        "{}",
        text(&refused.stdout)
    );
    std::fs::write(&path, config(1)).unwrap();
    let reloaded = run(&["reload", "--config", path_text]);
    assert!(
        reloaded.status.success(),
        "{}{}",
        text(&reloaded.stdout),
        text(&reloaded.stderr)
    );
    assert!(
        text(&reloaded.stdout).contains("restricted relay ON"),
        "{}",
        text(&reloaded.stdout)
    );

    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let _ = child.wait();
}

#[test]
fn reload_without_an_admin_endpoint_says_how() {
    let out = run(&["reload"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("[admin] listen"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn json_logs_and_systemd_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = relaygate()
        .args([
            "--listen",
            &listen,
            "--upstream",
            "127.0.0.1:9",
            "--log-format",
            "json",
        ])
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("relaygate notifies systemd");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
    // Ready means listening.
    let stream = TcpStream::connect(&listen).expect("listening once READY=1 is sent");
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("220 "), "{line}");
    (&stream).write_all(b"QUIT\r\n").unwrap();
    drop(reader);
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = child.wait_with_output().unwrap();
    let stderr = text(&output.stderr);
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        events.iter().any(|e| e["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("relaygate ready"))),
        "{stderr}"
    );
    assert!(
        events
            .iter()
            .all(|e| e["level"].is_string() && e["timestamp"].is_string())
    );
}

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn write_cases(body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cases.toml");
    std::fs::write(&path, body).unwrap();
    (dir, path)
}

#[test]
fn policy_test_passes_the_whole_apple_decision_table() {
    let cases = repo_file("policies/apple-relay/cases.toml");
    let out = run(&[
        "policy",
        "test",
        "builtin:apple-relay",
        cases.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(!stdout.lines().any(|l| l.starts_with("FAIL")), "{stdout}");
    let summary = stdout.lines().last().unwrap();
    assert!(summary.ends_with(" 0 FAILED"), "{summary}");
    // Every row of the README's decision table is there, each with local and remote.
    for row in 1..=8 {
        assert!(
            stdout.contains(&format!("ok   row {row}: ")),
            "row {row}:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("/ rcpt bob@elsewhere.org: reject 554 5.7.1"),
        "{stdout}"
    );
    assert!(stdout.contains("reject 530 5.7.0"), "{stdout}");
    // The same cases against the compiled file give the same result.
    let wasm = repo_file("host/assets/apple-relay.wasm");
    let again = run(&[
        "policy",
        "test",
        wasm.to_str().unwrap(),
        cases.to_str().unwrap(),
    ]);
    assert_eq!(text(&again.stdout), stdout);
}

const MISMATCH: &str = r#"
[config]
open_relay_addr_flag = 1
open_relay_addr_list = ["192.168.1.0/24"]
local_domains = ["example.com"]

[[case]]
name = "unlisted client may not relay"
client = "203.0.113.5"
helo = "mx.example.net"
sender = "bob@example.net"
recipients = ["a@example.com", "b@elsewhere.org"]
expect = { connect = "accept", mail = "accept", rcpt = ["accept", "accept"] }

[[case]]
name = "listed client relays"
client = "192.168.1.9"
sender = "bob@example.net"
recipients = ["b@elsewhere.org"]
expect = { rcpt = "accept" }
"#;

#[test]
fn policy_test_prints_expected_and_actual_and_exits_1_on_a_mismatch() {
    let (_dir, cases) = write_cases(MISMATCH);
    let out = run(&[
        "policy",
        "test",
        "builtin:apple-relay",
        cases.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "ok   unlisted client may not relay / connect: accept",
            "ok   unlisted client may not relay / mail: accept",
            "ok   unlisted client may not relay / rcpt a@example.com: accept",
            "FAIL unlisted client may not relay / rcpt b@elsewhere.org: expected accept, got reject 554 5.7.1 Relay access denied",
            "ok   listed client relays / rcpt b@elsewhere.org: accept",
            "2 cases, 5 checks: 4 ok, 1 FAILED",
        ]
    );
}

#[test]
fn policy_test_refuses_a_bad_cases_file_naming_case_and_key_with_78() {
    let bad = MISMATCH.replace("rcpt = [\"accept\", \"accept\"]", "rcpt = [\"accept\"]");
    let (_dir, cases) = write_cases(&bad);
    let out = run(&[
        "policy",
        "test",
        "builtin:apple-relay",
        cases.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains(
            "case 1 (\"unlisted client may not relay\"): expect.rcpt: 1 entries for 2 recipients"
        ),
        "{stderr}"
    );
    let bad = MISMATCH.replace("client = \"192.168.1.9\"", "client = \"not-an-ip\"");
    let (_dir, cases) = write_cases(&bad);
    let out = run(&[
        "policy",
        "test",
        "builtin:apple-relay",
        cases.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("case 2 (\"listed client relays\"): client:"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing runs before the file is checked"
    );
}

#[test]
fn policy_test_says_when_the_policy_cannot_load_with_2() {
    let (_dir, cases) = write_cases(MISMATCH);
    let (_dir2, garbage) = write_config("not wasm");
    let out = run(&[
        "policy",
        "test",
        garbage.to_str().unwrap(),
        cases.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not a valid WebAssembly component"));
}

#[test]
fn policy_test_answers_dns_from_the_cases_and_checks_init() {
    let cases = r#"
[config]
open_relay_addr_flag = 1
open_relay_addr_list = ["gw.example.net"]
local_domains = ["example.com"]
[dns]
"liar.example.net" = ["198.51.100.1"]

[[case]]
name = "confirmed name is listed"
client = "203.0.113.7"
client_name = "gw.example.net"
sender = ""
recipients = ["b@elsewhere.org"]
expect = { init = "ok", rcpt = "accept" }

[[case]]
name = "unconfirmed name is not"
client = "203.0.113.8"
client_name = "liar.example.net"
sender = ""
recipients = ["b@elsewhere.org"]
expect = { rcpt = "reject 554" }

[[case]]
name = "bad config"
client = "203.0.113.8"
config = { open_relay_addr_flag = "on" }
expect = { init = "refused" }
"#;
    let (_dir, path) = write_cases(cases);
    let out = run(&[
        "policy",
        "test",
        "builtin:apple-relay",
        path.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("ok   bad config / init: refused (open_relay_addr_flag"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("3 cases, 4 checks: 4 ok, 0 FAILED\n"),
        "{stdout}"
    );
}

fn wasi_probe() -> PathBuf {
    repo_file("tests/fixtures/wasi-probe.wasm")
}

#[test]
fn policy_check_names_package_version_imports_and_wasi() {
    let out = run(&["policy", "check", wasi_probe().to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("built for: relaygate:policy@0.1.0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("relaygate:policy/hooks@0.1.0: init, connect, helo"),
        "{stdout}"
    );
    assert!(stdout.contains("wasi:      "), "{stdout}");
    assert!(stdout.contains("wasi:cli/stdout@0.2"), "{stdout}");
    assert!(stdout.contains("fits:      yes (wasi-probe)"), "{stdout}");
    assert!(stdout.contains(" bytes)"), "{stdout}");
    assert!(stdout.contains("compiled:  "), "{stdout}");

    let out = run(&["policy", "check", "builtin:apple-relay"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("wasi:      none"), "{stdout}");

    // A core module is not a component: said plainly, exit non-zero.
    let (_dir, core) = write_config("");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let out = run(&["policy", "check", core.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("core WebAssembly module"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn wasi_guests_get_no_capabilities_and_their_output_is_logged() {
    let cases = r#"
[limits]
call_timeout = "10s"

[[case]]
name = "probe"
client = "127.0.0.1"
helo = "chatter"
expect = { connect = "accept", helo = "accept" }
"#;
    let (_dir, path) = write_cases(cases);
    let out = run(&[
        "policy",
        "test",
        wasi_probe().to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    // connect rejects naming whatever it could reach: files, env, stdin,
    // name lookups, sockets. Accept means all were denied or empty.
    assert!(out.status.success(), "{stdout}{stderr}");
    let said = |needle: &str| {
        stderr
            .lines()
            .any(|l| l.contains("policy") && l.contains("wasi-probe") && l.contains(needle))
    };
    assert!(said("wasi-probe says hello on stdout"), "{stderr}");
    assert!(said("wasi-probe says hello on stderr"), "{stderr}");
    // Bounded: the first lines are logged, the flood is counted, not kept.
    assert!(said("chatter line 0"), "{stderr}");
    assert!(!said("chatter line 499"), "rate limit: {stderr}");
    assert!(said("output lines dropped (rate limit)"), "{stderr}");
}

#[test]
fn wasi_guests_stay_under_the_time_and_memory_limits() {
    let cases = r#"
[[case]]
name = "endless loop"
client = "127.0.0.1"
helo = "loop"
expect = { helo = "accept" }
"#;
    let (_dir, path) = write_cases(cases);
    let out = run(&[
        "policy",
        "test",
        wasi_probe().to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("FAIL endless loop / helo: expected accept, got failure timeout"),
        "{stdout}"
    );
    // A generous time budget, so only the memory cap can stop the hog.
    let cases = r#"
[limits]
call_timeout = "20s"
memory_limit = 8388608

[[case]]
name = "memory hog"
client = "127.0.0.1"
helo = "hog"
expect = { helo = "accept" }
"#;
    let (_dir, path) = write_cases(cases);
    let out = run(&[
        "policy",
        "test",
        wasi_probe().to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("FAIL memory hog / helo: expected accept, got failure memory"),
        "{stdout}"
    );
}

#[test]
fn a_component_built_for_another_wit_version_is_refused_naming_both() {
    let wrong = repo_file("tests/fixtures/wrong-version.wasm");
    let out = run(&["policy", "check", wrong.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("built for: relaygate:policy@0.2.0"),
        "{stdout}"
    );
    assert!(stdout.contains("fits:      no"), "{stdout}");
    assert!(
        stdout.contains(
            "why:       it was built for relaygate:policy@0.2.0, but this relaygate provides relaygate:policy@0.1.0"
        ),
        "{stdout}"
    );
    let (_dir, cases) = write_cases(MISMATCH);
    let out = run(&[
        "policy",
        "test",
        wrong.to_str().unwrap(),
        cases.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("relaygate:policy@0.2.0"),
        "{}",
        text(&out.stderr)
    );
}

/// Configs that cannot work are refused by `check` and at start alike: exit
/// 78, one line naming the keys and the fix.
#[test]
fn auth_that_can_never_be_offered_is_refused_by_check_and_logged_as_an_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, "").unwrap();
    let auth = format!("[auth]\nbackend = \"file\"\nusers_file = {users:?}\n");
    let cases = [
        // AUTH required, no backend at all.
        (
            "[policy.config]\nsmtp_plain_login_flag = 1\n".to_string(),
            vec![
                "smtp_plain_login_flag = 1",
                "no [auth] section",
                "every client",
            ],
        ),
        (
            "[policy.config]\nopen_relay_addr_flag = 1\nsmtp_plain_login_flag = 1\n".to_string(),
            vec!["no [auth] section", "outside open_relay_addr_list"],
        ),
        // A backend, but AUTH only after a STARTTLS that has no certificate.
        (
            format!("{auth}[policy.config]\nsmtp_plain_login_flag = 1\n"),
            vec!["smtp_plain_login_flag = 1", "auth.require_tls", "[tls]"],
        ),
    ];
    for (body, wanted) in cases {
        let (_dir, path) = write_config(&body);
        let out = run(&["check", "--config", path.to_str().unwrap()]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{body}\n{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        for want in &wanted {
            assert!(stderr.contains(want), "{want:?} missing: {stderr}");
        }
        assert!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));
        // Started anyway, the proxy serves (listed clients can still send)
        // and says what cannot work, as an error.
        let port = free_port();
        let stderr = serve_briefly(
            port,
            &format!(
                "[proxy]\nlisten = [\"127.0.0.1:{port}\"]\nupstream = \"127.0.0.1:9\"\n{body}"
            ),
        );
        let error = stderr
            .lines()
            .find(|l| l.contains("ERROR") && l.contains("CONFIG CANNOT WORK"))
            .unwrap_or_else(|| panic!("no error logged at start: {stderr}"));
        for want in &wanted {
            assert!(error.contains(want), "{want:?} missing: {error}");
        }
    }
    // With what AUTH needs it passes.
    let (_dir, path) = write_config(&format!(
        "{auth}require_tls = false\n[policy.config]\nsmtp_plain_login_flag = 1\n"
    ));
    let out = run(&["check", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("WARNING"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn check_warns_loudly_about_settings_that_quietly_open_the_relay_or_do_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, "").unwrap();
    let cases = [
        (
            "[policy]\nmode = \"dry-run\"\n".to_string(),
            "policy.mode = \"dry-run\"",
        ),
        (
            "[policy]\non_failure = \"accept\"\n".to_string(),
            "policy.on_failure = \"accept\"",
        ),
        (
            format!(
                "[auth]\nbackend = \"file\"\nusers_file = {users:?}\n[policy.config]\nsmtp_plain_login_flag = 0\n"
            ),
            "smtp_plain_login_flag is 0",
        ),
        (
            "[proxy]\nper_client_exempt = [\"::/0\"]\n".to_string(),
            "caps no one",
        ),
    ];
    for (body, want) in cases {
        let (_dir, path) = write_config(&body);
        let out = run(&["check", "--config", path.to_str().unwrap()]);
        assert!(out.status.success(), "{body}\n{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let warning = stdout
            .lines()
            .find(|l| l.starts_with("WARNING:") && l.contains(want))
            .unwrap_or_else(|| panic!("no warning with {want:?}:\n{stdout}"));
        if want.starts_with("policy.") {
            assert!(warning.contains("ANY client"), "{warning}");
        }
    }
}

#[test]
fn check_shows_the_connection_caps_and_who_is_exempt() {
    let (_dir, path) = write_config(
        "[proxy]\nmax_connections_per_client = 7\nper_client_ipv6_prefix = 56\nper_client_exempt = [\"192.0.2.0/24\"]\n",
    );
    let out = run(&["check", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("7 per client (IPv6 per /56), not capped per client: 192.0.2.0/24"),
        "{stdout}"
    );
    // By default: loopback and this machine's own addresses.
    let out = run(&["check"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout
            .contains("50 per client (IPv6 per /64), not capped per client: 127.0.0.0/8, ::1/128"),
        "{stdout}"
    );
    for bad in ["0", "129"] {
        let (_dir, path) = write_config(&format!("[proxy]\nper_client_ipv6_prefix = {bad}\n"));
        let out = run(&["check", "--config", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(78));
        assert!(
            text(&out.stderr).contains("proxy.per_client_ipv6_prefix"),
            "{}",
            text(&out.stderr)
        );
    }
}

/// Start the proxy on `config_body` (whose `listen` must be `port`), wait
/// until it serves, stop it with SIGTERM and return what it logged.
fn serve_briefly(port: u16, config_body: &str) -> String {
    let (_dir, path) = write_config(config_body);
    let child = relaygate()
        .args(["--config", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_port(port);
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    text(&child.wait_with_output().unwrap().stderr)
}

#[test]
fn the_proxy_warns_at_start_about_a_dry_run() {
    let port = free_port();
    let stderr = serve_briefly(
        port,
        &format!(
            "[proxy]\nlisten = [\"127.0.0.1:{port}\"]\nupstream = \"127.0.0.1:9\"\n[policy]\nmode = \"dry-run\"\n"
        ),
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("WARN") && l.contains("policy.mode = \"dry-run\"")),
        "{stderr}"
    );
}
