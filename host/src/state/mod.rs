//! State that outlives a session, for policies that import the WIT `state`
//! interface (greylisting, rate limits).
//!
//! One [`StateStore`] per running proxy, kept across policy reloads, backed by
//! a [`StateBackend`]: [`memory::MemoryBackend`] in this process (the default,
//! needs nothing, survives nothing) or [`redis::RedisBackend`] shared by
//! several proxies. A policy reaches it through a [`Namespace`], which
//! prefixes every key with the policy's name, enforces the size limits and
//! bounds every call by `[state] timeout`.

pub mod memory;
pub mod redis;

use crate::config::{StateBackendKind, StateConfig};
use crate::metrics::KindLabel;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Longest time to live a policy may ask for.
pub const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

/// Why a state operation did not happen; mirrors the WIT `state-error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The store cannot be reached or failed the operation.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// The store did not answer in time.
    #[error("state store timed out")]
    Timeout,
    /// A key or value is over its limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The request cannot be carried out (empty key, bad TTL, not a counter).
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl StateError {
    /// Short kind for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            StateError::Unavailable(_) => "unavailable",
            StateError::Timeout => "timeout",
            StateError::TooLarge(_) => "too-large",
            StateError::Invalid(_) => "invalid",
        }
    }
}

/// A boxed future, so that backends can sit behind one trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A key-value store with expiry. Keys reaching a backend are already
/// namespaced and checked; every write carries a time to live.
pub trait StateBackend: Send + Sync {
    /// The value of `key`, none when missing or expired.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StateError>>;
    /// Store `value` under `key` for `ttl`.
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StateError>>;
    /// Add `delta` to the counter under `key`, creating it with `ttl` when
    /// missing (an existing counter keeps its expiry); the new value.
    fn increment<'a>(
        &'a self,
        key: &'a str,
        delta: i64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<i64, StateError>>;
    /// Remove `key`; whether it existed.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, StateError>>;
    /// Check the store answers.
    fn ping(&self) -> BoxFuture<'_, Result<(), StateError>>;
    /// One line for logs and `relaygate check`, without secrets.
    fn describe(&self) -> String;
}

/// Limits and settings every namespace applies before a backend is asked.
#[derive(Debug, Clone)]
struct Rules {
    prefix: String,
    timeout: Duration,
    max_key_size: usize,
    max_value_size: usize,
}

/// The proxy's state store; cheap to clone, shared by every policy instance
/// and kept across reloads.
#[derive(Clone)]
pub struct StateStore {
    backend: Arc<dyn StateBackend>,
    rules: Arc<Rules>,
    errors: Family<KindLabel, Counter>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("backend", &self.backend.describe())
            .finish()
    }
}

impl StateStore {
    /// The store `[state]` asks for. A Redis backend connects lazily (a
    /// proxy starts while Redis is down, and its policy sees `unavailable`);
    /// this must run inside a tokio runtime.
    pub fn from_config(config: &StateConfig) -> anyhow::Result<Self> {
        let backend: Arc<dyn StateBackend> = match &config.backend {
            StateBackendKind::Memory => Arc::new(memory::MemoryBackend::new(config.max_entries)),
            StateBackendKind::Redis { url } => {
                Arc::new(redis::RedisBackend::connect_lazily(url, config.timeout)?)
            }
        };
        Ok(Self::with_backend(backend, config))
    }

    /// The in-process store with the defaults of `[state]`.
    pub fn memory_default() -> Self {
        let config = StateConfig::default();
        Self::with_backend(
            Arc::new(memory::MemoryBackend::new(config.max_entries)),
            &config,
        )
    }

    /// A store over any backend, with `config`'s limits.
    pub fn with_backend(backend: Arc<dyn StateBackend>, config: &StateConfig) -> Self {
        Self {
            backend,
            rules: Arc::new(Rules {
                prefix: config.prefix.clone(),
                timeout: config.timeout,
                max_key_size: config.max_key_size,
                max_value_size: config.max_value_size,
            }),
            errors: Family::default(),
        }
    }

    /// Count failed operations in `errors` (the proxy's
    /// `relaygate_state_errors_total{kind}`).
    pub fn with_error_counter(mut self, errors: Family<KindLabel, Counter>) -> Self {
        self.errors = errors;
        self
    }

    fn count<T>(&self, result: Result<T, StateError>) -> Result<T, StateError> {
        if let Err(error) = &result {
            self.errors
                .get_or_create(&KindLabel { kind: error.kind() })
                .inc();
        }
        result
    }

    /// The keys of the policy named `policy`.
    pub fn namespace(&self, policy: &str) -> Namespace {
        Namespace {
            prefix: format!("{}{}:", self.rules.prefix, escape_namespace(policy)),
            store: self.clone(),
        }
    }

    /// Check the store answers within the timeout.
    pub async fn ping(&self) -> Result<(), StateError> {
        bounded(self.rules.timeout, self.backend.ping()).await
    }

    /// One line describing the backend.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }
}

/// A policy's view of the store: its own keys only, checked and bounded.
#[derive(Clone)]
pub struct Namespace {
    store: StateStore,
    prefix: String,
}

impl Namespace {
    /// The value of `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let result = async {
            let key = self.key(key)?;
            bounded(self.store.rules.timeout, self.store.backend.get(&key)).await
        };
        self.store.count(result.await)
    }

    /// Store `value` under `key` for `ttl`.
    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StateError> {
        let result = async {
            let key = self.key(key)?;
            let max = self.store.rules.max_value_size;
            if value.len() > max {
                return Err(StateError::TooLarge(format!(
                    "value of {} bytes is over [state] max_value_size ({max} bytes)",
                    value.len()
                )));
            }
            check_ttl(ttl)?;
            bounded(
                self.store.rules.timeout,
                self.store.backend.set(&key, value, ttl),
            )
            .await
        };
        self.store.count(result.await)
    }

    /// Add `delta` to the counter under `key`.
    pub async fn increment(&self, key: &str, delta: i64, ttl: Duration) -> Result<i64, StateError> {
        let result = async {
            let key = self.key(key)?;
            check_ttl(ttl)?;
            bounded(
                self.store.rules.timeout,
                self.store.backend.increment(&key, delta, ttl),
            )
            .await
        };
        self.store.count(result.await)
    }

    /// Remove `key`.
    pub async fn delete(&self, key: &str) -> Result<bool, StateError> {
        let result = async {
            let key = self.key(key)?;
            bounded(self.store.rules.timeout, self.store.backend.delete(&key)).await
        };
        self.store.count(result.await)
    }

    /// The backend's key for the policy's `key`, after the checks.
    fn key(&self, key: &str) -> Result<String, StateError> {
        let max = self.store.rules.max_key_size;
        if key.is_empty() {
            return Err(StateError::Invalid("the key is empty".to_string()));
        }
        if key.len() > max {
            return Err(StateError::TooLarge(format!(
                "key of {} bytes is over [state] max_key_size ({max} bytes)",
                key.len()
            )));
        }
        Ok(format!("{}{key}", self.prefix))
    }
}

fn check_ttl(ttl: Duration) -> Result<(), StateError> {
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(StateError::Invalid(format!(
            "time to live of {} ms is not between 1 ms and one year",
            ttl.as_millis()
        )));
    }
    Ok(())
}

/// Run a backend call, giving up after `timeout`.
async fn bounded<T>(
    timeout: Duration,
    call: BoxFuture<'_, Result<T, StateError>>,
) -> Result<T, StateError> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or(Err(StateError::Timeout))
}

/// A policy name as a key segment: ':' and '%' escaped so that names cannot
/// collide ("a:b" + "c" versus "a" + "b:c").
fn escape_namespace(name: &str) -> String {
    name.replace('%', "%25").replace(':', "%3A")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> StateStore {
        let config = StateConfig {
            max_key_size: 8,
            max_value_size: 4,
            ..StateConfig::default()
        };
        StateStore::with_backend(Arc::new(memory::MemoryBackend::new(100)), &config)
    }

    #[tokio::test]
    async fn namespaces_do_not_see_each_other() {
        let store = store();
        let (a, b) = (store.namespace("a"), store.namespace("b"));
        let ttl = Duration::from_secs(60);
        a.set("k", b"1", ttl).await.unwrap();
        assert_eq!(a.get("k").await.unwrap(), Some(b"1".to_vec()));
        assert_eq!(b.get("k").await.unwrap(), None);
        assert_eq!(b.increment("k", 5, ttl).await.unwrap(), 5);
        assert_eq!(a.get("k").await.unwrap(), Some(b"1".to_vec()));
        // Names with the separator do not collide with other splits.
        let (x, y) = (store.namespace("p:q"), store.namespace("p"));
        x.set("r", b"x", ttl).await.unwrap();
        assert_eq!(y.get("q:r").await.unwrap(), None);
    }

    #[tokio::test]
    async fn limits_are_enforced_before_the_backend() {
        let ns = store().namespace("p");
        let ttl = Duration::from_secs(60);
        assert!(matches!(
            ns.set("123456789", b"v", ttl).await,
            Err(StateError::TooLarge(why)) if why.contains("max_key_size")
        ));
        assert!(matches!(
            ns.set("k", b"12345", ttl).await,
            Err(StateError::TooLarge(why)) if why.contains("max_value_size")
        ));
        assert!(matches!(ns.get("").await, Err(StateError::Invalid(_))));
        assert!(matches!(
            ns.set("k", b"v", Duration::ZERO).await,
            Err(StateError::Invalid(_))
        ));
        assert!(matches!(
            ns.increment("k", 1, MAX_TTL + Duration::from_secs(1)).await,
            Err(StateError::Invalid(_))
        ));
        // At the limits exactly, all is well.
        ns.set("12345678", b"1234", ttl).await.unwrap();
    }

    #[tokio::test]
    async fn failures_are_counted_by_kind() {
        let errors = Family::<KindLabel, Counter>::default();
        let store = store().with_error_counter(errors.clone());
        let ns = store.namespace("p");
        let ttl = Duration::from_secs(60);
        let _ = ns.set("123456789", b"v", ttl).await;
        let _ = ns.set("k", b"12345", ttl).await;
        let _ = ns.get("").await;
        ns.set("k", b"1", ttl).await.unwrap();
        let count = |kind| errors.get_or_create(&KindLabel { kind }).get();
        assert_eq!(count("too-large"), 2);
        assert_eq!(count("invalid"), 1);
        assert_eq!(count("timeout"), 0);
    }

    struct Stuck;

    impl StateBackend for Stuck {
        fn get<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StateError>> {
            Box::pin(std::future::pending())
        }
        fn set<'a>(
            &'a self,
            _: &'a str,
            _: &'a [u8],
            _: Duration,
        ) -> BoxFuture<'a, Result<(), StateError>> {
            Box::pin(std::future::pending())
        }
        fn increment<'a>(
            &'a self,
            _: &'a str,
            _: i64,
            _: Duration,
        ) -> BoxFuture<'a, Result<i64, StateError>> {
            Box::pin(std::future::pending())
        }
        fn delete<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<bool, StateError>> {
            Box::pin(std::future::pending())
        }
        fn ping(&self) -> BoxFuture<'_, Result<(), StateError>> {
            Box::pin(std::future::pending())
        }
        fn describe(&self) -> String {
            "stuck".to_string()
        }
    }

    #[tokio::test]
    async fn a_stuck_backend_times_out() {
        let config = StateConfig {
            timeout: Duration::from_millis(50),
            ..StateConfig::default()
        };
        let store = StateStore::with_backend(Arc::new(Stuck), &config);
        let started = std::time::Instant::now();
        assert_eq!(
            store.namespace("p").get("k").await,
            Err(StateError::Timeout)
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(store.ping().await, Err(StateError::Timeout));
    }
}
