//! relaygate's default policy: Apple Mail Service's (Mac OS X Server 10.1.3)
//! Restricted SMTP Relay and SMTP Authentication, as the README's decision table defines it.
//!
//! # Layout
//!
//! The decision logic is plain Rust, compiled and tested natively; only the
//! last module knows it runs inside a WebAssembly component.
//!
//! - [`config`]: the `[policy.config]` table → validated [`config::Settings`],
//!   every problem reported with its key.
//! - [`relay_list`]: `open_relay_addr_list` entries (addresses, CIDR networks,
//!   ranges, host and domain names) and matching a client against them.
//! - [`address`]: `local_domains` and whether a recipient is local, including
//!   the sender-routing tricks that make a "local" address relay.
//! - [`domain`]: host/domain name syntax and comparison, shared by both;
//!   [`punycode`] gives Unicode names their `xn--` form.
//! - [`decision`]: the RCPT TO table.
//! - [`allocator`]: the size-class allocator the component runs on (its
//!   hook calls allocate and free a few small strings each).
//! - `component` (wasm32 only): the WIT bindings; reads the settings once per
//!   instance (one instance per SMTP session) and answers the hooks.

pub mod address;
pub mod allocator;
pub mod config;
pub mod decision;
pub mod domain;
pub mod punycode;
pub mod relay_list;

#[cfg(target_arch = "wasm32")]
mod component;
