//! TLS towards the upstream: STARTTLS after the greeting or TLS from the
//! first byte, the certificate verified as `[upstream_tls]` says.

use super::UpstreamError;
use crate::config::{TlsMode, UpstreamTlsConfig};
use crate::tls_client::{Trust, client_config, host_of};
use anyhow::Context;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How to secure connections to the upstream.
pub struct UpstreamTls {
    /// TLS from the first byte; otherwise STARTTLS after the greeting.
    pub implicit: bool,
    /// With STARTTLS: an upstream that does not offer it is refused.
    pub required: bool,
    connector: TlsConnector,
    /// `[upstream_tls] server_name`; none: each server's own host.
    name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("implicit", &self.implicit)
            .field("required", &self.required)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// From `[upstream_tls]`; none with `mode = "none"`.
    ///
    /// # Errors
    /// When the CA file cannot be used or the name is not one a certificate
    /// can carry; each error names its key.
    pub fn from_config(config: &UpstreamTlsConfig) -> anyhow::Result<Option<Arc<Self>>> {
        let implicit = match config.mode {
            TlsMode::None => return Ok(None),
            TlsMode::Starttls => false,
            TlsMode::Implicit => true,
        };
        let trust = match (&config.pin_sha256, &config.ca) {
            (Some(digest), _) => Trust::Pinned(*digest),
            (None, Some(ca)) => Trust::CaFile(ca),
            (None, None) => Trust::SystemRoots,
        };
        let client = client_config(trust).with_context(|| match &config.ca {
            Some(ca) => format!("upstream_tls.ca: {}", ca.display()),
            None => "upstream_tls".to_string(),
        })?;
        let name = match &config.server_name {
            Some(name) => Some(ServerName::try_from(name.clone()).map_err(|_| {
                anyhow::anyhow!(
                    "upstream_tls.server_name: {name:?} is not a DNS name or IP address"
                )
            })?),
            None => None,
        };
        Ok(Some(Arc::new(Self {
            implicit,
            required: config.required,
            connector: TlsConnector::from(Arc::new(client)),
            name,
        })))
    }

    /// The TLS handshake with the server at `addr` (`host:port`) on
    /// `stream`, the certificate verified for `server_name` or that host.
    pub async fn handshake(
        &self,
        addr: &str,
        stream: TcpStream,
    ) -> Result<TlsStream<TcpStream>, UpstreamError> {
        let name = match &self.name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host_of(addr)).map_err(|_| {
                UpstreamError::Tls(format!(
                    "{addr:?} names no host a certificate can carry; set upstream_tls.server_name"
                ))
            })?,
        };
        self.connector
            .connect(name, stream)
            .await
            .map_err(|e| UpstreamError::Tls(e.to_string()))
    }
}
