//! The `relaygate` binary as users and outside tools run it (README, "Command line").

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn relaygate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_relaygate"))
}

/// How one run of the binary ended and what it printed; the assertions
/// below print both streams when they fail.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn output(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    /// Exit status 0.
    fn succeeded(&self) -> &Self {
        assert_eq!(self.code, Some(0), "{}", self.output());
        self
    }

    /// Any status but 0.
    fn failed(&self) -> &Self {
        assert_ne!(self.code, Some(0), "{}", self.output());
        self
    }

    /// Exit status `code`.
    fn exited(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "{}", self.output());
        self
    }

    /// Standard output contains `needle`.
    fn says(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "{needle:?} missing\n{}",
            self.output()
        );
        self
    }

    /// Standard output does not contain `needle`.
    fn never_says(&self, needle: &str) -> &Self {
        assert!(
            !self.stdout.contains(needle),
            "{needle:?} present\n{}",
            self.output()
        );
        self
    }

    /// Standard error contains `needle`.
    fn complains(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "{needle:?} missing\n{}",
            self.output()
        );
        self
    }
}

fn run(args: &[&str]) -> Ran {
    let out = relaygate().args(args).output().expect("relaygate runs");
    Ran {
        code: out.status.code(),
        stdout: text(&out.stdout),
        stderr: text(&out.stderr),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/misbehaving.wasm")
}

fn write_file(name: &str, body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, body).unwrap();
    (dir, path)
}

fn write_config(body: &str) -> (tempfile::TempDir, PathBuf) {
    write_file("relaygate.toml", body)
}

/// `relaygate check` on a config file with `body`.
fn check(body: &str) -> Ran {
    let (_dir, path) = write_config(body);
    run(&["check", "--config", path.to_str().unwrap()])
}

/// `relaygate policy test MODULE CASES` with a cases file holding `cases`.
fn policy_test(module: &str, cases: &str) -> Ran {
    let (_dir, path) = write_file("cases.toml", cases);
    policy_test_file(module, &path)
}

fn policy_test_file(module: &str, cases: &Path) -> Ran {
    run(&["policy", "test", module, cases.to_str().unwrap()])
}

fn policy_check(module: &Path) -> Ran {
    run(&["policy", "check", module.to_str().unwrap()])
}

/// Sends `signal` (`TERM`, `HUP`) to `child`.
fn signal(child: &Child, signal: &str) {
    let pid = child.id().to_string();
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status();
    assert!(sent.unwrap().success(), "kill -{signal} {pid}");
}

#[test]
fn check_with_the_embedded_default_reports_restricted_relay() {
    run(&["check"])
        .succeeded()
        .says("embedded default")
        .says("builtin:apple-relay")
        .says("restricted relay ON")
        .never_says("OPEN RELAY");
}

#[test]
fn check_warns_loudly_about_an_open_relay() {
    check("[policy.config]\nopen_relay_addr_flag = 0\n")
        .succeeded()
        .says("OPEN RELAY");
}

#[test]
fn bad_config_is_refused_with_one_line_per_problem_and_exit_78() {
    let typo = check("[proxy]\nlsiten = [\"127.0.0.1:2525\"]\n");
    typo.exited(78).complains("proxy.lsiten");
    assert_eq!(typo.stderr.lines().count(), 1, "{}", typo.output());

    check("[policy.config]\nopen_relay_addr_flag = 1\nopen_relay_addr_list = [\"10.0.0.300\"]\n")
        .exited(78)
        .complains("open_relay_addr_list");

    run(&["check", "--config", "/nonexistent/relaygate.toml"])
        .exited(78)
        .complains("cannot read");
}

#[test]
fn policy_check_names_the_world_and_refuses_garbage() {
    policy_check(&fixture())
        .succeeded()
        .says("relaygate:policy/hooks@0.1.1")
        .says("fits:      yes");

    let (_dir, garbage) = write_config("not wasm");
    policy_check(&garbage).failed().complains("not usable");
}

#[test]
fn policy_check_gives_init_the_policy_table_of_the_config() {
    let (_dir, path) = write_config(
        "[policy.config]\nopen_relay_addr_flag = 1\nlocal_domains = [\"example.com\"]\n",
    );
    let config = path.to_str().unwrap();
    run(&["policy", "check", "builtin:apple-relay", "--config", config])
        .succeeded()
        .says(&format!(
            "with the [policy.config] of {config}: restricted relay ON"
        ))
        .says("local domains: example.com");
    // A table the module's init refuses: said, with its reasons, exit 1.
    let module = fixture();
    let (_dir, path) = write_config(&format!(
        "[policy]\nmodule = {:?}\n[policy.config]\nbogus = 1\n",
        module.display().to_string()
    ));
    run(&[
        "policy",
        "check",
        module.to_str().unwrap(),
        "--config",
        path.to_str().unwrap(),
    ])
    .exited(1)
    .says("fits:      yes, but its init refused the [policy.config] of")
    .says("why:       bogus: unknown key")
    .complains("refuses the [policy.config]");
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
    greet_and_quit(&listen);
    signal(&child, "TERM");
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

/// Connects to `listen`, expects the 220 greeting, says QUIT and expects 221.
fn greet_and_quit(listen: &str) {
    let stream = TcpStream::connect(listen).expect("listening");
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
    run(&["status", "--config", path_text])
        .succeeded()
        .says("restricted relay ON");

    // SIGHUP re-reads the file.
    std::fs::write(&path, config(0)).unwrap();
    signal(&child, "HUP");
    let started = Instant::now();
    loop {
        let status = run(&["status", "--config", path_text]);
        if status.stdout.contains("\"open_relay\": true") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "SIGHUP did not reload: {}",
            status.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // `relaygate reload` does the same, and reports a refusal.
    std::fs::write(
        &path,
        config(1).replace("open_relay_addr_flag", "open_relay_adr_flag"),
    )
    .unwrap();
    run(&["reload", "--config", path_text])
        .failed()
        .says("open_relay_adr_flag");
    std::fs::write(&path, config(1)).unwrap();
    run(&["reload", "--config", path_text])
        .succeeded()
        .says("restricted relay ON");

    signal(&child, "TERM");
    let _ = child.wait();
}

#[test]
fn reload_without_an_admin_endpoint_says_how() {
    run(&["reload"]).failed().complains("[admin] listen");
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
    signal(&child, "TERM");
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

#[test]
fn man_page_and_completions_come_from_the_cli_definition() {
    run(&["generate", "man"])
        .succeeded()
        .says(".TH relaygate 1")
        .says("WebAssembly")
        .says("policy");
    for (shell, marker) in [
        ("bash", "_relaygate()"),
        ("zsh", "#compdef relaygate"),
        ("fish", "complete -c relaygate"),
    ] {
        run(&["generate", "completions", shell])
            .succeeded()
            .says(marker)
            .says("check");
    }
    run(&["generate", "completions", "tcsh"]).exited(2);
}

#[test]
fn the_packaged_config_is_the_embedded_default_written_out() {
    let packaged = repo_file("dist/debian/relaygate.toml");
    let written = run(&["check", "--config", packaged.to_str().unwrap()]);
    let embedded = run(&["check"]);
    written.succeeded().says("restricted relay ON");
    embedded.succeeded();
    let after_first_line = |text: &str| text.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(
        after_first_line(&written.stdout),
        after_first_line(&embedded.stdout)
    );
}

#[test]
fn a_component_built_for_wit_0_1_0_still_loads_and_decides_the_same() {
    // A 0.1.0 build of the default policy, kept as it was: the 0.1.1 host
    // must serve it without a rebuild, with the same verdicts.
    let old = repo_file("tests/fixtures/apple-relay-wit-0.1.0.wasm");
    policy_check(&old)
        .succeeded()
        .says("built for: relaygate:policy@0.1.0")
        .says("fits:      yes (apple-relay)");
    let cases = repo_file("policies/apple-relay/cases.toml");
    let played = policy_test_file(old.to_str().unwrap(), &cases);
    played.succeeded().says(" 0 FAILED\n");
    let builtin = policy_test_file("builtin:apple-relay", &cases);
    assert_eq!(played.stdout, builtin.stdout);
}

#[test]
fn a_policy_sees_the_listener_of_each_case() {
    let cases = r#"
[config]
helo = "introduce"

[server]
hostname = "mx.example.com"
listener = "mx"

[[case]]
name = "on the default listener"
client = "192.0.2.1"
helo = "client.example.net"
expect = { helo = "reject 550 5.7.1" }

[[case]]
name = "on submission"
client = "192.0.2.1"
listener = "submission"
helo = "client.example.net"
expect = { helo = "reject 550 5.7.1" }
"#;
    policy_test(fixture().to_str().unwrap(), cases)
        .succeeded()
        .says("listener mx greeting as mx.example.com")
        .says("listener submission greeting as mx.example.com");
}

#[test]
fn policy_test_passes_the_whole_apple_decision_table() {
    let cases = repo_file("policies/apple-relay/cases.toml");
    let builtin = policy_test_file("builtin:apple-relay", &cases);
    builtin
        .succeeded()
        .says(" 0 FAILED\n")
        .says("/ rcpt bob@elsewhere.org: reject 554 5.7.1")
        .says("reject 530 5.7.0");
    assert!(
        !builtin.stdout.lines().any(|l| l.starts_with("FAIL")),
        "{}",
        builtin.output()
    );
    // Every row of the README's decision table is there, each with local and remote.
    for row in 1..=8 {
        builtin.says(&format!("ok   row {row}: "));
    }
    // The same cases against the compiled file give the same result.
    let wasm = repo_file("host/assets/apple-relay.wasm");
    let compiled = policy_test_file(wasm.to_str().unwrap(), &cases);
    assert_eq!(compiled.stdout, builtin.stdout);
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
    let out = policy_test("builtin:apple-relay", MISMATCH);
    out.exited(1);
    let lines: Vec<&str> = out.stdout.lines().collect();
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
    policy_test("builtin:apple-relay", &bad)
        .exited(78)
        .complains(
            "case 1 (\"unlisted client may not relay\"): expect.rcpt: 1 entries for 2 recipients",
        );
    let bad = MISMATCH.replace("client = \"192.168.1.9\"", "client = \"not-an-ip\"");
    let out = policy_test("builtin:apple-relay", &bad);
    out.exited(78)
        .complains("case 2 (\"listed client relays\"): client:");
    assert!(
        out.stdout.is_empty(),
        "nothing runs before the file is checked"
    );
}

#[test]
fn policy_test_says_when_the_policy_cannot_load_with_2() {
    let (_dir, garbage) = write_config("not wasm");
    policy_test(garbage.to_str().unwrap(), MISMATCH)
        .exited(2)
        .complains("not a valid WebAssembly component");
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
    let out = policy_test("builtin:apple-relay", cases);
    out.succeeded()
        .says("ok   bad config / init: refused (open_relay_addr_flag");
    assert!(
        out.stdout.ends_with("3 cases, 4 checks: 4 ok, 0 FAILED\n"),
        "{}",
        out.output()
    );
}

fn wasi_probe() -> PathBuf {
    repo_file("tests/fixtures/wasi-probe.wasm")
}

#[test]
fn policy_check_names_package_version_imports_and_wasi() {
    policy_check(&wasi_probe())
        .succeeded()
        .says("built for: relaygate:policy@0.1.0")
        .says("relaygate:policy/hooks@0.1.0: init, connect, helo")
        .says("wasi:      ")
        .says("wasi:cli/stdout@0.2")
        .says("fits:      yes (wasi-probe)")
        .says(" bytes)")
        .says("compiled:  ");

    run(&["policy", "check", "builtin:apple-relay"])
        .succeeded()
        .says("wasi:      none");

    // A core module is not a component: said plainly, exit non-zero.
    let (_dir, core) = write_config("");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    policy_check(&core)
        .failed()
        .complains("core WebAssembly module");
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
    // connect rejects naming whatever it could reach: files, env, stdin,
    // name lookups, sockets. Accept means all were denied or empty.
    let out = policy_test(wasi_probe().to_str().unwrap(), cases);
    out.succeeded();
    let said = |needle: &str| {
        out.stderr
            .lines()
            .any(|l| l.contains("policy") && l.contains("wasi-probe") && l.contains(needle))
    };
    assert!(said("wasi-probe says hello on stdout"), "{}", out.output());
    assert!(said("wasi-probe says hello on stderr"), "{}", out.output());
    // Bounded: the first lines are logged, the flood is counted, not kept.
    assert!(said("chatter line 0"), "{}", out.output());
    assert!(!said("chatter line 499"), "rate limit: {}", out.output());
    assert!(
        said("output lines dropped (rate limit)"),
        "{}",
        out.output()
    );
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
    policy_test(wasi_probe().to_str().unwrap(), cases)
        .exited(1)
        .says("FAIL endless loop / helo: expected accept, got failure timeout");
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
    policy_test(wasi_probe().to_str().unwrap(), cases)
        .exited(1)
        .says("FAIL memory hog / helo: expected accept, got failure memory");
}

#[test]
fn a_component_built_for_another_wit_version_is_refused_naming_both() {
    let wrong = repo_file("tests/fixtures/wrong-version.wasm");
    policy_check(&wrong)
        .failed()
        .says("built for: relaygate:policy@0.2.0")
        .says("fits:      no")
        .says("why:       it was built for relaygate:policy@0.2.0, but this relaygate provides relaygate:policy@0.1.1");
    policy_test(wrong.to_str().unwrap(), MISMATCH)
        .exited(2)
        .complains("relaygate:policy@0.2.0");
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
        let out = check(&body);
        out.exited(78);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.output());
        for want in &wanted {
            out.complains(want);
        }
        assert!(out.stdout.is_empty(), "{}", out.output());
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
    check(&format!(
        "{auth}require_tls = false\n[policy.config]\nsmtp_plain_login_flag = 1\n"
    ))
    .succeeded()
    .never_says("WARNING");
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
        let out = check(&body);
        out.succeeded();
        let warning = out
            .stdout
            .lines()
            .find(|l| l.starts_with("WARNING:") && l.contains(want))
            .unwrap_or_else(|| panic!("no warning with {want:?}:\n{}", out.output()));
        if want.starts_with("policy.") {
            assert!(warning.contains("ANY client"), "{warning}");
        }
    }
}

#[test]
fn check_shows_the_connection_caps_and_who_is_exempt() {
    check(
        "[proxy]\nmax_connections_per_client = 7\nper_client_ipv6_prefix = 56\nper_client_exempt = [\"192.0.2.0/24\"]\n",
    )
    .succeeded()
    .says("7 per client (IPv6 per /56), not capped per client: 192.0.2.0/24");
    // By default: loopback and this machine's own addresses.
    run(&["check"])
        .says("50 per client (IPv6 per /64), not capped per client: 127.0.0.0/8, ::1/128");
    for bad in ["0", "129"] {
        check(&format!("[proxy]\nper_client_ipv6_prefix = {bad}\n"))
            .exited(78)
            .complains("proxy.per_client_ipv6_prefix");
    }
}

#[test]
fn check_prints_every_listener_and_refuses_impossible_ones() {
    check(
        "[proxy]\nlisten = [\"127.0.0.1:2525\"]\nproxy_protocol_listen = [\"127.0.0.1:2626\"]\nhostname = \"mx.example\"\n[[listener]]\nname = \"mx\"\naddress = \"127.0.0.1:2527\"\ntls = \"none\"\nhostname = \"in.example\"\nauth = \"off\"\n",
    )
    .succeeded()
    .says("listener:  smtp 127.0.0.1:2525 tls=starttls (no [tls] certificate: not offered) proxy_protocol=no hostname=mx.example auth=offered (no [auth]: not offered)")
    .says("listener:  proxy 127.0.0.1:2626 tls=starttls (no [tls] certificate: not offered) proxy_protocol=yes hostname=mx.example auth=offered (no [auth]: not offered)")
    .says("listener:  mx 127.0.0.1:2527 tls=none proxy_protocol=no hostname=in.example auth=off");
    check(
        "[[listener]]\nname = \"submissions\"\naddress = \"127.0.0.1:4650\"\ntls = \"implicit\"\n",
    )
    .exited(78)
    .complains("listener[0].tls");
    check("[proxy]\nlisten = [\"127.0.0.1:2525\"]\n[[listener]]\nname = \"again\"\naddress = \"127.0.0.1:2525\"\n")
        .exited(78)
        .complains("127.0.0.1:2525 is used by another listener");
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
    signal(&child, "TERM");
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

#[test]
fn check_prints_every_chain_and_each_listeners_chain() {
    check(
        "[[listener]]\nname = \"mx\"\naddress = \"127.0.0.1:2527\"\nchain = \"inbound\"\n[[chain]]\nname = \"inbound\"\n[[chain.module]]\nname = \"relay\"\nmodule = \"builtin:apple-relay\"\n[[chain.module]]\nname = \"shadow\"\nmodule = \"builtin:apple-relay\"\nmode = \"dry-run\"\n",
    )
    .succeeded()
    .says("listener:  mx 127.0.0.1:2527 tls=starttls")
    .says(" chain=inbound\n")
    .says("policy:    no listener asks the chain default: each asks its own")
    .says("chain:     default (asked by no listener: serves no one)\n  1. policy builtin:apple-relay (apple-relay) mode=enforce sha256 ")
    .says("chain:     inbound (asked by mx)\n  1. relay builtin:apple-relay (apple-relay) mode=enforce sha256 ")
    .says("     restricted relay OFF, AUTH OFF: OPEN RELAY")
    .says("  2. shadow builtin:apple-relay (apple-relay) mode=dry-run sha256 ");
    check("[[listener]]\nname = \"mx\"\naddress = \"127.0.0.1:2527\"\nchain = \"nope\"\n")
        .exited(78)
        .complains("listener[0].chain: no chain is named \"nope\"");
    check("[[chain]]\nname = \"empty\"\n")
        .exited(78)
        .complains("chain[0].module");
}

#[test]
fn check_warns_about_a_chain_whose_every_enforcing_module_relays_for_anyone() {
    let module = |name: &str, flag: u8| {
        format!(
            "[[chain.module]]\nname = \"{name}\"\nmodule = \"builtin:apple-relay\"\n[chain.module.config]\nopen_relay_addr_flag = {flag}\n"
        )
    };
    let listener = |chain: &str| {
        format!("[[listener]]\nname = \"mx\"\naddress = \"127.0.0.1:2528\"\nchain = \"{chain}\"\n")
    };
    let wide = format!(
        "[[chain]]\nname = \"wide\"\n{}{}",
        module("a", 0),
        module("b", 0)
    );
    check(&format!("{}{wide}", listener("wide")))
        .succeeded()
        .says("OPEN RELAY: any client may relay mail to any domain (policy chain \"wide\")");
    // A chain no listener asks serves no one: nothing to announce.
    check(&format!(
        "[policy.config]\nopen_relay_addr_flag = 1\n{wide}"
    ))
    .succeeded()
    .never_says("WARNING:   OPEN RELAY");
    let narrow = format!(
        "{}[[chain]]\nname = \"narrow\"\n{}{}",
        listener("narrow"),
        module("a", 0),
        module("b", 1)
    );
    check(&narrow)
        .succeeded()
        .never_says("WARNING:   OPEN RELAY");
}

/// Two Apple relay modules: `shadow` (dry-run) lets only 198.51.100.0/24
/// relay, `relay` (enforcing) lets 192.168.1.0/24 relay.
const CHAIN_CONFIG: &str = r#"
[[chain]]
name = "inbound"

[[chain.module]]
name = "shadow"
module = "builtin:apple-relay"
mode = "dry-run"
[chain.module.config]
open_relay_addr_flag = 1
open_relay_addr_list = ["198.51.100.0/24"]
local_domains = ["example.com"]

[[chain.module]]
name = "relay"
module = "builtin:apple-relay"
[chain.module.config]
open_relay_addr_flag = 1
open_relay_addr_list = ["192.168.1.0/24"]
local_domains = ["example.com"]
"#;

const CHAIN_CASES: &str = r#"
[[case]]
name = "the dry-run refusal never answers"
client = "192.168.1.9"
sender = "bob@example.net"
recipients = ["b@elsewhere.org"]
expect = { rcpt = "accept" }

[[case]]
name = "the enforcing refusal answers"
client = "203.0.113.5"
sender = "bob@example.net"
recipients = ["a@example.com", "b@elsewhere.org"]
expect = { rcpt = ["accept", "reject"] }
"#;

/// `relaygate policy test chain:NAME CASES --config CONFIG` (no `--config`
/// when `config` is None).
fn chain_test(name: &str, config: Option<&str>, cases: &str) -> Ran {
    let (_dir, cases_path) = write_file("cases.toml", cases);
    let (_config_dir, config_path) = write_config(config.unwrap_or(""));
    let chain = format!("chain:{name}");
    let mut args = vec!["policy", "test", &chain, cases_path.to_str().unwrap()];
    if config.is_some() {
        args.extend(["--config", config_path.to_str().unwrap()]);
    }
    run(&args)
}

#[test]
fn policy_test_runs_a_chain_first_enforcing_refusal_answering() {
    chain_test("inbound", Some(CHAIN_CONFIG), CHAIN_CASES)
        .succeeded()
        .says("ok   the dry-run refusal never answers / rcpt b@elsewhere.org: accept\n")
        .says("ok   the enforcing refusal answers / rcpt a@example.com: accept\n")
        .says(
            "ok   the enforcing refusal answers / rcpt b@elsewhere.org: \
             reject 554 5.7.1 Relay access denied (by relay)\n",
        )
        .says("2 cases, 3 checks: 3 ok, 0 FAILED");

    let wrong = CHAIN_CASES.replace(r#"["accept", "reject"]"#, r#"["accept", "accept"]"#);
    chain_test("inbound", Some(CHAIN_CONFIG), &wrong)
        .exited(1)
        .says(
            "FAIL the enforcing refusal answers / rcpt b@elsewhere.org: expected accept, \
             got reject 554 5.7.1 Relay access denied (by relay)\n",
        );
}

#[test]
fn policy_test_of_a_chain_refuses_what_it_cannot_judge_with_78() {
    chain_test("inbound", None, CHAIN_CASES)
        .exited(78)
        .complains("needs --config");
    chain_test("outbound", Some(CHAIN_CONFIG), CHAIN_CASES)
        .exited(78)
        .complains("no policy chain \"outbound\"");
    let with_config = format!("[config]\nopen_relay_addr_flag = 1\n{CHAIN_CASES}");
    chain_test("inbound", Some(CHAIN_CONFIG), &with_config)
        .exited(78)
        .complains("cannot be used against a chain");
    let case_config = CHAIN_CASES.replace(
        "expect = { rcpt = \"accept\" }",
        "expect = { rcpt = \"accept\" }\nconfig = { smtp_plain_login_flag = 1 }",
    );
    chain_test("inbound", Some(CHAIN_CONFIG), &case_config)
        .exited(78)
        .complains("cannot be used against a chain");
}

/// Every file under `dir`, as paths relative to it, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(dir).unwrap();
                found.push(relative.to_str().unwrap().to_owned());
            }
        }
    }
    found.sort();
    found
}

/// `relaygate policy new ARGS... --dir DIR`.
fn policy_new(dir: &Path, args: &[&str]) -> Ran {
    let mut all = vec!["policy", "new"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--dir", dir.to_str().unwrap()]);
    run(&all)
}

#[test]
fn policy_new_writes_each_language_s_project_with_its_name() {
    let common = [
        "README.md",
        "build.sh",
        "cases.toml",
        "wit/policy.wit",
        "wit/state.wit",
    ];
    let projects: [(&str, &[&str]); 4] = [
        (
            "rust",
            &[
                ".cargo/config.toml",
                ".gitignore",
                "Cargo.lock",
                "Cargo.toml",
                "src/component.rs",
                "src/lib.rs",
            ],
        ),
        (
            "c",
            &[
                ".gitignore",
                "gen/policy.c",
                "gen/policy.h",
                "gen/policy_component_type.o",
                "policy.c",
                "rules.c",
                "rules.h",
                "test/run.sh",
                "test/test_rules.c",
            ],
        ),
        (
            "python",
            &[".gitignore", "app.py", "rules.py", "tests/test_rules.py"],
        ),
        (
            "javascript",
            &[
                ".gitignore",
                "package-lock.json",
                "package.json",
                "policy.js",
                "rules.js",
                "test/rules.test.js",
            ],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (language, own) in projects {
        let name = format!("site-{language}");
        policy_new(dir.path(), &[language, &name])
            .succeeded()
            .says("policy test policy.wasm cases.toml");
        let project = dir.path().join(&name);
        let mut expected: Vec<String> = common.iter().chain(own).map(|f| f.to_string()).collect();
        expected.sort();
        assert_eq!(files_under(&project), expected, "{language}");
        for file in &expected {
            let Ok(text) = std::fs::read_to_string(project.join(file)) else {
                continue; // the C bindings' object file
            };
            assert!(
                !text.contains("my-policy"),
                "{language}: {file} keeps the template's name"
            );
            assert!(
                !text.contains("../../../wit"),
                "{language}: {file} points into the repository"
            );
            assert!(
                !text.contains("{{"),
                "{language}: {file} has a placeholder left"
            );
        }
        let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
        assert!(readme.contains("relaygate policy test policy.wasm cases.toml"));
        assert!(readme.contains(&format!("/etc/relaygate/{name}.wasm")));
        for wit in ["policy.wit", "state.wit"] {
            assert_eq!(
                std::fs::read(project.join("wit").join(wit)).unwrap(),
                std::fs::read(repo_file(&format!("wit/{wit}"))).unwrap()
            );
        }
        let mode = std::fs::metadata(project.join("build.sh"))
            .unwrap()
            .permissions();
        assert_ne!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o111, 0);
    }
    let cargo = std::fs::read_to_string(dir.path().join("site-rust/Cargo.toml")).unwrap();
    assert!(cargo.contains("name = \"site-rust\""), "{cargo}");
    let build = std::fs::read_to_string(dir.path().join("site-rust/build.sh")).unwrap();
    assert!(build.contains("release/site_rust.wasm"), "{build}");
    let package = std::fs::read_to_string(dir.path().join("site-javascript/package.json")).unwrap();
    assert!(
        package.contains("\"name\": \"site-javascript\""),
        "{package}"
    );
}

#[test]
fn policy_new_stateful_projects_import_and_use_state() {
    let dir = tempfile::tempdir().unwrap();
    policy_new(
        dir.path(),
        &["rust", "counter", "--world", "stateful-policy"],
    )
    .succeeded();
    let glue = std::fs::read_to_string(dir.path().join("counter/src/component.rs")).unwrap();
    assert!(glue.contains("world: \"stateful-policy\""), "{glue}");
    assert!(glue.contains("state::increment"), "{glue}");
    policy_new(
        dir.path(),
        &["javascript", "counter-js", "--world", "stateful-policy"],
    )
    .succeeded();
    let glue = std::fs::read_to_string(dir.path().join("counter-js/policy.js")).unwrap();
    assert!(glue.contains("relaygate:policy/state@0.1.1"), "{glue}");
    let build = std::fs::read_to_string(dir.path().join("counter-js/build.sh")).unwrap();
    assert!(build.contains("--world stateful-policy"), "{build}");
    policy_new(
        dir.path(),
        &["python", "counter-py", "--world", "stateful-policy"],
    )
    .succeeded();
    let glue = std::fs::read_to_string(dir.path().join("counter-py/app.py")).unwrap();
    assert!(glue.contains("state.increment"), "{glue}");
    let build = std::fs::read_to_string(dir.path().join("counter-py/build.sh")).unwrap();
    assert!(build.contains("-w stateful-policy"), "{build}");

    policy_new(
        dir.path(),
        &["c", "counter-c", "--world", "stateful-policy"],
    )
    .succeeded();
    let glue = std::fs::read_to_string(dir.path().join("counter-c/policy.c")).unwrap();
    assert!(glue.contains("relaygate_policy_state_increment"), "{glue}");
    let bindings = files_under(&dir.path().join("counter-c/gen"));
    assert_eq!(
        bindings,
        [
            "stateful_policy.c",
            "stateful_policy.h",
            "stateful_policy_component_type.o"
        ]
    );
    let build = std::fs::read_to_string(dir.path().join("counter-c/build.sh")).unwrap();
    assert!(
        build.contains("gen/stateful_policy_component_type.o"),
        "{build}"
    );
}

#[test]
fn policy_new_refuses_bad_arguments_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    policy_new(dir.path(), &["cobol", "x"])
        .exited(2)
        .complains("possible values: rust, c, zig, python, javascript");
    for bad in [
        "My-Policy",
        "1policy",
        "my_policy",
        "my--policy",
        "policy-",
        "a/b",
        "",
    ] {
        policy_new(dir.path(), &["rust", bad])
            .exited(2)
            .complains("policy name");
    }
    policy_new(dir.path(), &["rust", "x", "--world", "stateless"]).exited(2);
    assert!(files_under(dir.path()).is_empty());

    // An empty folder is used; one with anything in it is left alone.
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    policy_new(dir.path(), &["python", "empty"]).succeeded();
    std::fs::create_dir(dir.path().join("taken")).unwrap();
    std::fs::write(dir.path().join("taken/notes.txt"), "mine").unwrap();
    policy_new(dir.path(), &["python", "taken"])
        .exited(1)
        .complains("already exists and is not empty");
    assert_eq!(files_under(&dir.path().join("taken")), ["notes.txt"]);
}

#[test]
fn policy_componentize_refuses_what_is_not_a_core_module() {
    let (_dir, garbage) = write_file("core.wasm", "not wasm");
    let out = garbage.with_file_name("out.wasm");
    run(&[
        "policy",
        "componentize",
        garbage.to_str().unwrap(),
        out.to_str().unwrap(),
    ])
    .exited(1)
    .complains("turning");
    assert!(!out.exists());
}
