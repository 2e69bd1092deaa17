//! A recording upstream SMTP server: the "real mail server" behind the proxy under test.
//!
//! It records every session (commands, XCLIENT attributes, protocol violations) and every
//! message that reached the end of DATA (envelope, content exactly as on the wire and
//! unstuffed), and is strict where a proxy could go wrong: lines must end in CRLF, a message
//! ends only at CRLF.CRLF, commands must come in sequence, MAIL/RCPT parameters must match
//! what was advertised, and nothing may be pipelined where RFC 2920 forbids it (behind EHLO,
//! DATA, XCLIENT; anywhere when PIPELINING is not offered). Such mistakes get the reply a
//! real server would give and are listed in [`SessionLog::violations`], so a test can
//! assert that there were none.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use relaygate_tests::upstream::{Extension, RecordingUpstream, UpstreamBehaviour};
//!
//! let upstream = RecordingUpstream::start(
//!     UpstreamBehaviour::default()
//!         .with(Extension::Xclient)
//!         .reject_unknown_users(),
//! )
//! .await?;
//! // ... point the proxy at upstream.addr() and send a message through it ...
//! let messages = upstream.messages();
//! assert!(upstream.violations().is_empty(), "{:?}", upstream.violations());
//! # let _ = messages;
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The message size limit advertised by default, Postfix's default `message_size_limit`.
pub const DEFAULT_SIZE_LIMIT: u64 = 10_240_000;

/// The XCLIENT attributes advertised when [`Extension::Xclient`] is on.
pub const XCLIENT_ATTRIBUTES: &str = "ADDR PORT NAME HELO LOGIN PROTO";

/// RFC 5321 4.5.3.1.4: a command line is at most 512 octets with its CRLF.
const COMMAND_LINE_LIMIT: usize = 512;

/// MAIL and RCPT may carry ESMTP parameters, which RFC 5321 lets extend the command line;
/// XCLIENT carries a host name and addresses. Postfix allows far more; this is a sanity cap.
const EXTENDED_COMMAND_LINE_LIMIT: usize = 1012;

/// RFC 5321 4.5.3.1.6: a text line is at most 1000 octets with its CRLF.
const TEXT_LINE_LIMIT: usize = 1000;

/// An SMTP service extension the upstream can advertise in its EHLO reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Extension {
    /// RFC 2920 command pipelining (on by default).
    Pipelining,
    /// RFC 1870 message size declaration (on by default, limit [`DEFAULT_SIZE_LIMIT`]).
    Size,
    /// RFC 6152 8-bit MIME transport (on by default).
    EightBitMime,
    /// RFC 2034 enhanced status codes in replies (on by default).
    EnhancedStatusCodes,
    /// Postfix XCLIENT with the attributes in [`XCLIENT_ATTRIBUTES`] (off by default).
    Xclient,
    /// RFC 6531 internationalized email (off by default).
    SmtpUtf8,
}

/// How the upstream drops a connection on purpose during DATA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disconnect {
    /// Close right after sending the 354 reply to DATA.
    AfterDataGoAhead,
    /// Close once at least this many bytes of message content have been received.
    MidMessage {
        /// Content bytes to receive before closing.
        after_bytes: usize,
    },
}

/// How the upstream behaves; start from `UpstreamBehaviour::default()` and chain changes.
#[derive(Clone, Debug)]
pub struct UpstreamBehaviour {
    hostname: String,
    extensions: Vec<Extension>,
    size_limit: u64,
    greeting_rejection: Option<String>,
    greeting_delay: Option<Duration>,
    sender_rejections: Vec<(String, String)>,
    recipient_rejections: Vec<(String, String)>,
    data_reply: Option<String>,
    data_delay: Option<Duration>,
    disconnect: Option<Disconnect>,
    stall_after: Option<usize>,
    error_limit: Option<usize>,
}

impl Default for UpstreamBehaviour {
    /// Hostname `upstream.test`; PIPELINING, SIZE, 8BITMIME and ENHANCEDSTATUSCODES
    /// advertised; every sender and recipient accepted; every message queued.
    fn default() -> Self {
        Self {
            hostname: "upstream.test".to_owned(),
            extensions: vec![
                Extension::Pipelining,
                Extension::Size,
                Extension::EightBitMime,
                Extension::EnhancedStatusCodes,
            ],
            size_limit: DEFAULT_SIZE_LIMIT,
            greeting_rejection: None,
            greeting_delay: None,
            sender_rejections: Vec::new(),
            recipient_rejections: Vec::new(),
            data_reply: None,
            data_delay: None,
            disconnect: None,
            stall_after: None,
            error_limit: None,
        }
    }
}

impl UpstreamBehaviour {
    /// The name the upstream gives in its greeting and EHLO reply.
    pub fn hostname(mut self, hostname: &str) -> Self {
        hostname.clone_into(&mut self.hostname);
        self
    }

    /// Advertises `extension` too.
    pub fn with(mut self, extension: Extension) -> Self {
        if !self.extensions.contains(&extension) {
            self.extensions.push(extension);
        }
        self
    }

    /// Stops advertising `extension` (and accepting what depends on it).
    pub fn without(mut self, extension: Extension) -> Self {
        self.extensions.retain(|&e| e != extension);
        self
    }

    /// The size advertised with SIZE; a `SIZE=` parameter above it gets 552.
    pub fn size_limit(mut self, bytes: u64) -> Self {
        self.size_limit = bytes;
        self
    }

    /// Greets with `reply` (e.g. `"554 5.3.2 No service"`) instead of 220; afterwards only
    /// QUIT is accepted (RFC 5321 3.1).
    pub fn reject_greeting(mut self, reply: &str) -> Self {
        self.greeting_rejection = Some(reply.to_owned());
        self
    }

    /// Waits this long after accepting a connection before greeting.
    pub fn greeting_delay(mut self, delay: Duration) -> Self {
        self.greeting_delay = Some(delay);
        self
    }

    /// Answers `MAIL FROM` with `reply` when the sender address contains `needle`
    /// (case-insensitive). `{sender}` in `reply` becomes the address.
    pub fn reject_senders(mut self, needle: &str, reply: &str) -> Self {
        self.sender_rejections
            .push((needle.to_ascii_lowercase(), reply.to_owned()));
        self
    }

    /// Answers `RCPT TO` with `reply` when the recipient address contains `needle`
    /// (case-insensitive). `{rcpt}` in `reply` becomes the address.
    pub fn reject_recipients(mut self, needle: &str, reply: &str) -> Self {
        self.recipient_rejections
            .push((needle.to_ascii_lowercase(), reply.to_owned()));
        self
    }

    /// Rejects every recipient containing `unknown` as Postfix rejects an unknown user:
    /// `550 5.1.1 <rcpt>: Recipient address rejected: User unknown`.
    pub fn reject_unknown_users(self) -> Self {
        self.reject_recipients(
            "unknown",
            "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown",
        )
    }

    /// The reply at the end of DATA (default `250 2.0.0 Ok: queued as N`, N counting the
    /// messages received from 1). `{n}` in `reply` becomes N.
    pub fn data_reply(mut self, reply: &str) -> Self {
        self.data_reply = Some(reply.to_owned());
        self
    }

    /// Waits this long after the final `.` before replying, as a slow server would.
    pub fn data_delay(mut self, delay: Duration) -> Self {
        self.data_delay = Some(delay);
        self
    }

    /// Closes the connection right after the 354 reply to DATA.
    pub fn close_after_data_go_ahead(mut self) -> Self {
        self.disconnect = Some(Disconnect::AfterDataGoAhead);
        self
    }

    /// Closes the connection once `after_bytes` bytes of message content have arrived.
    pub fn close_mid_message(mut self, after_bytes: usize) -> Self {
        self.disconnect = Some(Disconnect::MidMessage { after_bytes });
        self
    }

    /// Stops reading (but keeps the connection open) once `after_bytes` bytes of message
    /// content have arrived, as a server whose disk or filter hangs: the proxy's writes
    /// then block once the socket buffers are full.
    pub fn stall_mid_message(mut self, after_bytes: usize) -> Self {
        self.stall_after = Some(after_bytes);
        self
    }

    /// After `errors` 4xx/5xx replies in one session, answers the next command with
    /// `421 4.7.0 <host> Error: too many errors` and closes, as Postfix's smtpd does at
    /// its `smtpd_hard_error_limit`.
    pub fn close_after_errors(mut self, errors: usize) -> Self {
        self.error_limit = Some(errors);
        self
    }

    fn offers(&self, extension: Extension) -> bool {
        self.extensions.contains(&extension)
    }

    /// The EHLO keyword line for `extension`.
    fn ehlo_line(&self, extension: Extension) -> String {
        match extension {
            Extension::Pipelining => "PIPELINING".to_owned(),
            Extension::Size => format!("SIZE {}", self.size_limit),
            Extension::EightBitMime => "8BITMIME".to_owned(),
            Extension::EnhancedStatusCodes => "ENHANCEDSTATUSCODES".to_owned(),
            Extension::Xclient => format!("XCLIENT {XCLIENT_ATTRIBUTES}"),
            Extension::SmtpUtf8 => "SMTPUTF8".to_owned(),
        }
    }
}

/// What the upstream saw on one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionLog {
    /// The session's number, counting from 0 in connection order.
    pub id: usize,
    /// The connecting side's address (the proxy's, not the original client's).
    pub peer: SocketAddr,
    /// Every line received outside message content, without its line ending.
    pub commands: Vec<String>,
    /// The argument of the last HELO or EHLO.
    pub helo: Option<String>,
    /// The XCLIENT attributes received in this session, names upper case, values
    /// xtext-decoded; a later XCLIENT overrides an earlier one's value.
    pub xclient: BTreeMap<String, String>,
    /// Protocol mistakes the client made, in order; a correct proxy makes none.
    pub violations: Vec<String>,
    /// Whether the connection has ended.
    pub closed: bool,
}

/// One message that reached the end of DATA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The [`SessionLog::id`] of the session that sent it.
    pub session: usize,
    /// The HELO/EHLO argument in force.
    pub helo: Option<String>,
    /// The XCLIENT attributes in force (see [`SessionLog::xclient`]).
    pub xclient: BTreeMap<String, String>,
    /// The `MAIL FROM` address without angle brackets (empty for the null sender).
    pub sender: String,
    /// The `MAIL FROM` ESMTP parameters, as sent.
    pub mail_params: Vec<String>,
    /// The accepted recipients' addresses without angle brackets, in order.
    pub recipients: Vec<String>,
    /// The content exactly as received after the 354, dot-stuffing kept, up to and
    /// including the CRLF before the terminating `.CRLF`.
    pub raw: Vec<u8>,
    /// The content with dot-stuffing removed: the message as its author wrote it.
    pub body: Vec<u8>,
    /// The reply the upstream gave (or was about to give) after the final `.`.
    pub reply: String,
}

impl ReceivedMessage {
    /// Whether the upstream accepted the message (2xx reply).
    pub fn accepted(&self) -> bool {
        self.reply.starts_with('2')
    }

    /// The unfolded value of the first header field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers()
            .into_iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    /// The header fields in order as (name, unfolded value, leading blanks trimmed).
    pub fn headers(&self) -> Vec<(String, String)> {
        let text = String::from_utf8_lossy(&self.body);
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in text.split("\r\n") {
            if line.is_empty() {
                break;
            }
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = fields.last_mut() {
                    value.push_str(line);
                }
            } else if let Some((name, value)) = line.split_once(':') {
                fields.push((name.to_owned(), value.trim_start().to_owned()));
            }
        }
        fields
    }
}

/// A snapshot of everything the upstream has recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpstreamLog {
    /// Every session, in connection order.
    pub sessions: Vec<SessionLog>,
    /// Every message that reached the end of DATA, in order.
    pub messages: Vec<ReceivedMessage>,
}

#[derive(Debug)]
struct Shared {
    behaviour: UpstreamBehaviour,
    log: Mutex<UpstreamLog>,
    /// Bumped on every change so that waiters wake up.
    changes: watch::Sender<u64>,
}

impl Shared {
    fn update<R>(&self, change: impl FnOnce(&mut UpstreamLog) -> R) -> R {
        let result = change(&mut self.log.lock().unwrap_or_else(PoisonError::into_inner));
        self.changes.send_modify(|version| *version += 1);
        result
    }

    fn snapshot(&self) -> UpstreamLog {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A running recording upstream; stops (dropping every connection) when dropped.
#[derive(Debug)]
pub struct RecordingUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl RecordingUpstream {
    /// Starts listening on `127.0.0.1` with an OS-chosen port.
    ///
    /// # Errors
    /// When the listener cannot be bound.
    pub async fn start(behaviour: UpstreamBehaviour) -> anyhow::Result<Self> {
        let listener = if behaviour.stall_after.is_some() {
            // A small receive buffer (inherited by accepted connections), so that a
            // stalled session fills up soon whatever the machine's TCP buffer settings.
            let socket = TcpSocket::new_v4()?;
            socket.set_recv_buffer_size(16 * 1024)?;
            socket
                .bind((Ipv4Addr::LOCALHOST, 0).into())
                .context("binding the recording upstream")?;
            socket.listen(128)?
        } else {
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .context("binding the recording upstream")?
        };
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            behaviour,
            log: Mutex::new(UpstreamLog::default()),
            changes: watch::Sender::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(Self { addr, shared, task })
    }

    /// The address the proxy should forward to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections have been accepted.
    pub fn connections(&self) -> usize {
        self.shared.snapshot().sessions.len()
    }

    /// Everything recorded so far.
    pub fn log(&self) -> UpstreamLog {
        self.shared.snapshot()
    }

    /// Every session so far.
    pub fn sessions(&self) -> Vec<SessionLog> {
        self.shared.snapshot().sessions
    }

    /// Every message that reached the end of DATA so far, accepted or not.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        self.shared.snapshot().messages
    }

    /// Every session's protocol violations, each prefixed with `session N: `.
    pub fn violations(&self) -> Vec<String> {
        self.shared
            .snapshot()
            .sessions
            .iter()
            .flat_map(|session| {
                session
                    .violations
                    .iter()
                    .map(move |v| format!("session {}: {v}", session.id))
            })
            .collect()
    }

    /// Waits until `condition` holds for the log, and returns that log.
    ///
    /// # Errors
    /// When it does not hold within `timeout`; the error shows the log.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&UpstreamLog) -> bool,
    ) -> anyhow::Result<UpstreamLog> {
        let mut changes = self.shared.changes.subscribe();
        let wait = async {
            loop {
                changes.borrow_and_update();
                let log = self.shared.snapshot();
                if condition(&log) {
                    return log;
                }
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(log) => Ok(log),
            Err(_) => anyhow::bail!(
                "the upstream did not reach the expected state within {timeout:?}; log: {:#?}",
                self.shared.snapshot()
            ),
        }
    }

    /// Waits until at least `count` messages have reached the end of DATA.
    ///
    /// # Errors
    /// When they have not within `timeout`.
    pub async fn wait_for_messages(
        &self,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<ReceivedMessage>> {
        let log = self
            .wait_until(timeout, |log| log.messages.len() >= count)
            .await?;
        Ok(log.messages)
    }
}

impl Drop for RecordingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Owning the session tasks here means aborting this task aborts them all.
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let id = shared.update(|log| {
                    let id = log.sessions.len();
                    log.sessions.push(SessionLog {
                        id,
                        peer,
                        commands: Vec::new(),
                        helo: None,
                        xclient: BTreeMap::new(),
                        violations: Vec::new(),
                        closed: false,
                    });
                    id
                });
                let shared = Arc::clone(&shared);
                sessions.spawn(async move {
                    let mut session = Session::new(stream, id, Arc::clone(&shared));
                    // An I/O error means the client went away; the log says how far it got.
                    let _ = session.run().await;
                    shared.update(|log| log.sessions[id].closed = true);
                });
            }
            Some(_) = sessions.join_next() => {}
        }
    }
}

/// Where the session is in the SMTP dialogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Greeted (or after XCLIENT): HELO/EHLO is needed before mail.
    NeedHelo,
    /// Ready for MAIL.
    Ready,
    /// MAIL accepted, no recipient yet.
    Mail,
    /// At least one recipient accepted.
    Rcpt,
}

/// What to do after handling a command.
enum Next {
    Continue,
    Close,
}

struct Envelope {
    sender: String,
    params: Vec<String>,
    recipients: Vec<String>,
}

struct Session {
    stream: TcpStream,
    input: Vec<u8>,
    eof: bool,
    id: usize,
    shared: Arc<Shared>,
    state: State,
    esmtp: bool,
    /// Whether an EHLO reply has offered XCLIENT in this session: XCLIENT resets the
    /// session, so a second XCLIENT may follow the first without a new EHLO.
    xclient_offered: bool,
    greeting_rejected: bool,
    helo: Option<String>,
    envelope: Option<Envelope>,
    /// 4xx/5xx replies sent so far.
    errors: usize,
}

impl Session {
    fn new(stream: TcpStream, id: usize, shared: Arc<Shared>) -> Self {
        Self {
            stream,
            input: Vec::new(),
            eof: false,
            id,
            shared,
            state: State::NeedHelo,
            esmtp: false,
            xclient_offered: false,
            greeting_rejected: false,
            helo: None,
            envelope: None,
            errors: 0,
        }
    }

    fn behaviour(&self) -> &UpstreamBehaviour {
        &self.shared.behaviour
    }

    fn violation(&self, what: String) {
        let id = self.id;
        self.shared
            .update(|log| log.sessions[id].violations.push(what));
    }

    fn offers(&self, extension: Extension) -> bool {
        self.esmtp && self.behaviour().offers(extension)
    }

    /// A reply in this server's own words, with the enhanced code only when advertised.
    fn reply(&self, code: u16, enhanced: &str, text: &str) -> String {
        if self.behaviour().offers(Extension::EnhancedStatusCodes) {
            format!("{code} {enhanced} {text}")
        } else {
            format!("{code} {text}")
        }
    }

    async fn send(&mut self, reply: &str) -> io::Result<()> {
        if reply.starts_with(['4', '5']) {
            self.errors += 1;
        }
        let mut wire = reply.replace('\n', "\r\n");
        wire.push_str("\r\n");
        self.stream.write_all(wire.as_bytes()).await
    }

    /// The next line including its LF; at end of input, whatever partial line is left
    /// (without LF), then `None`.
    async fn read_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(end) = self.input.iter().position(|&b| b == b'\n') {
                return Ok(Some(self.input.drain(..=end).collect()));
            }
            if self.eof {
                return Ok((!self.input.is_empty()).then(|| std::mem::take(&mut self.input)));
            }
            let mut chunk = [0u8; 16 * 1024];
            let count = self.stream.read(&mut chunk).await?;
            self.eof = count == 0;
            self.input.extend_from_slice(&chunk[..count]);
        }
    }

    /// Whether the client has sent anything beyond what was handled, counting bytes
    /// already waiting in the socket: a client must not have, when it was meant to wait
    /// for our reply.
    fn has_pending_input(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        while !self.eof {
            match self.stream.try_read(&mut chunk) {
                Ok(0) => self.eof = true,
                Ok(count) => self.input.extend_from_slice(&chunk[..count]),
                Err(_) => break,
            }
        }
        !self.input.is_empty()
    }

    async fn run(&mut self) -> io::Result<()> {
        if let Some(delay) = self.behaviour().greeting_delay {
            tokio::time::sleep(delay).await;
        }
        let rejection = self.behaviour().greeting_rejection.clone();
        self.greeting_rejected = rejection.is_some();
        let greeting = rejection.unwrap_or_else(|| {
            format!(
                "220 {} ESMTP relaygate test upstream",
                self.behaviour().hostname
            )
        });
        self.send(&greeting).await?;
        while let Some(line) = self.read_line().await? {
            if let Next::Close = self.command(line).await? {
                break;
            }
        }
        Ok(())
    }

    async fn command(&mut self, raw: Vec<u8>) -> io::Result<Next> {
        let Some(line) = raw.strip_suffix(b"\n") else {
            self.violation(format!(
                "connection closed in the middle of a command line: {:?}",
                String::from_utf8_lossy(&raw)
            ));
            return Ok(Next::Close);
        };
        let text = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line)).into_owned();
        let id = self.id;
        self.shared
            .update(|log| log.sessions[id].commands.push(text.clone()));

        if !line.ends_with(b"\r") {
            self.violation(format!("command line ends in a bare LF: {text:?}"));
            let reply = self.reply(500, "5.5.2", "Error: bare <LF> received");
            self.send(&reply).await?;
            return Ok(Next::Continue);
        }
        if text.contains('\r') || text.contains('\0') {
            self.violation(format!("bare CR or NUL in a command line: {text:?}"));
            let reply = self.reply(500, "5.5.2", "Error: bad syntax");
            self.send(&reply).await?;
            return Ok(Next::Continue);
        }

        let (verb, args) = text.split_once(' ').unwrap_or((&text, ""));
        let verb = verb.to_ascii_uppercase();
        let limit = match verb.as_str() {
            "MAIL" | "RCPT" | "XCLIENT" => EXTENDED_COMMAND_LINE_LIMIT,
            _ => COMMAND_LINE_LIMIT,
        };
        if raw.len() > limit {
            self.violation(format!(
                "{verb} line of {} octets exceeds {limit}",
                raw.len()
            ));
        }
        // RFC 2920 3.1: these end a group; without PIPELINING every command does.
        let ends_group = matches!(
            verb.as_str(),
            "EHLO" | "HELO" | "DATA" | "XCLIENT" | "STARTTLS" | "QUIT" | "NOOP"
        );
        if (ends_group || !self.offers(Extension::Pipelining)) && self.has_pending_input() {
            self.violation(format!(
                "input sent after {verb} before its reply: {:?}",
                String::from_utf8_lossy(&self.input)
            ));
        }

        if self
            .behaviour()
            .error_limit
            .is_some_and(|limit| self.errors >= limit)
        {
            let text = format!("{} Error: too many errors", self.behaviour().hostname);
            let reply = self.reply(421, "4.7.0", &text);
            self.send(&reply).await?;
            return Ok(Next::Close);
        }

        if self.greeting_rejected && verb != "QUIT" {
            self.violation(format!("{verb} after a rejected greeting"));
            let reply = self.reply(503, "5.5.1", "Error: bad sequence of commands");
            self.send(&reply).await?;
            return Ok(Next::Continue);
        }

        match verb.as_str() {
            "EHLO" | "HELO" => self.helo(&verb, args).await?,
            "XCLIENT" => self.xclient(args).await?,
            "MAIL" => self.mail(args).await?,
            "RCPT" => self.rcpt(args).await?,
            "DATA" => return self.data(args).await,
            "RSET" => {
                if self.state != State::NeedHelo {
                    self.state = State::Ready;
                }
                self.envelope = None;
                let reply = self.reply(250, "2.0.0", "Ok");
                self.send(&reply).await?;
            }
            "NOOP" => {
                let reply = self.reply(250, "2.0.0", "Ok");
                self.send(&reply).await?;
            }
            "QUIT" => {
                let reply = self.reply(221, "2.0.0", "Bye");
                self.send(&reply).await?;
                return Ok(Next::Close);
            }
            "VRFY" => {
                let reply = self.reply(502, "5.5.1", "VRFY command is disabled");
                self.send(&reply).await?;
            }
            _ => {
                self.violation(format!("command not offered or not recognized: {text:?}"));
                let reply = self.reply(502, "5.5.2", "Error: command not recognized");
                self.send(&reply).await?;
            }
        }
        Ok(Next::Continue)
    }

    async fn bad_sequence(&mut self, verb: &str) -> io::Result<()> {
        self.violation(format!("{verb} out of sequence (state {:?})", self.state));
        let reply = self.reply(503, "5.5.1", "Error: bad sequence of commands");
        self.send(&reply).await
    }

    async fn syntax_error(&mut self, what: String) -> io::Result<()> {
        let reply = self.reply(501, "5.5.4", &format!("Syntax: {what}"));
        self.violation(what);
        self.send(&reply).await
    }

    async fn helo(&mut self, verb: &str, args: &str) -> io::Result<()> {
        let name = args.trim();
        if name.is_empty() || name.contains(' ') {
            return self
                .syntax_error(format!("{verb} needs one argument, got {args:?}"))
                .await;
        }
        self.helo = Some(name.to_owned());
        let id = self.id;
        let helo = self.helo.clone();
        self.shared.update(|log| log.sessions[id].helo = helo);
        self.esmtp = verb == "EHLO";
        self.xclient_offered |= self.offers(Extension::Xclient);
        self.state = State::Ready;
        self.envelope = None;
        let behaviour = self.behaviour();
        let mut lines = vec![behaviour.hostname.clone()];
        if self.esmtp {
            lines.extend(behaviour.extensions.iter().map(|&e| behaviour.ehlo_line(e)));
        }
        let last = lines.len() - 1;
        let reply: Vec<String> = lines
            .iter()
            .enumerate()
            .map(|(i, line)| format!("250{}{line}", if i == last { ' ' } else { '-' }))
            .collect();
        self.send(&reply.join("\n")).await
    }

    async fn xclient(&mut self, args: &str) -> io::Result<()> {
        if !self.xclient_offered {
            self.violation("XCLIENT sent but not offered".to_owned());
            let reply = self.reply(502, "5.5.1", "Error: command not implemented");
            return self.send(&reply).await;
        }
        if self.envelope.is_some() {
            self.violation("XCLIENT inside a mail transaction".to_owned());
            let reply = self.reply(503, "5.5.1", "Error: MAIL transaction in progress");
            return self.send(&reply).await;
        }
        let mut attributes = Vec::new();
        for pair in args.split(' ').filter(|p| !p.is_empty()) {
            let Some((name, value)) = pair.split_once('=') else {
                return self
                    .syntax_error(format!("XCLIENT attribute without '=': {pair:?}"))
                    .await;
            };
            let name = name.to_ascii_uppercase();
            if !XCLIENT_ATTRIBUTES.split(' ').any(|offered| offered == name) {
                self.violation(format!("XCLIENT attribute not offered: {name}"));
                let reply = self.reply(501, "5.5.4", "Bad XCLIENT attribute name");
                return self.send(&reply).await;
            }
            let Some(value) = xtext_decode(value) else {
                return self
                    .syntax_error(format!("XCLIENT {name} is not valid xtext: {value:?}"))
                    .await;
            };
            attributes.push((name, value));
        }
        if attributes.is_empty() {
            return self
                .syntax_error("XCLIENT without attributes".to_owned())
                .await;
        }
        let id = self.id;
        self.shared
            .update(|log| log.sessions[id].xclient.extend(attributes));
        // Postfix restarts the session: the client has to send EHLO again.
        self.state = State::NeedHelo;
        self.esmtp = false;
        self.helo = None;
        let greeting = format!(
            "220 {} ESMTP relaygate test upstream",
            self.behaviour().hostname
        );
        self.send(&greeting).await
    }

    async fn mail(&mut self, args: &str) -> io::Result<()> {
        if self.state != State::Ready {
            return self.bad_sequence("MAIL").await;
        }
        let Some((sender, params)) = parse_path(args, "FROM:") else {
            return self.syntax_error(format!("bad MAIL FROM: {args:?}")).await;
        };
        for param in &params {
            let (keyword, value) = param.split_once('=').unwrap_or((param, ""));
            let keyword = keyword.to_ascii_uppercase();
            let supported = match keyword.as_str() {
                "SIZE" => self.offers(Extension::Size),
                "BODY" => {
                    value.eq_ignore_ascii_case("7BIT")
                        || (value.eq_ignore_ascii_case("8BITMIME")
                            && self.offers(Extension::EightBitMime))
                }
                "SMTPUTF8" => self.offers(Extension::SmtpUtf8) && value.is_empty(),
                _ => false,
            };
            if !supported {
                self.violation(format!("MAIL parameter not offered: {param}"));
                let reply = self.reply(555, "5.5.4", "Unsupported option");
                return self.send(&reply).await;
            }
            if keyword == "SIZE" {
                let Ok(size) = value.parse::<u64>() else {
                    return self
                        .syntax_error(format!("bad SIZE value: {value:?}"))
                        .await;
                };
                if size > self.behaviour().size_limit {
                    let reply = self.reply(552, "5.3.4", "Message size exceeds fixed limit");
                    return self.send(&reply).await;
                }
            }
        }
        let lower = sender.to_ascii_lowercase();
        if let Some((_, reply)) = self
            .behaviour()
            .sender_rejections
            .iter()
            .find(|(needle, _)| lower.contains(needle.as_str()))
        {
            let reply = reply.replace("{sender}", &sender);
            return self.send(&reply).await;
        }
        self.envelope = Some(Envelope {
            sender,
            params,
            recipients: Vec::new(),
        });
        self.state = State::Mail;
        let reply = self.reply(250, "2.1.0", "Ok");
        self.send(&reply).await
    }

    async fn rcpt(&mut self, args: &str) -> io::Result<()> {
        if !matches!(self.state, State::Mail | State::Rcpt) {
            return self.bad_sequence("RCPT").await;
        }
        let Some((rcpt, params)) = parse_path(args, "TO:") else {
            return self.syntax_error(format!("bad RCPT TO: {args:?}")).await;
        };
        if rcpt.is_empty() {
            return self.syntax_error("empty recipient <>".to_owned()).await;
        }
        if let Some(param) = params.first() {
            self.violation(format!("RCPT parameter not offered: {param}"));
            let reply = self.reply(555, "5.5.4", "Unsupported option");
            return self.send(&reply).await;
        }
        let lower = rcpt.to_ascii_lowercase();
        if let Some((_, reply)) = self
            .behaviour()
            .recipient_rejections
            .iter()
            .find(|(needle, _)| lower.contains(needle.as_str()))
        {
            let reply = reply.replace("{rcpt}", &rcpt);
            return self.send(&reply).await;
        }
        if let Some(envelope) = &mut self.envelope {
            envelope.recipients.push(rcpt);
        }
        self.state = State::Rcpt;
        let reply = self.reply(250, "2.1.5", "Ok");
        self.send(&reply).await
    }

    async fn data(&mut self, args: &str) -> io::Result<Next> {
        if !args.is_empty() {
            self.syntax_error(format!("DATA takes no argument, got {args:?}"))
                .await?;
            return Ok(Next::Continue);
        }
        match self.state {
            State::Rcpt => {}
            // With pipelining a client sends DATA before it learns that every RCPT failed.
            State::Mail => {
                let reply = self.reply(554, "5.5.1", "Error: no valid recipients");
                self.send(&reply).await?;
                return Ok(Next::Continue);
            }
            State::NeedHelo | State::Ready => {
                self.bad_sequence("DATA").await?;
                return Ok(Next::Continue);
            }
        }
        self.send("354 End data with <CR><LF>.<CR><LF>").await?;
        if self.behaviour().disconnect == Some(Disconnect::AfterDataGoAhead) {
            return Ok(Next::Close);
        }
        let close_after = match self.behaviour().disconnect {
            Some(Disconnect::MidMessage { after_bytes }) => Some(after_bytes),
            _ => None,
        };

        let mut raw = Vec::new();
        let mut body = Vec::new();
        loop {
            let Some(line) = self.read_line().await? else {
                self.violation("connection closed in the middle of message content".to_owned());
                return Ok(Next::Close);
            };
            if line == b".\r\n" {
                break;
            }
            self.check_content_line(&line);
            raw.extend_from_slice(&line);
            body.extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
            if close_after.is_some_and(|limit| raw.len() >= limit) {
                return Ok(Next::Close);
            }
            if self
                .behaviour()
                .stall_after
                .is_some_and(|limit| raw.len() >= limit)
            {
                // Hold the connection, never reading again, until the upstream is dropped.
                std::future::pending::<()>().await;
            }
            if !line.ends_with(b"\n") {
                self.violation("connection closed in the middle of message content".to_owned());
                return Ok(Next::Close);
            }
        }

        if let Some(delay) = self.behaviour().data_delay {
            tokio::time::sleep(delay).await;
        }
        let envelope = self.envelope.take().unwrap_or(Envelope {
            sender: String::new(),
            params: Vec::new(),
            recipients: Vec::new(),
        });
        self.state = State::Ready;
        let id = self.id;
        let helo = self.helo.clone();
        let data_reply = self.behaviour().data_reply.clone();
        let enhanced = self.behaviour().offers(Extension::EnhancedStatusCodes);
        let reply = self.shared.update(|log| {
            let n = log.messages.len() + 1;
            let reply = match data_reply {
                Some(reply) => reply.replace("{n}", &n.to_string()),
                None if enhanced => format!("250 2.0.0 Ok: queued as {n}"),
                None => format!("250 Ok: queued as {n}"),
            };
            log.messages.push(ReceivedMessage {
                session: id,
                helo,
                xclient: log.sessions[id].xclient.clone(),
                sender: envelope.sender,
                mail_params: envelope.params,
                recipients: envelope.recipients,
                raw,
                body,
                reply: reply.clone(),
            });
            reply
        });
        self.send(&reply).await?;
        Ok(Next::Continue)
    }

    /// Records what no client should send inside message content: it could make another
    /// server see a different message boundary than the proxy did.
    fn check_content_line(&self, line: &[u8]) {
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        if line.ends_with(b"\n") && !content.ends_with(b"\r") {
            self.violation(format!(
                "bare LF in message content: {:?}",
                String::from_utf8_lossy(line)
            ));
        }
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.contains(&b'\r') {
            self.violation(format!(
                "bare CR in message content: {:?}",
                String::from_utf8_lossy(line)
            ));
        }
        if content.contains(&0) {
            self.violation("NUL byte in message content".to_owned());
        }
        if line.len() > TEXT_LINE_LIMIT {
            self.violation(format!(
                "message content line of {} octets exceeds {TEXT_LINE_LIMIT}",
                line.len()
            ));
        }
    }
}

/// Parses `FROM:<path> PARAM...` (the keyword given with its colon, case-insensitive; a
/// space after the colon tolerated as Postfix does) into the path without brackets and
/// the parameters.
fn parse_path(args: &str, keyword: &str) -> Option<(String, Vec<String>)> {
    let head = args.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = args[keyword.len()..].trim_start_matches(' ');
    let rest = rest.strip_prefix('<')?;
    let (path, params) = rest.split_once('>')?;
    if !(params.is_empty() || params.starts_with(' ')) {
        return None;
    }
    let params = params
        .split(' ')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    Some((path.to_owned(), params))
}

/// Decodes RFC 3461 xtext (`+HH` for a byte); `None` when malformed.
fn xtext_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => {
                let hex = value.get(index + 1..index + 3)?;
                if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F')) {
                    return None;
                }
                decoded.push(u8::from_str_radix(hex, 16).ok()?);
                index += 3;
            }
            byte @ b'!'..=b'~' if byte != b'=' => {
                decoded.push(byte);
                index += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(decoded).ok()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::client::SmtpClient;

    const WAIT: Duration = Duration::from_secs(5);

    async fn greeted(upstream: &RecordingUpstream) -> SmtpClient {
        let mut client = SmtpClient::connect(upstream.addr()).await.unwrap();
        let greeting = client.read_reply().await.unwrap();
        assert_eq!(greeting.code, 220, "{greeting}");
        client
    }

    #[test]
    fn xtext() {
        assert_eq!(xtext_decode("a+2Bb+3Dc").as_deref(), Some("a+b=c"));
        assert_eq!(
            xtext_decode("[UNAVAILABLE]").as_deref(),
            Some("[UNAVAILABLE]")
        );
        assert_eq!(xtext_decode("+2"), None);
        assert_eq!(xtext_decode("+2b"), None);
        assert_eq!(xtext_decode("a=b"), None);
    }

    #[test]
    fn paths() {
        assert_eq!(
            parse_path("FROM:<a@b> SIZE=10 BODY=8BITMIME", "FROM:"),
            Some((
                "a@b".to_owned(),
                vec!["SIZE=10".to_owned(), "BODY=8BITMIME".to_owned()]
            ))
        );
        assert_eq!(
            parse_path("from: <>", "FROM:"),
            Some((String::new(), vec![]))
        );
        assert_eq!(parse_path("TO:a@b", "TO:"), None);
        assert_eq!(parse_path("TO:<a@b>x", "TO:"), None);
        assert_eq!(parse_path("FROM<a@b>", "FROM:"), None);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn records_transactions_exactly_as_on_the_wire() {
        let upstream =
            RecordingUpstream::start(UpstreamBehaviour::default().reject_unknown_users())
                .await
                .unwrap();
        let mut client = greeted(&upstream).await;
        let ehlo = client.ehlo("proxy.test").await.unwrap();
        assert_eq!(ehlo.lines[0], "upstream.test");
        for keyword in ["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"] {
            assert!(ehlo.has_extension(keyword), "{ehlo}");
        }
        assert_eq!(ehlo.extension("SIZE"), Some("10240000"));
        assert!(!ehlo.has_extension("XCLIENT"));

        let content = b"Subject: hi\r\n  folded\r\n\r\n.leading dot\r\n..two\r\nend\r\n";
        let outcome = client
            .send_message(
                "a@example.org",
                &["b@example.com", "unknown@example.com", "c@example.com"],
                content,
            )
            .await
            .unwrap();
        assert!(outcome.accepted(), "{outcome:?}");
        assert_eq!(
            outcome.rcpts[1].to_string(),
            "550 5.1.1 <unknown@example.com>: Recipient address rejected: User unknown"
        );
        assert_eq!(
            outcome.end.unwrap().to_string(),
            "250 2.0.0 Ok: queued as 1"
        );

        // A second transaction on the same connection, pipelined, with the null sender.
        let replies = client
            .pipeline(&[
                "RSET",
                "MAIL FROM:<> SIZE=20 BODY=8BITMIME",
                "RCPT TO:<d@example.com>",
                "DATA",
            ])
            .await
            .unwrap();
        let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
        assert_eq!(codes, [250, 250, 250, 354]);
        let end = client.send_content(b"x").await.unwrap();
        assert_eq!(end.code, 250);
        assert_eq!(client.cmd("NOOP").await.unwrap().code, 250);
        client.quit().await.unwrap();

        let log = upstream
            .wait_until(WAIT, |log| log.sessions[0].closed)
            .await
            .unwrap();
        assert_eq!(upstream.connections(), 1);
        let [first, second] = log.messages.as_slice() else {
            panic!("{:?}", log.messages);
        };
        assert_eq!(first.sender, "a@example.org");
        assert_eq!(first.recipients, ["b@example.com", "c@example.com"]);
        assert_eq!(
            first.raw,
            b"Subject: hi\r\n  folded\r\n\r\n..leading dot\r\n...two\r\nend\r\n"
        );
        assert_eq!(first.body, content);
        assert_eq!(first.header("subject").as_deref(), Some("hi  folded"));
        assert!(first.accepted());
        assert_eq!(first.helo.as_deref(), Some("proxy.test"));
        assert_eq!(second.sender, "");
        assert_eq!(second.mail_params, ["SIZE=20", "BODY=8BITMIME"]);
        assert_eq!(second.raw, b"x\r\n");
        assert_eq!(second.reply, "250 2.0.0 Ok: queued as 2");

        let session = &log.sessions[0];
        assert_eq!(session.commands[0], "EHLO proxy.test");
        assert_eq!(session.commands.last().unwrap(), "QUIT");
        assert!(session.violations.is_empty(), "{:?}", session.violations);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn catches_a_sloppy_client() {
        let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
            .await
            .unwrap();
        let mut client = greeted(&upstream).await;

        assert_eq!(client.cmd("MAIL FROM:<a@b>").await.unwrap().code, 503);
        client.send_raw(b"EHLO lf-only\n").await.unwrap();
        assert_eq!(client.read_reply().await.unwrap().code, 500);
        client.ehlo("proxy.test").await.unwrap();
        assert_eq!(
            client.cmd("MAIL FROM:<a@b> AUTH=<>").await.unwrap().code,
            555
        );
        assert_eq!(
            client.cmd("MAIL FROM:<a@b> SMTPUTF8").await.unwrap().code,
            555
        );
        assert_eq!(
            client
                .cmd("MAIL FROM:<a@b> SIZE=99999999")
                .await
                .unwrap()
                .code,
            552
        );
        assert_eq!(client.cmd("XCLIENT ADDR=1.2.3.4").await.unwrap().code, 502);
        assert_eq!(client.cmd("STARTTLS").await.unwrap().code, 502);
        client.cmd_expect("MAIL FROM:<a@b>", 250).await.unwrap();
        client.cmd_expect("RCPT TO:<c@d>", 250).await.unwrap();

        // Content sent before the 354, and lines that would end the message elsewhere.
        client
            .send_raw(
                b"DATA\r\nSubject: smuggle\r\n\r\nhi\n.\nMAIL FROM:<evil@x>\r\nbare\rcr\r\n.\r\n",
            )
            .await
            .unwrap();
        assert_eq!(client.read_reply().await.unwrap().code, 354);
        assert_eq!(client.read_reply().await.unwrap().code, 250);

        let messages = upstream.wait_for_messages(1, WAIT).await.unwrap();
        assert_eq!(
            messages[0].raw,
            b"Subject: smuggle\r\n\r\nhi\n.\nMAIL FROM:<evil@x>\r\nbare\rcr\r\n"
        );
        let violations = upstream.violations().join("\n");
        for expected in [
            "MAIL out of sequence",
            "command line ends in a bare LF",
            "MAIL parameter not offered: AUTH=<>",
            "MAIL parameter not offered: SMTPUTF8",
            "XCLIENT sent but not offered",
            "command not offered or not recognized: \"STARTTLS\"",
            "input sent after DATA before its reply",
            "bare LF in message content: \"hi\\n\"",
            "bare LF in message content: \".\\n\"",
            "bare CR in message content",
        ] {
            assert!(
                violations.contains(expected),
                "missing {expected:?} in:\n{violations}"
            );
        }
        assert!(!violations.contains("SIZE"), "{violations}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn xclient_restarts_the_session() {
        let upstream = RecordingUpstream::start(
            UpstreamBehaviour::default()
                .hostname("mx.upstream.test")
                .with(Extension::Xclient)
                .with(Extension::SmtpUtf8),
        )
        .await
        .unwrap();
        let mut client = greeted(&upstream).await;
        let ehlo = client.ehlo("proxy.test").await.unwrap();
        assert_eq!(ehlo.extension("XCLIENT"), Some(XCLIENT_ATTRIBUTES));
        assert!(ehlo.has_extension("SMTPUTF8"));

        let reply = client
            .cmd("XCLIENT ADDR=127.0.0.7 NAME=gw.example.com HELO=gw+2Bhelo")
            .await
            .unwrap();
        assert_eq!(
            reply.to_string(),
            "220 mx.upstream.test ESMTP relaygate test upstream"
        );
        let reply = client
            .cmd("XCLIENT LOGIN=[UNAVAILABLE] PORT=4711")
            .await
            .unwrap();
        assert_eq!(reply.code, 220);
        assert_eq!(
            client.cmd("XCLIENT DESTADDR=1.2.3.4").await.unwrap().code,
            501
        );
        client.ehlo("proxy.test").await.unwrap();
        let outcome = client
            .send_message("ü@example.org", &["b@example.com"], b"hi\r\n")
            .await
            .unwrap();
        assert!(outcome.accepted());

        let message = &upstream.wait_for_messages(1, WAIT).await.unwrap()[0];
        let expected: BTreeMap<String, String> = [
            ("ADDR", "127.0.0.7"),
            ("HELO", "gw+helo"),
            ("LOGIN", "[UNAVAILABLE]"),
            ("NAME", "gw.example.com"),
            ("PORT", "4711"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(message.xclient, expected);
        assert_eq!(message.sender, "ü@example.org");
        assert_eq!(
            upstream.violations(),
            ["session 0: XCLIENT attribute not offered: DESTADDR"]
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn xclient_needs_a_new_ehlo() {
        let upstream =
            RecordingUpstream::start(UpstreamBehaviour::default().with(Extension::Xclient))
                .await
                .unwrap();
        let mut client = greeted(&upstream).await;
        client.ehlo("proxy.test").await.unwrap();
        client
            .cmd_expect("XCLIENT ADDR=127.0.0.9", 220)
            .await
            .unwrap();
        assert_eq!(client.cmd("MAIL FROM:<a@b>").await.unwrap().code, 503);
        assert_eq!(
            upstream.violations().len(),
            1,
            "{:?}",
            upstream.violations()
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn rejects_and_disconnects_on_request() {
        let upstream = RecordingUpstream::start(
            UpstreamBehaviour::default().reject_greeting("554 5.3.2 upstream.test No service"),
        )
        .await
        .unwrap();
        let mut client = SmtpClient::connect(upstream.addr()).await.unwrap();
        assert_eq!(client.read_reply().await.unwrap().code, 554);
        assert_eq!(client.cmd("EHLO x").await.unwrap().code, 503);
        client.quit().await.unwrap();

        let upstream = RecordingUpstream::start(
            UpstreamBehaviour::default()
                .reject_senders("spam", "550 5.7.1 <{sender}>: go away")
                .data_reply("451 4.3.0 try again ({n})"),
        )
        .await
        .unwrap();
        let mut client = greeted(&upstream).await;
        client.ehlo("proxy.test").await.unwrap();
        let outcome = client
            .send_message("spam@x", &["b@y"], b"hi")
            .await
            .unwrap();
        assert_eq!(outcome.mail.to_string(), "550 5.7.1 <spam@x>: go away");
        let outcome = client.send_message("ok@x", &["b@y"], b"hi").await.unwrap();
        assert_eq!(outcome.end.unwrap().to_string(), "451 4.3.0 try again (1)");
        assert!(!upstream.messages()[0].accepted());

        let upstream =
            RecordingUpstream::start(UpstreamBehaviour::default().close_after_data_go_ahead())
                .await
                .unwrap();
        let mut client = greeted(&upstream).await;
        client.ehlo("proxy.test").await.unwrap();
        client.cmd_expect("MAIL FROM:<a@b>", 250).await.unwrap();
        client.cmd_expect("RCPT TO:<c@d>", 250).await.unwrap();
        client.cmd_expect("DATA", 354).await.unwrap();
        assert!(client.read_to_close().await.unwrap().is_empty());

        let upstream = RecordingUpstream::start(UpstreamBehaviour::default().close_mid_message(10))
            .await
            .unwrap();
        let mut client = greeted(&upstream).await;
        client.ehlo("proxy.test").await.unwrap();
        client.cmd_expect("MAIL FROM:<a@b>", 250).await.unwrap();
        client.cmd_expect("RCPT TO:<c@d>", 250).await.unwrap();
        client.cmd_expect("DATA", 354).await.unwrap();
        client.send_raw(b"0123456789\r\nmore\r\n").await.unwrap();
        // Closing with unread input may reset the connection instead of ending it cleanly.
        if let Ok(rest) = client.read_to_close().await {
            assert!(rest.is_empty());
        }
        let log = upstream
            .wait_until(WAIT, |log| log.sessions[0].closed)
            .await
            .unwrap();
        assert!(log.messages.is_empty());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn delays_the_final_reply_and_stops_on_drop() {
        let upstream = RecordingUpstream::start(
            UpstreamBehaviour::default()
                .data_delay(Duration::from_millis(300))
                .without(Extension::EnhancedStatusCodes)
                .without(Extension::Pipelining),
        )
        .await
        .unwrap();
        let addr = upstream.addr();
        let mut client = greeted(&upstream).await;
        let ehlo = client.ehlo("proxy.test").await.unwrap();
        assert!(!ehlo.has_extension("PIPELINING"));
        let started = Instant::now();
        let outcome = client
            .send_message("a@b", &["c@d"], b"hi\r\n")
            .await
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(outcome.end.unwrap().to_string(), "250 Ok: queued as 1");

        client.send_raw(b"NOOP\r\nNOOP\r\n").await.unwrap();
        client.read_reply().await.unwrap();
        client.read_reply().await.unwrap();
        assert!(
            upstream.violations()[0].contains("input sent after NOOP"),
            "{:?}",
            upstream.violations()
        );

        drop(upstream);
        assert!(client.read_to_close().await.is_ok());
        assert!(SmtpClient::connect(addr).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn plays_several_client_addresses() {
        let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
            .await
            .unwrap();
        for last in [7, 8] {
            let local: std::net::IpAddr = format!("127.0.0.{last}").parse().unwrap();
            let mut client = SmtpClient::connect_from(local, upstream.addr())
                .await
                .unwrap();
            assert_eq!(client.local_addr().unwrap().ip(), local);
            client.read_reply().await.unwrap();
            client.quit().await.unwrap();
        }
        let peers: Vec<String> = upstream
            .wait_until(WAIT, |log| log.sessions.iter().all(|s| s.closed))
            .await
            .unwrap()
            .sessions
            .iter()
            .map(|s| s.peer.ip().to_string())
            .collect();
        assert_eq!(peers, ["127.0.0.7", "127.0.0.8"]);
    }
}
