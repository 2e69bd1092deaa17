//! Warm upstream connections, handed from a session that ended to the next
//! one that needs the upstream.
//!
//! A connection goes back into the pool only clean (no message or write
//! left half-done, any open transaction reset) and only while it is young
//! enough and has carried fewer than `max_messages` messages. Taking one
//! out checks that the upstream has not closed it or said anything since,
//! then introduces the new client: XCLIENT and EHLO where the upstream
//! accepted XCLIENT, RSET where it sees the proxy as the client. Any doubt
//! along the way closes the connection and the session opens a fresh one,
//! so no session ever runs under another client's identity.

use super::{ClientIdentity, Upstream, UpstreamError, UpstreamSettings};
use crate::config::UpstreamPoolConfig;
use crate::metrics::Metrics;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

/// Longest a kept connection may take to answer the commands that hand it
/// to a new client; a slower one is closed and a fresh one opened.
const REUSE_REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Kept connections one session tries before opening a fresh one: when two
/// in a row fail, the upstream is restarting or stuck, and trying every kept
/// connection would only make the client wait longer.
const REUSE_ATTEMPTS: usize = 2;

/// Why a kept connection was closed rather than reused (the `reason`
/// label of `relaygate_upstream_pool_discards_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Discard {
    /// It waited longer than `max_idle_time`.
    IdleTime,
    /// It reached `max_age`.
    Age,
    /// It carried `max_messages` messages.
    Messages,
    /// The upstream closed it, or spoke unasked, while it was idle.
    Closed,
    /// The upstream refused, or did not answer in time, the commands that
    /// hand it to a new client.
    ResetFailed,
    /// The pool held `max_idle` connections already.
    Full,
}

impl Discard {
    fn label(self) -> &'static str {
        match self {
            Self::IdleTime => "idle_time",
            Self::Age => "age",
            Self::Messages => "messages",
            Self::Closed => "closed",
            Self::ResetFailed => "reset_failed",
            Self::Full => "full",
        }
    }
}

/// One kept connection and since when it waits.
struct Idle {
    upstream: Upstream,
    since: Instant,
}

/// Opens upstream connections, and keeps and reuses them as
/// `[upstream_pool]` says.
pub struct UpstreamPool {
    settings: UpstreamSettings,
    config: UpstreamPoolConfig,
    /// Kept connections, the most recently returned last.
    idle: Mutex<VecDeque<Idle>>,
    metrics: Arc<Metrics>,
}

impl UpstreamPool {
    /// A pool for the upstream of `settings`. With the pool enabled, a task
    /// closes connections that waited too long (it ends with the pool);
    /// call it inside a tokio runtime.
    pub fn start(
        settings: UpstreamSettings,
        config: UpstreamPoolConfig,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let pool = Arc::new(Self {
            settings,
            config,
            idle: Mutex::new(VecDeque::new()),
            metrics,
        });
        if pool.config.enabled {
            // A few sweeps per max_idle_time.
            let period = (pool.config.max_idle_time / 2).max(Duration::from_millis(100));
            tokio::spawn(every(Arc::downgrade(&pool), period, |pool| async move {
                pool.sweep();
            }));
        }
        let period = pool.settings.health_interval;
        tokio::spawn(every(Arc::downgrade(&pool), period, |pool| async move {
            pool.check_health().await;
        }));
        pool
    }

    /// Where the upstream is and how to talk to it.
    pub fn settings(&self) -> &UpstreamSettings {
        &self.settings
    }

    /// A connection introduced as `client`: a kept one where one is usable,
    /// a fresh one otherwise.
    pub async fn connect(&self, client: &ClientIdentity) -> Result<Upstream, UpstreamError> {
        let preferred = self.settings.servers.preferred();
        for _ in 0..REUSE_ATTEMPTS {
            let Some(mut upstream) = self.take_idle(preferred) else {
                break;
            };
            let limit = self.reuse_timeout();
            match tokio::time::timeout(limit, upstream.reintroduce(&self.settings, client)).await {
                Ok(Ok(())) => {
                    self.metrics.upstream_connection("reused");
                    return Ok(upstream);
                }
                Ok(Err(error)) => {
                    tracing::debug!("kept upstream connection not reusable: {error}");
                    self.metrics
                        .upstream_pool_discard(Discard::ResetFailed.label());
                }
                Err(_) => {
                    // A stuck upstream: the other kept connections would
                    // make the next sessions wait as long.
                    tracing::debug!("kept upstream connection did not answer in {limit:?}");
                    self.metrics
                        .upstream_pool_discard(Discard::ResetFailed.label());
                    self.discard_all(Discard::ResetFailed);
                }
            }
        }
        let mut upstream = self.open_fresh().await?;
        upstream.introduce_first(&self.settings, client).await?;
        Ok(upstream)
    }

    /// A new connection to the first server that answers, in order of
    /// preference; each that does not is marked down. The error is the
    /// last server's when none answers.
    async fn open_fresh(&self) -> Result<Upstream, UpstreamError> {
        let servers = &self.settings.servers;
        let mut last = None;
        for server in servers.order() {
            match Upstream::connect(&self.settings, server).await {
                Ok(upstream) => {
                    servers.mark_up(server);
                    servers.opened(server);
                    self.metrics.upstream_connection("opened");
                    return Ok(upstream);
                }
                Err(error) => {
                    tracing::warn!(upstream = %servers.addr(server), "upstream marked down: {error}");
                    servers.mark_down(server);
                    last = Some(error);
                }
            }
        }
        Err(last.unwrap_or(UpstreamError::Closed(None)))
    }

    /// Take back a connection whose session is done with it: kept when it
    /// is clean and within its limits, closed otherwise.
    pub async fn release(&self, mut upstream: Upstream) {
        if !self.config.enabled || !upstream.is_clean() {
            upstream.quit().await;
            return;
        }
        let spent = if upstream.messages() >= self.config.max_messages {
            Some(Discard::Messages)
        } else if upstream.age() >= self.config.max_age {
            Some(Discard::Age)
        } else {
            None
        };
        if let Some(reason) = spent {
            self.metrics.upstream_pool_discard(reason.label());
            upstream.quit().await;
            return;
        }
        if upstream.in_transaction() {
            let limit = self.reuse_timeout();
            if !matches!(
                tokio::time::timeout(limit, upstream.reset()).await,
                Ok(Ok(()))
            ) {
                self.metrics
                    .upstream_pool_discard(Discard::ResetFailed.label());
                return;
            }
        }
        if !upstream.is_quiet() {
            self.metrics.upstream_pool_discard(Discard::Closed.label());
            return;
        }
        let evicted = {
            let mut idle = self.lock();
            idle.push_back(Idle {
                upstream,
                since: Instant::now(),
            });
            let evicted = (idle.len() > self.config.max_idle).then(|| idle.pop_front());
            self.metrics.upstream_pool_idle.set(idle.len() as i64);
            evicted.flatten()
        };
        if let Some(oldest) = evicted {
            self.metrics.upstream_pool_discard(Discard::Full.label());
            oldest.upstream.quit().await;
        }
    }

    /// Close every kept connection (at shutdown).
    pub async fn close_idle(&self) {
        let idle = self.drain();
        futures_util::future::join_all(idle.into_iter().map(|entry| entry.upstream.quit())).await;
    }

    /// Every kept connection, taken out of the pool.
    fn drain(&self) -> Vec<Idle> {
        let mut idle = self.lock();
        self.metrics.upstream_pool_idle.set(0);
        idle.drain(..).collect()
    }

    /// Close every kept connection, counting each as `reason`.
    fn discard_all(&self, reason: Discard) {
        for entry in self.drain() {
            self.discard_in_background(entry.upstream, reason);
        }
    }

    /// The most recently kept usable connection to `server` (kept ones to
    /// other servers wait for their turn or their idle time); the unusable
    /// ones met on the way are closed.
    fn take_idle(&self, server: usize) -> Option<Upstream> {
        if !self.config.enabled {
            return None;
        }
        let mut unusable = Vec::new();
        let found = {
            let mut idle = self.lock();
            let mut found = None;
            let mut index = idle.len();
            while index > 0 {
                index -= 1;
                if idle[index].upstream.server() != server {
                    continue;
                }
                let Some(entry) = idle.remove(index) else {
                    break;
                };
                match self.why_unusable(&entry) {
                    None => {
                        found = Some(entry.upstream);
                        break;
                    }
                    Some(reason) => unusable.push((entry.upstream, reason)),
                }
            }
            self.metrics.upstream_pool_idle.set(idle.len() as i64);
            found
        };
        for (upstream, reason) in unusable {
            self.discard_in_background(upstream, reason);
        }
        found
    }

    /// Close the kept connections that waited or lived too long, or that
    /// the upstream closed.
    fn sweep(&self) {
        let mut unusable = Vec::new();
        {
            let mut idle = self.lock();
            let mut kept = VecDeque::with_capacity(idle.len());
            for entry in idle.drain(..) {
                match self.why_unusable(&entry) {
                    None => kept.push_back(entry),
                    Some(reason) => unusable.push((entry.upstream, reason)),
                }
            }
            *idle = kept;
            self.metrics.upstream_pool_idle.set(idle.len() as i64);
        }
        for (upstream, reason) in unusable {
            self.discard_in_background(upstream, reason);
        }
    }

    /// Probe the servers marked down (connect, greet, EHLO, QUIT): one that
    /// answers takes mail again at once.
    async fn check_health(&self) {
        let settings = &self.settings;
        for server in settings.servers.down() {
            if Upstream::probe(settings, server).await.is_ok() {
                settings.servers.mark_up(server);
            }
        }
    }

    /// How long a kept connection may take to answer while it is handed
    /// over or reset.
    fn reuse_timeout(&self) -> Duration {
        REUSE_REPLY_TIMEOUT.min(self.settings.timeout)
    }

    fn why_unusable(&self, entry: &Idle) -> Option<Discard> {
        if entry.since.elapsed() > self.config.max_idle_time {
            Some(Discard::IdleTime)
        } else if entry.upstream.age() >= self.config.max_age {
            Some(Discard::Age)
        } else if !entry.upstream.is_quiet() {
            Some(Discard::Closed)
        } else {
            None
        }
    }

    /// Count the discard and say QUIT without making anyone wait for it
    /// (a connection the upstream closed is just dropped).
    fn discard_in_background(&self, upstream: Upstream, reason: Discard) {
        self.metrics.upstream_pool_discard(reason.label());
        if reason != Discard::Closed {
            tokio::spawn(upstream.quit());
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Run `work` on `pool` every `period` (the first time one period after
/// the start) until the pool is dropped.
async fn every<F, Fut>(pool: Weak<UpstreamPool>, period: Duration, mut work: F)
where
    F: FnMut(Arc<UpstreamPool>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        work(pool).await;
    }
}
