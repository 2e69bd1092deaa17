//! TLS on the client side: the rustls acceptor built from `[tls]` (rebuilt
//! on reload) that STARTTLS and implicit-TLS listeners share,
//! [`ClientStream`], a connection that starts in clear and may be upgraded
//! to TLS in place, and [`Prefixed`], a stream that first hands back bytes
//! already read (after a PROXY header, the start of a TLS handshake).

use crate::config::TlsConfig;
use anyhow::{Context, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Build the acceptor for `[tls]`: the certificate chain and private key
/// are read and checked to belong together. Errors name the key (`tls.cert`
/// or `tls.key`) and the file.
pub fn acceptor(config: &TlsConfig) -> anyhow::Result<TlsAcceptor> {
    let cert_path = &config.cert;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("tls.cert: cannot read {}", cert_path.display()))?;
    if certs.is_empty() {
        bail!("tls.cert: {} holds no PEM certificate", cert_path.display());
    }
    let key_path = &config.key;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| {
            format!(
                "tls.key: cannot read a PEM private key from {}",
                key_path.display()
            )
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("tls: no usable protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "tls.key: {} does not fit the certificate in {}",
                key_path.display(),
                cert_path.display()
            )
        })?;
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// The [`crate::config::CertificateCheck`] a serving proxy validates its
/// config with: [`acceptor`] can be built from `[tls]`.
pub fn check(config: &TlsConfig) -> anyhow::Result<()> {
    acceptor(config).map(drop)
}

/// Upgrade `stream` to TLS within `timeout`.
pub async fn handshake<S>(
    acceptor: &TlsAcceptor,
    stream: S,
    timeout: Duration,
) -> io::Result<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio::time::timeout(timeout, acceptor.accept(stream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

/// A stream whose first reads return `prefix`, then the stream's own
/// bytes; writes go straight to the stream.
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    stream: S,
}

impl<S> Prefixed<S> {
    /// `stream`, read after `prefix`.
    pub fn new(prefix: &[u8], stream: S) -> Self {
        Self {
            prefix: prefix.to_vec(),
            at: 0,
            stream,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.prefix.len() {
            let rest = &this.prefix[this.at..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// A connection in clear or under TLS: the proxy's side of a client
/// connection (`T` is then the server end of TLS, the default), or, in the
/// integration tests, a test client's own connection (`T` the client end).
pub enum ClientStream<S, T = TlsStream<S>> {
    /// Plain TCP (or whatever the listener gave).
    Plain(S),
    /// After a successful STARTTLS, or from the first byte.
    Tls(Box<T>),
    /// The stream was handed to a handshake that failed: nothing to talk to.
    Gone,
}

impl<S, T> ClientStream<S, T> {
    /// True under TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }
}

impl<S, T> std::fmt::Debug for ClientStream<S, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Plain(_) => "Plain",
            Self::Tls(_) => "Tls",
            Self::Gone => "Gone",
        })
    }
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection lost in TLS handshake",
    )
}

impl<S, T> AsyncRead for ClientStream<S, T>
where
    S: AsyncRead + Unpin,
    T: AsyncRead + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Self::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl<S, T> AsyncWrite for ClientStream<S, T>
where
    S: AsyncWrite + Unpin,
    T: AsyncWrite + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Self::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Self::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Self::Gone => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn error_of(config: &TlsConfig) -> String {
        match acceptor(config) {
            Ok(_) => panic!("accepted"),
            Err(e) => format!("{e:#}"),
        }
    }

    fn config(dir: &tempfile::TempDir, cert: &str, key: &str) -> TlsConfig {
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        TlsConfig {
            cert: cert_path,
            key: key_path,
        }
    }

    #[tokio::test]
    async fn prefixed_reads_its_prefix_first() {
        use tokio::io::AsyncReadExt;
        let (mut near, far) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut near, b" world")
            .await
            .unwrap();
        drop(near);
        let mut stream = Prefixed::new(b"hello", far);
        let mut all = String::new();
        stream.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "hello world");
    }

    #[test]
    fn unusable_files_are_named_with_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsConfig {
            cert: PathBuf::from("/nonexistent/cert.pem"),
            key: PathBuf::from("/nonexistent/key.pem"),
        };
        let error = error_of(&missing);
        assert!(
            error.starts_with("tls.cert: cannot read /nonexistent/cert.pem"),
            "{error}"
        );

        let error = error_of(&config(&dir, "not pem", "x"));
        assert!(
            error.starts_with("tls.cert:") && error.contains("no PEM certificate"),
            "{error}"
        );

        let fake_cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let error = error_of(&config(&dir, fake_cert, "junk"));
        assert!(
            error.starts_with("tls.key: cannot read a PEM private key"),
            "{error}"
        );
    }
}
