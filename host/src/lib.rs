//! relaygate: an SMTP filtering proxy whose relay and authentication rules
//! are WebAssembly components.
//!
//! # Layout
//! One message, end to end, passes these modules in this order:
//! - [`server`]: accept loop, connection permits, graceful shutdown;
//!   [`proxy_protocol`] headers on load-balanced listeners.
//! - [`connection`]: buffered client I/O, command and DATA framing with
//!   limits and timeouts, SMTP-smuggling checks.
//! - [`smtp`]: the vocabulary: command parsing, path syntax, replies.
//! - [`session`]: the sans-IO SMTP state machine: (state, event) -> action.
//! - [`proxy`]: the driver that performs a session's actions.
//! - [`policy`]: the wasmtime host: loading, limits, hook calls, imports.
//! - [`dns`]: lookups offered to policies.
//! - [`state`]: key-value state that outlives a session, for stateful
//!   policies (in-process or Redis).
//! - [`upstream`]: the SMTP client towards the existing mail server.
//! - [`tls`]: STARTTLS towards clients (rustls acceptor, clear-or-TLS stream).
//!
//! [`config`] turns the TOML file into one validated [`config::Config`];
//! [`app`] assembles a running proxy from it. [`reload`] swaps a new policy
//! in (triggered by SIGHUP, [`watch`] or the [`admin`] endpoint) while
//! sessions in progress keep the one they started with; [`metrics`] counts
//! what happens for the admin endpoint's `/metrics`.

pub mod admin;
pub mod app;
pub mod auth;
pub mod client_group;
pub mod config;
pub mod connection;
pub mod dns;
pub mod lazy_timeout;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod proxy_protocol;
pub mod reload;
pub mod server;
pub mod session;
pub mod smtp;
pub mod state;
pub mod tls;
pub mod upstream;
pub mod watch;
