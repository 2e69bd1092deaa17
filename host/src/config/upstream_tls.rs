//! `[upstream_tls]`: TLS on the connections to the upstream, and how its
//! certificate is verified (a CA file, the system's roots, or a pinned
//! digest).

use super::TlsMode;
use super::file::{AuthTlsName, UpstreamTlsSection};
use std::path::PathBuf;

/// `[upstream_tls]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTlsConfig {
    /// Plain, STARTTLS or implicit TLS.
    pub mode: TlsMode,
    /// With STARTTLS: refuse an upstream that does not offer it.
    pub required: bool,
    /// The CA certificates to trust instead of the system's.
    pub ca: Option<PathBuf>,
    /// The name the certificate must carry (default: the upstream's host).
    pub server_name: Option<String>,
    /// The one certificate accepted, by the SHA-256 of its DER encoding.
    pub pin_sha256: Option<[u8; 32]>,
}

impl Default for UpstreamTlsConfig {
    /// The defaults of `[upstream_tls]` (the typed definition's): plain SMTP.
    fn default() -> Self {
        from_section(UpstreamTlsSection::default(), &mut Vec::new())
    }
}

impl UpstreamTlsConfig {
    /// How connections to the upstream are secured, for `relaygate check`:
    /// empty for plain SMTP.
    pub fn describe(&self) -> String {
        let mode = match self.mode {
            TlsMode::None => return String::new(),
            TlsMode::Starttls if self.required => "STARTTLS (required)",
            TlsMode::Starttls => "STARTTLS (when offered)",
            TlsMode::Implicit => "implicit TLS",
        };
        let trust = match (&self.pin_sha256, &self.ca) {
            (Some(digest), _) => {
                format!("the pinned certificate {}", crate::tls_client::hex(digest))
            }
            (None, Some(ca)) => format!("CAs of {}", ca.display()),
            (None, None) => "the system's CAs".to_string(),
        };
        format!(" over {mode}, trusting {trust}")
    }
}

/// Build [`UpstreamTlsConfig`] from the file's `[upstream_tls]`, adding any
/// problems.
pub(super) fn from_section(
    section: UpstreamTlsSection,
    problems: &mut Vec<String>,
) -> UpstreamTlsConfig {
    let mode = match section.mode {
        AuthTlsName::None => TlsMode::None,
        AuthTlsName::Starttls => TlsMode::Starttls,
        AuthTlsName::Implicit => TlsMode::Implicit,
    };
    if mode == TlsMode::None {
        for (key, set) in [
            ("ca", section.ca.is_some()),
            ("server_name", section.server_name.is_some()),
            ("pin_sha256", section.pin_sha256.is_some()),
        ] {
            if set {
                problems.push(format!(
                    "upstream_tls.{key}: only used with mode = \"starttls\" or \"implicit\""
                ));
            }
        }
    }
    if let Some(name) = &section.server_name
        && rustls_pki_types::ServerName::try_from(name.as_str()).is_err()
    {
        problems.push(format!(
            "upstream_tls.server_name: {name:?} is not a DNS name or IP address"
        ));
    }
    let pin_sha256 = section.pin_sha256.as_deref().and_then(|pin| {
        let digest = parse_sha256(pin);
        if digest.is_none() {
            problems.push(format!(
                "upstream_tls.pin_sha256: {pin:?} is not a SHA-256 digest (64 hex digits; `:` separators allowed)"
            ));
        }
        digest
    });
    UpstreamTlsConfig {
        mode,
        required: section.required,
        ca: section.ca,
        server_name: section.server_name,
        pin_sha256,
    }
}

/// 64 hex digits, in either case, optionally in `:`-separated pairs (as
/// `openssl x509 -fingerprint -sha256` prints them).
fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let hex: String = text.chars().filter(|&c| c != ':').collect();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(hex.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse_with_or_without_separators() {
        let plain = "00ff".repeat(16);
        let colons = plain
            .as_bytes()
            .chunks(2)
            .map(|pair| std::str::from_utf8(pair).unwrap().to_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        let expected: [u8; 32] = std::array::from_fn(|i| if i % 2 == 0 { 0 } else { 0xff });
        assert_eq!(parse_sha256(&plain), Some(expected));
        assert_eq!(parse_sha256(&colons), Some(expected));
        for bad in [
            "",
            "00ff",
            &"zz".repeat(32),
            &"0".repeat(65),
            &"é".repeat(32),
        ] {
            assert_eq!(parse_sha256(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tls_settings_without_tls_are_refused_naming_their_keys() {
        let mut problems = Vec::new();
        from_section(
            UpstreamTlsSection {
                ca: Some("ca.pem".into()),
                pin_sha256: Some("nothex".into()),
                ..UpstreamTlsSection::default()
            },
            &mut problems,
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("upstream_tls.ca: only used"));
        assert!(problems[1].starts_with("upstream_tls.pin_sha256: only used"));
        assert!(problems[2].starts_with("upstream_tls.pin_sha256: \"nothex\" is not"));
    }
}
