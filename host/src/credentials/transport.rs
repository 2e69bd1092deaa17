//! The connection to a credential server: TCP, then TLS from the first byte
//! or after the protocol's STARTTLS, with line-based reading.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::{AuthConfig, TlsMode};
use crate::tls_client::{Trust, client_config, host_of};

/// The longest line a credential server may send.
const MAX_LINE: u64 = 16 * 1024;

/// How long a polite goodbye (LOGOUT, QUIT) may take before we just close.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// How many bytes of a server's reply go into an error message.
const REPLY_EXCERPT: usize = 200;

/// Anything a conversation can run over.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Where and how to reach the credential server.
pub(crate) struct Connector {
    server: String,
    mode: TlsMode,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Connector {
    /// From `[auth] server`, `tls`, `tls_ca` and `tls_server_name`.
    pub(crate) fn new(config: &AuthConfig) -> anyhow::Result<Self> {
        let server = config
            .server
            .clone()
            .context("auth.server: required for this backend")?;
        let tls = match config.tls {
            TlsMode::None => None,
            TlsMode::Starttls | TlsMode::Implicit => {
                let trust = match &config.tls_ca {
                    Some(path) => Trust::CaFile(path),
                    None => Trust::SystemRoots,
                };
                let client = client_config(trust).with_context(|| match &config.tls_ca {
                    Some(path) => format!("auth.tls_ca: {}", path.display()),
                    None => "TLS towards the credential server".to_string(),
                })?;
                let name = config
                    .tls_server_name
                    .clone()
                    .unwrap_or_else(|| host_of(&server));
                let name = ServerName::try_from(name.clone()).map_err(|_| {
                    anyhow::anyhow!(
                        "auth.tls_server_name: {name:?} is not a DNS name or IP address"
                    )
                })?;
                Some((TlsConnector::from(Arc::new(client)), name))
            }
        };
        Ok(Self {
            server,
            mode: config.tls,
            tls,
        })
    }

    /// Whether the protocol's STARTTLS command must be used after the greeting.
    pub(crate) fn wants_starttls(&self) -> bool {
        self.mode == TlsMode::Starttls
    }

    /// Opens a conversation; with implicit TLS, the handshake is done.
    pub(crate) async fn connect(&self) -> anyhow::Result<Conversation> {
        let tcp = TcpStream::connect(&self.server)
            .await
            .with_context(|| format!("connecting to {}", self.server))?;
        let _ = tcp.set_nodelay(true);
        let plain = Conversation::new(Box::new(tcp));
        if self.mode == TlsMode::Implicit {
            self.upgrade(plain).await
        } else {
            Ok(plain)
        }
    }

    /// Runs the TLS handshake on a conversation (after STARTTLS was accepted).
    pub(crate) async fn upgrade(&self, conversation: Conversation) -> anyhow::Result<Conversation> {
        let (connector, name) = self
            .tls
            .as_ref()
            .context("TLS is not configured (auth.tls)")?;
        if !conversation.io.buffer().is_empty() {
            bail!("the server sent data before the TLS handshake (possible injection)");
        }
        let stream = conversation.io.into_inner();
        let tls = connector
            .connect(name.clone(), stream)
            .await
            .with_context(|| format!("TLS handshake with {}", self.server))?;
        Ok(Conversation::new(Box::new(tls)))
    }
}

/// One line-based exchange with a server.
pub(crate) struct Conversation {
    io: BufReader<Box<dyn Stream>>,
}

impl Conversation {
    fn new(stream: Box<dyn Stream>) -> Self {
        Self {
            io: BufReader::new(stream),
        }
    }

    /// The next line without its CRLF; an error when the server closes or
    /// sends an over-long line.
    pub(crate) async fn read_line(&mut self) -> anyhow::Result<String> {
        let mut line = Vec::new();
        let read = (&mut self.io)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await
            .context("reading from the server")?;
        if read == 0 {
            bail!("the server closed the connection");
        }
        if line.last() != Some(&b'\n') {
            if read as u64 >= MAX_LINE {
                bail!("the server sent a line longer than {MAX_LINE} bytes");
            }
            bail!("the server closed the connection in the middle of a line");
        }
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    /// Fails when the server sent more than was read (a reply nobody asked
    /// for yet): its next line would be taken as the answer to the next
    /// command, so the conversation is out of step and cannot be trusted.
    pub(crate) fn ensure_in_step(&self, after: &str) -> anyhow::Result<()> {
        if self.io.buffer().is_empty() {
            Ok(())
        } else {
            bail!("the server sent more than one reply to {after}")
        }
    }

    /// Sends bytes as they are.
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let stream = self.io.get_mut();
        stream
            .write_all(bytes)
            .await
            .context("writing to the server")?;
        stream.flush().await.context("writing to the server")
    }

    /// Sends one line, adding CRLF.
    pub(crate) async fn send_line(&mut self, line: &str) -> anyhow::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        let result = self.write(&bytes).await;
        zeroize::Zeroize::zeroize(&mut bytes);
        result
    }

    /// Says goodbye (LOGOUT, QUIT) and waits briefly for the answer; the
    /// verdict is already known, so failures here are ignored.
    pub(crate) async fn goodbye(mut self, line: &str) {
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, async {
            self.send_line(line).await?;
            self.read_line().await
        })
        .await;
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, self.io.get_mut().shutdown()).await;
    }
}

/// A server reply shortened for an error message.
pub(crate) fn excerpt(reply: &str) -> String {
    let mut end = reply.len().min(REPLY_EXCERPT);
    while !reply.is_char_boundary(end) {
        end -= 1;
    }
    if end < reply.len() {
        format!("{:?}...", &reply[..end])
    } else {
        format!("{reply:?}")
    }
}

/// The host part of `host:port` (or `[v6]:port`).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_cuts_long_replies_on_a_char_boundary() {
        let long = "é".repeat(300);
        let cut = excerpt(&long);
        assert!(cut.ends_with("..."));
        assert!(cut.len() < 260);
        assert_eq!(excerpt("short"), "\"short\"");
    }
}
