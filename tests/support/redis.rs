//! A real `redis-server` for tests: started as a child on an OS-chosen loopback port with
//! persistence off, killed when dropped, and restartable on the same port so that a test
//! can take it away mid-session and bring it back.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::tools::require_tool;

/// How long a freshly spawned server gets to answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running (or stopped, after [`RedisServer::kill`]) `redis-server`.
pub struct RedisServer {
    program: PathBuf,
    addr: SocketAddr,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `redis-server` on a free port of 127.0.0.1, or returns `None` (after saying
    /// why) when it is not installed and tools are not required.
    ///
    /// # Errors
    /// When the server does not start answering in time.
    pub fn start() -> anyhow::Result<Option<Self>> {
        let Some(program) = require_tool("redis-server") else {
            return Ok(None);
        };
        // The OS picks a free port; the server binds it right after.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut server = Self {
            program,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child: None,
        };
        server.restart()?;
        Ok(Some(server))
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL for `[state] url`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Kills the server (SIGKILL: no goodbye to its clients) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL ends a frozen (SIGSTOPped) server too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (SIGSTOP, `true`) or thaws (SIGCONT, `false`) the server: connections stay
    /// open but nothing is answered, the case that must give timeouts, not hangs.
    ///
    /// # Errors
    /// When the server is not running or the signal cannot be sent.
    pub fn freeze(&self, frozen: bool) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("redis-server is not running")?;
        let signal = if frozen {
            rustix::process::Signal::STOP
        } else {
            rustix::process::Signal::CONT
        };
        rustix::process::kill_process(rustix::process::Pid::from_child(child), signal)
            .context("signalling redis-server")
    }

    /// Starts the server again on the same port (empty: persistence is off).
    ///
    /// # Errors
    /// When it does not answer PING within a few seconds.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let child = Command::new(&self.program)
            .args(["--port", &self.addr.port().to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.ping().is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("redis-server on {} exited at start: {status}", self.addr);
            }
            if Instant::now() > deadline {
                bail!("redis-server on {} did not answer in time", self.addr);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends PING and expects PONG.
    ///
    /// # Errors
    /// When the server does not answer.
    pub fn ping(&self) -> anyhow::Result<()> {
        let reply = self.command(&["PING"])?;
        if reply.starts_with("+PONG") {
            Ok(())
        } else {
            bail!("unexpected reply to PING: {reply:?}")
        }
    }

    /// Sends one command (RESP array of bulk strings) and returns the raw reply's first
    /// read, e.g. `"+OK\r\n"`, `":3\r\n"` or `"*2\r\n..."`.
    ///
    /// # Errors
    /// When the server is unreachable or silent for a second.
    pub fn command(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes())?;
        let mut buffer = vec![0; 64 * 1024];
        let n = stream.read(&mut buffer)?;
        Ok(String::from_utf8_lossy(&buffer[..n]).into_owned())
    }

    /// The keys matching `pattern` (KEYS; fine for the few keys of a test).
    ///
    /// # Errors
    /// When the server is unreachable.
    pub fn keys(&self, pattern: &str) -> anyhow::Result<Vec<String>> {
        let reply = self.command(&["KEYS", pattern])?;
        // *N, then $len / key pairs.
        Ok(reply
            .split("\r\n")
            .skip(1)
            .skip(1)
            .step_by(2)
            .filter(|line| !line.is_empty())
            .map(str::to_string)
            .collect())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
