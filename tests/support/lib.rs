//! Test support for relaygate's integration tests.
//!
//! Every server here binds only to loopback (`127.0.0.0/8`) on an OS-chosen port, runs on
//! the tokio runtime of the test that starts it, and stops when its handle is dropped, so a
//! failing test never leaves a listener or a child process behind.
//!
//! # Layout
//!
//! - [`dns`]: a small authoritative DNS server (UDP and TCP on one port) answering from a
//!   fixed table, with names that fail (SERVFAIL) or never answer, and a query counter.
//! - [`upstream`]: a recording SMTP server standing in for the real mail server; strict
//!   about the protocol so that a proxy that forwards something it should not is caught.
//! - [`certs`]: a CA and server certificates made at test time, as PEM files.
//! - [`dovecot`]: a real Dovecot (IMAP, POP3, with and without TLS) with a passwd-file
//!   user database, started from a generated configuration.
//! - [`admin`]: plain HTTP requests to relaygate's admin endpoint.
//! - [`client`]: a minimal SMTP client that can connect from any `127.0.0.x` address and
//!   never waits for a reply longer than its read timeout.
//! - [`logs`]: relaygate's log events captured in memory as JSON lines.
//! - [`postfix`]: a real Postfix (`smtpd` with XCLIENT) from a private configuration,
//!   holding every message it accepts so a test reads what it recorded; needs root.
//! - [`policies`]: the variants under `policies/`, built from source when a test asks.
//! - [`proxy`]: relaygate itself, in-process on a loopback port, stopped when dropped.
//! - [`redis`]: a real `redis-server` child on a loopback port, killed when dropped and
//!   restartable, for the shared-state tests.
//! - [`tools`]: finding and running the Debian tools some tests use (`smtp-sink`,
//!   `smtp-source`, `swaks`), skipping cleanly when they are missing.

pub mod admin;
pub mod certs;
pub mod client;
pub mod dns;
pub mod dovecot;
pub mod logs;
pub mod policies;
pub mod postfix;
pub mod proxy;
pub mod redis;
pub mod tools;
pub mod upstream;
