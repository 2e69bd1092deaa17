//! The two halves of an upstream connection, plain TCP or TLS, and a probe
//! that tells whether an idle connection is still quiet.
//!
//! Plain connections use tokio's owned TCP halves (no lock between reader
//! and writer); TLS ones `tokio::io::split`, since one TLS state serves both
//! directions.

use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_rustls::client::TlsStream;

/// What replies are read from.
pub enum ReadSide {
    /// Plain TCP.
    Plain(OwnedReadHalf),
    /// TLS (implicit, or after STARTTLS).
    Tls(ReadHalf<TlsStream<TcpStream>>),
}

/// What commands and message data are written to.
pub enum WriteSide {
    /// Plain TCP.
    Plain(OwnedWriteHalf),
    /// TLS (implicit, or after STARTTLS).
    Tls(WriteHalf<TlsStream<TcpStream>>),
}

/// Split a plain connection.
pub fn plain(stream: TcpStream) -> (ReadSide, WriteSide) {
    let (read, write) = stream.into_split();
    (ReadSide::Plain(read), WriteSide::Plain(write))
}

/// Split a TLS connection.
pub fn tls(stream: TlsStream<TcpStream>) -> (ReadSide, WriteSide) {
    let (read, write) = tokio::io::split(stream);
    (ReadSide::Tls(read), WriteSide::Tls(write))
}

/// The plain connection the halves came from; none for TLS halves.
pub fn reunite(read: ReadSide, write: WriteSide) -> Option<TcpStream> {
    match (read, write) {
        (ReadSide::Plain(read), WriteSide::Plain(write)) => read.reunite(write).ok(),
        _ => None,
    }
}

/// A second handle on a connection's socket, only ever peeked at: whether
/// bytes (plain text or TLS records) or the end of the stream arrived
/// while nobody was reading.
pub struct QuietProbe(std::net::TcpStream);

impl QuietProbe {
    /// A probe on `stream`'s socket (a duplicated descriptor; the socket is
    /// non-blocking, so peeking never waits).
    pub fn of(stream: &TcpStream) -> io::Result<Self> {
        Ok(Self(std::net::TcpStream::from(
            stream.as_fd().try_clone_to_owned()?,
        )))
    }

    /// Nothing to read and not closed.
    pub fn is_quiet(&self) -> bool {
        matches!(self.0.peek(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

impl AsyncRead for ReadSide {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(read) => Pin::new(read).poll_read(cx, buf),
            Self::Tls(read) => Pin::new(read).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteSide {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(write) => Pin::new(write).poll_write(cx, buf),
            Self::Tls(write) => Pin::new(write).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(write) => Pin::new(write).poll_flush(cx),
            Self::Tls(write) => Pin::new(write).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(write) => Pin::new(write).poll_shutdown(cx),
            Self::Tls(write) => Pin::new(write).poll_shutdown(cx),
        }
    }
}
