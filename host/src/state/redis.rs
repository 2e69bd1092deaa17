//! The Redis backend: state shared by every proxy pointed at one server.
//!
//! One multiplexed connection ([`::redis::aio::ConnectionManager`]), opened on
//! first use and reopened after the server went away. Connecting and every
//! command are bounded by `[state] timeout`; while the server is down calls
//! fail within that time (the caller's own bound applies too) and the next
//! call after it returns reconnects.

use super::{BoxFuture, StateBackend, StateError};
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

/// INCRBY that sets the expiry only when the key has none (new counter).
const INCREMENT_SCRIPT: &str = "local n = redis.call('INCRBY', KEYS[1], ARGV[1]) \
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end \
return n";

/// State in a Redis server.
pub struct RedisBackend {
    manager: ConnectionManager,
    shown_url: String,
}

impl RedisBackend {
    /// A backend for `url` (`redis://[user:password@]host:port[/db]` or
    /// `unix:///path`) that connects on first use. Must run inside a tokio
    /// runtime.
    pub fn connect_lazily(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let client = ::redis::Client::open(url)
            .map_err(|e| anyhow::anyhow!("state.url: {}: {e}", redact(url)))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // Fail fast while the server is down; the next command retries.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(timeout);
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| anyhow::anyhow!("state.url: {}: {e}", redact(url)))?;
        Ok(Self {
            manager,
            shown_url: redact(url),
        })
    }

    async fn run<T: ::redis::FromRedisValue>(&self, cmd: ::redis::Cmd) -> Result<T, StateError> {
        let mut connection = self.manager.clone();
        cmd.query_async(&mut connection).await.map_err(convert)
    }
}

fn convert(error: ::redis::RedisError) -> StateError {
    if error.is_timeout() {
        return StateError::Timeout;
    }
    let text = error.to_string();
    if text.contains("not an integer") || text.contains("overflow") {
        return StateError::Invalid("the value is not a decimal integer".to_string());
    }
    StateError::Unavailable(text)
}

/// The URL without a password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl StateBackend for RedisBackend {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StateError>> {
        let mut cmd = ::redis::cmd("GET");
        cmd.arg(key);
        Box::pin(self.run(cmd))
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(key).arg(value).arg("PX").arg(millis(ttl));
        Box::pin(async move {
            let _: ::redis::Value = self.run(cmd).await?;
            Ok(())
        })
    }

    fn increment<'a>(
        &'a self,
        key: &'a str,
        delta: i64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<i64, StateError>> {
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(INCREMENT_SCRIPT)
            .arg(1)
            .arg(key)
            .arg(delta)
            .arg(millis(ttl));
        Box::pin(self.run(cmd))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, StateError>> {
        let mut cmd = ::redis::cmd("DEL");
        cmd.arg(key);
        Box::pin(async move {
            let removed: i64 = self.run(cmd).await?;
            Ok(removed > 0)
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move {
            let _: String = self.run(::redis::cmd("PING")).await?;
            Ok(())
        })
    }

    fn describe(&self) -> String {
        format!("redis {}", self.shown_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("redis://user:secret@10.0.0.1:6379/2"),
            "redis://***@10.0.0.1:6379/2"
        );
        assert_eq!(redact("redis://10.0.0.1:6379"), "redis://10.0.0.1:6379");
    }

    #[tokio::test]
    async fn an_unreachable_server_fails_within_the_timeout() {
        // A port nothing listens on: connection refused, quickly.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let backend = RedisBackend::connect_lazily(
            &format!("redis://127.0.0.1:{port}"),
            Duration::from_millis(300),
        )
        .unwrap();
        let started = std::time::Instant::now();
        let result = backend.get("k").await;
        assert!(
            matches!(
                result,
                Err(StateError::Unavailable(_) | StateError::Timeout)
            ),
            "{result:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
}
