//! relaygate: an SMTP filtering proxy whose relay and authentication rules
//! are WebAssembly components.
//!
//! # Layout
//! One message, end to end, passes these modules in this order; each
//! arrow is a module boundary and dependencies point the same way:
//! - [`listener`]: accept loop over the named listeners, connection
//!   permits, per-client limits, graceful shutdown;
//!   [`listener::proxy_protocol`] headers on load-balanced listeners.
//! - [`connection`]: drives one client connection: buffered client I/O
//!   with limits and timeouts ([`connection::client_io`]), feeding the
//!   session and performing the actions it asks for.
//! - [`session`]: the sans-IO SMTP state machine: (state, event) -> action;
//!   [`session::sasl`] decodes AUTH PLAIN/LOGIN exchanges.
//! - [`policy`]: the wasmtime host: loading, limits, hook calls, imports.
//! - [`upstream`]: the SMTP client towards the existing mail server.
//!
//! Beside the flow, with no I/O: [`smtp`] (command parsing, paths, replies,
//! message-data checks), [`hook`] (the plain data a session and its policy
//! exchange) and [`net`] (client address helpers). Services the flow
//! calls: [`credentials`] (password checks against a file, IMAP, POP3 or
//! SMTP, with brute-force limits), [`dns`] (lookups offered to policies),
//! [`state`] (key-value state for stateful policies, in-process or Redis),
//! [`tls`] (STARTTLS and implicit TLS towards clients).
//!
//! [`policy_test`] is `relaygate policy test`: a cases file run through
//! [`policy_test::offline`] (the sans-IO [`session`] driven to its end by a
//! scripted client, upstream and credentials, asking the policy as the
//! connection driver does) and the report of its checks.
//!
//! [`config`] turns the TOML file into one validated [`config::Config`]
//! ([`config::file`] is the one typed definition of every key with its
//! default and doc; `config/validate.rs` checks it; `config/load.rs` reads
//! it and checks the files it names, the `[tls]` certificate through the
//! check its caller supplies, [`tls::check`]);
//! [`app`] assembles a running proxy from it. [`reload`] swaps a new policy
//! in (triggered by SIGHUP, [`watch`] or the [`admin`] endpoint) while
//! sessions in progress keep the one they started with; [`metrics`] counts
//! what happens for the admin endpoint's `/metrics`, and [`recent`] keeps
//! the last reloads and refusals for its status page. `ARCHITECTURE.md` at
//! the repository root has the whole map.

pub mod admin;
pub mod app;
pub mod config;
pub mod connection;
pub mod credentials;
pub mod dns;
pub mod hook;
pub mod lazy_timeout;
pub mod listener;
pub mod metrics;
pub mod net;
pub mod policy;
pub mod policy_test;
pub mod recent;
pub mod reload;
pub mod session;
pub mod smtp;
pub mod state;
pub mod tls;
pub mod tls_client;
pub mod upstream;
pub mod watch;
