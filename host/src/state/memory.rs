//! The in-process backend: a map with expiry, bounded in entries. Expired
//! entries are swept at most every [`SWEEP_INTERVAL`] on writes and whenever
//! the map is full; a full map then drops the entry closest to expiry, so a
//! flood of new keys cannot grow memory or lock out fresh writes.

use super::{BoxFuture, StateBackend, StateError};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often writes sweep out expired entries.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

struct Entry {
    value: Vec<u8>,
    expires: Instant,
}

struct Map {
    entries: HashMap<String, Entry>,
    last_sweep: Instant,
}

/// State in this process's memory: the default, for a single proxy.
pub struct MemoryBackend {
    map: Mutex<Map>,
    max_entries: usize,
}

impl MemoryBackend {
    /// An empty store holding at most `max_entries` keys (at least one).
    pub fn new(max_entries: usize) -> Self {
        Self {
            map: Mutex::new(Map {
                entries: HashMap::new(),
                last_sweep: Instant::now(),
            }),
            max_entries: max_entries.max(1),
        }
    }

    /// Live entries now held (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Map> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get_now(&self, key: &str) -> Option<Vec<u8>> {
        let now = Instant::now();
        let mut map = self.lock();
        match map.entries.get(key) {
            Some(entry) if entry.expires > now => Some(entry.value.clone()),
            Some(_) => {
                map.entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn set_now(&self, key: &str, value: &[u8], ttl: Duration) {
        let now = Instant::now();
        let mut map = self.lock();
        self.before_write(&mut map, key, now);
        map.entries.insert(
            key.to_string(),
            Entry {
                value: value.to_vec(),
                expires: now + ttl,
            },
        );
    }

    fn increment_now(&self, key: &str, delta: i64, ttl: Duration) -> Result<i64, StateError> {
        let now = Instant::now();
        let mut map = self.lock();
        self.before_write(&mut map, key, now);
        let (current, expires) = match map.entries.get(key) {
            Some(entry) if entry.expires > now => {
                let text = std::str::from_utf8(&entry.value).ok();
                let number = text.and_then(|t| t.parse::<i64>().ok()).ok_or_else(|| {
                    StateError::Invalid("the value is not a decimal integer".to_string())
                })?;
                (number, entry.expires)
            }
            _ => (0, now + ttl),
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| StateError::Invalid("the counter would overflow".to_string()))?;
        map.entries.insert(
            key.to_string(),
            Entry {
                value: next.to_string().into_bytes(),
                expires,
            },
        );
        Ok(next)
    }

    fn delete_now(&self, key: &str) -> bool {
        let now = Instant::now();
        self.lock()
            .entries
            .remove(key)
            .is_some_and(|entry| entry.expires > now)
    }

    /// Sweep when due, and make room when `key` is new and the map is full.
    fn before_write(&self, map: &mut Map, key: &str, now: Instant) {
        let full = map.entries.len() >= self.max_entries && !map.entries.contains_key(key);
        if full || now.duration_since(map.last_sweep) >= SWEEP_INTERVAL {
            map.entries.retain(|_, entry| entry.expires > now);
            map.last_sweep = now;
        }
        while map.entries.len() >= self.max_entries && !map.entries.contains_key(key) {
            let soonest = map
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.expires)
                .map(|(key, _)| key.clone());
            match soonest {
                Some(victim) => map.entries.remove(&victim),
                None => break,
            };
        }
    }
}

impl StateBackend for MemoryBackend {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StateError>> {
        Box::pin(async move { Ok(self.get_now(key)) })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            self.set_now(key, value, ttl);
            Ok(())
        })
    }

    fn increment<'a>(
        &'a self,
        key: &'a str,
        delta: i64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<i64, StateError>> {
        Box::pin(async move { self.increment_now(key, delta, ttl) })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, StateError>> {
        Box::pin(async move { Ok(self.delete_now(key)) })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async { Ok(()) })
    }

    fn describe(&self) -> String {
        format!(
            "memory (this process only, at most {} keys)",
            self.max_entries
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn values_expire() {
        let store = MemoryBackend::new(10);
        store.set_now("k", b"v", Duration::from_millis(30));
        assert_eq!(store.get_now("k"), Some(b"v".to_vec()));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(store.get_now("k"), None);
        assert!(!store.delete_now("k"));
    }

    #[test]
    fn counters_keep_their_first_expiry() {
        let store = MemoryBackend::new(10);
        assert_eq!(
            store
                .increment_now("c", 1, Duration::from_millis(60))
                .unwrap(),
            1
        );
        std::thread::sleep(Duration::from_millis(30));
        // A later increment with a long TTL does not extend the window.
        assert_eq!(store.increment_now("c", 2, MINUTE).unwrap(), 3);
        assert_eq!(store.get_now("c"), Some(b"3".to_vec()));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(store.increment_now("c", 1, MINUTE).unwrap(), 1);
    }

    #[test]
    fn incrementing_text_is_refused() {
        let store = MemoryBackend::new(10);
        store.set_now("k", b"hello", MINUTE);
        assert!(matches!(
            store.increment_now("k", 1, MINUTE),
            Err(StateError::Invalid(_))
        ));
        store.set_now("k", b"41", MINUTE);
        assert_eq!(store.increment_now("k", 1, MINUTE).unwrap(), 42);
        assert_eq!(store.increment_now("k", -50, MINUTE).unwrap(), -8);
    }

    #[test]
    fn a_full_store_drops_what_expires_first() {
        let store = MemoryBackend::new(3);
        store.set_now("long", b"1", MINUTE * 10);
        store.set_now("short", b"2", MINUTE);
        store.set_now("mid", b"3", MINUTE * 5);
        store.set_now("new", b"4", MINUTE * 5);
        assert_eq!(store.len(), 3);
        assert_eq!(store.get_now("short"), None);
        for key in ["long", "mid", "new"] {
            assert!(store.get_now(key).is_some(), "{key}");
        }
        // Overwriting an existing key never evicts.
        store.set_now("long", b"5", MINUTE);
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn a_full_store_sweeps_expired_entries_first() {
        let store = MemoryBackend::new(2);
        store.set_now("old", b"1", Duration::from_millis(10));
        store.set_now("keep", b"2", MINUTE);
        std::thread::sleep(Duration::from_millis(20));
        store.set_now("new", b"3", Duration::from_millis(500));
        assert!(store.get_now("keep").is_some());
        assert!(store.get_now("new").is_some());
    }

    #[test]
    fn delete_says_whether_it_existed() {
        let store = MemoryBackend::new(10);
        store.set_now("k", b"v", MINUTE);
        assert!(store.delete_now("k"));
        assert!(!store.delete_now("k"));
        assert!(store.is_empty());
    }
}
