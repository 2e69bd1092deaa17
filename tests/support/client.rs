//! A minimal SMTP client for tests.
//!
//! It speaks raw SMTP over a `TcpStream` and checks only what a test needs to trust the
//! replies it reads: every reply line ends in CRLF, multi-line replies keep one code, and
//! no read waits longer than the read timeout (default [`DEFAULT_READ_TIMEOUT`]), so a
//! proxy that stops answering fails the test instead of hanging it.
//!
//! The timeout runs on tokio's clock: under `tokio::time::pause()` the clock jumps ahead
//! whenever the runtime is idle, which includes waiting on a socket, so a paused test should
//! resume the clock (or raise the timeout) around reads that wait on real I/O.
//!
//! ```no_run
//! # async fn example(proxy: std::net::SocketAddr) -> anyhow::Result<()> {
//! use relaygate_tests::client::SmtpClient;
//!
//! let mut client = SmtpClient::connect_from("127.0.0.7".parse()?, proxy).await?;
//! assert_eq!(client.read_reply().await?.code, 220);
//! client.ehlo("gw.example.com").await?;
//! let outcome = client
//!     .send_message("a@example.org", &["b@example.com"], b"Subject: hi\r\n\r\nhello\r\n")
//!     .await?;
//! assert!(outcome.accepted(), "{outcome:?}");
//! client.quit().await?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use relaygate::tls::ClientStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How long a read waits for the server before failing the test.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest reply line accepted; a longer one means the server is not speaking SMTP.
const MAX_REPLY_LINE: usize = 64 * 1024;

/// One SMTP reply, possibly multi-line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code, the same on every line.
    pub code: u16,
    /// The text of each line, after the code and its separator, without CRLF.
    pub lines: Vec<String>,
}

impl Reply {
    /// Parses the lines of one reply as received, each without its CRLF.
    ///
    /// # Errors
    /// When a line does not start with a three-digit code followed by `-`, a space or
    /// nothing, when the codes differ, or when a line other than the last uses `-`.
    pub fn parse(raw_lines: &[&str]) -> anyhow::Result<Self> {
        let mut code = None;
        let mut lines = Vec::with_capacity(raw_lines.len());
        for (index, raw) in raw_lines.iter().enumerate() {
            let (this_code, more, text) = parse_reply_line(raw)?;
            ensure!(
                code.is_none_or(|code| code == this_code),
                "reply line {raw:?} changes the reply code from {code:?}"
            );
            ensure!(
                more == (index + 1 < raw_lines.len()),
                "reply line {raw:?} has the wrong continuation marker"
            );
            code = Some(this_code);
            lines.push(text.to_owned());
        }
        let code = code.ok_or_else(|| anyhow!("a reply needs at least one line"))?;
        Ok(Self { code, lines })
    }

    /// All lines' text joined with `\n`.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// The enhanced status code (RFC 3463) at the start of the first line, e.g. `"5.7.1"`.
    pub fn enhanced_status(&self) -> Option<&str> {
        let first = self.lines.first()?.split(' ').next()?;
        let mut parts = first.split('.');
        let class = parts.next()?;
        let valid = matches!(class, "2" | "4" | "5")
            && parts.clone().count() == 2
            && parts.all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
        valid.then_some(first)
    }

    /// 2xx: the command succeeded.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx: the server waits for more (354 after DATA, 334 during AUTH).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 4xx: a temporary failure; the client may try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: a permanent failure.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// For an EHLO reply: whether the server advertises `keyword` (case-insensitive).
    pub fn has_extension(&self, keyword: &str) -> bool {
        self.extension(keyword).is_some()
    }

    /// For an EHLO reply: the parameters after `keyword` (empty when it has none), or
    /// `None` when the keyword is not advertised. The first line is the greeting name and
    /// never an extension.
    pub fn extension(&self, keyword: &str) -> Option<&str> {
        self.lines.iter().skip(1).find_map(|line| {
            let (name, params) = line.split_once(' ').unwrap_or((line, ""));
            name.eq_ignore_ascii_case(keyword).then_some(params)
        })
    }
}

impl fmt::Display for Reply {
    /// The reply as it was on the wire, lines separated by `\n`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, line) in self.lines.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            let separator = if index + 1 < self.lines.len() {
                '-'
            } else {
                ' '
            };
            write!(f, "{}{separator}{line}", self.code)?;
        }
        Ok(())
    }
}

/// Splits `250-text` into (250, true, "text"); `250 text` and `250` end a reply.
fn parse_reply_line(line: &str) -> anyhow::Result<(u16, bool, &str)> {
    let bytes = line.as_bytes();
    ensure!(
        bytes.len() >= 3
            && bytes[..3].iter().all(u8::is_ascii_digit)
            && (b'2'..=b'5').contains(&bytes[0]),
        "not an SMTP reply line: {line:?}"
    );
    let code = line[..3].parse()?;
    match bytes.get(3) {
        None => Ok((code, false, "")),
        Some(b' ') => Ok((code, false, &line[4..])),
        Some(b'-') => Ok((code, true, &line[4..])),
        Some(_) => bail!("not an SMTP reply line: {line:?}"),
    }
}

/// Doubles a leading `.` on every line, as a client must before sending message content
/// (RFC 5321 4.5.2). Lines are taken to start after each LF.
pub fn dot_stuff(content: &[u8]) -> Vec<u8> {
    let mut stuffed = Vec::with_capacity(content.len() + 16);
    let mut at_line_start = true;
    for &byte in content {
        if at_line_start && byte == b'.' {
            stuffed.push(b'.');
        }
        stuffed.push(byte);
        at_line_start = byte == b'\n';
    }
    stuffed
}

/// The replies of one mail transaction sent by [`SmtpClient::send_message`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// The reply to `MAIL FROM`.
    pub mail: Reply,
    /// The replies to each `RCPT TO`, in order; empty when `MAIL FROM` was refused.
    pub rcpts: Vec<Reply>,
    /// The reply to `DATA`; `None` when no recipient was accepted.
    pub data: Option<Reply>,
    /// The reply after the content's final `.`; `None` when `DATA` was refused.
    pub end: Option<Reply>,
}

impl Transaction {
    /// Whether the server took responsibility for the message (2xx after the final `.`).
    pub fn accepted(&self) -> bool {
        self.end.as_ref().is_some_and(Reply::is_positive)
    }

    /// The last reply received: the one that decided the transaction's fate.
    pub fn last_reply(&self) -> &Reply {
        self.end
            .as_ref()
            .or(self.data.as_ref())
            .or(self.rcpts.last())
            .unwrap_or(&self.mail)
    }
}

/// The client's connection: clear, or TLS after STARTTLS (the proxy's own
/// plain-or-TLS stream, with the client end of TLS).
type Wire = ClientStream<TcpStream, TlsStream<TcpStream>>;

/// A raw SMTP connection for tests.
#[derive(Debug)]
pub struct SmtpClient {
    stream: Wire,
    local: SocketAddr,
    peer: SocketAddr,
    buffer: Vec<u8>,
    read_timeout: Duration,
    /// What was sent last, to say in a timeout error what the server failed to answer.
    last_sent: String,
}

impl SmtpClient {
    /// Connects from an OS-chosen loopback address and port.
    ///
    /// # Errors
    /// When the connection cannot be made.
    pub async fn connect(server: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(server)
            .await
            .with_context(|| format!("connecting to {server}"))?;
        Ok(Self::from_stream(stream))
    }

    /// Connects from `local` (any port), to play a client at that address: on Linux every
    /// address in `127.0.0.0/8` can be bound without configuration.
    ///
    /// # Errors
    /// When `local` cannot be bound or the connection cannot be made.
    pub async fn connect_from(local: IpAddr, server: SocketAddr) -> anyhow::Result<Self> {
        let socket = match local {
            IpAddr::V4(_) => TcpSocket::new_v4(),
            IpAddr::V6(_) => TcpSocket::new_v6(),
        }?;
        socket
            .bind(SocketAddr::new(local, 0))
            .with_context(|| format!("binding the client socket to {local}"))?;
        let stream = socket
            .connect(server)
            .await
            .with_context(|| format!("connecting from {local} to {server}"))?;
        Ok(Self::from_stream(stream))
    }

    /// Wraps an already connected stream.
    ///
    /// # Panics
    /// When the stream is not connected.
    pub fn from_stream(stream: TcpStream) -> Self {
        Self {
            local: stream.local_addr().expect("a connected stream"),
            peer: stream.peer_addr().expect("a connected stream"),
            stream: Wire::Plain(stream),
            buffer: Vec::new(),
            read_timeout: DEFAULT_READ_TIMEOUT,
            last_sent: "(nothing yet: waiting for the greeting)".to_owned(),
        }
    }

    /// Changes how long each read may wait.
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.read_timeout = timeout;
    }

    /// The client's end of the connection.
    ///
    /// # Errors
    /// When the socket is no longer connected.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.local)
    }

    /// The server's end of the connection.
    ///
    /// # Errors
    /// When the socket is no longer connected.
    pub fn peer_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.peer)
    }

    /// Whether the connection is under TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Wire::Tls(_))
    }

    /// Sends `STARTTLS`, expects 220 and nothing after it, then runs the TLS handshake
    /// trusting the CA certificates in `ca_pem` and checking the server's certificate
    /// for `server_name`.
    ///
    /// # Errors
    /// When the reply is not 220, the server sent more than the reply, or the handshake
    /// fails.
    pub async fn starttls(&mut self, ca_pem: &Path, server_name: &str) -> anyhow::Result<()> {
        self.cmd_expect("STARTTLS", 220).await?;
        ensure!(
            self.buffer.is_empty(),
            "the server sent more after its 220 to STARTTLS: {:?}",
            String::from_utf8_lossy(&self.buffer)
        );
        self.tls_handshake(ca_pem, server_name).await
    }

    /// Runs the client side of a TLS handshake now (after a 220 to STARTTLS read by the
    /// test itself). Bytes already received in clear are an error.
    ///
    /// # Errors
    /// When the CA file is unusable, clear bytes are pending, or the handshake fails.
    pub async fn tls_handshake(&mut self, ca_pem: &Path, server_name: &str) -> anyhow::Result<()> {
        ensure!(
            self.buffer.is_empty(),
            "clear bytes pending before the handshake: {:?}",
            String::from_utf8_lossy(&self.buffer)
        );
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_pem)
            .with_context(|| format!("reading {}", ca_pem.display()))?
        {
            roots.add(cert.context("a CA certificate")?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(server_name.to_owned())?;
        let Wire::Plain(tcp) = std::mem::replace(&mut self.stream, Wire::Gone) else {
            bail!("STARTTLS on a connection that is not in clear");
        };
        let tls = tokio::time::timeout(
            self.read_timeout,
            TlsConnector::from(Arc::new(config)).connect(name, tcp),
        )
        .await
        .context("TLS handshake timed out")?
        .context("TLS handshake")?;
        self.stream = Wire::Tls(Box::new(tls));
        self.last_sent = "(TLS handshake)".to_owned();
        Ok(())
    }

    /// `AUTH PLAIN` with the credentials as initial response; returns the final reply.
    ///
    /// # Errors
    /// When the connection fails or no reply arrives in time.
    pub async fn auth_plain(&mut self, user: &str, password: &str) -> anyhow::Result<Reply> {
        let response = BASE64.encode(format!("\0{user}\0{password}"));
        let reply = self.cmd(&format!("AUTH PLAIN {response}")).await?;
        self.last_sent = "AUTH PLAIN (credentials)".to_owned();
        Ok(reply)
    }

    /// `AUTH LOGIN` answering the user name and password prompts; returns the first
    /// reply that is not a 334 prompt (the final one when all went well).
    ///
    /// # Errors
    /// When the connection fails, a reply does not arrive in time, or a prompt is not
    /// the one LOGIN uses at that step.
    pub async fn auth_login(&mut self, user: &str, password: &str) -> anyhow::Result<Reply> {
        let reply = self.cmd("AUTH LOGIN").await?;
        if reply.code != 334 {
            return Ok(reply);
        }
        ensure!(
            reply.text() == "VXNlcm5hbWU6",
            "not the Username: prompt: {reply}"
        );
        let reply = self.cmd(&BASE64.encode(user)).await?;
        if reply.code != 334 {
            return Ok(reply);
        }
        ensure!(
            reply.text() == "UGFzc3dvcmQ6",
            "not the Password: prompt: {reply}"
        );
        let reply = self.cmd(&BASE64.encode(password)).await?;
        self.last_sent = "AUTH LOGIN password".to_owned();
        Ok(reply)
    }

    /// Sends `line` followed by CRLF.
    ///
    /// # Errors
    /// When the write fails (e.g. the server closed the connection).
    pub async fn send(&mut self, line: &str) -> anyhow::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.send_raw(&bytes).await?;
        self.last_sent = line.to_owned();
        Ok(())
    }

    /// Sends `bytes` exactly as given: no CRLF added, no dot-stuffing.
    ///
    /// # Errors
    /// When the write fails (e.g. the server closed the connection).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream
            .write_all(bytes)
            .await
            .with_context(|| format!("sending {:?}", String::from_utf8_lossy(bytes)))?;
        self.last_sent = format!("{} raw bytes", bytes.len());
        Ok(())
    }

    /// Sends a command line and reads its reply.
    ///
    /// # Errors
    /// When sending fails or no well-formed reply arrives in time.
    pub async fn cmd(&mut self, line: &str) -> anyhow::Result<Reply> {
        self.send(line).await?;
        self.read_reply().await
    }

    /// Sends a command line and fails unless the reply has code `code`.
    ///
    /// # Errors
    /// As [`SmtpClient::cmd`], and when the code differs (the error shows the whole reply).
    pub async fn cmd_expect(&mut self, line: &str, code: u16) -> anyhow::Result<Reply> {
        let reply = self.cmd(line).await?;
        ensure!(
            reply.code == code,
            "expected {code} to {line:?}, got:\n{reply}"
        );
        Ok(reply)
    }

    /// Sends several command lines in one write (RFC 2920 pipelining), then reads one
    /// reply for each.
    ///
    /// # Errors
    /// When sending fails or a reply does not arrive in time.
    pub async fn pipeline(&mut self, lines: &[&str]) -> anyhow::Result<Vec<Reply>> {
        let mut batch = Vec::new();
        for line in lines {
            batch.extend_from_slice(line.as_bytes());
            batch.extend_from_slice(b"\r\n");
        }
        self.send_raw(&batch).await?;
        self.last_sent = format!("pipelined {lines:?}");
        let mut replies = Vec::with_capacity(lines.len());
        for _ in lines {
            replies.push(self.read_reply().await?);
        }
        Ok(replies)
    }

    /// Reads one complete reply (all lines of a multi-line reply).
    ///
    /// # Errors
    /// When the server closes the connection, sends a malformed line or a line not ending
    /// in CRLF, or does not finish the reply within the read timeout.
    pub async fn read_reply(&mut self) -> anyhow::Result<Reply> {
        let mut raw_lines = Vec::new();
        loop {
            let line = self.read_line().await?;
            let (_, more, _) = parse_reply_line(&line)?;
            raw_lines.push(line);
            if !more {
                break;
            }
        }
        let raw_lines: Vec<&str> = raw_lines.iter().map(String::as_str).collect();
        Reply::parse(&raw_lines)
    }

    /// Reads one reply line and returns it without its CRLF.
    ///
    /// # Errors
    /// When the server closes the connection, the line does not end in CRLF or is not
    /// UTF-8, or it does not arrive within the read timeout.
    pub async fn read_line(&mut self) -> anyhow::Result<String> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let Some(line) = line.strip_suffix(b"\r\n") else {
                    bail!(
                        "reply line ends in a bare LF: {:?}",
                        String::from_utf8_lossy(&line)
                    );
                };
                return String::from_utf8(line.to_vec()).context("reply line is not UTF-8");
            }
            ensure!(
                self.buffer.len() <= MAX_REPLY_LINE,
                "reply line longer than {MAX_REPLY_LINE} bytes"
            );
            if self.fill().await? == 0 {
                bail!(
                    "connection closed while waiting for a reply to {} (unterminated: {:?})",
                    self.last_sent,
                    String::from_utf8_lossy(&self.buffer)
                );
            }
        }
    }

    /// Reads more bytes into the buffer; 0 means the server closed the connection.
    async fn fill(&mut self) -> anyhow::Result<usize> {
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout(self.read_timeout, self.stream.read(&mut chunk));
        let Ok(read) = read.await else {
            bail!(
                "no reply within {:?} to {}",
                self.read_timeout,
                self.last_sent
            );
        };
        let count = read.context("reading from the server")?;
        self.buffer.extend_from_slice(&chunk[..count]);
        Ok(count)
    }

    /// Sends `EHLO name` and checks for a 250 reply, which lists the extensions.
    ///
    /// # Errors
    /// When the reply is not 250.
    pub async fn ehlo(&mut self, name: &str) -> anyhow::Result<Reply> {
        self.cmd_expect(&format!("EHLO {name}"), 250).await
    }

    /// Runs one mail transaction: `MAIL FROM:<from>`, `RCPT TO:<rcpt>` for each recipient,
    /// then `DATA` and `content` when at least one recipient was accepted. `content` is the
    /// message as the user wrote it: it is dot-stuffed here, given a final CRLF if it lacks
    /// one, and ended with `.`. Refusals are not errors: they are in the returned
    /// [`Transaction`].
    ///
    /// # Errors
    /// When the connection fails or a reply does not arrive in time.
    pub async fn send_message(
        &mut self,
        from: &str,
        rcpts: &[&str],
        content: &[u8],
    ) -> anyhow::Result<Transaction> {
        let mail = self.cmd(&format!("MAIL FROM:<{from}>")).await?;
        let mut transaction = Transaction {
            mail,
            rcpts: Vec::new(),
            data: None,
            end: None,
        };
        if !transaction.mail.is_positive() {
            return Ok(transaction);
        }
        for rcpt in rcpts {
            let reply = self.cmd(&format!("RCPT TO:<{rcpt}>")).await?;
            transaction.rcpts.push(reply);
        }
        if !transaction.rcpts.iter().any(Reply::is_positive) {
            return Ok(transaction);
        }
        let data = self.cmd("DATA").await?;
        let go_ahead = data.code == 354;
        transaction.data = Some(data);
        if go_ahead {
            transaction.end = Some(self.send_content(content).await?);
        }
        Ok(transaction)
    }

    /// A whole session from `local`: greeting, `EHLO helo`, one message as
    /// [`SmtpClient::send_message`] sends it, QUIT.
    ///
    /// # Errors
    /// When the connection fails or a reply does not arrive in time.
    pub async fn one_message_session(
        local: IpAddr,
        server: SocketAddr,
        helo: &str,
        from: &str,
        rcpts: &[&str],
        content: &[u8],
    ) -> anyhow::Result<Transaction> {
        let mut client = Self::connect_from(local, server).await?;
        client.read_reply().await?;
        client.ehlo(helo).await?;
        let transaction = client.send_message(from, rcpts, content).await?;
        client.quit().await?;
        Ok(transaction)
    }

    /// `MAIL FROM:<from>`, `RCPT TO:<rcpt>` and `DATA`, each expected to be
    /// accepted: the client is then to send the message content.
    ///
    /// # Errors
    /// When a reply is not the expected 250 or 354.
    pub async fn start_data(&mut self, from: &str, rcpt: &str) -> anyhow::Result<()> {
        self.cmd_expect(&format!("MAIL FROM:<{from}>"), 250).await?;
        self.cmd_expect(&format!("RCPT TO:<{rcpt}>"), 250).await?;
        self.cmd_expect("DATA", 354).await?;
        Ok(())
    }

    /// After a 354, sends `content` dot-stuffed and terminated (see
    /// [`SmtpClient::send_message`]) and reads the final reply.
    ///
    /// # Errors
    /// When the connection fails or the reply does not arrive in time.
    pub async fn send_content(&mut self, content: &[u8]) -> anyhow::Result<Reply> {
        let mut wire = dot_stuff(content);
        if !wire.is_empty() && !wire.ends_with(b"\r\n") {
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b".\r\n");
        self.send_raw(&wire).await?;
        self.last_sent = "the end of the message content".to_owned();
        self.read_reply().await
    }

    /// Sends `QUIT` and checks for a 221 reply.
    ///
    /// # Errors
    /// When the reply is not 221.
    pub async fn quit(&mut self) -> anyhow::Result<Reply> {
        self.cmd_expect("QUIT", 221).await
    }

    /// Closes the sending half of the connection, as a client that has nothing more to say.
    ///
    /// # Errors
    /// When the socket cannot be shut down.
    pub async fn shutdown_write(&mut self) -> anyhow::Result<()> {
        Ok(self.stream.shutdown().await?)
    }

    /// Reads until the server closes the connection and returns whatever it sent first
    /// (including anything not yet read as a reply).
    ///
    /// # Errors
    /// When the server keeps the connection open past the read timeout.
    pub async fn read_to_close(&mut self) -> anyhow::Result<Vec<u8>> {
        while self.fill().await? > 0 {}
        Ok(std::mem::take(&mut self.buffer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_multi_line_replies() {
        let reply =
            Reply::parse(&["250-mx.example.com", "250-SIZE 1000", "250 PIPELINING"]).unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(reply.lines, ["mx.example.com", "SIZE 1000", "PIPELINING"]);
        assert_eq!(reply.extension("size"), Some("1000"));
        assert!(reply.has_extension("pipelining"));
        assert!(!reply.has_extension("mx.example.com"));
        assert_eq!(
            reply.to_string(),
            "250-mx.example.com\n250-SIZE 1000\n250 PIPELINING"
        );

        let reply = Reply::parse(&["554 5.7.1 relay denied"]).unwrap();
        assert_eq!(reply.enhanced_status(), Some("5.7.1"));
        assert!(reply.is_permanent());
        assert_eq!(Reply::parse(&["250"]).unwrap().lines, [""]);
        assert_eq!(Reply::parse(&["250 ok"]).unwrap().enhanced_status(), None);
        assert_eq!(
            Reply::parse(&["250 2.1.0"]).unwrap().enhanced_status(),
            Some("2.1.0")
        );

        assert!(Reply::parse(&["250-a", "251 b"]).is_err());
        assert!(Reply::parse(&["250 a", "250 b"]).is_err());
        assert!(Reply::parse(&["250-a"]).is_err());
        assert!(Reply::parse(&["25 a"]).is_err());
        assert!(Reply::parse(&["250xa"]).is_err());
        assert!(Reply::parse(&["hello"]).is_err());
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(
            dot_stuff(b".a\r\nb\r\n..c\r\n.\r\n"),
            b"..a\r\nb\r\n...c\r\n..\r\n"
        );
        assert_eq!(dot_stuff(b"a.b\r\n"), b"a.b\r\n");
    }
}
