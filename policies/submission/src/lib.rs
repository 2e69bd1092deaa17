//! relaygate policy `submission`: for a mail submission port (587/465).
//!
//! - Every transaction needs SMTP AUTH: MAIL FROM and RCPT TO from a client
//!   that has not logged in get `530 5.7.0`, unless the client is in
//!   `trusted_networks` (e.g. a webmail host that submits on users' behalf).
//! - The sender's domain must belong to the authenticated user: the domain
//!   of a `user@domain` login, `default_domain` for a bare `user`, plus any
//!   domains `user_domains` gives that user. Otherwise `553 5.7.1`.
//!
//! The rules are plain Rust ([`rules`]); only `component.rs` knows about WIT.

pub mod rules;

#[cfg(target_arch = "wasm32")]
mod component;
