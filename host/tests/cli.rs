//! The `relaygate` binary as users and outside tools run it (SPEC section 1).

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
