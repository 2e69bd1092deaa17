//! The client side of the wire: buffered reads of command lines and message
//! data with length limits and timeouts, and buffered replies flushed only
//! when the client has nothing more pipelined, each flush within a write
//! deadline (a client that never reads cannot hold its session open).
//!
//! Message data is framed here and checked line by line by
//! [`DataChecker`], which lives with the rest of the I/O-free SMTP rules.

use crate::lazy_timeout::LazyTimeout;
use crate::smtp::data::{DataChecker, MAX_TEXT_LINE};
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest command line accepted, CRLF included. RFC 5321 sets 512 and lets
/// extensions raise it; AUTH initial responses need far more (RFC 4954).
pub const MAX_COMMAND_LINE: usize = 12_288;
/// How long a flush may take unless [`ClientConnection::with_write_timeout`]
/// says otherwise: the default `command_timeout`.
const DEFAULT_WRITE_TIMEOUT: Duration = crate::config::DEFAULT_COMMAND_TIMEOUT;
/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;

/// What reading a command line gave.
#[derive(Debug, PartialEq, Eq)]
pub enum CommandLine {
    /// A line without its line ending.
    Line(Vec<u8>),
    /// A line over [`MAX_COMMAND_LINE`]; it has been skipped.
    TooLong,
}

/// Why the connection cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The client closed the connection.
    #[error("client closed the connection")]
    Closed,
    /// The client sent nothing for too long.
    #[error("client timed out")]
    Timeout,
    /// The client did not take our replies within the write deadline (it
    /// stopped reading); nothing more can be written to it.
    #[error("client did not read its replies in time")]
    WriteTimeout,
    /// A socket error.
    #[error("client I/O error: {0}")]
    Io(#[from] io::Error),
}

/// A buffered client connection.
pub struct ClientConnection<S> {
    stream: S,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    out: Vec<u8>,
    /// One timer for every read and write: they never overlap.
    timeout: LazyTimeout,
    /// How long one flush of queued replies may take.
    write_timeout: Duration,
    /// A write timed out part-way: what the client got is unknown, so
    /// nothing more may be written.
    write_failed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ClientConnection<S> {
    /// Wrap a connected stream.
    pub fn new(stream: S) -> Self {
        Self::with_input(stream, &[])
    }

    /// Wrap a connected stream whose first bytes were already read (after a
    /// PROXY protocol header).
    pub fn with_input(stream: S, input: &[u8]) -> Self {
        let mut buf = vec![0; READ_CHUNK.max(input.len())];
        buf[..input.len()].copy_from_slice(input);
        Self {
            stream,
            buf,
            start: 0,
            end: input.len(),
            out: Vec::with_capacity(1024),
            timeout: LazyTimeout::new(),
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            write_failed: false,
        }
    }

    /// Let every flush take at most `limit` (the session's command timeout).
    pub fn with_write_timeout(mut self, limit: Duration) -> Self {
        self.write_timeout = limit;
        self
    }

    /// The underlying stream (to upgrade it to TLS in place).
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Drop every byte received but not yet read, returning how many there
    /// were: after STARTTLS's 220, anything the client pipelined in clear
    /// must not be taken as coming from inside TLS (CVE-2011-0411).
    pub fn discard_input(&mut self) -> usize {
        let discarded = self.end - self.start;
        self.buf[self.start..self.end].fill(0);
        self.start = 0;
        self.end = 0;
        discarded
    }

    /// Queue bytes (a reply) for the client.
    pub fn queue(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Send what is queued, within the write deadline: a client that stops
    /// reading fills the socket buffers and would otherwise hold the
    /// session (and those buffers) for as long as the session may last.
    pub async fn flush(&mut self) -> Result<(), ConnectionError> {
        if self.write_failed {
            return Err(ConnectionError::WriteTimeout);
        }
        let (stream, out) = (&mut self.stream, &self.out);
        let written = self
            .timeout
            .run_for(self.write_timeout, async {
                if !out.is_empty() {
                    stream.write_all(out).await?;
                }
                stream.flush().await
            })
            .await;
        match written {
            Ok(result) => {
                self.out.clear();
                Ok(result?)
            }
            Err(_) => {
                self.write_failed = true;
                Err(ConnectionError::WriteTimeout)
            }
        }
    }

    /// Read one command line (LF or CRLF terminated), flushing queued
    /// replies before waiting for more input: replies to pipelined commands
    /// go out together, and never wait on a partial line. Cancel-safe:
    /// input stays buffered if the future is dropped.
    pub async fn read_command(
        &mut self,
        timeout: Duration,
    ) -> Result<CommandLine, ConnectionError> {
        // The whole line must arrive in time: a client dripping one byte at
        // a time cannot hold the session open (slow loris).
        let deadline = tokio::time::Instant::now() + timeout;
        let mut skipping = false;
        loop {
            if let Some(pos) = memchr::memchr(b'\n', &self.buf[self.start..self.end]) {
                let line_end = self.start + pos + 1;
                let line = &self.buf[self.start..line_end];
                self.start = line_end;
                if skipping || line.len() > MAX_COMMAND_LINE {
                    return Ok(CommandLine::TooLong);
                }
                let mut content = &line[..line.len() - 1];
                if let Some(stripped) = content.strip_suffix(b"\r") {
                    content = stripped;
                }
                return Ok(CommandLine::Line(content.to_vec()));
            }
            if self.end - self.start > MAX_COMMAND_LINE {
                // Drop what we have of an over-long line and keep skipping to its end.
                skipping = true;
                self.start = 0;
                self.end = 0;
            }
            // No complete command is waiting: the client expects its replies.
            self.flush().await?;
            self.fill_until(deadline).await?;
        }
    }

    /// Did the client send anything within `delay`? (Before the greeting,
    /// a well-behaved client says nothing: RFC 5321 3.1.) Bytes already
    /// buffered (those that came in with a PROXY protocol header) are early
    /// talk too: they were sent before any greeting.
    pub async fn talks_within(&mut self, delay: Duration) -> bool {
        if self.end > self.start {
            return true;
        }
        match self.fill(delay).await {
            Ok(()) => true,
            Err(ConnectionError::Timeout) => false,
            Err(_) => true,
        }
    }

    /// Resolves when the client has closed its side (or the connection
    /// failed), for waits in which the session expects nothing from it (a
    /// credential check): the work done for a client that left can then be
    /// abandoned. Whatever the client sends meanwhile stays buffered for the
    /// next read, up to [`MAX_COMMAND_LINE`]; beyond that nothing more is
    /// read and this never resolves. Cancel-safe: no byte read is lost.
    pub async fn closed(&mut self) {
        loop {
            if self.end - self.start > MAX_COMMAND_LINE {
                return std::future::pending().await;
            }
            self.make_room();
            match self.stream.read(&mut self.buf[self.end..]).await {
                Ok(0) | Err(_) => return,
                Ok(read) => self.end += read,
            }
        }
    }

    /// Check the next complete lines of message data, reading more if none
    /// are buffered. The returned chunk names the checked bytes to forward
    /// upstream ([`ClientConnection::chunk_bytes`], valid until the next
    /// read); the end-of-data line itself is never part of it, and anything
    /// after it stays buffered (pipelined commands). Nothing is forwarded
    /// once the checker has found a problem.
    pub async fn read_data_chunk(
        &mut self,
        timeout: Duration,
        checker: &mut DataChecker,
    ) -> Result<DataChunk, ConnectionError> {
        loop {
            let chunk_start = self.start;
            let mut done = false;
            while let Some(pos) = memchr::memchr(b'\n', &self.buf[self.start..self.end]) {
                let line_end = self.start + pos + 1;
                let is_end = checker.line(&self.buf[self.start..line_end]);
                self.start = line_end;
                if is_end {
                    done = true;
                    break;
                }
            }
            let forward_end = if done { self.start - 3 } else { self.start };
            if done || forward_end > chunk_start {
                let from = if checker.forwarding() {
                    chunk_start
                } else {
                    forward_end
                };
                return Ok(DataChunk {
                    range: from..forward_end,
                    done,
                });
            }
            if self.end - self.start >= MAX_TEXT_LINE {
                // A line longer than allowed: account for it and drop it,
                // but keep a final CR, which may be the first half of the
                // line's CRLF (otherwise where the message ends would depend
                // on how TCP split the bytes).
                let keep_cr = self.buf[self.end - 1] == b'\r';
                let drop_end = self.end - usize::from(keep_cr);
                checker.overlong(&self.buf[self.start..drop_end]);
                self.start = 0;
                self.end = 0;
                if keep_cr {
                    self.buf[0] = b'\r';
                    self.end = 1;
                }
            }
            self.fill(timeout).await?;
        }
    }

    /// The bytes of a chunk returned by the last read.
    pub fn chunk_bytes(&self, chunk: &DataChunk) -> &[u8] {
        &self.buf[chunk.range.clone()]
    }

    /// Compact the unread bytes to the front of the buffer and make sure
    /// at least half a read chunk is free behind them.
    fn make_room(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < READ_CHUNK / 2 {
            self.buf.resize(self.buf.len() + READ_CHUNK, 0);
        }
    }

    /// Read more bytes, waiting at most `timeout`.
    async fn fill(&mut self, timeout: Duration) -> Result<(), ConnectionError> {
        self.fill_until(tokio::time::Instant::now() + timeout).await
    }

    /// Read more bytes into the buffer (compacting it first), waiting until
    /// `deadline` at most.
    async fn fill_until(&mut self, deadline: tokio::time::Instant) -> Result<(), ConnectionError> {
        self.make_room();
        let read = self
            .timeout
            .run(deadline, self.stream.read(&mut self.buf[self.end..]))
            .await
            .map_err(|_| ConnectionError::Timeout)??;
        if read == 0 {
            return Err(ConnectionError::Closed);
        }
        self.end += read;
        Ok(())
    }
}

/// Checked message bytes ready to forward, and whether the message ended.
#[derive(Debug)]
pub struct DataChunk {
    range: std::ops::Range<usize>,
    /// The end-of-data line has been seen.
    pub done: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::data::DataProblem;

    #[tokio::test(start_paused = true)]
    async fn a_command_line_must_arrive_whole_before_the_timeout() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut conn = ClientConnection::new(server);
        let drip = tokio::spawn(async move {
            for byte in b"NOOP" {
                client.write_all(&[*byte]).await.unwrap();
                tokio::time::sleep(Duration::from_secs(40)).await;
            }
            client
        });
        let read = conn.read_command(Duration::from_secs(100)).await;
        assert!(matches!(read, Err(ConnectionError::Timeout)), "{read:?}");
        drop(drip);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_reads_is_cut_off_at_the_write_deadline() {
        // A tiny pipe stands for socket buffers the client never drains.
        let (mut client, server) = tokio::io::duplex(64);
        let mut conn = ClientConnection::new(server).with_write_timeout(Duration::from_secs(30));
        let started = tokio::time::Instant::now();
        client.write_all(&b"NOOP\r\n".repeat(10)).await.unwrap();
        let ended = loop {
            match conn.read_command(Duration::from_secs(300)).await {
                Ok(CommandLine::Line(_)) => conn.queue(&[b'x'; 100]),
                other => break other,
            }
        };
        assert!(
            matches!(ended, Err(ConnectionError::WriteTimeout)),
            "{ended:?}"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        // Nothing more is written once a write was cut off part-way.
        assert!(matches!(
            conn.flush().await,
            Err(ConnectionError::WriteTimeout)
        ));
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_that_came_with_the_connection_are_early_talk() {
        let (_client, server) = tokio::io::duplex(64);
        let mut conn = ClientConnection::with_input(server, b"EHLO x\r\n");
        let started = tokio::time::Instant::now();
        assert!(conn.talks_within(Duration::from_secs(5)).await);
        assert_eq!(started.elapsed(), Duration::ZERO, "judged without waiting");
        let (_client, server) = tokio::io::duplex(64);
        let mut quiet = ClientConnection::with_input(server, b"");
        assert!(!quiet.talks_within(Duration::from_secs(5)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn closed_notices_a_client_that_left_and_keeps_what_it_sent() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut conn = ClientConnection::new(server);
        client.write_all(b"NOOP\r\n").await.unwrap();
        let waited = tokio::time::timeout(Duration::from_secs(60), conn.closed()).await;
        assert!(waited.is_err(), "a client still there is not closed");
        drop(client);
        tokio::time::timeout(Duration::from_secs(1), conn.closed())
            .await
            .expect("the client left");
        assert_eq!(
            conn.read_command(Duration::from_secs(1)).await.unwrap(),
            CommandLine::Line(b"NOOP".to_vec()),
            "bytes read while waiting stay buffered"
        );
    }

    #[tokio::test]
    async fn commands_and_long_lines() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut conn = ClientConnection::new(server);
        let mut client = client;
        let long = vec![b'x'; MAX_COMMAND_LINE + 10];
        client.write_all(b"HELO a\r\nNOOP\n").await.unwrap();
        client.write_all(&long).await.unwrap();
        client.write_all(b"\r\nQUIT\r\n").await.unwrap();
        let t = Duration::from_secs(5);
        assert_eq!(
            conn.read_command(t).await.unwrap(),
            CommandLine::Line(b"HELO a".to_vec())
        );
        assert_eq!(
            conn.read_command(t).await.unwrap(),
            CommandLine::Line(b"NOOP".to_vec())
        );
        assert_eq!(conn.read_command(t).await.unwrap(), CommandLine::TooLong);
        assert_eq!(
            conn.read_command(t).await.unwrap(),
            CommandLine::Line(b"QUIT".to_vec())
        );
        drop(client);
        assert!(matches!(
            conn.read_command(t).await,
            Err(ConnectionError::Closed)
        ));
    }

    #[tokio::test]
    async fn an_overlong_line_split_after_its_cr_still_ends_where_it_should() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut conn = ClientConnection::new(server);
        let mut line = vec![b'x'; 1023];
        line.extend_from_slice(b"\r");
        let writer = tokio::spawn(async move {
            client.write_all(&line).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            client.write_all(b"\n.\r\nQUIT\r\n").await.unwrap();
            client
        });
        let mut checker = DataChecker::new(1 << 20);
        while !conn
            .read_data_chunk(Duration::from_secs(5), &mut checker)
            .await
            .unwrap()
            .done
        {}
        assert_eq!(checker.problem(), Some(DataProblem::LineTooLong));
        assert_eq!(
            conn.read_command(Duration::from_secs(5)).await.unwrap(),
            CommandLine::Line(b"QUIT".to_vec())
        );
        drop(writer);
    }

    #[tokio::test]
    async fn data_is_forwarded_up_to_the_end_marker_and_the_rest_stays_buffered() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut conn = ClientConnection::new(server);
        client
            .write_all(b"Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n")
            .await
            .unwrap();
        let mut checker = DataChecker::new(1 << 20);
        let mut forwarded = Vec::new();
        loop {
            let chunk = conn
                .read_data_chunk(Duration::from_secs(5), &mut checker)
                .await
                .unwrap();
            forwarded.extend_from_slice(conn.chunk_bytes(&chunk));
            if chunk.done {
                break;
            }
        }
        assert_eq!(forwarded, b"Subject: x\r\n\r\n..dot\r\n");
        assert_eq!(checker.problem(), None);
        assert_eq!(
            conn.read_command(Duration::from_secs(5)).await.unwrap(),
            CommandLine::Line(b"QUIT".to_vec())
        );
    }
}
