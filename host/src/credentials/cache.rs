//! The success cache: a user whose credentials a backend accepted is
//! accepted again without asking, for `cache_ttl`.
//!
//! Only successes are stored, keyed by the user name and a SHA-256 of the
//! password keyed with a random secret made at start (never the password
//! itself), so a different password is a miss, not a hit. The cache holds at
//! most `cache_size` entries; when full, expired entries go first, then the
//! oldest.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Recently accepted credentials.
pub struct SuccessCache {
    ttl: Duration,
    capacity: usize,
    secret: [u8; 32],
    entries: Mutex<HashMap<[u8; 32], Instant>>,
}

impl SuccessCache {
    /// An empty cache remembering successes for `ttl`, at most `capacity` at once.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        let mut secret = [0u8; 32];
        let filled = rustls::crypto::ring::default_provider()
            .secure_random
            .fill(&mut secret);
        if filled.is_err() {
            // Without a random key the cache is still sound (it is keyed by the
            // password's hash), only easier to attack offline if memory leaks.
            tracing::warn!("no system randomness for the auth cache key; using a fixed key");
        }
        Self {
            ttl,
            capacity: capacity.max(1),
            secret,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn key(&self, user: &str, password: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.secret);
        hasher.update((user.len() as u64).to_be_bytes());
        hasher.update(user.as_bytes());
        hasher.update(password.as_bytes());
        hasher.finalize().into()
    }

    /// Whether `user` with this `password` was accepted less than `ttl` ago.
    pub fn contains(&self, user: &str, password: &str) -> bool {
        let key = self.key(user, password);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(&key) {
            Some(stored) if stored.elapsed() < self.ttl => true,
            Some(_) => {
                entries.remove(&key);
                false
            }
            None => false,
        }
    }

    /// Remembers that `user` with this `password` was accepted just now.
    pub fn insert(&self, user: &str, password: &str) {
        let key = self.key(user, password);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, stored| stored.elapsed() < self.ttl);
            if entries.len() >= self.capacity
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, stored)| **stored)
                    .map(|(key, _)| *key)
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(key, Instant::now());
    }

    /// How many entries are held (expired ones included until touched).
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_only_the_same_user_and_password_until_the_ttl() {
        let cache = SuccessCache::new(Duration::from_millis(200), 10);
        cache.insert("alice", "right");
        assert!(cache.contains("alice", "right"));
        assert!(!cache.contains("alice", "wrong"));
        assert!(!cache.contains("bob", "right"));
        assert!(!cache.contains("alicer", "ight"));
        std::thread::sleep(Duration::from_millis(250));
        assert!(!cache.contains("alice", "right"));
        assert!(cache.is_empty());
    }

    #[test]
    fn stays_within_its_capacity_by_dropping_the_oldest() {
        let cache = SuccessCache::new(Duration::from_secs(60), 2);
        cache.insert("a", "1");
        std::thread::sleep(Duration::from_millis(2));
        cache.insert("b", "2");
        std::thread::sleep(Duration::from_millis(2));
        cache.insert("c", "3");
        assert_eq!(cache.len(), 2);
        assert!(!cache.contains("a", "1"));
        assert!(cache.contains("b", "2"));
        assert!(cache.contains("c", "3"));
    }
}
