//! The upstream servers in order of preference (`[proxy] upstream`, then
//! `upstream_fallbacks`), and which of them are down.
//!
//! A server that fails to connect, greet or secure a connection is marked
//! down and skipped for `upstream_back_off`; a health check brings it back
//! sooner when it answers again. When every server is down, all are tried
//! anyway, in order: a client gets 451 only when none answers.

use crate::metrics::{Metrics, UpstreamLabel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One configured server.
struct Server {
    addr: String,
    /// Skipped until then; none while up.
    down_until: Mutex<Option<Instant>>,
}

/// Every upstream server, preferred first.
pub struct Servers {
    list: Vec<Server>,
    back_off: Duration,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Servers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.list.iter().map(|server| &server.addr))
            .finish()
    }
}

impl Servers {
    /// `addrs` in order of preference (at least one), each up.
    pub fn new(addrs: Vec<String>, back_off: Duration, metrics: Arc<Metrics>) -> Self {
        let servers = Self {
            list: addrs
                .into_iter()
                .map(|addr| Server {
                    addr,
                    down_until: Mutex::new(None),
                })
                .collect(),
            back_off,
            metrics,
        };
        for server in &servers.list {
            servers.set_up(&server.addr, true);
        }
        servers
    }

    /// The address of server `index`.
    pub fn addr(&self, index: usize) -> &str {
        &self.list[index].addr
    }

    /// How many servers there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none (never, once configured).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The servers to try, in order: those not backing off; when every one
    /// is, all of them.
    pub fn order(&self) -> Vec<usize> {
        let now = Instant::now();
        let up: Vec<usize> = (0..self.list.len())
            .filter(|&index| !self.is_backing_off(index, now))
            .collect();
        if up.is_empty() {
            (0..self.list.len()).collect()
        } else {
            up
        }
    }

    /// The server new sessions should use: the first in [`Servers::order`].
    pub fn preferred(&self) -> usize {
        let now = Instant::now();
        (0..self.list.len())
            .find(|&index| !self.is_backing_off(index, now))
            .unwrap_or(0)
    }

    /// The servers marked down now (back-off running or not).
    pub fn down(&self) -> Vec<usize> {
        (0..self.list.len())
            .filter(|&index| self.down_until(index).is_some())
            .collect()
    }

    /// Server `index` failed: skip it for the back-off.
    pub fn mark_down(&self, index: usize) {
        let server = &self.list[index];
        let was_up = self
            .lock(index)
            .replace(Instant::now() + self.back_off)
            .is_none();
        if was_up {
            self.set_up(&server.addr, false);
            self.metrics
                .upstream_marked_down
                .get_or_create(&self.label(&server.addr))
                .inc();
        }
    }

    /// Server `index` answered: use it again.
    pub fn mark_up(&self, index: usize) {
        if self.lock(index).take().is_some() {
            let addr = &self.list[index].addr;
            tracing::info!(upstream = %addr, "upstream answers again");
            self.set_up(addr, true);
        }
    }

    /// Count a connection opened to server `index`.
    pub fn opened(&self, index: usize) {
        self.metrics
            .upstream_server_connections
            .get_or_create(&self.label(&self.list[index].addr))
            .inc();
    }

    fn is_backing_off(&self, index: usize, now: Instant) -> bool {
        self.down_until(index).is_some_and(|until| now < until)
    }

    fn down_until(&self, index: usize) -> Option<Instant> {
        *self.lock(index)
    }

    fn lock(&self, index: usize) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.list[index]
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn label(&self, addr: &str) -> UpstreamLabel {
        UpstreamLabel {
            upstream: addr.to_string(),
        }
    }

    /// `relaygate_upstream_up` of `addr`: 1 up, 0 down.
    fn set_up(&self, addr: &str, up: bool) {
        self.metrics
            .upstream_up
            .get_or_create(&self.label(addr))
            .set(i64::from(up));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(back_off: Duration) -> Servers {
        Servers::new(
            vec!["a:25".into(), "b:25".into(), "c:25".into()],
            back_off,
            Arc::new(Metrics::default()),
        )
    }

    #[test]
    fn a_down_server_is_skipped_until_its_back_off_ends() {
        let servers = servers(Duration::from_millis(50));
        assert_eq!(servers.order(), [0, 1, 2]);
        servers.mark_down(0);
        assert_eq!(servers.order(), [1, 2]);
        assert_eq!(servers.preferred(), 1);
        assert_eq!(servers.down(), [0]);
        std::thread::sleep(Duration::from_millis(60));
        // Tried again in its place, still marked down until it answers.
        assert_eq!(servers.order(), [0, 1, 2]);
        assert_eq!(servers.down(), [0]);
        servers.mark_up(0);
        assert!(servers.down().is_empty());
    }

    #[test]
    fn when_every_server_is_down_all_are_tried_in_order() {
        let servers = servers(Duration::from_secs(60));
        for index in [2, 0, 1] {
            servers.mark_down(index);
        }
        assert_eq!(servers.order(), [0, 1, 2]);
    }

    #[test]
    fn marking_down_twice_counts_once_and_the_gauge_follows() {
        let servers = servers(Duration::from_secs(60));
        servers.mark_down(1);
        servers.mark_down(1);
        let text = servers.metrics.encode();
        assert!(
            text.contains("relaygate_upstream_marked_down_total{upstream=\"b:25\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("relaygate_upstream_up{upstream=\"b:25\"} 0"),
            "{text}"
        );
        servers.mark_up(1);
        assert!(
            servers
                .metrics
                .encode()
                .contains("relaygate_upstream_up{upstream=\"b:25\"} 1")
        );
    }
}
