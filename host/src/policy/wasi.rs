//! WASI for guests whose toolchain imports it (Python, JavaScript), with no
//! capabilities: no preopened directories, no environment, no arguments, no
//! sockets and no name lookups, stdin empty. stdout and stderr are a sink
//! that turns each line into a log line under target `policy` with the
//! policy's name and session.
//!
//! Clocks and random numbers are given: the Python and JavaScript runtimes
//! read them while starting, and neither lets a policy reach anything outside
//! its instance. A policy still gets no clock *as a capability of the WIT
//! world*: decisions that need time belong in host imports.
//!
//! The context is built lazily, on a guest's first WASI call, so components
//! that do not import WASI (Rust and C guests of the `policy` world) pay
//! nothing for it.

use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

/// Longest output line logged; the rest of the line is dropped.
pub(super) const MAX_LINE: usize = 1000;
/// Lines logged per stream and [`RATE_WINDOW`]; more are counted and dropped.
pub(super) const MAX_LINES_PER_WINDOW: u32 = 100;
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// The WASI state of one instance.
pub(super) struct WasiState {
    pub(super) ctx: WasiCtx,
    pub(super) table: ResourceTable,
}

impl WasiState {
    /// A capability-free context whose stdout/stderr go to the log.
    pub(super) fn new(policy: Arc<str>, session: u64) -> Self {
        let mut builder = WasiCtxBuilder::new();
        // The defaults already give no preopens, env, args, stdin or network
        // addresses; say so explicitly so a change of defaults cannot widen it.
        builder
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .stdout(LogSink::new(policy.clone(), session, "stdout"))
            .stderr(LogSink::new(policy, session, "stderr"));
        Self {
            ctx: builder.build(),
            table: ResourceTable::new(),
        }
    }
}

/// A stdout/stderr that logs complete lines, bounded in length and rate.
#[derive(Clone)]
pub(super) struct LogSink {
    lines: Arc<Mutex<LineBuffer>>,
}

impl LogSink {
    fn new(policy: Arc<str>, session: u64, stream: &'static str) -> Self {
        Self {
            lines: Arc::new(Mutex::new(LineBuffer::new(policy, session, stream))),
        }
    }

    fn push(&self, bytes: &[u8]) {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(bytes);
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        self.finish_line();
        if self.dropped > 0 {
            let (policy, session, stream) = (&*self.policy, self.session, self.stream);
            let dropped = self.dropped;
            tracing::warn!(target: "policy", policy, session, stream, "{dropped} output lines dropped (rate limit)");
        }
    }
}

/// Bytes of the current line and the rate-limit window.
struct LineBuffer {
    policy: Arc<str>,
    session: u64,
    stream: &'static str,
    line: Vec<u8>,
    cut: bool,
    window_start: Instant,
    in_window: u32,
    dropped: u64,
}

impl LineBuffer {
    fn new(policy: Arc<str>, session: u64, stream: &'static str) -> Self {
        Self {
            policy,
            session,
            stream,
            line: Vec::new(),
            cut: false,
            window_start: Instant::now(),
            in_window: 0,
            dropped: 0,
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (part, rest, ends_line) = match memchr::memchr(b'\n', bytes) {
                Some(at) => (&bytes[..at], &bytes[at + 1..], true),
                None => (bytes, &[][..], false),
            };
            let room = MAX_LINE.saturating_sub(self.line.len());
            if part.len() > room {
                self.cut = true;
            }
            self.line.extend_from_slice(&part[..part.len().min(room)]);
            if ends_line {
                self.finish_line();
            }
            bytes = rest;
        }
    }

    fn finish_line(&mut self) {
        if self.line.is_empty() && !self.cut {
            return;
        }
        let text = String::from_utf8_lossy(&self.line);
        let mut text: String = text
            .trim_end_matches('\r')
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if self.cut {
            text.push_str("...");
        }
        self.line.clear();
        self.cut = false;
        if self.window_start.elapsed() >= RATE_WINDOW {
            self.window_start = Instant::now();
            self.in_window = 0;
        }
        if self.in_window >= MAX_LINES_PER_WINDOW {
            self.dropped += 1;
            return;
        }
        self.in_window += 1;
        let (policy, session, stream) = (&*self.policy, self.session, self.stream);
        if self.dropped > 0 {
            let dropped = std::mem::take(&mut self.dropped);
            tracing::warn!(target: "policy", policy, session, stream, "{dropped} output lines dropped (rate limit)");
        }
        tracing::info!(target: "policy", policy, session, stream, "{text}");
    }
}

impl IsTerminal for LogSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogSink {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

/// Accepts up to this many bytes per write; the sink never blocks.
const WRITE_PERMIT: usize = 64 * 1024;

#[wasmtime_wasi::async_trait]
impl Pollable for LogSink {
    async fn ready(&mut self) {}
}

impl OutputStream for LogSink {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

impl tokio::io::AsyncWrite for LogSink {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer() -> LineBuffer {
        LineBuffer::new(Arc::from("t"), 1, "stdout")
    }

    #[test]
    fn long_lines_are_cut_and_partial_lines_kept() {
        let mut lines = buffer();
        lines.push(&vec![b'x'; MAX_LINE + 50]);
        assert_eq!(lines.line.len(), MAX_LINE);
        assert!(lines.cut);
        lines.push(b"\nnext");
        assert_eq!(lines.line, b"next");
        assert!(!lines.cut);
        assert_eq!(lines.in_window, 1);
    }

    #[test]
    fn lines_past_the_rate_are_dropped_and_counted() {
        let mut lines = buffer();
        for _ in 0..MAX_LINES_PER_WINDOW + 7 {
            lines.push(b"hello\n");
        }
        assert_eq!(lines.in_window, MAX_LINES_PER_WINDOW);
        assert_eq!(lines.dropped, 7);
    }
}
