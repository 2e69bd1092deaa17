//! Reading SMTP replies from the upstream, strictly: anything that is not a
//! well-formed reply is a protocol error, never passed on to the client.

use super::UpstreamError;
use crate::smtp::Reply;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

/// Longest reply line accepted from the upstream.
const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one reply.
const MAX_REPLY_LINES: usize = 100;

/// Reads replies from a stream.
pub struct ReplyReader<R> {
    reader: BufReader<R>,
    line: Vec<u8>,
}

impl<R: AsyncRead + Unpin> ReplyReader<R> {
    /// Wrap the read half of the upstream connection.
    pub fn new(read: R) -> Self {
        Self {
            reader: BufReader::with_capacity(8 * 1024, read),
            line: Vec::with_capacity(512),
        }
    }

    /// Whether every byte read so far belongs to a reply already returned.
    pub fn is_drained(&self) -> bool {
        self.reader.buffer().is_empty()
    }

    /// The stream underneath (anything read ahead is lost: check
    /// [`ReplyReader::is_drained`] first).
    pub fn into_inner(self) -> R {
        self.reader.into_inner()
    }

    /// Read one (possibly multi-line) reply.
    pub async fn read_reply(&mut self) -> Result<Reply, UpstreamError> {
        let mut code = None;
        let mut lines = Vec::new();
        loop {
            self.line.clear();
            let read = (&mut self.reader)
                .take(MAX_REPLY_LINE as u64 + 1)
                .read_until(b'\n', &mut self.line)
                .await?;
            if read == 0 {
                return Err(UpstreamError::Closed(None));
            }
            let (this_code, last, text) = parse_line(&self.line)?;
            if *code.get_or_insert(this_code) != this_code {
                return Err(UpstreamError::Protocol(
                    "reply code changed within a multi-line reply".to_string(),
                ));
            }
            lines.push(text);
            if last {
                return Ok(Reply::multiline(this_code, lines));
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(UpstreamError::Protocol(
                    "reply with too many lines".to_string(),
                ));
            }
        }
    }
}

/// `ddd[ -]text\r\n` -> (code, is last line, text).
fn parse_line(line: &[u8]) -> Result<(u16, bool, String), UpstreamError> {
    let garbage = || {
        UpstreamError::Protocol(format!(
            "not an SMTP reply: {:?}",
            String::from_utf8_lossy(&line[..line.len().min(80)])
        ))
    };
    let content = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))
        .ok_or_else(garbage)?;
    if content.len() < 3 || !content[..3].iter().all(u8::is_ascii_digit) {
        return Err(garbage());
    }
    let code: u16 = std::str::from_utf8(&content[..3])
        .map_err(|_| garbage())?
        .parse()
        .map_err(|_| garbage())?;
    if !(200..=599).contains(&code) {
        return Err(garbage());
    }
    let (last, text) = match content.get(3) {
        None => (true, &[][..]),
        Some(b' ') => (true, &content[4..]),
        Some(b'-') => (false, &content[4..]),
        Some(_) => return Err(garbage()),
    };
    if text.iter().any(|&b| b == b'\r' || b == 0) {
        return Err(garbage());
    }
    Ok((code, last, String::from_utf8_lossy(text).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &'static [u8]) -> Result<Reply, UpstreamError> {
        ReplyReader::new(bytes).read_reply().await
    }

    #[tokio::test]
    async fn replies() {
        let r = read(b"250-mx\r\n250-SIZE 10\r\n250 8BITMIME\r\n")
            .await
            .unwrap();
        assert_eq!((r.code(), r.lines().len()), (250, 3));
        let r = read(b"354 go ahead\r\n").await.unwrap();
        assert_eq!(r.lines(), ["go ahead"]);
        let r = read(b"250\r\n").await.unwrap();
        assert_eq!(r.lines(), [""]);
    }

    #[tokio::test]
    async fn garbage_is_a_protocol_error() {
        for bytes in [
            &b"HTTP/1.1 200 OK\r\n"[..],
            b"25 short\r\n",
            b"250-a\r\n251 b\r\n",
            b"999 no\r\n",
            b"250xno\r\n",
        ] {
            let leaked: &'static [u8] = Box::leak(bytes.to_vec().into_boxed_slice());
            assert!(
                matches!(read(leaked).await, Err(UpstreamError::Protocol(_))),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        assert!(matches!(read(b"").await, Err(UpstreamError::Closed(None))));
        assert!(matches!(
            read(b"250-partial\r\n").await,
            Err(UpstreamError::Closed(None))
        ));
    }
}
