//! The guest-side kit every Rust policy builds on (the default policy in
//! `policies/apple-relay`, and `policies/submission`, `greylist` and
//! `rate-limit`). Policies depend on it under the name `kit`. Everything
//! but the [`glue`] macros is plain Rust, tested natively.
//!
//! - [`config`]: the `[policy.config]` value, where it comes from, and
//!   reading it with every problem named by key.
//! - [`net`]: client networks (/24, /64) and network lists.
//! - [`settings`]: settings the stateful policies share (client prefixes,
//!   local domains, the answer to a store failure).
//! - [`store`]: the host's `state` interface as a trait, and an in-memory
//!   store with a hand-driven clock for tests.
//! - [`reply`]: what a hook answers.
//! - [`stateful`]: what a stateful policy tells the component glue.
//! - [`glue`]: the WIT glue, as macros each policy's `component.rs` expands.

pub mod config;
pub mod glue;
pub mod net;
pub mod reply;
pub mod settings;
pub mod stateful;
pub mod store;

use sha2::{Digest, Sha256};

/// Longest key the policies build before hashing the variable part (the
/// host's default `[state] max_key_size` is 256).
pub const MAX_PLAIN_KEY: usize = 200;

/// A state key `prefix:part`, where a `part` longer than fits is replaced by
/// its SHA-256 (hex, first 32 digits), so keys stay within the host's limit.
pub fn state_key(prefix: &str, part: &str) -> String {
    let key = format!("{prefix}:{part}");
    if key.len() <= MAX_PLAIN_KEY {
        return key;
    }
    let digest = Sha256::digest(part.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}:#{hex}")
}

/// An address (or identity) in the form used in keys: lower case, without
/// surrounding angle brackets or spaces.
pub fn normalise_address(address: &str) -> String {
    address
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_keys_are_hashed_short_ones_kept() {
        assert_eq!(state_key("s", "a@example.org"), "s:a@example.org");
        let long = "x".repeat(300);
        let key = state_key("s", &long);
        assert!(key.starts_with("s:#") && key.len() == 3 + 32, "{key}");
        assert_ne!(key, state_key("s", &"y".repeat(300)));
    }

    #[test]
    fn addresses_are_normalised() {
        assert_eq!(normalise_address(" <Joe@Example.ORG> "), "joe@example.org");
    }
}
