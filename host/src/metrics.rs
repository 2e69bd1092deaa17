//! Prometheus metrics, served as text on the admin endpoint's `/metrics`.
//! No label carries a client address (cardinality stays bounded).

use crate::recent::RecentEvents;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};
use std::time::Duration;

/// Labels of a policy call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// WIT hook name.
    pub hook: &'static str,
    /// accept, reject or tempfail (after the failure mode).
    pub verdict: &'static str,
    /// The chain module asked (`policy` for `[policy] module`).
    pub module: String,
}

/// The `module` label alone: a chain module's name (bounded by the config).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModuleLabel {
    /// The chain module's name.
    pub module: String,
}

/// Labels of a policy failure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// trap, timeout, memory, invalid-reply or instantiate.
    pub kind: &'static str,
    /// The chain module that failed.
    pub module: String,
}

/// A histogram family's constructor: policy call latency, 1 us .. ~1 s.
type HistogramMaker = fn() -> Histogram;

fn call_seconds() -> Histogram {
    Histogram::new(exponential_buckets(1e-6, 4.0, 11))
}

/// A single `kind`/`outcome`/`result` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The label's value.
    pub kind: &'static str,
}

/// The `reason` label: why something was given up.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The label's value.
    pub reason: &'static str,
}

/// The `upstream` label: a configured upstream server's `host:port`
/// (bounded by the config).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabel {
    /// The server, as configured.
    pub upstream: String,
}

/// The `listener` label: a configured listener's name (bounded by the
/// config, never a client's address).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    /// The listener's name.
    pub listener: String,
}

/// Every metric relaygate keeps, and the recent events beside them.
pub struct Metrics {
    registry: Registry,
    /// Each registered family's name (without the prefix) and type.
    families: Vec<(&'static str, MetricType)>,
    /// Client connections accepted, by listener.
    pub connections: Family<ListenerLabel, Counter>,
    /// Implicit-TLS handshakes that failed or timed out, by listener.
    pub tls_handshake_failures: Family<ListenerLabel, Counter>,
    /// Sessions open now.
    pub sessions_active: Gauge,
    /// Transactions by outcome (delivered, rejected, failed, abandoned).
    pub transactions: Family<KindLabel, Counter>,
    /// Policy calls by hook, verdict and chain module.
    pub policy_calls: Family<CallLabels, Counter>,
    /// Policy call latency, by chain module.
    pub policy_call_seconds: Family<ModuleLabel, Histogram, HistogramMaker>,
    /// Policy failures by kind (trap, timeout, memory, invalid-reply,
    /// instantiate) and chain module.
    pub policy_failures: Family<FailureLabels, Counter>,
    /// Upstream errors (unreachable, timeouts, protocol errors).
    pub upstream_errors: Counter,
    /// Upstream connections handed to sessions, by kind (`opened`: a new
    /// one; `reused`: a kept one from the pool).
    pub upstream_connections: Family<KindLabel, Counter>,
    /// Kept upstream connections closed instead of reused, by reason.
    pub upstream_pool_discards: Family<ReasonLabel, Counter>,
    /// Upstream connections kept idle in the pool now.
    pub upstream_pool_idle: Gauge,
    /// Each upstream server: 1 while it is taking mail, 0 while it is
    /// skipped after failing to connect or greet.
    pub upstream_up: Family<UpstreamLabel, Gauge>,
    /// Times each upstream server was marked down.
    pub upstream_marked_down: Family<UpstreamLabel, Counter>,
    /// Connections opened to each upstream server.
    pub upstream_server_connections: Family<UpstreamLabel, Counter>,
    /// Reloads by result (ok, failed).
    pub reloads: Family<KindLabel, Counter>,
    /// Failed SMTP AUTH attempts.
    pub auth_failures: Counter,
    /// SMTP AUTH attempts refused by the brute-force control without asking
    /// the backend (also counted in `auth_failures`).
    pub auth_throttled: Counter,
    /// SMTP AUTH attempts the backend gave no answer to: down, timed out, or
    /// no free check slot (`max_concurrent_checks`) within the timeout.
    pub auth_unavailable: Counter,
    /// Failed policy state operations by kind (unavailable, timeout,
    /// too-large, invalid).
    pub state_errors: Family<KindLabel, Counter>,
    /// Sessions ended because a write did not finish in time, by peer
    /// (`client`: it stopped reading; `upstream`: it stopped reading).
    pub write_timeouts: Family<KindLabel, Counter>,
    /// Sessions closed with 421 for too many errors.
    pub error_limit_closes: Counter,
    /// The last reloads and refusals, for the status page (not exported).
    pub recent: RecentEvents,
}

/// The registry being filled, remembering what goes in: a family with no
/// sample yet does not appear in a scrape, but dashboards and alert rules
/// may still ask for it.
struct Catalogue {
    registry: Registry,
    families: Vec<(&'static str, MetricType)>,
}

impl Catalogue {
    fn add(&mut self, name: &'static str, help: &str, metric: impl Metric) {
        self.families.push((name, metric.metric_type()));
        self.registry.register(name, help, metric);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::with_prefix("relaygate");
        let metrics = Self {
            connections: Family::default(),
            tls_handshake_failures: Family::default(),
            sessions_active: Gauge::default(),
            transactions: Family::default(),
            policy_calls: Family::default(),
            policy_call_seconds: Family::new_with_constructor(call_seconds),
            policy_failures: Family::default(),
            upstream_errors: Counter::default(),
            upstream_connections: Family::default(),
            upstream_pool_discards: Family::default(),
            upstream_pool_idle: Gauge::default(),
            upstream_up: Family::default(),
            upstream_marked_down: Family::default(),
            upstream_server_connections: Family::default(),
            reloads: Family::default(),
            auth_failures: Counter::default(),
            auth_throttled: Counter::default(),
            auth_unavailable: Counter::default(),
            state_errors: Family::default(),
            write_timeouts: Family::default(),
            error_limit_closes: Counter::default(),
            registry: Registry::default(),
            families: Vec::new(),
            recent: RecentEvents::default(),
        };
        let mut catalogue = Catalogue {
            registry,
            families: Vec::new(),
        };
        catalogue.add(
            "connections",
            "Client connections accepted, by listener",
            metrics.connections.clone(),
        );
        catalogue.add(
            "tls_handshake_failures",
            "Implicit-TLS handshakes that failed or timed out, by listener",
            metrics.tls_handshake_failures.clone(),
        );
        catalogue.add(
            "sessions_active",
            "SMTP sessions open now",
            metrics.sessions_active.clone(),
        );
        catalogue.add(
            "transactions",
            "Mail transactions by outcome",
            metrics.transactions.clone(),
        );
        catalogue.add(
            "policy_calls",
            "Policy hook calls by hook, verdict and chain module",
            metrics.policy_calls.clone(),
        );
        catalogue.add(
            "policy_call_seconds",
            "Time of one policy hook call",
            metrics.policy_call_seconds.clone(),
        );
        catalogue.add(
            "policy_failures",
            "Policy calls that trapped, timed out, ran out of memory or answered invalidly",
            metrics.policy_failures.clone(),
        );
        catalogue.add(
            "upstream_errors",
            "Upstream connections that failed or broke",
            metrics.upstream_errors.clone(),
        );
        catalogue.add(
            "upstream_connections",
            "Upstream connections handed to sessions: opened anew or reused from the pool",
            metrics.upstream_connections.clone(),
        );
        catalogue.add(
            "upstream_pool_discards",
            "Kept upstream connections closed instead of reused, by reason",
            metrics.upstream_pool_discards.clone(),
        );
        catalogue.add(
            "upstream_pool_idle",
            "Upstream connections kept idle in the pool",
            metrics.upstream_pool_idle.clone(),
        );
        catalogue.add(
            "upstream_up",
            "Each upstream server: 1 while it takes mail, 0 while it is skipped after failing",
            metrics.upstream_up.clone(),
        );
        catalogue.add(
            "upstream_marked_down",
            "Times each upstream server was marked down (failed to connect, greet or secure)",
            metrics.upstream_marked_down.clone(),
        );
        catalogue.add(
            "upstream_server_connections",
            "Connections opened to each upstream server",
            metrics.upstream_server_connections.clone(),
        );
        catalogue.add(
            "reloads",
            "Policy reloads by result",
            metrics.reloads.clone(),
        );
        catalogue.add(
            "auth_failures",
            "Failed SMTP AUTH attempts",
            metrics.auth_failures.clone(),
        );
        catalogue.add(
            "auth_throttled",
            "SMTP AUTH attempts refused by the brute-force control without asking the backend",
            metrics.auth_throttled.clone(),
        );
        catalogue.add(
            "auth_unavailable",
            "SMTP AUTH attempts the backend gave no answer to (down, timed out, no free check slot)",
            metrics.auth_unavailable.clone(),
        );
        catalogue.add(
            "state_errors",
            "Policy state operations that failed, by kind",
            metrics.state_errors.clone(),
        );
        catalogue.add(
            "write_timeouts",
            "Sessions ended because a peer did not take what was written within its timeout, by peer",
            metrics.write_timeouts.clone(),
        );
        catalogue.add(
            "error_limit_closes",
            "Sessions closed with 421 after too many errors",
            metrics.error_limit_closes.clone(),
        );
        Self {
            registry: catalogue.registry,
            families: catalogue.families,
            ..metrics
        }
    }
}

impl Metrics {
    /// Count one call of the chain module `module`.
    pub fn policy_call(
        &self,
        module: &str,
        hook: &'static str,
        verdict: &'static str,
        elapsed: Duration,
        failure: Option<&'static str>,
    ) {
        self.policy_calls
            .get_or_create(&CallLabels {
                hook,
                verdict,
                module: module.to_string(),
            })
            .inc();
        self.policy_call_seconds
            .get_or_create(&ModuleLabel {
                module: module.to_string(),
            })
            .observe(elapsed.as_secs_f64());
        if let Some(kind) = failure {
            self.policy_failures
                .get_or_create(&FailureLabels {
                    kind,
                    module: module.to_string(),
                })
                .inc();
        }
    }

    /// Count one connection accepted on `listener`.
    pub fn connection(&self, listener: &str) {
        self.connections
            .get_or_create(&ListenerLabel {
                listener: listener.to_string(),
            })
            .inc();
    }

    /// Count one failed implicit-TLS handshake on `listener`.
    pub fn tls_handshake_failure(&self, listener: &str) {
        self.tls_handshake_failures
            .get_or_create(&ListenerLabel {
                listener: listener.to_string(),
            })
            .inc();
    }

    /// Count one finished transaction.
    pub fn transaction(&self, outcome: &'static str) {
        self.transactions
            .get_or_create(&KindLabel { kind: outcome })
            .inc();
    }

    /// Count one session ended by a write that did not finish in time.
    pub fn write_timeout(&self, peer: &'static str) {
        self.write_timeouts
            .get_or_create(&KindLabel { kind: peer })
            .inc();
    }

    /// Count one upstream connection handed to a session (`opened` or
    /// `reused`).
    pub fn upstream_connection(&self, kind: &'static str) {
        self.upstream_connections
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    /// Count one kept upstream connection closed instead of reused.
    pub fn upstream_pool_discard(&self, reason: &'static str) {
        self.upstream_pool_discards
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Count one reload.
    pub fn reload(&self, ok: bool) {
        let kind = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&KindLabel { kind }).inc();
    }

    /// Every series name a scrape can show, whether or not it has a sample
    /// yet: counters with `_total`, histograms with `_bucket`, `_sum` and
    /// `_count`, gauges as named.
    pub fn series_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for (family, kind) in &self.families {
            let name = format!("relaygate_{family}");
            match kind {
                MetricType::Counter => names.push(format!("{name}_total")),
                MetricType::Histogram => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.push(format!("{name}{suffix}"));
                    }
                }
                _ => names.push(name),
            }
        }
        names
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}
