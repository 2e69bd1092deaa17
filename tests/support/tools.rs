//! Finding and running the Debian tools some tests use.
//!
//! `smtp-sink` and `smtp-source` come with the `postfix` package (in `/usr/sbin`), `swaks`
//! with its own package (in `/usr/bin`). A test that needs one asks [`require_tool`] first:
//! on a developer machine without the tool the test skips with a clear message, while CI
//! sets [`REQUIRE_TOOLS_ENV`]`=1` so that a missing tool fails the run instead of letting
//! the test pass without having run.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use relaygate_tests::tools::{SmtpSink, require_tool};
//!
//! let Some(smtp_sink) = require_tool("smtp-sink") else { return Ok(()) };
//! let mut sink = SmtpSink::start(&smtp_sink).await?;
//! // ... send mail to sink.addr() ...
//! let messages = sink.wait_for_messages(1, std::time::Duration::from_secs(10)).await?;
//! # let _ = messages;
//! # Ok(())
//! # }
//! ```

use std::env;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Set to `1` to make a missing tool a test failure rather than a skip.
pub const REQUIRE_TOOLS_ENV: &str = "RELAYGATE_REQUIRE_TOOLS";

/// Where Debian installs the tools, searched before `PATH` (which often lacks `/usr/sbin`
/// for non-root users).
const TOOL_DIRS: [&str; 4] = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// The line `smtp-sink` writes before each message in its dump file (`-S`, C escapes).
const SINK_MARKER: &str = "=== relaygate smtp-sink message ===";

/// How many ports [`SmtpSink::start`] tries before giving up.
const SINK_START_ATTEMPTS: usize = 10;

/// How long a freshly spawned `smtp-sink` gets to start listening.
const SINK_READY_TIMEOUT: Duration = Duration::from_secs(5);

/// The Debian package that provides `tool`.
pub fn debian_package(tool: &str) -> &str {
    match tool {
        "smtp-sink" | "smtp-source" | "postfix" | "sendmail" => "postfix",
        "dovecot" => "dovecot-imapd dovecot-pop3d",
        other => other,
    }
}

/// The path of `tool` when it is installed: the Debian locations first, then `PATH`.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path_dirs = env::var_os("PATH")
        .map(|path| env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    TOOL_DIRS
        .iter()
        .map(PathBuf::from)
        .chain(path_dirs)
        .map(|dir| dir.join(tool))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The path of `tool`, or `None` after printing why the calling test is skipped.
///
/// # Panics
/// When the tool is missing and [`REQUIRE_TOOLS_ENV`] is `1`: CI must not pass a test
/// that did not run.
pub fn require_tool(tool: &str) -> Option<PathBuf> {
    let required = env::var(REQUIRE_TOOLS_ENV).is_ok_and(|value| value == "1");
    find_tool(tool).or_else(|| missing_tool(tool, required))
}

/// `swaks`, where it can speak TLS (`--tls`, `--tls-on-connect`): that needs
/// Perl's Net::SSLeay. Skips or fails like [`require_tool`] otherwise.
pub fn swaks_with_tls() -> Option<PathBuf> {
    let swaks = require_tool("swaks")?;
    let ssleay = std::process::Command::new("perl")
        .args(["-MNet::SSLeay", "-e", "1"])
        .status()
        .is_ok_and(|status| status.success());
    if ssleay {
        return Some(swaks);
    }
    let required = env::var(REQUIRE_TOOLS_ENV).is_ok_and(|value| value == "1");
    let why = "swaks needs Perl's Net::SSLeay for TLS (apt-get install libnet-ssleay-perl)";
    if required {
        panic!("{why}, and {REQUIRE_TOOLS_ENV}=1 requires it");
    }
    eprintln!("skipping: {why}");
    None
}

/// Skips (prints why, returns `None`) or, when `required`, fails the calling test.
fn missing_tool(tool: &str, required: bool) -> Option<PathBuf> {
    let why = format!(
        "{tool} not installed (apt-get install {})",
        debian_package(tool)
    );
    if required {
        panic!("{why}, and {REQUIRE_TOOLS_ENV}=1 requires it");
    }
    eprintln!("skipping: {why}");
    None
}

/// Runs `program` with `args` (no standard input), collecting its output; the process is
/// killed when it outlives `timeout`.
///
/// # Errors
/// When the program cannot be started or does not finish in time. A non-zero exit is not
/// an error: look at `Output::status`.
pub async fn run_tool(program: &Path, args: &[&str], timeout: Duration) -> anyhow::Result<Output> {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(output) => Ok(output?),
        Err(_) => bail!(
            "{} {args:?} did not finish within {timeout:?}",
            program.display()
        ),
    }
}

/// One message captured by [`SmtpSink`], as `smtp-sink` dumps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkMessage {
    /// The client address `smtp-sink` saw (`X-Client-Addr`; XCLIENT can change it).
    pub client_addr: String,
    /// The last HELO/EHLO argument (`X-Helo-Args`).
    pub helo: Option<String>,
    /// The MAIL FROM arguments (`X-Mail-Args`), e.g. `<a@example.org> SIZE=12`.
    pub mail_args: String,
    /// Each RCPT TO's arguments (`X-Rcpt-Args`), in order.
    pub rcpt_args: Vec<String>,
    /// The message header and body, unstuffed, lines ending in `\n` (as dumped).
    pub content: String,
}

impl SinkMessage {
    /// Parses one dumped message (the text after a marker line).
    fn parse(dumped: &str) -> Option<Self> {
        let mut message = Self {
            client_addr: String::new(),
            helo: None,
            mail_args: String::new(),
            rcpt_args: Vec::new(),
            content: String::new(),
        };
        let mut lines = dumped.split_inclusive('\n');
        for line in lines.by_ref() {
            let line = line.trim_end_matches('\n');
            let (field, value) = line.split_once(": ")?;
            match field {
                "X-Client-Addr" => value.clone_into(&mut message.client_addr),
                "X-Helo-Args" => message.helo = Some(value.to_owned()),
                "X-Mail-Args" => value.clone_into(&mut message.mail_args),
                "X-Rcpt-Args" => message.rcpt_args.push(value.to_owned()),
                // The three-line Received: header ends smtp-sink's own fields.
                "Received" => break,
                _ => {}
            }
        }
        let content: String = lines.skip(2).collect();
        // smtp-sink appends an empty line after each message.
        message.content = content.strip_suffix('\n').unwrap_or(&content).to_owned();
        Some(message)
    }
}

/// A running `smtp-sink` on `127.0.0.1`, capturing every message to a dump file;
/// killed when dropped.
#[derive(Debug)]
pub struct SmtpSink {
    addr: SocketAddr,
    hostname: String,
    child: Child,
    dir: TempDir,
}

impl SmtpSink {
    /// Starts `smtp-sink` (the path from [`require_tool`]) on a free loopback port.
    ///
    /// # Errors
    /// When it cannot be started or does not start listening.
    pub async fn start(smtp_sink: &Path) -> anyhow::Result<Self> {
        Self::start_with(smtp_sink, &[]).await
    }

    /// Like [`SmtpSink::start`], with extra `smtp-sink` options (e.g. `-C` to stop
    /// offering XCLIENT, `-w 5` to wait before answering DATA).
    ///
    /// # Errors
    /// When it cannot be started or does not start listening.
    pub async fn start_with(smtp_sink: &Path, extra_args: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("relaygate-smtp-sink")
            .tempdir()?;
        let as_root = rustix::process::geteuid().is_root();
        if as_root {
            // smtp-sink refuses to run as root without -u, and the user it switches to
            // writes the dump file.
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777))?;
        }
        let mut last_failure = String::new();
        for attempt in 0..SINK_START_ATTEMPTS {
            // The port is free now; if someone takes it before smtp-sink binds it,
            // smtp-sink exits and the next attempt picks another one.
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
                .local_addr()?
                .port();
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let hostname = format!("sink-{}-{attempt}.relaygate.test", std::process::id());
            let mut command = Command::new(smtp_sink);
            if as_root {
                command.args(["-u", "nobody"]);
            }
            command
                .arg("-c")
                .args(["-h", &hostname])
                .args(["-S", &format!("{SINK_MARKER}\\n")])
                .arg("-D")
                .arg(dir.path().join("dump"))
                .args(extra_args)
                .arg(addr.to_string())
                .arg("64")
                .stdin(Stdio::null())
                .stdout(fs::File::create(dir.path().join("stdout"))?)
                .stderr(fs::File::create(dir.path().join("stderr"))?)
                .kill_on_drop(true);
            let mut child = command
                .spawn()
                .with_context(|| format!("starting {}", smtp_sink.display()))?;
            match wait_until_listening(&mut child, addr, &hostname, dir.path()).await {
                Ok(()) => {
                    return Ok(Self {
                        addr,
                        hostname,
                        child,
                        dir,
                    });
                }
                Err(failure) => {
                    last_failure = format!("{failure:#}");
                    let _ = child.kill().await;
                }
            }
        }
        bail!("smtp-sink did not start after {SINK_START_ATTEMPTS} attempts: {last_failure}")
    }

    /// The address to send mail to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The name `smtp-sink` uses in its greeting and EHLO reply.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// What `smtp-sink` printed on standard error (its fatal errors).
    pub fn stderr(&self) -> String {
        read_stderr(self.dir.path())
    }

    /// How many messages `smtp-sink` has counted as complete (its `-c` counter).
    pub fn messages_received(&self) -> usize {
        let counters = fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default();
        counters
            .rsplit("mesg=")
            .next()
            .filter(|_| counters.contains("mesg="))
            .and_then(|tail| {
                let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .unwrap_or(0)
    }

    /// The raw dump file: every captured message, each after a marker line.
    pub fn dump(&self) -> String {
        fs::read_to_string(self.dir.path().join("dump")).unwrap_or_default()
    }

    /// Every message captured so far, parsed from the dump file.
    pub fn messages(&self) -> Vec<SinkMessage> {
        let marker = format!("{SINK_MARKER}\n");
        self.dump()
            .split(&marker)
            .filter(|chunk| !chunk.is_empty())
            .filter_map(SinkMessage::parse)
            .collect()
    }

    /// Waits until at least `count` messages are complete and dumped, and returns them all.
    ///
    /// # Errors
    /// When they are not within `timeout`, or `smtp-sink` has exited.
    pub async fn wait_for_messages(
        &mut self,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<SinkMessage>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.messages_received() >= count {
                let messages = self.messages();
                if messages.len() >= count {
                    return Ok(messages);
                }
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("smtp-sink exited with {status}: {}", self.stderr().trim());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "smtp-sink has {} of {count} messages after {timeout:?}; dump:\n{}",
                    self.messages_received(),
                    self.dump()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn read_stderr(dir: &Path) -> String {
    fs::read_to_string(dir.join("stderr")).unwrap_or_default()
}

/// Waits for the greeting of the `smtp-sink` just spawned: seeing its own hostname proves
/// the port is its and not another listener's.
async fn wait_until_listening(
    child: &mut Child,
    addr: SocketAddr,
    hostname: &str,
    dir: &Path,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + SINK_READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "smtp-sink exited with {status}: {}",
                read_stderr(dir).trim()
            );
        }
        if let Ok(mut stream) = TcpStream::connect(addr).await {
            let mut greeting = [0u8; 512];
            let read = tokio::time::timeout(SINK_READY_TIMEOUT, stream.read(&mut greeting));
            let count = read.await.context("smtp-sink sent no greeting")??;
            let greeting = String::from_utf8_lossy(&greeting[..count]);
            if !greeting.starts_with(&format!("220 {hostname} ")) {
                bail!("another server answered on {addr}: {greeting:?}");
            }
            let _ = stream.write_all(b"QUIT\r\n").await;
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("smtp-sink is not listening on {addr} after {SINK_READY_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::SmtpClient;

    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn packages_and_lookup() {
        assert_eq!(debian_package("smtp-sink"), "postfix");
        assert_eq!(debian_package("swaks"), "swaks");
        assert!(find_tool("sh").is_some());
        assert!(find_tool("relaygate-no-such-tool").is_none());
    }

    #[test]
    fn a_missing_tool_skips_unless_required() {
        assert_eq!(missing_tool("relaygate-no-such-tool", false), None);
        let required = std::panic::catch_unwind(|| missing_tool("smtp-source", true));
        let message = *required.unwrap_err().downcast::<String>().unwrap();
        assert_eq!(
            message,
            "smtp-source not installed (apt-get install postfix), and RELAYGATE_REQUIRE_TOOLS=1 requires it"
        );
    }

    #[test]
    fn parses_dumped_messages() {
        let dumped = "X-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\nX-Helo-Args: x\n\
                      X-Mail-Args: <a@b>\nX-Rcpt-Args: <c@d>\nX-Rcpt-Args: <e@f>\n\
                      Received: from x ([127.0.0.1])\n\tby sink (smtp-sink) with ESMTP id 1;\n\
                      \tSat, 28 Nov 2026 00:04:29 +0000 (UTC)\nSubject: s\n\n.dot\n\n";
        let message = SinkMessage::parse(dumped).unwrap();
        assert_eq!(message.client_addr, "127.0.0.1");
        assert_eq!(message.helo.as_deref(), Some("x"));
        assert_eq!(message.mail_args, "<a@b>");
        assert_eq!(message.rcpt_args, ["<c@d>", "<e@f>"]);
        assert_eq!(message.content, "Subject: s\n\n.dot\n");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn smtp_sink_captures_what_clients_send() {
        let Some(smtp_sink) = require_tool("smtp-sink") else {
            return;
        };
        let mut sink = SmtpSink::start(&smtp_sink).await.unwrap();
        assert!(sink.addr().ip().is_loopback());

        let mut client = SmtpClient::connect_from("127.0.0.5".parse().unwrap(), sink.addr())
            .await
            .unwrap();
        let greeting = client.read_reply().await.unwrap();
        assert!(greeting.lines[0].starts_with(sink.hostname()), "{greeting}");
        client.ehlo("client.test").await.unwrap();
        let outcome = client
            .send_message(
                "a@example.org",
                &["b@example.com"],
                b"Subject: one\r\n\r\n.dot\r\n",
            )
            .await
            .unwrap();
        assert!(outcome.accepted(), "{outcome:?}");
        client.quit().await.unwrap();

        if let Some(smtp_source) = require_tool("smtp-source") {
            let server = sink.addr().to_string();
            let args = [
                "-m",
                "2",
                "-f",
                "s@example.org",
                "-t",
                "t@example.com",
                &server,
            ];
            let output = run_tool(&smtp_source, &args, WAIT).await.unwrap();
            assert!(output.status.success(), "{output:?}");
        }
        if let Some(swaks) = require_tool("swaks") {
            let server = sink.addr().to_string();
            let args = [
                "--server",
                &server,
                "--from",
                "w@example.org",
                "--to",
                "x@example.com",
            ];
            let output = run_tool(&swaks, &args, WAIT).await.unwrap();
            assert!(output.status.success(), "{output:?}");
        }

        let expected = 1
            + 2 * usize::from(find_tool("smtp-source").is_some())
            + usize::from(find_tool("swaks").is_some());
        let messages = sink.wait_for_messages(expected, WAIT).await.unwrap();
        assert_eq!(messages.len(), expected, "{}", sink.dump());
        let first = &messages[0];
        assert_eq!(first.client_addr, "127.0.0.5");
        assert_eq!(first.helo.as_deref(), Some("client.test"));
        assert_eq!(first.mail_args, "<a@example.org>");
        assert_eq!(first.rcpt_args, ["<b@example.com>"]);
        assert_eq!(first.content, "Subject: one\n\n.dot\n");
        assert_eq!(sink.messages_received(), expected);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn several_sinks_run_side_by_side_and_stop_on_drop() {
        let Some(smtp_sink) = require_tool("smtp-sink") else {
            return;
        };
        let first = SmtpSink::start(&smtp_sink).await.unwrap();
        let second = SmtpSink::start_with(&smtp_sink, &["-C"]).await.unwrap();
        assert_ne!(first.addr(), second.addr());
        let addr = first.addr();
        drop(first);
        let deadline = tokio::time::Instant::now() + WAIT;
        while TcpStream::connect(addr).await.is_ok() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "smtp-sink still running"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
