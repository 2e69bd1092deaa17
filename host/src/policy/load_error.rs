//! Why a module could not be loaded: the one error type of compiling,
//! checking and initialising a component.

use super::bindings::{PACKAGE, VERSION};

/// Why a module could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a valid component (or not WebAssembly at all).
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    /// Built against a different, incompatible version of the WIT package.
    #[error("built for {found}, but this relaygate provides {PACKAGE}@{VERSION}")]
    VersionMismatch {
        /// What the component names, `package@version`.
        found: String,
    },
    /// Does not export the hooks, or imports something the host does not give.
    #[error("does not fit the {PACKAGE}@{VERSION} world: {0}")]
    WrongWorld(String),
    /// Its `init` refused the configuration.
    #[error("the policy refused its configuration:\n  {}", .0.join("\n  "))]
    Config(Vec<String>),
    /// `[policy] memory_limit` was raised above what the instance pool set
    /// up at start allows.
    #[error(
        "policy.memory_limit is {memory_limit} bytes, but the instance pool was set up at start for {slot}: restart relaygate to raise it"
    )]
    PoolTooSmall {
        /// The configured limit.
        memory_limit: usize,
        /// The pool's slot size.
        slot: usize,
    },
    /// `init` trapped, timed out or ran out of memory.
    #[error("the policy failed in init: {0}")]
    InitFailed(String),
}
