//! Reading a config file: the text from disk, the TOML decoded into the
//! typed definition (`file`), `validate`d, then the checks that touch the
//! filesystem: the files named by the config must be readable, and the
//! `[tls]` certificate and key must pass the [`CertificateCheck`] the caller
//! supplies (the `tls` module's, where a proxy is to serve; config itself
//! never parses certificates).

use super::file::ConfigFile;
use super::validate::validate;
use super::{Config, ConfigError, ModuleSource, TlsConfig};
use std::path::Path;

/// Checks that a `[tls]` certificate and key can serve STARTTLS; its error
/// names the key (`tls.cert` or `tls.key`) and the file. It is called only
/// when both files can be read.
pub type CertificateCheck = dyn Fn(&TlsConfig) -> anyhow::Result<()>;

/// A [`CertificateCheck`] that accepts any readable files: for a config
/// that is only parsed, not served.
pub fn readable_is_enough(_: &TlsConfig) -> anyhow::Result<()> {
    Ok(())
}

impl Config {
    /// Read and validate a config file; `check` judges its `[tls]`
    /// certificate and key (`relaygate::tls::check`). Every problem is
    /// prefixed with the file's path.
    pub fn load(path: &Path, check: &CertificateCheck) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::one(format!("{}: cannot read: {e}", path.display())))?;
        let mut config = Self::parse_with(&text, check).map_err(|e| ConfigError {
            problems: e
                .problems
                .into_iter()
                .map(|p| format!("{}: {p}", path.display()))
                .collect(),
        })?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Validate config text (relative paths resolve against the working
    /// directory); a `[tls]` certificate and key need only be readable
    /// ([`readable_is_enough`]).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Self::parse_with(text, &readable_is_enough)
    }

    /// Validate config text, `check` judging its `[tls]` certificate and key.
    pub fn parse_with(text: &str, check: &CertificateCheck) -> Result<Self, ConfigError> {
        let (config, mut problems) = validate(decode(text)?);
        problems.extend(config.file_problems(check));
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Check again after command-line flags replaced values.
    pub fn revalidate(&self) -> Result<(), ConfigError> {
        let mut problems = self.overridable_problems();
        problems.extend(self.module_problem());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The files this config names that cannot be used, one line each
    /// naming its key.
    fn file_problems(&self, check: &CertificateCheck) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(auth) = &self.auth {
            let users_file = auth.users_file.as_ref().filter(|_| auth.backend == "file");
            for (key, path) in [("users_file", users_file), ("tls_ca", auth.tls_ca.as_ref())] {
                if let Some(path) = path
                    && let Err(e) = std::fs::metadata(path)
                {
                    problems.push(format!("auth.{key}: cannot read {}: {e}", path.display()));
                }
            }
        }
        if let Some(ca) = &self.upstream_tls.ca
            && let Err(e) = std::fs::metadata(ca)
        {
            problems.push(format!(
                "upstream_tls.ca: cannot read {}: {e}",
                ca.display()
            ));
        }
        if let Some(tls) = &self.tls {
            let mut readable = true;
            for (key, path) in [("cert", &tls.cert), ("key", &tls.key)] {
                if let Err(e) = std::fs::metadata(path) {
                    problems.push(format!("tls.{key}: cannot read {}: {e}", path.display()));
                    readable = false;
                }
            }
            if readable && let Err(e) = check(tls) {
                problems.push(format!("{e:#}"));
            }
        }
        problems.extend(self.module_problem());
        for (index, chain) in self.chain_tables.iter().enumerate() {
            for (at, module) in chain.modules.iter().enumerate() {
                if let ModuleSource::File(path) = &module.module
                    && let Err(e) = std::fs::File::open(path)
                {
                    problems.push(format!(
                        "chain[{index}].module[{at}].module: cannot read {}: {e}",
                        path.display()
                    ));
                }
            }
        }
        problems
    }

    /// The policy module file, when it cannot be read.
    fn module_problem(&self) -> Option<String> {
        match &self.policy.module {
            ModuleSource::File(path) => std::fs::File::open(path)
                .err()
                .map(|e| format!("policy.module: cannot read {}: {e}", path.display())),
            ModuleSource::BuiltinAppleRelay => None,
        }
    }
}

/// The TOML decoded into the typed definition; a syntax error or a bad
/// value names its line, and its key where it has one.
pub(super) fn decode(text: &str) -> Result<ConfigFile, ConfigError> {
    let deserializer =
        toml::Deserializer::parse(text).map_err(|e| ConfigError::one(toml_problem(text, &e)))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.message().to_string();
        let at = inner
            .span()
            .map(|span| format!(" (line {})", line_of(text, span.start)))
            .unwrap_or_default();
        ConfigError::one(if path == "." {
            format!("{message}{at}")
        } else {
            format!("{path}: {message}{at}")
        })
    })
}

/// The line number (from 1) of byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// A TOML syntax error, with its line.
fn toml_problem(text: &str, error: &toml::de::Error) -> String {
    let at = error
        .span()
        .map(|span| format!(" at line {}", line_of(text, span.start)))
        .unwrap_or_default();
    format!("invalid TOML{at}: {}", error.message())
}

#[cfg(test)]
mod tests {
    use super::super::problems;
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let p = problems("[proxy]\nlisten = [\"127.0.0.1:2525\"]\nlsiten = 1\n");
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with("proxy.lsiten: unknown field `lsiten`"),
            "{p:?}"
        );
        assert!(p[0].contains("line 3"), "{p:?}");
        let p = problems("[proxyy]\n");
        assert!(p[0].contains("unknown field `proxyy`"), "{p:?}");
    }

    #[test]
    fn invalid_toml_names_the_line() {
        let p = problems("[proxy]\nlisten = [\n");
        assert!(p[0].starts_with("invalid TOML at line"), "{p:?}");
    }

    #[test]
    fn the_certificate_check_is_the_callers() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, "not checked here\n").unwrap();
        std::fs::write(&key, "nor here\n").unwrap();
        let text = format!(
            "[tls]\ncert = {:?}\nkey = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        );
        // Readable files are enough for a parsed config...
        assert!(Config::parse(&text).is_ok());
        // ...and the caller's check judges them when it is given.
        let refuse = |tls: &TlsConfig| -> anyhow::Result<()> {
            anyhow::bail!("tls.cert: {} refused", tls.cert.display())
        };
        let p = Config::parse_with(&text, &refuse)
            .expect_err("refused")
            .problems;
        assert_eq!(p, [format!("tls.cert: {} refused", cert.display())]);
        // A file that cannot be read is named without asking the check.
        let missing = text.replace("key.pem", "missing.pem");
        let p = Config::parse_with(&missing, &refuse)
            .expect_err("refused")
            .problems;
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("tls.key: cannot read"), "{p:?}");
    }
}
