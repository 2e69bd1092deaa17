//! Certificates made at test time: a CA and leaf certificates it signs, as PEM files in
//! a temporary directory that is removed when the [`TestCerts`] is dropped.
//!
//! ```no_run
//! # fn example() -> anyhow::Result<()> {
//! use relaygate_tests::certs::TestCerts;
//!
//! let certs = TestCerts::generate(&["localhost", "127.0.0.1"])?;
//! // certs.ca_pem(): trust this; certs.cert_pem() / certs.key_pem(): serve these.
//! # Ok(())
//! # }
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;

/// A test CA and one leaf certificate signed by it, written as PEM files.
pub struct TestCerts {
    dir: TempDir,
    ca_pem: PathBuf,
    cert_pem: PathBuf,
    key_pem: PathBuf,
}

impl TestCerts {
    /// Makes a CA and a server certificate for `names` (DNS names or IP addresses;
    /// the first is also the common name) and writes `ca.pem`, `cert.pem` (the leaf,
    /// then the CA) and `key.pem` (PKCS#8) to a new temporary directory.
    pub fn generate(names: &[&str]) -> anyhow::Result<Self> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "relaygate test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().context("generating the CA key")?;
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .context("signing the CA certificate")?;

        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut leaf_params =
            CertificateParams::new(names.clone()).context("leaf certificate names")?;
        if let Some(first) = names.first() {
            leaf_params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        leaf_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate().context("generating the leaf key")?;
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let leaf_cert = leaf_params
            .signed_by(&leaf_key, &issuer)
            .context("signing the leaf certificate")?;

        let dir = tempfile::Builder::new()
            .prefix("relaygate-certs-")
            .tempdir()
            .context("creating a directory for certificates")?;
        let ca_pem = dir.path().join("ca.pem");
        let cert_pem = dir.path().join("cert.pem");
        let key_pem = dir.path().join("key.pem");
        fs::write(&ca_pem, ca_cert.pem()).context("writing ca.pem")?;
        fs::write(&cert_pem, format!("{}{}", leaf_cert.pem(), ca_cert.pem()))
            .context("writing cert.pem")?;
        fs::write(&key_pem, leaf_key.serialize_pem()).context("writing key.pem")?;
        Ok(Self {
            dir,
            ca_pem,
            cert_pem,
            key_pem,
        })
    }

    /// The CA certificate clients should trust.
    pub fn ca_pem(&self) -> &Path {
        &self.ca_pem
    }

    /// The server's certificate chain (leaf first).
    pub fn cert_pem(&self) -> &Path {
        &self.cert_pem
    }

    /// The server's private key.
    pub fn key_pem(&self) -> &Path {
        &self.key_pem
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
