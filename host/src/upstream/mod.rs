//! The next hop: an SMTP client towards the existing mail server.
//!
//! Opened when a session's first transaction needs it (or taken warm from
//! the [`UpstreamPool`]); introduces the real client with XCLIENT when the
//! upstream offers it; replays accepted MAIL, RCPT and DATA and returns the
//! upstream's own replies.

mod pool;
mod reply_reader;
mod servers;
mod stream;
mod tls;
mod xclient;

use crate::lazy_timeout::LazyTimeout;
use crate::smtp::{Param, Reply};
pub use pool::UpstreamPool;
use reply_reader::ReplyReader;
pub use servers::Servers;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use stream::{QuietProbe, ReadSide, WriteSide};
pub use tls::UpstreamTls;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
pub use xclient::ClientIdentity;

/// Why the upstream could not be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Connecting failed.
    #[error("cannot connect to upstream {addr}: {source}")]
    Connect {
        /// The configured address.
        addr: String,
        /// The cause.
        source: io::Error,
    },
    /// The upstream did not answer in time.
    #[error("upstream timed out")]
    Timeout,
    /// The upstream did not take what we wrote in time (it stopped
    /// reading): the connection cannot be used any more.
    #[error("upstream did not read what was sent within the timeout")]
    WriteTimeout,
    /// The connection broke.
    #[error("upstream connection lost: {0}")]
    Io(#[from] io::Error),
    /// The upstream closed the connection or answered 421.
    #[error("upstream closed the connection{}", .0.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    Closed(Option<Reply>),
    /// The upstream greeted or answered EHLO with a refusal.
    #[error("upstream refused the session: {0}")]
    Refused(Reply),
    /// The upstream answered something that is not an SMTP reply.
    #[error("upstream protocol error: {0}")]
    Protocol(String),
    /// TLS with the upstream failed: the handshake, or its certificate did
    /// not verify.
    #[error("TLS with the upstream failed: {0}")]
    Tls(String),
    /// `[upstream_tls]` requires STARTTLS and the upstream does not offer it
    /// (or refused it).
    #[error("upstream does not offer STARTTLS ({0}), which [upstream_tls] requires")]
    TlsUnavailable(String),
}

/// Where the upstream is and how to talk to it.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// The servers, preferred first, and which are down.
    pub servers: Arc<Servers>,
    /// Our name in EHLO.
    pub hostname: String,
    /// Timeout for each reply.
    pub timeout: Duration,
    /// Learned capabilities shared with new sessions (SMTPUTF8 offered).
    pub smtputf8: Arc<AtomicBool>,
    /// TLS towards the upstream; none for plain SMTP.
    pub tls: Option<Arc<UpstreamTls>>,
    /// How often servers marked down are probed.
    pub health_interval: Duration,
}

/// What the upstream said it supports in its EHLO reply.
#[derive(Debug, Clone, Default)]
pub struct UpstreamCapabilities {
    size: bool,
    eightbitmime: bool,
    smtputf8: bool,
    starttls: bool,
    xclient: Vec<String>,
}

impl UpstreamCapabilities {
    fn from_ehlo(reply: &Reply) -> Self {
        let mut caps = Self::default();
        for line in reply.lines().iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let keyword = words.next().unwrap_or("").to_ascii_uppercase();
            match keyword.as_str() {
                "SIZE" => caps.size = true,
                "8BITMIME" => caps.eightbitmime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "STARTTLS" => caps.starttls = true,
                "XCLIENT" => caps.xclient = words.map(|w| w.to_ascii_uppercase()).collect(),
                _ => {}
            }
        }
        caps
    }
}

/// An open connection to the upstream, between transactions or inside one.
pub struct Upstream {
    /// Which of [`UpstreamSettings::servers`] this is connected to.
    server: usize,
    reader: ReplyReader<ReadSide>,
    writer: BufWriter<WriteSide>,
    /// Peeks at the socket under either kind of stream.
    probe: QuietProbe,
    capabilities: UpstreamCapabilities,
    timeout: Duration,
    /// One timer for every wait on this connection.
    waits: LazyTimeout,
    in_transaction: bool,
    /// Between the 354 to DATA and the end of the message: a QUIT now
    /// would only be message content.
    in_data: bool,
    data_failed: Option<io::ErrorKind>,
    /// A write did not finish in time: nothing more may be sent.
    write_timed_out: bool,
    /// When the connection was opened.
    opened_at: Instant,
    /// Messages that reached the end of data on this connection.
    messages: u32,
    /// An XCLIENT on this connection named a login: the next client's
    /// XCLIENT must clear it explicitly.
    carried_login: bool,
    /// The upstream refused XCLIENT: it sees the proxy as the client, so
    /// the connection carries no client's identity.
    xclient_refused: bool,
}

impl Upstream {
    /// On a connection no client used yet: XCLIENT where offered. A refusal
    /// leaves the upstream seeing the proxy as the client.
    pub(crate) async fn introduce_first(
        &mut self,
        settings: &UpstreamSettings,
        client: &ClientIdentity,
    ) -> Result<(), UpstreamError> {
        if !self.capabilities.xclient.is_empty() && !self.introduce(settings, client).await? {
            tracing::warn!(upstream = %settings.servers.addr(self.server), "upstream refused XCLIENT; it sees the proxy as the client");
            self.xclient_refused = true;
        }
        Ok(())
    }

    /// Hand a connection another session used to `client`: a new XCLIENT
    /// (and the EHLO it requires) where the first one was accepted, RSET
    /// where the upstream sees the proxy as the client. Any answer but a
    /// positive one is an error: the connection must not be used.
    pub(crate) async fn reintroduce(
        &mut self,
        settings: &UpstreamSettings,
        client: &ClientIdentity,
    ) -> Result<(), UpstreamError> {
        if self.capabilities.xclient.is_empty() || self.xclient_refused {
            return self.reset().await;
        }
        if self.introduce(settings, client).await? {
            Ok(())
        } else {
            Err(UpstreamError::Protocol(
                "upstream refused XCLIENT on a reused connection".to_string(),
            ))
        }
    }

    /// XCLIENT with `client`'s attributes, then EHLO with its name; false
    /// when the upstream refused XCLIENT.
    async fn introduce(
        &mut self,
        settings: &UpstreamSettings,
        client: &ClientIdentity,
    ) -> Result<bool, UpstreamError> {
        let line = xclient::command(&self.capabilities.xclient, client, self.carried_login);
        let reply = self.command(&line).await?;
        // Postfix greets anew (220); some servers answer 250.
        if !matches!(reply.code(), 220 | 250) {
            tracing::debug!(reply = %reply, "XCLIENT refused");
            return Ok(false);
        }
        self.carried_login = client.login.is_some();
        // The upstream now treats us as the client: greet with its name.
        let helo = client.helo.as_deref().unwrap_or(&settings.hostname);
        self.ehlo(helo).await?;
        Ok(true)
    }

    /// End an unfinished transaction (MAIL accepted, no message sent).
    pub(crate) async fn reset(&mut self) -> Result<(), UpstreamError> {
        let reply = self.command("RSET").await?;
        if !reply.is_positive() {
            return Err(UpstreamError::Protocol(format!("RSET answered {reply}")));
        }
        self.in_transaction = false;
        Ok(())
    }

    /// Whether the connection can serve another session: no message or
    /// write left half-done.
    pub(crate) fn is_clean(&self) -> bool {
        !self.in_data && !self.write_timed_out && self.data_failed.is_none()
    }

    /// Whether a transaction was left open (MAIL accepted, no end of data).
    pub(crate) fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    /// Whether the upstream has said nothing since its last reply and has
    /// not closed: a quiet idle connection. Data or end-of-stream here
    /// means it timed the connection out or is going away.
    pub(crate) fn is_quiet(&self) -> bool {
        self.reader.is_drained() && self.probe.is_quiet()
    }

    /// Which of [`UpstreamSettings::servers`] this is connected to.
    pub(crate) fn server(&self) -> usize {
        self.server
    }

    /// How long ago the connection was opened.
    pub(crate) fn age(&self) -> Duration {
        self.opened_at.elapsed()
    }

    /// Messages that reached the end of data on this connection.
    pub(crate) fn messages(&self) -> u32 {
        self.messages
    }

    /// Learn the upstream's capabilities with a short probe session.
    pub async fn probe(settings: &UpstreamSettings, server: usize) -> Result<(), UpstreamError> {
        Self::connect(settings, server).await?.quit().await;
        Ok(())
    }

    /// Connect (with TLS from the first byte where configured), read the
    /// greeting and EHLO, run STARTTLS where configured; record what the
    /// upstream offers.
    pub(crate) async fn connect(
        settings: &UpstreamSettings,
        server: usize,
    ) -> Result<Self, UpstreamError> {
        let addr = settings.servers.addr(server);
        let stream = tokio::time::timeout(settings.timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| UpstreamError::Timeout)?
            .map_err(|source| UpstreamError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        stream.set_nodelay(true)?;
        let probe = QuietProbe::of(&stream)?;
        let (read, write) = match settings.tls.as_deref() {
            Some(tls) if tls.implicit => {
                stream::tls(Self::handshake(settings, tls, addr, stream).await?)
            }
            _ => stream::plain(stream),
        };
        let mut upstream = Self::over(server, read, write, probe, settings.timeout);
        upstream.greeting_and_ehlo(&settings.hostname).await?;
        if let Some(tls) = settings.tls.as_deref().filter(|tls| !tls.implicit) {
            upstream = upstream.starttls(settings, tls, addr).await?;
        }
        settings
            .smtputf8
            .store(upstream.capabilities.smtputf8, Ordering::Relaxed);
        Ok(upstream)
    }

    /// The TLS handshake within the upstream timeout.
    async fn handshake(
        settings: &UpstreamSettings,
        tls: &UpstreamTls,
        addr: &str,
        stream: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, UpstreamError> {
        tokio::time::timeout(settings.timeout, tls.handshake(addr, stream))
            .await
            .map_err(|_| UpstreamError::Timeout)?
    }

    /// STARTTLS, the handshake and EHLO again; an upstream that does not
    /// offer STARTTLS is refused when TLS is required, used in clear
    /// otherwise.
    async fn starttls(
        mut self,
        settings: &UpstreamSettings,
        tls: &UpstreamTls,
        addr: &str,
    ) -> Result<Self, UpstreamError> {
        if !self.capabilities.starttls {
            if tls.required {
                return Err(UpstreamError::TlsUnavailable(
                    "not in its EHLO reply".to_string(),
                ));
            }
            tracing::debug!(upstream = %addr, "upstream offers no STARTTLS; sending in clear");
            return Ok(self);
        }
        let reply = self.command("STARTTLS").await?;
        if reply.code() != 220 {
            if tls.required {
                return Err(UpstreamError::TlsUnavailable(format!(
                    "it answered {reply}"
                )));
            }
            tracing::warn!(upstream = %addr, reply = %reply, "upstream refused STARTTLS; sending in clear");
            return Ok(self);
        }
        if !self.reader.is_drained() {
            return Err(UpstreamError::Protocol(
                "data after the 220 to STARTTLS (possible injection)".to_string(),
            ));
        }
        let Self {
            server,
            reader,
            writer,
            probe,
            timeout,
            ..
        } = self;
        let stream = stream::reunite(reader.into_inner(), writer.into_inner())
            .ok_or_else(|| UpstreamError::Protocol("STARTTLS on a TLS connection".to_string()))?;
        let (read, write) = stream::tls(Self::handshake(settings, tls, addr, stream).await?);
        let mut secured = Self::over(server, read, write, probe, timeout);
        secured.ehlo(&settings.hostname).await?;
        Ok(secured)
    }

    /// A connection over `read` and `write`, nothing said yet.
    fn over(
        server: usize,
        read: ReadSide,
        write: WriteSide,
        probe: QuietProbe,
        timeout: Duration,
    ) -> Self {
        Self {
            server,
            reader: ReplyReader::new(read),
            writer: BufWriter::with_capacity(64 * 1024, write),
            probe,
            capabilities: UpstreamCapabilities::default(),
            timeout,
            waits: LazyTimeout::new(),
            in_transaction: false,
            in_data: false,
            data_failed: None,
            write_timed_out: false,
            opened_at: Instant::now(),
            messages: 0,
            carried_login: false,
            xclient_refused: false,
        }
    }

    async fn greeting_and_ehlo(&mut self, hostname: &str) -> Result<(), UpstreamError> {
        let greeting = self.read_reply().await?;
        if greeting.code() != 220 {
            return Err(UpstreamError::Refused(greeting));
        }
        self.ehlo(hostname).await
    }

    async fn ehlo(&mut self, hostname: &str) -> Result<(), UpstreamError> {
        let reply = self.command(&format!("EHLO {hostname}")).await?;
        if !reply.is_positive() {
            let helo = self.command(&format!("HELO {hostname}")).await?;
            if !helo.is_positive() {
                return Err(UpstreamError::Refused(helo));
            }
            self.capabilities = UpstreamCapabilities::default();
            return Ok(());
        }
        self.capabilities = UpstreamCapabilities::from_ehlo(&reply);
        Ok(())
    }

    /// MAIL FROM with the parameters the upstream supports (after RSET when a
    /// previous transaction was left open).
    pub async fn mail(&mut self, path: &str, params: &[Param]) -> Result<Reply, UpstreamError> {
        if self.in_transaction {
            self.reset().await?;
        }
        let mut line = format!("MAIL FROM:<{path}>");
        for param in params {
            let supported = match param.name.as_str() {
                "SIZE" => self.capabilities.size,
                "BODY" => self.capabilities.eightbitmime,
                "SMTPUTF8" => self.capabilities.smtputf8,
                _ => false,
            };
            if supported {
                line.push(' ');
                line.push_str(&param.name);
                if let Some(value) = &param.value {
                    line.push('=');
                    line.push_str(value);
                }
            }
        }
        let reply = self.command(&line).await?;
        self.in_transaction = reply.is_positive();
        Ok(reply)
    }

    /// RCPT TO.
    pub async fn rcpt(&mut self, path: &str) -> Result<Reply, UpstreamError> {
        self.command(&format!("RCPT TO:<{path}>")).await
    }

    /// DATA; a 354 means message lines may follow.
    pub async fn data(&mut self) -> Result<Reply, UpstreamError> {
        self.data_failed = None;
        let reply = self.command("DATA").await?;
        self.in_data = reply.is_intermediate();
        Ok(reply)
    }

    /// Stream checked message lines (dot-stuffing kept as received).
    /// A write failure is remembered and reported by [`Upstream::end_data`];
    /// the first one is returned so that the caller can log it once.
    pub async fn write_data(&mut self, bytes: &[u8]) -> Option<UpstreamError> {
        if self.data_failed.is_some() {
            return None;
        }
        let write = self
            .waits
            .run_for(self.timeout, self.writer.write_all(bytes))
            .await;
        match write {
            Ok(Ok(())) => None,
            Ok(Err(e)) => {
                self.data_failed = Some(e.kind());
                Some(UpstreamError::Io(e))
            }
            Err(_) => {
                self.data_failed = Some(io::ErrorKind::TimedOut);
                self.write_timed_out = true;
                Some(UpstreamError::WriteTimeout)
            }
        }
    }

    /// Did streaming the message fail?
    pub fn data_failed(&self) -> bool {
        self.data_failed.is_some()
    }

    /// Did a write to the upstream not finish in time?
    pub fn write_timed_out(&self) -> bool {
        self.write_timed_out
    }

    /// End the message and return the upstream's verdict on it.
    pub async fn end_data(&mut self) -> Result<Reply, UpstreamError> {
        if self.write_timed_out {
            return Err(UpstreamError::WriteTimeout);
        }
        if let Some(kind) = self.data_failed {
            return Err(UpstreamError::Io(kind.into()));
        }
        self.in_transaction = false;
        self.in_data = false;
        self.messages = self.messages.saturating_add(1);
        self.command_bytes(b".\r\n").await
    }

    /// Say goodbye politely (errors ignored: the connection is done anyway).
    /// Inside a message, or after a write that timed out, there is no
    /// polite way: the connection is dropped, which makes the upstream
    /// discard the partial message.
    pub async fn quit(mut self) {
        if self.in_data || self.write_timed_out {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.command("QUIT")).await;
    }

    /// Send one command line and read its reply.
    async fn command(&mut self, line: &str) -> Result<Reply, UpstreamError> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.command_bytes(&bytes).await
    }

    async fn command_bytes(&mut self, bytes: &[u8]) -> Result<Reply, UpstreamError> {
        if self.write_timed_out {
            return Err(UpstreamError::WriteTimeout);
        }
        let writer = &mut self.writer;
        let written = self
            .waits
            .run_for(self.timeout, async {
                writer.write_all(bytes).await?;
                writer.flush().await
            })
            .await;
        match written {
            Ok(result) => result?,
            Err(_) => {
                self.write_timed_out = true;
                return Err(UpstreamError::WriteTimeout);
            }
        }
        let reply = self.read_reply().await?;
        if reply.code() == 421 {
            return Err(UpstreamError::Closed(Some(reply)));
        }
        Ok(reply)
    }

    async fn read_reply(&mut self) -> Result<Reply, UpstreamError> {
        self.waits
            .run_for(self.timeout, self.reader.read_reply())
            .await
            .map_err(|_| UpstreamError::Timeout)?
    }
}
