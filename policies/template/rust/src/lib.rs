//! A relaygate policy. This template refuses mail from the sender domains in
//! the config key `blocked_domains`; replace [`refuse_sender`] with your rule.

#[cfg(target_arch = "wasm32")]
mod component;

/// Reads `blocked_domains` (lower-cased).
pub fn blocked_domains(list: Option<Vec<String>>) -> Vec<String> {
    list.unwrap_or_default()
        .iter()
        .map(|domain| domain.trim().trim_end_matches('.').to_ascii_lowercase())
        .collect()
}

/// The reply text when `sender` is refused, else `None`.
pub fn refuse_sender(blocked: &[String], sender: &str) -> Option<String> {
    let (_, domain) = sender.rsplit_once('@')?;
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    blocked
        .contains(&domain)
        .then(|| format!("mail from {domain} is not accepted here"))
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
}
