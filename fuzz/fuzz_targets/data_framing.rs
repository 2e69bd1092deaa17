//! Message data framing: `DataChecker` line by line, and
//! `ClientConnection::read_data_chunk` over a stream that delivers the input
//! in fuzz-chosen pieces.
//!
//! The properties are the SMTP-smuggling defence: the end of data is only
//! ever a line ".\r\n" right after a CRLF; nothing after it is forwarded;
//! what is forwarded is a prefix of the input made of clean lines (CRLF,
//! no other CR, no NUL, at most 1000 octets), and the whole message up to
//! the end line when the message is clean. They are checked against a
//! plain model of RFC 5321 framing written here, not against the checker.
//!
//! Input: byte 0 picks `max_size`, byte 1 the number `n` of piece sizes
//! (0-15), the next `n` bytes the piece sizes (cycled; none: the stream
//! hands over as much as the connection asks for), the rest is the data.

#![no_main]

use libfuzzer_sys::fuzz_target;
use relaygate::connection::client_io::{ClientConnection, CommandLine, MAX_COMMAND_LINE};
use relaygate::smtp::data::{DataChecker, MAX_TEXT_LINE};
use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const MAX_SIZES: [u64; 8] = [0, 3, 10, 100, 1000, 4096, 65536, u64::MAX];

fuzz_target!(|input: &[u8]| {
    let Some((&size_pick, rest)) = input.split_first() else {
        return;
    };
    let Some((&pieces, rest)) = rest.split_first() else {
        return;
    };
    let pieces = usize::from(pieces & 15).min(rest.len());
    let (sizes, data) = rest.split_at(pieces);
    let max_size = MAX_SIZES[usize::from(size_pick) % MAX_SIZES.len()];
    let model = Model::of(data, max_size);
    check_line_by_line(data, max_size, &model);
    check_connection(data, sizes, max_size, &model);
});

/// RFC 5321 framing of `data`, computed without the checker.
struct Model {
    /// Offset of the end-of-data line, if any.
    end: Option<usize>,
    /// Every line before the end (or every complete line) is clean and the
    /// size is within the limit.
    clean: bool,
    /// Unstuffed size, CRLF counted, of the lines before the end.
    size: u64,
}

impl Model {
    fn of(data: &[u8], max_size: u64) -> Self {
        let mut start = 0;
        let mut previous_crlf = true;
        let mut clean = true;
        let mut size = 0u64;
        while let Some(pos) = data[start..].iter().position(|&b| b == b'\n') {
            let line = &data[start..start + pos + 1];
            if line == b".\r\n" && previous_crlf {
                return Self {
                    end: Some(start),
                    clean: clean && size <= max_size,
                    size,
                };
            }
            previous_crlf = line.ends_with(b"\r\n");
            clean &= line_is_clean(line);
            size += unstuffed_size(line);
            start += pos + 1;
        }
        Self {
            end: None,
            clean: clean && size <= max_size,
            size,
        }
    }
}

/// Ends with CRLF, no other CR, no NUL, at most `MAX_TEXT_LINE` octets.
fn line_is_clean(line: &[u8]) -> bool {
    line.len() <= MAX_TEXT_LINE
        && line.ends_with(b"\r\n")
        && !line[..line.len() - 2].contains(&b'\r')
        && !line.contains(&0)
}

/// The size one line adds: its text without a stuffed leading dot, plus 2
/// for the line ending whatever it was.
fn unstuffed_size(line: &[u8]) -> u64 {
    let ending = if line.ends_with(b"\r\n") { 2 } else { 1 };
    let body = &line[..line.len() - ending];
    let body = body.strip_prefix(b".").unwrap_or(body);
    body.len() as u64 + 2
}

/// Split at LF as the connection does, feed each line, stop at the end.
fn check_line_by_line(data: &[u8], max_size: u64, model: &Model) {
    let mut checker = DataChecker::new(max_size);
    let mut start = 0;
    let mut previous_crlf = true;
    let mut size = 0;
    let mut all_clean = true;
    let mut end = None;
    while let Some(pos) = data[start..].iter().position(|&b| b == b'\n') {
        let line = &data[start..start + pos + 1];
        if checker.line(line) {
            assert_eq!(line, b".\r\n", "end of data on another line");
            assert!(previous_crlf, "end of data after a line without CRLF");
            end = Some(start);
            break;
        }
        assert!(checker.size() >= size, "size went down");
        size = checker.size();
        previous_crlf = line.ends_with(b"\r\n");
        all_clean &= line_is_clean(line);
        if !line_is_clean(line) {
            assert!(!checker.forwarding(), "unclean line {line:?} accepted");
        }
        start += pos + 1;
    }
    assert_eq!(end, model.end, "end of data not where RFC 5321 puts it");
    assert_eq!(checker.size(), model.size, "size accounting");
    assert_eq!(checker.forwarding(), model.clean, "verdict");
    if checker.forwarding() {
        assert!(all_clean && checker.size() <= max_size);
        let (headers, _) = checker.into_headers();
        for (name, value) in &headers {
            assert!(!name.contains([':', '\r', '\n']), "header name {name:?}");
            assert!(!value.contains(['\r', '\n']), "header value {value:?}");
        }
    }
}

/// A client stream handing `data` over in pieces of the given sizes; writes
/// (replies) are discarded.
struct Pieces<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    next: usize,
}

impl Pieces<'_> {
    fn piece_size(&mut self) -> usize {
        if self.sizes.is_empty() {
            return usize::MAX;
        }
        let size = self.sizes[self.next % self.sizes.len()];
        self.next += 1;
        // Small pieces around line boundaries, and some large ones.
        if size < 0x80 {
            usize::from(size) + 1
        } else {
            usize::from(size - 0x7f) * 64
        }
    }
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.piece_size().min(buf.remaining()).min(self.data.len());
        let (piece, rest) = self.data.split_at(n);
        buf.put_slice(piece);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Pieces<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// `RELAYGATE_FUZZ_TRACE=1` prints where the connection ended a message.
fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("RELAYGATE_FUZZ_TRACE").is_some())
}

/// One current-thread runtime for all iterations (timeouts need its clock).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("tokio runtime")
    })
}

/// Receive `data` as message data the way the proxy does and check what
/// would have gone upstream.
fn check_connection(data: &[u8], sizes: &[u8], max_size: u64, model: &Model) {
    runtime().block_on(async {
        let timeout = Duration::from_secs(3600);
        let mut conn = ClientConnection::new(Pieces {
            data,
            sizes,
            next: 0,
        });
        let mut checker = DataChecker::new(max_size);
        let mut forwarded = Vec::new();
        let mut size = 0;
        let mut done = false;
        while let Ok(chunk) = conn.read_data_chunk(timeout, &mut checker).await {
            forwarded.extend_from_slice(conn.chunk_bytes(&chunk));
            assert!(checker.size() >= size, "size went down");
            size = checker.size();
            if chunk.done {
                done = true;
                break;
            }
        }

        // What went upstream is a prefix of the input, made of clean lines.
        assert!(data.starts_with(&forwarded), "forwarded bytes not a prefix");
        assert!(forwarded.is_empty() || forwarded.ends_with(b"\r\n"));
        for line in forwarded.split_inclusive(|&b| b == b'\n') {
            assert!(line_is_clean(line), "unclean line forwarded: {line:?}");
        }
        // Nothing at or after the end-of-data line.
        if let Some(end) = model.end {
            assert!(forwarded.len() <= end, "forwarded past the end of data");
        }
        let Some(model_end) = model.end else {
            assert!(!done, "ended a message that has no end line");
            return;
        };
        if !checker.forwarding() {
            assert!(!model.clean, "a clean message was refused");
        }
        if !done {
            // The stream ran dry before the end line: only a dropped
            // over-long line can hide it, and then nothing is forwarded.
            assert!(!checker.forwarding(), "missed the end of a clean message");
            assert!(long_line_before(data, model_end), "missed the end line");
            return;
        }
        if checker.forwarding() {
            assert!(model.clean);
            assert_eq!(
                forwarded,
                &data[..model_end],
                "clean message not forwarded whole"
            );
            assert_eq!(checker.size(), model.size);
        }
        // Where the connection ended the message: exactly at the model's end
        // unless an over-long line was dropped before it, then possibly at a
        // later ".\r\n" line after a CRLF, never earlier. (This target
        // found that a line dropped right after its CR left a lone "\n",
        // so where the message ended depended on how TCP split the bytes;
        // the connection now keeps that CR. The allowance stays, as the
        // weaker property is the one that matters for smuggling: nothing of
        // a refused message goes upstream.)
        let ends: Vec<usize> = if long_line_before(data, model_end) {
            end_candidates(data).filter(|&e| e >= model_end).collect()
        } else {
            vec![model_end]
        };
        // What follows the end line stays buffered for the command reader.
        let next_lines: Vec<&[u8]> = ends
            .iter()
            .filter_map(|&end| {
                let after = &data[end + 3..];
                let pos = after.iter().position(|&b| b == b'\n')?;
                let line = &after[..pos];
                (pos < MAX_COMMAND_LINE).then(|| line.strip_suffix(b"\r").unwrap_or(line))
            })
            .collect();
        let exact = ends.len() == 1 && next_lines.len() == 1;
        let next = conn.read_command(timeout).await;
        if trace() {
            eprintln!(
                "model end {model_end}, clean {}; forwarded {} bytes, problem {:?}; \
                 next command {next:?}",
                model.clean,
                forwarded.len(),
                checker.problem()
            );
        }
        match next {
            Ok(CommandLine::Line(next)) => assert!(
                next_lines.contains(&next.as_slice()),
                "read {next:?} after the end of data, expected one of {next_lines:?}"
            ),
            other => assert!(!exact, "pipelined command lost: {other:?}"),
        }
    });
}

/// A line over `MAX_TEXT_LINE` before `end`: the connection may drop part
/// of it without seeing its line ending.
fn long_line_before(data: &[u8], end: usize) -> bool {
    data[..end]
        .split_inclusive(|&b| b == b'\n')
        .any(|line| line.len() > MAX_TEXT_LINE)
}

/// Offsets of every ".\r\n" line that follows a CRLF line (or starts the data).
fn end_candidates(data: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut start = 0;
    let mut previous_crlf = true;
    std::iter::from_fn(move || {
        loop {
            let pos = data[start..].iter().position(|&b| b == b'\n')?;
            let line_start = start;
            let line = &data[start..start + pos + 1];
            let candidate = line == b".\r\n" && previous_crlf;
            previous_crlf = line.ends_with(b"\r\n");
            start += pos + 1;
            if candidate {
                return Some(line_start);
            }
        }
    })
}
