//! Host and domain names: the syntax accepted in the configuration and the
//! comparison rules shared by the relay list and the local domains.
//!
//! Names compare case-insensitively and without a trailing dot, so every name
//! is brought to one normal form (ASCII lower case, no trailing dot) before it
//! is stored or compared. An internationalised name may be written in Unicode
//! or in its ASCII (`xn--`) form: a Unicode label is lower-cased and brought
//! to its `xn--` form ([`crate::punycode`]), so both spellings compare equal.
//! (Lower-casing stands in for IDNA's full mapping; names that differ only in
//! Unicode normalisation do not compare equal.)

/// The longest name DNS can carry in text form, without the trailing dot.
const MAX_NAME_LEN: usize = 253;
/// The longest label DNS allows.
const MAX_LABEL_LEN: usize = 63;

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// The name breaks DNS host name syntax (empty label, bad character,
    /// label or name too long, numeric top-level label).
    Invalid,
}

/// Brings a host or domain name to its normal form: ASCII lower case without
/// a trailing dot, Unicode labels in their `xn--` form, or an error when it
/// is not a syntactically valid name.
///
/// Labels may hold letters, digits, `-` (not first or last) and `_` (seen in
/// real reverse-DNS names). The last label must not be all digits, so that a
/// mistyped IPv4 address such as `10.0.0.300` is not taken for a name.
pub fn normalize(text: &str) -> Result<String, NameError> {
    let ascii;
    let text = if text.is_ascii() {
        text
    } else {
        ascii = to_ascii_form(text)?;
        &ascii
    };
    let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(NameError::Invalid);
    }
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    let last_label_numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|label| label.bytes().all(|b| b.is_ascii_digit()));
    if labels_ok && !last_label_numeric {
        Ok(name)
    } else {
        Err(NameError::Invalid)
    }
}

/// The ASCII form of a name written (partly) in Unicode: the ideographic and
/// full-width full stops separate labels as `.` does (IDNA), each label is
/// lower-cased, and a label with non-ASCII characters becomes `xn--` and its
/// Punycode. The result still has to pass the syntax checks.
fn to_ascii_form(text: &str) -> Result<String, NameError> {
    let dotted: String = text
        .chars()
        .map(|c| match c {
            '\u{3002}' | '\u{ff0e}' | '\u{ff61}' => '.',
            c => c,
        })
        .collect();
    let labels: Result<Vec<String>, NameError> = dotted
        .split('.')
        .map(|label| {
            let lower: String = label.chars().flat_map(char::to_lowercase).collect();
            if lower.is_ascii() {
                Ok(lower)
            } else {
                crate::punycode::encode(&lower)
                    .map(|encoded| format!("xn--{encoded}"))
                    .ok_or(NameError::Invalid)
            }
        })
        .collect();
    Ok(labels?.join("."))
}

/// True when `name` is `domain` itself or a host under it (`name` ends with
/// `.` + `domain`). Both must already be in normal form.
pub fn is_within(name: &str, domain: &str) -> bool {
    match name.strip_suffix(domain) {
        Some("") => true,
        Some(prefix) => prefix.ends_with('.'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_form() {
        let cases = [
            ("example.com", Ok("example.com")),
            ("Example.COM.", Ok("example.com")),
            ("mail-gw.example.com", Ok("mail-gw.example.com")),
            ("_dmarc.example.com", Ok("_dmarc.example.com")),
            ("localhost", Ok("localhost")),
            ("123.example.com", Ok("123.example.com")),
            ("", Err(NameError::Invalid)),
            (".", Err(NameError::Invalid)),
            ("example..com", Err(NameError::Invalid)),
            (".example.com", Err(NameError::Invalid)),
            ("example.com..", Err(NameError::Invalid)),
            ("-bad.example.com", Err(NameError::Invalid)),
            ("bad-.example.com", Err(NameError::Invalid)),
            ("sp ace.example.com", Err(NameError::Invalid)),
            ("a/b.example.com", Err(NameError::Invalid)),
            ("10.0.0.300", Err(NameError::Invalid)),
            ("2001:db8::1", Err(NameError::Invalid)),
            ("bücher.example", Ok("xn--bcher-kva.example")),
            ("Bücher.Example.", Ok("xn--bcher-kva.example")),
            ("XN--BCHER-KVA.example", Ok("xn--bcher-kva.example")),
            ("例子.广告", Ok("xn--fsqu00a.xn--4rr70v")),
            ("例子。广告", Ok("xn--fsqu00a.xn--4rr70v")),
            (
                "mail.παράδειγμα.δοκιμή",
                Ok("mail.xn--hxajbheg2az3al.xn--jxalpdlp"),
            ),
            ("bü cher.example", Err(NameError::Invalid)),
            ("bücher..example", Err(NameError::Invalid)),
        ];
        for (input, expected) in cases {
            assert_eq!(
                normalize(input),
                expected.map(str::to_owned),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn label_and_name_lengths() {
        let label63 = "a".repeat(63);
        assert!(normalize(&format!("{label63}.com")).is_ok());
        assert!(normalize(&format!("{label63}a.com")).is_err());
        let long = vec!["abcdefghi"; 26].join("."); // 26 * 10 - 1 = 259 bytes
        assert_eq!(normalize(&long), Err(NameError::Invalid));
    }

    #[test]
    fn within() {
        let cases = [
            ("example.com", "example.com", true),
            ("mx.example.com", "example.com", true),
            ("a.b.example.com", "example.com", true),
            ("badexample.com", "example.com", false),
            ("example.com.evil.net", "example.com", false),
            ("com", "example.com", false),
        ];
        for (name, domain, expected) in cases {
            assert_eq!(is_within(name, domain), expected, "{name} in {domain}");
        }
    }
}
