//! TLS where relaygate is the client (towards the upstream and credential
//! backends): which certificates to trust, and a verifier for a pinned
//! certificate.

use anyhow::{Context, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// The CA bundle Debian and its derivatives keep the system's roots in.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How a server's certificate is judged.
pub enum Trust<'a> {
    /// Signed by a CA of this PEM file, for the server's name.
    CaFile(&'a Path),
    /// Signed by a CA of the system's bundle (else the Mozilla roots built
    /// in), for the server's name.
    SystemRoots,
    /// Exactly the certificate whose DER encoding has this SHA-256, whoever
    /// signed it and whatever names it carries.
    Pinned([u8; 32]),
}

/// A client config judging the server's certificate as `trust` says.
///
/// # Errors
/// When the CA file cannot be read or holds no certificate.
pub fn client_config(trust: Trust<'_>) -> anyhow::Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let config = match trust {
        Trust::CaFile(path) => builder.with_root_certificates(load_roots(path)?),
        Trust::SystemRoots => builder.with_root_certificates(system_roots()),
        Trust::Pinned(digest) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCertificate::new(digest, &provider))),
    };
    Ok(config.with_no_client_auth())
}

/// The host part of `host:port` (an IP address without its brackets).
pub fn host_of(server: &str) -> String {
    if let Ok(address) = server.parse::<SocketAddr>() {
        return address.ip().to_string();
    }
    server
        .rsplit_once(':')
        .map_or(server, |(host, _)| host)
        .to_string()
}

/// The certificates of a PEM file, as roots.
///
/// # Errors
/// When it cannot be read, holds something that is not a certificate, or
/// holds none.
pub fn load_roots(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).context("reading PEM certificates")? {
        roots
            .add(cert.context("parsing a PEM certificate")?)
            .context("adding a CA certificate")?;
    }
    if roots.is_empty() {
        bail!("no certificates found");
    }
    Ok(roots)
}

/// The system's CA bundle where it can be read, else the Mozilla roots
/// compiled in.
fn system_roots() -> RootCertStore {
    load_roots(Path::new(SYSTEM_CA_BUNDLE)).unwrap_or_else(|_| RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    })
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Accepts exactly one certificate, by digest; the handshake's signatures
/// are still checked against it.
#[derive(Debug)]
struct PinnedCertificate {
    digest: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedCertificate {
    fn new(digest: [u8; 32], provider: &CryptoProvider) -> Self {
        Self {
            digest,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if digest == self.digest {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "certificate SHA-256 {} is not the pinned {}",
                hex(&digest),
                hex(&self.digest)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_handles_names_and_addresses() {
        assert_eq!(host_of("mail.example.com:993"), "mail.example.com");
        assert_eq!(host_of("127.0.0.1:143"), "127.0.0.1");
        assert_eq!(host_of("[::1]:995"), "::1");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = client_config(Trust::CaFile(&empty)).unwrap_err();
        assert!(
            format!("{error:#}").contains("no certificates"),
            "{error:#}"
        );
    }
}
