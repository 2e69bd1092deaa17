//! The recent events an operator asks about on the status page: the last
//! reloads and the last policy refusals with their decision traces, each
//! list bounded, plus counter snapshots for rates. Nothing here holds a
//! password (the policy never sees one) or any part of a message body (a
//! data refusal keeps the message's size and header count only).

use crate::hook::{Decision, PolicyContext, PolicyRequest};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// How many reloads and refusals are kept.
pub const KEPT: usize = 50;

/// Counter snapshots kept for rates: one per [`SAMPLE_EVERY`], a minute's worth.
const SAMPLES: usize = 7;

/// How often the admin endpoint takes a counter snapshot.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// One reload attempt.
#[derive(Debug, Clone)]
pub struct ReloadEvent {
    /// When it ended.
    pub at: SystemTime,
    /// What triggered it ("SIGHUP", "file change", "admin").
    pub trigger: String,
    /// Whether the new configuration and modules serve now.
    pub ok: bool,
    /// The modules now serving (`chain/module:digest`), or why the old ones
    /// kept serving.
    pub detail: String,
}

/// One policy refusal (or a dry-run module's would-be refusal) and the
/// facts the module decided on: its decision trace.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// When it was decided.
    pub at: SystemTime,
    /// The session id, as in the logs.
    pub session: u64,
    /// The listener the client came in on.
    pub listener: String,
    /// The client's address and port.
    pub client: String,
    /// The client's confirmed reverse name, if looked up.
    pub client_name: Option<String>,
    /// The hook asked.
    pub hook: &'static str,
    /// What the module was asked, e.g. `RCPT TO:<a@example.org>`.
    pub asked: String,
    /// The chain module that refused.
    pub module: String,
    /// The module's sha256.
    pub digest: String,
    /// True when the module runs in dry-run mode: the client was not refused.
    pub dry_run: bool,
    /// reject or tempfail.
    pub verdict: &'static str,
    /// The reply the module gave (or the failure answer).
    pub reply: String,
    /// Why the call failed, when the refusal is the failure answer.
    pub failure: Option<String>,
    /// The session as the module saw it.
    pub helo: Option<String>,
    /// The authenticated identity, if any.
    pub auth_user: Option<String>,
    /// The transaction's sender, if any.
    pub sender: Option<String>,
    /// Recipients accepted before this call.
    pub recipients: Vec<String>,
    /// TLS was active.
    pub tls: bool,
    /// How long the call took.
    pub elapsed: Duration,
}

/// One chain module's answer, as [`Refusal::of`] reads it.
pub struct Decided<'a> {
    /// The chain module's name.
    pub module: &'a str,
    /// Its sha256.
    pub digest: &'a str,
    /// It runs in dry-run mode.
    pub dry_run: bool,
    /// What it decided (the failure answer when it failed).
    pub decision: &'a Decision,
    /// Why the call failed, if it did.
    pub failure: Option<String>,
    /// How long the call took.
    pub elapsed: Duration,
}

impl Refusal {
    /// The refusal `decided` made of `request`; none for an accept.
    pub fn of(
        context: &PolicyContext,
        request: &PolicyRequest,
        decided: Decided<'_>,
    ) -> Option<Self> {
        let Decided {
            module,
            digest,
            dry_run,
            decision,
            failure,
            elapsed,
        } = decided;
        let reply = match decision {
            Decision::Accept => return None,
            Decision::Reject(reply) | Decision::Tempfail(reply) => reply.to_string(),
        };
        Some(Self {
            at: SystemTime::now(),
            session: context.id,
            listener: context.listener.name.to_string(),
            client: context.client.to_string(),
            client_name: context.client_name.clone(),
            hook: request.hook().name(),
            asked: describe(request),
            module: module.to_string(),
            digest: digest.to_string(),
            dry_run,
            verdict: decision.label(),
            reply,
            failure,
            helo: context.helo.clone(),
            auth_user: context.auth_user.clone(),
            sender: context.sender.clone(),
            recipients: context.recipients.clone(),
            tls: context.tls,
            elapsed,
        })
    }
}

/// What a hook was asked, as the client's command would say it; never a
/// message's content.
fn describe(request: &PolicyRequest) -> String {
    let params = |params: &[crate::smtp::Param]| {
        params
            .iter()
            .map(|p| match &p.value {
                Some(value) => format!(" {}={value}", p.name),
                None => format!(" {}", p.name),
            })
            .collect::<String>()
    };
    match request {
        PolicyRequest::Init => "init".to_string(),
        PolicyRequest::Connect => "connect".to_string(),
        PolicyRequest::Helo { name, extended } => {
            format!("{} {name}", if *extended { "EHLO" } else { "HELO" })
        }
        PolicyRequest::Extensions => "EHLO extensions".to_string(),
        PolicyRequest::Auth {
            mechanism,
            identity,
        } => format!("AUTH {mechanism} as {identity}"),
        PolicyRequest::MailFrom { sender, params: p } => {
            format!("MAIL FROM:<{sender}>{}", params(p))
        }
        PolicyRequest::RcptTo {
            recipient,
            params: p,
        } => format!("RCPT TO:<{recipient}>{}", params(p)),
        PolicyRequest::Data(message) => format!(
            "end of DATA: {} bytes, {} header fields",
            message.size,
            message.headers.len()
        ),
    }
}

/// Running totals read from the metrics, for rates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Client connections accepted.
    pub connections: u64,
    /// Transactions the upstream accepted.
    pub delivered: u64,
    /// Transactions refused (by a policy or the upstream).
    pub rejected: u64,
    /// Transactions that failed (upstream errors, timeouts).
    pub failed: u64,
    /// Transactions the client abandoned.
    pub abandoned: u64,
}

impl Totals {
    /// The totals in a Prometheus text exposition of relaygate's metrics.
    pub fn from_exposition(text: &str) -> Self {
        let mut totals = Self::default();
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let value = value as u64;
            let slot = if series.starts_with("relaygate_connections_total") {
                &mut totals.connections
            } else if let Some(labels) = series.strip_prefix("relaygate_transactions_total") {
                match labels {
                    "{kind=\"delivered\"}" => &mut totals.delivered,
                    "{kind=\"rejected\"}" => &mut totals.rejected,
                    "{kind=\"failed\"}" => &mut totals.failed,
                    "{kind=\"abandoned\"}" => &mut totals.abandoned,
                    _ => continue,
                }
            } else {
                continue;
            };
            *slot += value;
        }
        totals
    }
}

/// Per-minute rates between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// Over how long they were measured.
    pub over: Duration,
    /// Connections per minute.
    pub connections: f64,
    /// Delivered transactions per minute.
    pub delivered: f64,
    /// Refused transactions per minute.
    pub rejected: f64,
    /// Failed transactions per minute.
    pub failed: f64,
}

/// The bounded lists and snapshots, shared by the sessions, the reloader
/// and the admin endpoint.
pub struct RecentEvents {
    started: Instant,
    reloads: Mutex<VecDeque<ReloadEvent>>,
    refusals: Mutex<VecDeque<Refusal>>,
    samples: Mutex<VecDeque<(Instant, Totals)>>,
}

impl Default for RecentEvents {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            reloads: Mutex::new(VecDeque::with_capacity(KEPT)),
            refusals: Mutex::new(VecDeque::with_capacity(KEPT)),
            samples: Mutex::new(VecDeque::with_capacity(SAMPLES)),
        }
    }
}

fn push<T>(list: &Mutex<VecDeque<T>>, item: T, keep: usize) {
    let mut list = list.lock().unwrap_or_else(|e| e.into_inner());
    if list.len() == keep {
        list.pop_front();
    }
    list.push_back(item);
}

fn newest_first<T: Clone>(list: &Mutex<VecDeque<T>>) -> Vec<T> {
    let list = list.lock().unwrap_or_else(|e| e.into_inner());
    list.iter().rev().cloned().collect()
}

impl RecentEvents {
    /// How long the process has served.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Remember a reload attempt.
    pub fn reload(&self, event: ReloadEvent) {
        push(&self.reloads, event, KEPT);
    }

    /// Remember a refusal.
    pub fn refusal(&self, refusal: Refusal) {
        push(&self.refusals, refusal, KEPT);
    }

    /// The kept reloads, newest first.
    pub fn reloads(&self) -> Vec<ReloadEvent> {
        newest_first(&self.reloads)
    }

    /// The kept refusals, newest first.
    pub fn refusals(&self) -> Vec<Refusal> {
        newest_first(&self.refusals)
    }

    /// Take a counter snapshot (the admin endpoint does, every
    /// [`SAMPLE_EVERY`]).
    pub fn sample(&self, totals: Totals) {
        push(&self.samples, (Instant::now(), totals), SAMPLES);
    }

    /// Rates from the oldest kept snapshot to `now`; none until it is
    /// [`SAMPLE_EVERY`] old (a shorter window says little).
    pub fn rates(&self, now: Totals) -> Option<Rates> {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let (at, then) = samples.front()?;
        let over = at.elapsed();
        if over < SAMPLE_EVERY {
            return None;
        }
        let minutes = over.as_secs_f64() / 60.0;
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / minutes;
        Some(Rates {
            over,
            connections: rate(now.connections, then.connections),
            delivered: rate(now.delivered, then.delivered),
            rejected: rate(now.rejected, then.rejected),
            failed: rate(now.failed, then.failed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hook::{ListenerIdentity, MessageSummary};
    use crate::smtp::reply::catalogue;

    fn context() -> PolicyContext {
        let mut context = PolicyContext::connected(
            9,
            ListenerIdentity::new("mx", "mx.test"),
            "192.0.2.1:40000".parse().unwrap(),
            "192.0.2.254:25".parse().unwrap(),
            None,
        );
        context.auth_user = Some("alice".into());
        context
    }

    #[test]
    fn lists_keep_the_newest_and_show_them_first() {
        let recent = RecentEvents::default();
        for n in 0..KEPT + 5 {
            recent.reload(ReloadEvent {
                at: SystemTime::now(),
                trigger: format!("t{n}"),
                ok: true,
                detail: String::new(),
            });
        }
        let reloads = recent.reloads();
        assert_eq!(reloads.len(), KEPT);
        assert_eq!(reloads[0].trigger, format!("t{}", KEPT + 4));
        assert_eq!(reloads[KEPT - 1].trigger, "t5");
    }

    #[test]
    fn a_refusal_keeps_the_request_but_never_message_content() {
        let refused = Decision::Reject(catalogue::policy_reject());
        let data = PolicyRequest::Data(MessageSummary {
            size: 1234,
            headers: vec![("Subject".into(), "secret plans".into())],
            headers_truncated: false,
        });
        let decided = |decision| Decided {
            module: "relay",
            digest: "ab12",
            dry_run: false,
            decision,
            failure: None,
            elapsed: Duration::from_micros(5),
        };
        let refusal = Refusal::of(&context(), &data, decided(&refused)).unwrap();
        assert_eq!(refusal.asked, "end of DATA: 1234 bytes, 1 header fields");
        assert!(!format!("{refusal:?}").contains("secret plans"));
        assert_eq!(refusal.listener, "mx");
        assert_eq!(refusal.auth_user.as_deref(), Some("alice"));
        let rcpt = PolicyRequest::RcptTo {
            recipient: "b@example.org".into(),
            params: Vec::new(),
        };
        let accepted = Refusal::of(&context(), &rcpt, decided(&Decision::Accept));
        assert!(accepted.is_none());
    }

    #[test]
    fn totals_are_read_from_the_exposition() {
        let text = "# TYPE relaygate_connections counter\n\
            relaygate_connections_total{listener=\"mx\"} 7\n\
            relaygate_connections_total{listener=\"submission\"} 3\n\
            relaygate_transactions_total{kind=\"delivered\"} 5\n\
            relaygate_transactions_total{kind=\"rejected\"} 2\n\
            relaygate_sessions_active 4\n";
        let totals = Totals::from_exposition(text);
        assert_eq!(
            totals,
            Totals {
                connections: 10,
                delivered: 5,
                rejected: 2,
                failed: 0,
                abandoned: 0
            }
        );
    }
}
