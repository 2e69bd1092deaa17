//! SMTP AUTH (RFC 4954) PLAIN and LOGIN: decoding what the client sends
//! and the replies of the exchange. Passwords live only in [`Zeroizing`]
//! buffers and are never shown by `Debug`.

use crate::smtp::Reply;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use zeroize::Zeroizing;

/// A SASL mechanism relaygate offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616 PLAIN.
    Plain,
    /// The LOGIN mechanism (username and password prompts).
    Login,
}

impl Mechanism {
    /// The mechanism named in an AUTH command (already upper case).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "PLAIN" => Some(Self::Plain),
            "LOGIN" => Some(Self::Login),
            _ => None,
        }
    }

    /// The name as advertised and as shown to the policy.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::Login => "LOGIN",
        }
    }
}

/// The EHLO keyword line for AUTH.
pub const EHLO_LINE: &str = "AUTH PLAIN LOGIN";

/// Decoded credentials to check with the backend.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthAttempt {
    /// How they were given.
    pub mechanism: Mechanism,
    /// The authentication identity.
    pub user: String,
    /// The password.
    pub password: Zeroizing<String>,
}

impl std::fmt::Debug for AuthAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthAttempt")
            .field("mechanism", &self.mechanism)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What the credential backend said about an [`AuthAttempt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialCheck {
    /// The password is right.
    Accepted,
    /// The password is wrong or the user unknown.
    Rejected,
    /// Too many failures: try later.
    Throttled,
    /// The backend could not be asked.
    Unavailable,
}

/// Why a client's AUTH data could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Not base64, or not the mechanism's format.
    Malformed,
    /// PLAIN with an authorization identity other than the user.
    ForeignAuthzid,
}

/// Decode one base64 client response (`=` is the empty response).
pub fn decode_response(text: &[u8]) -> Result<Zeroizing<Vec<u8>>, DecodeError> {
    if text == b"=" {
        return Ok(Zeroizing::new(Vec::new()));
    }
    BASE64
        .decode(text)
        .map(Zeroizing::new)
        .map_err(|_| DecodeError::Malformed)
}

/// A PLAIN response: `authzid NUL authcid NUL password`.
pub fn decode_plain(text: &[u8]) -> Result<AuthAttempt, DecodeError> {
    let raw = decode_response(text)?;
    let mut parts = raw.split(|&b| b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DecodeError::Malformed);
    };
    let user = identity(user)?;
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err(DecodeError::ForeignAuthzid);
    }
    Ok(AuthAttempt {
        mechanism: Mechanism::Plain,
        user,
        password: secret(password)?,
    })
}

/// The user name of a LOGIN exchange.
pub fn decode_login_user(text: &[u8]) -> Result<String, DecodeError> {
    identity(&decode_response(text)?)
}

/// The password of a LOGIN exchange.
pub fn decode_login_password(text: &[u8]) -> Result<Zeroizing<String>, DecodeError> {
    secret(&decode_response(text)?)
}

/// A user name: UTF-8 without control characters.
fn identity(bytes: &[u8]) -> Result<String, DecodeError> {
    let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::Malformed)?;
    if text.chars().any(char::is_control) {
        return Err(DecodeError::Malformed);
    }
    Ok(text.to_string())
}

/// A password: UTF-8 without NUL, CR or LF (no backend could take them).
fn secret(bytes: &[u8]) -> Result<Zeroizing<String>, DecodeError> {
    if bytes.iter().any(|b| matches!(b, 0 | b'\r' | b'\n')) {
        return Err(DecodeError::Malformed);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::Malformed)?;
    Ok(Zeroizing::new(text.to_string()))
}

/// Replies of the AUTH exchange.
pub mod replies {
    use super::Reply;

    /// The empty challenge of PLAIN without an initial response.
    pub fn plain_challenge() -> Reply {
        Reply::new(334, "")
    }
    /// LOGIN's "Username:" prompt.
    pub fn login_user_challenge() -> Reply {
        Reply::new(334, "VXNlcm5hbWU6")
    }
    /// LOGIN's "Password:" prompt.
    pub fn login_password_challenge() -> Reply {
        Reply::new(334, "UGFzc3dvcmQ6")
    }
    /// 235: logged in.
    pub fn success() -> Reply {
        Reply::new(235, "2.7.0 Authentication successful")
    }
    /// 535: wrong credentials (the same words whatever was wrong).
    pub fn invalid_credentials() -> Reply {
        Reply::new(535, "5.7.8 Authentication credentials invalid")
    }
    /// 454: the backend is down or the client must slow down.
    pub fn temporary_failure() -> Reply {
        Reply::new(454, "4.7.0 Temporary authentication failure")
    }
    /// 501: the client gave up with `*`.
    pub fn cancelled() -> Reply {
        Reply::new(501, "5.0.0 Authentication cancelled")
    }
    /// 501: undecodable response.
    pub fn malformed() -> Reply {
        Reply::new(501, "5.5.2 Cannot decode the authentication data")
    }
    /// 504: a mechanism not offered.
    pub fn unknown_mechanism() -> Reply {
        Reply::new(
            504,
            "5.5.4 Unrecognized authentication mechanism (PLAIN and LOGIN are offered)",
        )
    }
    /// 530: this listener takes mail only after AUTH.
    pub fn authentication_required() -> Reply {
        Reply::new(530, "5.7.0 Authentication required")
    }
    /// 538: AUTH needs TLS first.
    pub fn encryption_required() -> Reply {
        Reply::new(
            538,
            "5.7.11 Encryption required for requested authentication mechanism",
        )
    }
    /// 503: AUTH where it is not allowed.
    pub fn bad_sequence(why: &str) -> Reply {
        Reply::new(503, format!("5.5.1 Error: {why}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(raw: &[u8]) -> Vec<u8> {
        BASE64.encode(raw).into_bytes()
    }

    #[test]
    fn plain_forms() {
        let attempt = decode_plain(&b64(b"\0alice\0secret")).unwrap();
        assert_eq!(attempt.user, "alice");
        assert_eq!(attempt.password.as_str(), "secret");
        assert_eq!(attempt.mechanism, Mechanism::Plain);
        let same = decode_plain(&b64(b"alice\0alice\0secret")).unwrap();
        assert_eq!(same.user, "alice");
        assert_eq!(
            decode_plain(&b64(b"bob\0alice\0secret")),
            Err(DecodeError::ForeignAuthzid)
        );
        for bad in [
            &b"alice\0secret"[..],
            b"\0alice\0sec\0ret",
            b"\0al\rice\0secret",
            b"\0alice\0sec\nret",
            b"\0\xff\0secret",
        ] {
            assert_eq!(
                decode_plain(&b64(bad)),
                Err(DecodeError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(decode_plain(b"not base64!"), Err(DecodeError::Malformed));
        assert_eq!(decode_plain(b"="), Err(DecodeError::Malformed));
    }

    #[test]
    fn login_parts_and_empty_response() {
        assert_eq!(decode_login_user(&b64(b"alice")).unwrap(), "alice");
        assert_eq!(decode_login_user(b"=").unwrap(), "");
        assert_eq!(decode_login_password(&b64(b"pw")).unwrap().as_str(), "pw");
        assert_eq!(decode_login_user(b"YWxp=ZQ"), Err(DecodeError::Malformed));
    }

    #[test]
    fn debug_never_shows_the_password() {
        let attempt = decode_plain(&b64(b"\0alice\0hunter2")).unwrap();
        let shown = format!("{attempt:?}");
        assert!(
            shown.contains("alice") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
