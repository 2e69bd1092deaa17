//! A real Postfix (`smtpd`, with XCLIENT allowed from loopback) on a loopback
//! port, run from a private configuration directory. Every message it
//! accepts is put on hold, so a test reads back what Postfix recorded: its
//! `Received:` header names the HELO and the client address that XCLIENT
//! gave, and `(Authenticated sender: NAME)` for an XCLIENT LOGIN. Postfix's
//! master runs as root and drops to the `postfix` user, so this needs root;
//! the instance is stopped when dropped.

use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The Debian `master.cf` the private one is made from: the installed one,
/// else the package's pristine copy.
const SYSTEM_MASTER_CF: [&str; 2] = [
    "/etc/postfix/master.cf",
    "/usr/share/postfix/master.cf.dist",
];

/// A running private Postfix.
pub struct Postfix {
    dir: TempDir,
    addr: SocketAddr,
    postfix: PathBuf,
}

/// One held message, as Postfix queued it.
#[derive(Debug, Clone)]
pub struct HeldMessage {
    /// Its `Subject:`.
    pub subject: String,
    /// Its first `Received:` header (the one Postfix added), unfolded.
    pub received: String,
}

impl Postfix {
    /// Start an instance whose `smtpd` listens on a free loopback port.
    /// `postfix` is the `postfix` command.
    ///
    /// # Errors
    /// When not root, or Postfix does not start listening within 20 s.
    pub async fn start(postfix: &Path) -> anyhow::Result<Self> {
        if !is_root() {
            bail!("a private Postfix needs root (its master drops to the postfix user)");
        }
        let dir = tempfile::tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let addr: SocketAddr = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?
        };
        let conf = dir.path().join("conf");
        let data = dir.path().join("data");
        for folder in [&conf, &data, &dir.path().join("queue")] {
            std::fs::create_dir(folder)?;
        }
        let status = Command::new("chown").arg("postfix").arg(&data).status()?;
        if !status.success() {
            bail!("chown postfix {} failed", data.display());
        }
        std::fs::write(conf.join("main.cf"), main_cf(dir.path()))?;
        let master = SYSTEM_MASTER_CF
            .iter()
            .find_map(|path| std::fs::read_to_string(path).ok())
            .with_context(|| format!("reading one of {SYSTEM_MASTER_CF:?}"))?;
        std::fs::write(conf.join("master.cf"), master_cf(&master, addr))?;
        let postfix = Self {
            dir,
            addr,
            postfix: postfix.to_path_buf(),
        };
        let started = postfix.command(&["start"]).output()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if Instant::now() > deadline {
                bail!(
                    "postfix did not listen on {addr}: {}{}\n{}",
                    String::from_utf8_lossy(&started.stdout),
                    String::from_utf8_lossy(&started.stderr),
                    postfix.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(postfix)
    }

    /// Where its `smtpd` listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// Wait until `count` messages are on hold, then read them.
    ///
    /// # Errors
    /// When they are not there within `timeout`, or the queue cannot be read.
    pub async fn held(&self, count: usize, timeout: Duration) -> anyhow::Result<Vec<HeldMessage>> {
        let deadline = Instant::now() + timeout;
        loop {
            let ids = self.held_ids()?;
            if ids.len() >= count {
                return ids.iter().map(|id| self.read_held(id)).collect();
            }
            if Instant::now() > deadline {
                bail!("{} of {count} messages held\n{}", ids.len(), self.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn held_ids(&self) -> anyhow::Result<Vec<String>> {
        let listed = self.command_named("postqueue", &["-j"]).output()?;
        Ok(String::from_utf8_lossy(&listed.stdout)
            .lines()
            .filter_map(|line| {
                let start = line.find("\"queue_id\": \"")? + "\"queue_id\": \"".len();
                let end = line[start..].find('"')? + start;
                Some(line[start..end].to_string())
            })
            .collect())
    }

    fn read_held(&self, id: &str) -> anyhow::Result<HeldMessage> {
        let shown = self.command_named("postcat", &["-h", "-q", id]).output()?;
        let text = String::from_utf8_lossy(&shown.stdout);
        let mut headers: Vec<String> = Vec::new();
        for line in text.lines() {
            if line.is_empty() {
                break;
            }
            match headers.last_mut() {
                Some(last) if line.starts_with([' ', '\t']) => {
                    last.push(' ');
                    last.push_str(line.trim());
                }
                _ => headers.push(line.to_string()),
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find_map(|h| h.strip_prefix(name).map(|v| v.trim().to_string()))
        };
        Ok(HeldMessage {
            subject: header("Subject:").context("held message without Subject")?,
            received: header("Received:").context("held message without Received")?,
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.postfix);
        command.arg("-c").arg(self.conf()).args(args);
        command
    }

    fn command_named(&self, tool: &str, args: &[&str]) -> Command {
        let binary = self
            .postfix
            .parent()
            .map_or_else(|| PathBuf::from(tool), |dir| dir.join(tool));
        let mut command = Command::new(binary);
        command.arg("-c").arg(self.conf()).args(args);
        command
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("conf")
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = self.command(&["stop"]).output();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// A relay for `example.com` that trusts loopback with XCLIENT, holds every
/// message, logs to a file and says who authenticated.
fn main_cf(dir: &Path) -> String {
    let dir = dir.display();
    format!(
        "compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = upstream.test
mydestination =
mynetworks = 127.0.0.0/8
relay_domains = example.com
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_end_of_data_restrictions = check_client_access static:HOLD
smtpd_sasl_authenticated_header = yes
smtputf8_enable = no
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
"
    )
}

/// The system's `master.cf` with `smtpd` on `addr` instead of port 25 and
/// no service chrooted (the private queue is not under a chroot).
fn master_cf(system: &str, addr: SocketAddr) -> String {
    let mut out = String::new();
    for line in system.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let service = !line.starts_with(['#', ' ', '\t']) && fields.len() >= 8;
        if service {
            let mut fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
            if fields[0] == "smtp" && fields[1] == "inet" {
                fields[0] = addr.to_string();
            }
            fields[4] = "n".to_string();
            out.push_str(&fields.join(" "));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}
