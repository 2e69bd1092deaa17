//! The host's `state` interface seen as a trait, so that policy logic runs
//! natively in tests against [`MemoryStore`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// Why a state call failed (the WIT `state-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The store is unreachable or failed.
    Unavailable(String),
    /// The store did not answer in time.
    Timeout,
    /// Key or value over the host's limit.
    TooLarge(String),
    /// A request the host refused.
    Invalid(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Unavailable(why) => write!(f, "state unavailable: {why}"),
            StoreError::Timeout => f.write_str("state timed out"),
            StoreError::TooLarge(why) => write!(f, "state refused, too large: {why}"),
            StoreError::Invalid(why) => write!(f, "state refused: {why}"),
        }
    }
}

/// Key-value state with expiry; times to live in milliseconds.
pub trait Store {
    /// The value under `key`.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Store `value` under `key` for `ttl_ms`.
    fn set(&self, key: &str, value: &[u8], ttl_ms: u64) -> Result<(), StoreError>;
    /// Add `delta` to the counter under `key` (created with `ttl_ms`).
    fn increment(&self, key: &str, delta: i64, ttl_ms: u64) -> Result<i64, StoreError>;
    /// Remove `key`.
    fn delete(&self, key: &str) -> Result<bool, StoreError>;
}

/// An in-memory store with a clock the test moves by hand, and a switch
/// that makes every call fail as an unreachable server would.
#[derive(Default)]
pub struct MemoryStore {
    entries: RefCell<HashMap<String, (Vec<u8>, u64)>>,
    now_ms: Cell<u64>,
    down: Cell<bool>,
}

impl MemoryStore {
    /// An empty store at time 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Move the clock forward.
    pub fn advance_ms(&self, ms: u64) {
        self.now_ms.set(self.now_ms.get() + ms);
    }

    /// Make every call fail (true) or work again (false).
    pub fn set_down(&self, down: bool) {
        self.down.set(down);
    }

    /// Live keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        let now = self.now_ms.get();
        let mut keys: Vec<String> = self
            .entries
            .borrow()
            .iter()
            .filter(|(_, (_, expires))| *expires > now)
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.get() {
            Err(StoreError::Unavailable("connection refused".to_string()))
        } else {
            Ok(())
        }
    }

    fn live(&self, key: &str) -> Option<(Vec<u8>, u64)> {
        let now = self.now_ms.get();
        self.entries
            .borrow()
            .get(key)
            .filter(|(_, expires)| *expires > now)
            .cloned()
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.check()?;
        Ok(self.live(key).map(|(value, _)| value))
    }

    fn set(&self, key: &str, value: &[u8], ttl_ms: u64) -> Result<(), StoreError> {
        self.check()?;
        let expires = self.now_ms.get() + ttl_ms;
        self.entries
            .borrow_mut()
            .insert(key.to_string(), (value.to_vec(), expires));
        Ok(())
    }

    fn increment(&self, key: &str, delta: i64, ttl_ms: u64) -> Result<i64, StoreError> {
        self.check()?;
        let (current, expires) = match self.live(key) {
            Some((value, expires)) => {
                let number = std::str::from_utf8(&value)
                    .ok()
                    .and_then(|t| t.parse::<i64>().ok())
                    .ok_or_else(|| StoreError::Invalid("not an integer".to_string()))?;
                (number, expires)
            }
            None => (0, self.now_ms.get() + ttl_ms),
        };
        let next = current + delta;
        self.entries
            .borrow_mut()
            .insert(key.to_string(), (next.to_string().into_bytes(), expires));
        Ok(next)
    }

    fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.check()?;
        let existed = self.live(key).is_some();
        self.entries.borrow_mut().remove(key);
        Ok(existed)
    }
}
