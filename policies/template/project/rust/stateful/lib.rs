//! A relaygate policy that keeps state across sessions. This template refuses
//! mail from the sender domains in the config key `blocked_domains`, and
//! counts each client's recipients in relaygate's state store, deferring those
//! over `max_recipients_per_hour`; replace the rules with yours.

#[cfg(target_arch = "wasm32")]
mod component;

/// How long a client's recipient count lasts, in milliseconds: one hour.
pub const WINDOW_MS: u64 = 3_600_000;

/// `max_recipients_per_hour` when the config does not set it.
pub const DEFAULT_LIMIT: i64 = 100;

/// Reads `blocked_domains` (lower-cased).
pub fn blocked_domains(list: Option<Vec<String>>) -> Vec<String> {
    list.unwrap_or_default()
        .iter()
        .map(|domain| domain.trim().trim_end_matches('.').to_ascii_lowercase())
        .collect()
}

/// Reads `max_recipients_per_hour`: a positive number, [`DEFAULT_LIMIT`] when unset.
pub fn recipient_limit(value: Option<i64>) -> Result<i64, String> {
    match value {
        None => Ok(DEFAULT_LIMIT),
        Some(limit) if limit >= 1 => Ok(limit),
        Some(_) => Err("max_recipients_per_hour: must be at least 1".to_owned()),
    }
}

/// The reply text when `sender` is refused, else `None`.
pub fn refuse_sender(blocked: &[String], sender: &str) -> Option<String> {
    let (_, domain) = sender.rsplit_once('@')?;
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    blocked
        .contains(&domain)
        .then(|| format!("mail from {domain} is not accepted here"))
}

/// The state key counting the recipients of `client_ip` (keys are private to
/// the policy: relaygate prefixes them with its name).
pub fn counter_key(client_ip: &str) -> String {
    format!("rcpt:{client_ip}")
}

/// The reply text when a client's `count`-th recipient this hour is over
/// `limit`, else `None`.
pub fn refuse_recipient(count: i64, limit: i64) -> Option<String> {
    (count > limit).then(|| format!("more than {limit} recipients this hour, try again later"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_sender_domain() {
        let blocked = blocked_domains(Some(vec!["Spam.Example".to_owned()]));
        assert!(refuse_sender(&blocked, "x@spam.example").is_some());
        assert!(refuse_sender(&blocked, "x@ham.example").is_none());
        assert!(refuse_sender(&blocked, "").is_none());
    }

    #[test]
    fn recipients_over_the_limit() {
        assert_eq!(recipient_limit(None), Ok(DEFAULT_LIMIT));
        assert!(recipient_limit(Some(0)).is_err());
        assert!(refuse_recipient(2, 2).is_none());
        assert!(refuse_recipient(3, 2).is_some());
        assert_eq!(counter_key("192.0.2.1"), "rcpt:192.0.2.1");
    }
}
