//! Brute-force control: every AUTH attempt reserves its place in a per-client
//! and a per-user count *before* the backend is asked, and the counts punish
//! the guessing client, never the account.
//!
//! # Per client network (IPv4 address, IPv6 /64)
//!
//! A client may have at most `max_failures` checks counted against it: its
//! failures within `failure_window` (a count that decays by one every
//! `failure_window / max_failures`) plus its checks in flight. With
//! `max_failures` failures its attempts are refused ([`Admission::Refused`],
//! 454 4.7.0) without asking the backend; an attempt that would go beyond
//! the budget only because of the client's own checks in flight (a busy NAT)
//! waits for one of them to end instead, and is then refused or admitted.
//! The first `failures_before_delay` failures are answered at once; each
//! further one waits `failure_delay`, doubling per failure (at most
//! [`MAX_DELAY`]). Successes are not counted and do not reset the count.
//!
//! # Per user (case-insensitive)
//!
//! The same decaying count plus checks in flight, but reaching
//! `max_failures` never refuses the user: it puts the user *under attack*.
//! Then its checks run one at a time, each starting at least
//! `attack_check_interval` after the previous one, in a wait queue of at
//! most `attack_queue_size` attempts. The next turn goes to the waiting
//! client with the fewest failures and refusals of its own (then the one
//! waiting longest); when the queue is full, a newcomer with a cleaner record
//! than the worst waiter takes that waiter's place (the waiter gets 454),
//! otherwise the newcomer gets 454. An attempt whose password was accepted
//! for this user within `failure_window` (kept as a keyed hash, see
//! [`super::cache`]) skips the queue.
//!
//! # What this guarantees
//!
//! - One client network gets at most `max_failures` wrong guesses per
//!   `failure_window` (for all users together), however many connections it
//!   opens: the reservation is taken before the backend is asked.
//! - One user gets, from any number of addresses, at most
//!   `max_failures + t * max_failures / failure_window` wrong guesses at full
//!   speed in any period of length `t`, plus at most `t /
//!   attack_check_interval + 1` spaced ones: with the defaults (10, 10m, 2s)
//!   at most 20 + 301 in ten minutes, and 10 + 1 in the first second of any
//!   burst. A check that timed out or whose client left counts as a wrong
//!   guess; passwords accepted within the window are not guesses.
//! - A client that has not failed itself is never refused because of
//!   failures elsewhere, except when the user's wait queue is full of
//!   clients with records as clean as its own (an attacker using a fresh
//!   address for every guess). It waits for its turn instead: at most
//!   `attack_queue_size` turns of `attack_check_interval`. A user who logged
//!   in with the same password within `failure_window` does not wait at all.
//!
//! The trade-off: a distributed attack can still make about one guess per
//! `attack_check_interval` for a user (instead of none, as a per-user
//! lock-out would), and in exchange nobody can lock a user out by failing
//! for them. Every map here is bounded ([`MAX_KEYS`]), so fresh user names
//! or addresses cannot grow memory.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::config::AuthConfig;

/// The longest a single failure is delayed.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// Idle entries are pruned when a map holds more than this.
const PRUNE_ABOVE_KEYS: usize = 10_000;

/// The most entries one map (clients, users) holds; beyond it the entries
/// with the lowest counts are forgotten first.
pub const MAX_KEYS: usize = 100_000;

/// The brute-force knobs of `[auth]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    /// Failures answered without delay.
    pub failures_before_delay: u32,
    /// Delay of the first slowed failure; doubles after that.
    pub failure_delay: Duration,
    /// Failures (and checks in flight) per client within `window` after
    /// which its attempts are refused; per user, after which its checks are
    /// spaced out.
    pub max_failures: u32,
    /// The time over which `max_failures` failures are forgotten.
    pub window: Duration,
    /// The least time between two checks of a user under attack.
    pub attack_interval: Duration,
    /// Attempts that may wait for their turn per user under attack.
    pub attack_queue: usize,
}

impl FailurePolicy {
    /// The knobs from `[auth]`.
    pub fn from_config(config: &AuthConfig) -> Self {
        Self {
            failures_before_delay: config.failures_before_delay,
            failure_delay: config.failure_delay,
            max_failures: config.max_failures,
            window: config.failure_window,
            attack_interval: config.attack_check_interval,
            attack_queue: config.attack_queue_size,
        }
    }

    /// How long to wait before answering failure number `failures`.
    pub fn delay_for(&self, failures: u32) -> Duration {
        let Some(beyond) = failures.checked_sub(self.failures_before_delay + 1) else {
            return Duration::ZERO;
        };
        let factor = 1u32.checked_shl(beyond.min(31)).unwrap_or(u32::MAX);
        self.failure_delay
            .checked_mul(factor)
            .unwrap_or(MAX_DELAY)
            .min(MAX_DELAY)
    }

    /// When to come back after a full queue: once every waiter had its turn.
    fn queue_retry_after(&self) -> Duration {
        let turns = u32::try_from(self.attack_queue)
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        self.attack_interval
            .checked_mul(turns)
            .unwrap_or(MAX_DELAY)
            .max(Duration::from_millis(1))
    }

    /// Counted units forgotten per second.
    fn decay_rate(&self) -> f64 {
        f64::from(self.max_failures) / self.window.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// A count that forgets one unit every `window / max_failures`.
#[derive(Debug, Clone, Copy)]
struct Decaying {
    level: f64,
    at: Instant,
}

impl Decaying {
    fn new(now: Instant) -> Self {
        Self {
            level: 0.0,
            at: now,
        }
    }

    fn value(&self, now: Instant, rate: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.level - elapsed * rate).max(0.0)
    }

    fn add(&mut self, now: Instant, rate: f64) {
        self.level = self.value(now, rate) + 1.0;
        self.at = now;
    }

    /// Whole units still counted (a unit partly forgotten still counts).
    fn units(&self, now: Instant, rate: f64) -> u32 {
        // Tolerance for float rounding right at a unit boundary.
        (self.value(now, rate) - 1e-9).max(0.0).ceil() as u32
    }

    /// How long until at most `target` units are counted.
    fn time_until(&self, now: Instant, rate: f64, target: f64) -> Duration {
        let excess = self.value(now, rate) - target;
        if excess <= 0.0 || rate <= 0.0 {
            return Duration::ZERO;
        }
        Duration::try_from_secs_f64(excess / rate).unwrap_or(MAX_DELAY)
    }
}

/// One client network's record.
#[derive(Debug)]
struct ClientEntry {
    failures: Decaying,
    /// Attempts refused because a user's queue was full: not held against
    /// the client's budget, only against its place in queues.
    refusals: Decaying,
    in_flight: u32,
    /// Wakes attempts waiting for this client's checks in flight to end.
    released: Option<Arc<Notify>>,
}

/// A client waiting for a turn on an attacked user.
struct Waiter {
    client: IpAddr,
    /// The client's failures and refusals when it arrived: lower goes first.
    score: u32,
    seq: u64,
    turn: oneshot::Sender<Turn>,
}

/// One user's record.
struct UserEntry {
    failures: Decaying,
    in_flight: u32,
    /// A spaced-out check is running (or granted and about to).
    lane_busy: bool,
    /// When the next spaced-out check may start.
    next_slot: Instant,
    waiters: Vec<Waiter>,
}

impl UserEntry {
    fn new(now: Instant) -> Self {
        Self {
            failures: Decaying::new(now),
            in_flight: 0,
            lane_busy: false,
            next_slot: now,
            waiters: Vec::new(),
        }
    }
}

#[derive(Default)]
struct State {
    clients: HashMap<IpAddr, ClientEntry>,
    users: HashMap<String, UserEntry>,
    seq: u64,
    /// Map sizes at which the next pruning runs (amortises its cost).
    prune_clients_at: usize,
    prune_users_at: usize,
}

struct Shared {
    policy: FailurePolicy,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives the user's spaced-out lane to the best waiter, or frees it.
    fn next_turn(self: &Arc<Self>, state: &mut State, user: &str, now: Instant) {
        let interval = self.policy.attack_interval;
        let Some(entry) = state.users.get_mut(user) else {
            return;
        };
        entry.lane_busy = false;
        while let Some(best) = entry
            .waiters
            .iter()
            .enumerate()
            .min_by_key(|(_, w)| (w.score, w.seq))
            .map(|(index, _)| index)
        {
            let waiter = entry.waiters.swap_remove(best);
            let start_at = now.max(entry.next_slot);
            let turn = Turn {
                shared: Some(self.clone()),
                user: user.to_string(),
                start_at,
            };
            match waiter.turn.send(turn) {
                Ok(()) => {
                    entry.lane_busy = true;
                    entry.in_flight += 1;
                    entry.next_slot = start_at + interval;
                    return;
                }
                Err(mut unused) => {
                    // That client left; its turn goes to the next one.
                    unused.shared = None;
                }
            }
        }
    }

    /// Ends one reservation.
    fn release(self: &Arc<Self>, client: IpAddr, user: Option<(&str, bool)>, failed: bool) {
        let rate = self.policy.decay_rate();
        let now = Instant::now();
        let mut state = self.lock();
        if let Some(entry) = state.clients.get_mut(&client) {
            entry.in_flight = entry.in_flight.saturating_sub(1);
            if failed {
                entry.failures.add(now, rate);
            }
            if let Some(released) = &entry.released {
                released.notify_waiters();
            }
        }
        if let Some((user, lane)) = user {
            if let Some(entry) = state.users.get_mut(user) {
                entry.in_flight = entry.in_flight.saturating_sub(1);
                if failed {
                    entry.failures.add(now, rate);
                }
            }
            if lane {
                self.next_turn(&mut state, user, now);
            }
        }
    }
}

/// A granted turn on an attacked user's lane; given back if dropped unused.
struct Turn {
    shared: Option<Arc<Shared>>,
    user: String,
    start_at: Instant,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            // Granted but never used (the waiting attempt was dropped): the
            // user's count holds no check for it.
            let now = Instant::now();
            let mut state = shared.lock();
            if let Some(entry) = state.users.get_mut(&self.user) {
                entry.in_flight = entry.in_flight.saturating_sub(1);
            }
            shared.next_turn(&mut state, &self.user, now);
        }
    }
}

/// Whether an attempt may be checked.
pub enum Admission {
    /// Ask the backend, then report the outcome on the reservation.
    Go(Reservation),
    /// Refuse without asking (454 4.7.0).
    Refused {
        /// When an attempt may be considered again.
        retry_after: Duration,
        /// Why, for logs.
        why: &'static str,
    },
}

/// A reserved place in the client's and the user's counts. Report how the
/// check went with one of its methods; dropped without a report (the
/// attempt was abandoned, e.g. the client left mid-check), it counts as a
/// failure.
pub struct Reservation {
    shared: Arc<Shared>,
    client: IpAddr,
    user: String,
    lane: bool,
    done: bool,
    /// False while waiting for the lane's start time: leaving then is no
    /// guess.
    counts_if_dropped: bool,
}

impl Reservation {
    /// The backend accepted (or the success cache did).
    pub fn succeeded(mut self) {
        self.finish(false);
    }

    /// The backend could not answer (down, garbled): not held against
    /// anyone.
    pub fn unavailable(mut self) {
        self.finish(false);
    }

    /// The check got no answer in time: counted as a failure, not delayed.
    pub fn timed_out(mut self) {
        self.finish(true);
    }

    /// The backend rejected: counts the failure, then waits as the policy
    /// says for the client's count.
    pub async fn failed(mut self) {
        let policy = self.shared.policy;
        let rate = policy.decay_rate();
        self.finish(true);
        let now = Instant::now();
        let (client_failures, user_failures) = {
            let state = self.shared.lock();
            (
                state
                    .clients
                    .get(&self.client)
                    .map_or(0, |e| e.failures.units(now, rate)),
                state
                    .users
                    .get(&self.user)
                    .map_or(0, |e| e.failures.units(now, rate)),
            )
        };
        let delay = policy.delay_for(client_failures);
        tracing::warn!(
            client = %self.client,
            user = %self.user,
            client_failures,
            user_failures,
            max_failures = policy.max_failures,
            under_attack = user_failures >= policy.max_failures,
            delay = ?delay,
            "AUTH failed: wrong credentials"
        );
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    fn finish(&mut self, failed: bool) {
        if !self.done {
            self.done = true;
            self.shared
                .release(self.client, Some((&self.user, self.lane)), failed);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.finish(self.counts_if_dropped);
    }
}

/// Gives back the client's place if the attempt is dropped while waiting
/// for a turn.
struct ClientHold {
    shared: Arc<Shared>,
    client: IpAddr,
    armed: bool,
}

impl Drop for ClientHold {
    fn drop(&mut self) {
        if self.armed {
            self.shared.release(self.client, None, false);
        }
    }
}

/// What `reserve` does after one look at the counts.
enum Step {
    Done(Admission),
    /// Wait for one of the client's own checks in flight to end, then look again.
    WaitClient(tokio::sync::futures::OwnedNotified),
    /// Take the attacked user's lane at this time.
    Lane(Instant),
    /// Wait in the attacked user's queue for a turn.
    Queue(oneshot::Receiver<Turn>),
}

/// Per-client and per-user reservations and failure counts.
pub struct FailureLimiter {
    shared: Arc<Shared>,
}

impl FailureLimiter {
    /// A limiter with nothing counted yet.
    pub fn new(policy: FailurePolicy) -> anyhow::Result<Self> {
        if policy.max_failures == 0 {
            anyhow::bail!("auth.max_failures: must be at least 1");
        }
        if policy.window.is_zero() {
            anyhow::bail!("auth.failure_window: must be longer than 0s");
        }
        Ok(Self {
            shared: Arc::new(Shared {
                policy,
                state: Mutex::new(State::default()),
            }),
        })
    }

    /// One look at the counts, under the lock: what `reserve` does next.
    fn step(&self, client: IpAddr, user: &str, known: bool) -> Step {
        let shared = &self.shared;
        let policy = shared.policy;
        let rate = policy.decay_rate();
        let user = user.to_string();
        let mut guard = shared.lock();
        let state = &mut *guard;
        let now = Instant::now();
        if !state.clients.contains_key(&client) {
            prune(
                &mut state.clients,
                &mut state.prune_clients_at,
                |e| client_idle(e, now, rate),
                |e| e.failures.value(now, rate) + e.refusals.value(now, rate),
            );
        }
        let entry = state.clients.entry(client).or_insert_with(|| ClientEntry {
            failures: Decaying::new(now),
            refusals: Decaying::new(now),
            in_flight: 0,
            released: None,
        });
        let failures = entry.failures.units(now, rate);
        if failures >= policy.max_failures {
            let retry_after = entry
                .failures
                .time_until(now, rate, f64::from(policy.max_failures) - 1.0)
                .max(Duration::from_millis(1));
            return Step::Done(Admission::Refused {
                retry_after,
                why: "too many failures from this client",
            });
        }
        if failures + entry.in_flight >= policy.max_failures {
            // Its own checks in flight fill the budget: wait for one.
            let released = entry
                .released
                .get_or_insert_with(|| Arc::new(Notify::new()))
                .clone();
            return Step::WaitClient(released.notified_owned());
        }
        entry.in_flight += 1;
        let score = failures + entry.refusals.units(now, rate);

        if !state.users.contains_key(&user) {
            prune(
                &mut state.users,
                &mut state.prune_users_at,
                |e| user_idle(e, now, rate),
                |e| e.failures.value(now, rate),
            );
        }
        let record = state
            .users
            .entry(user.clone())
            .or_insert_with(|| UserEntry::new(now));
        let counted = record.failures.units(now, rate) + record.in_flight;
        if known || counted < policy.max_failures {
            record.in_flight += 1;
            return Step::Done(Admission::Go(Reservation {
                shared: shared.clone(),
                client,
                user,
                lane: false,
                done: false,
                counts_if_dropped: true,
            }));
        }
        // Under attack: one check at a time, spaced out.
        if !record.lane_busy && record.waiters.is_empty() {
            let start_at = now.max(record.next_slot);
            record.lane_busy = true;
            record.in_flight += 1;
            record.next_slot = start_at + policy.attack_interval;
            Step::Lane(start_at)
        } else {
            let (sender, receiver) = oneshot::channel();
            if record.waiters.len() >= policy.attack_queue {
                let worst = record
                    .waiters
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, w)| (w.score, w.seq))
                    .filter(|(_, w)| w.score > score)
                    .map(|(index, _)| index);
                let refused = match worst {
                    // Dropping its sender tells the worse waiter it lost its place.
                    Some(index) => record.waiters.swap_remove(index).client,
                    None => client,
                };
                let retry_after = policy.queue_retry_after();
                if let Some(entry) = state.clients.get_mut(&refused) {
                    entry.refusals.add(now, rate);
                }
                if refused == client {
                    if let Some(entry) = state.clients.get_mut(&client) {
                        entry.in_flight = entry.in_flight.saturating_sub(1);
                    }
                    return Step::Done(Admission::Refused {
                        retry_after: retry_after.max(Duration::from_millis(1)),
                        why: "too many attempts waiting for this user",
                    });
                }
            }
            let record = state
                .users
                .get_mut(&user)
                .expect("the user's entry was just made");
            state.seq += 1;
            record.waiters.push(Waiter {
                client,
                score,
                seq: state.seq,
                turn: sender,
            });
            Step::Queue(receiver)
        }
    }

    /// Reserves a check for `client` and `user`, waiting for the user's turn
    /// when it is under attack. `known` says the password was accepted for
    /// this user recently, so the attempt skips the user's queue.
    pub async fn reserve(&self, client: IpAddr, user: &str, known: bool) -> Admission {
        let shared = &self.shared;
        let policy = shared.policy;
        let client = client_key(client);
        let user = user_key(user);
        let waiting = loop {
            match self.step(client, &user, known) {
                Step::Done(admission) => return admission,
                Step::WaitClient(ended) => ended.await,
                Step::Lane(start_at) => break Err(start_at),
                Step::Queue(receiver) => break Ok(receiver),
            }
        };
        let start_at = match waiting {
            Err(start_at) => start_at,
            Ok(receiver) => {
                let mut hold = ClientHold {
                    shared: shared.clone(),
                    client,
                    armed: true,
                };
                match receiver.await {
                    Ok(mut turn) => {
                        hold.armed = false;
                        turn.shared = None;
                        turn.start_at
                    }
                    Err(_) => {
                        return Admission::Refused {
                            retry_after: policy.queue_retry_after(),
                            why: "too many attempts waiting for this user",
                        };
                    }
                }
            }
        };
        // From here the lane is ours: dropping the reservation gives it back.
        let mut reservation = Reservation {
            shared: shared.clone(),
            client,
            user,
            lane: true,
            done: false,
            counts_if_dropped: false,
        };
        tracing::info!(
            client = %reservation.client,
            user = %reservation.user,
            "AUTH for a user under attack: checks are spaced out"
        );
        tokio::time::sleep_until(start_at).await;
        reservation.counts_if_dropped = true;
        Admission::Go(reservation)
    }
}

fn client_idle(entry: &ClientEntry, now: Instant, rate: f64) -> bool {
    entry.in_flight == 0
        && entry.failures.value(now, rate) == 0.0
        && entry.refusals.value(now, rate) == 0.0
}

fn user_idle(entry: &UserEntry, now: Instant, rate: f64) -> bool {
    entry.in_flight == 0
        && !entry.lane_busy
        && entry.waiters.is_empty()
        && entry.next_slot <= now
        && entry.failures.value(now, rate) == 0.0
}

/// Keeps a map bounded before a new key goes in: drops idle entries once it
/// holds [`PRUNE_ABOVE_KEYS`] (again only after it grew by half, so the
/// cost is amortised), and at [`MAX_KEYS`] the entries with the lowest
/// `weight` down to 90% (a forgotten count is lost protection, never a
/// lock-out).
fn prune<K: Hash + Eq + Clone, V>(
    map: &mut HashMap<K, V>,
    prune_at: &mut usize,
    idle: impl Fn(&V) -> bool,
    weight: impl Fn(&V) -> f64,
) {
    if map.len() < (*prune_at).max(PRUNE_ABOVE_KEYS) {
        return;
    }
    map.retain(|_, entry| !idle(entry));
    *prune_at = (map.len() + map.len() / 2).clamp(PRUNE_ABOVE_KEYS, MAX_KEYS);
    if map.len() < MAX_KEYS {
        return;
    }
    let mut removable: Vec<(f64, K)> = map
        .iter()
        .map(|(key, entry)| (weight(entry), key.clone()))
        .collect();
    let excess = map.len() - MAX_KEYS * 9 / 10;
    if excess < removable.len() {
        removable.select_nth_unstable_by(excess, |a, b| a.0.total_cmp(&b.0));
    }
    for (_, key) in removable.into_iter().take(excess) {
        map.remove(&key);
    }
}

/// IPv4 addresses count alone, IPv6 per /64.
fn client_key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(Ipv6Addr::from(segments))
            }
        },
    }
}

/// User names count case-insensitively, so `Alice` and `alice` share a count.
fn user_key(user: &str) -> String {
    user.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(before: u32, max: u32) -> FailurePolicy {
        FailurePolicy {
            failures_before_delay: before,
            failure_delay: Duration::from_millis(100),
            max_failures: max,
            window: Duration::from_secs(3600),
            attack_interval: Duration::from_secs(2),
            attack_queue: 3,
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    async fn go(limiter: &FailureLimiter, client: &str, user: &str) -> Reservation {
        match limiter.reserve(ip(client), user, false).await {
            Admission::Go(reservation) => reservation,
            Admission::Refused { why, .. } => panic!("{client} {user}: refused: {why}"),
        }
    }

    #[test]
    fn delay_starts_after_the_free_failures_and_doubles() {
        let policy = policy(2, 10);
        assert_eq!(policy.delay_for(1), Duration::ZERO);
        assert_eq!(policy.delay_for(2), Duration::ZERO);
        assert_eq!(policy.delay_for(3), Duration::from_millis(100));
        assert_eq!(policy.delay_for(4), Duration::from_millis(200));
        assert_eq!(policy.delay_for(5), Duration::from_millis(400));
        assert_eq!(policy.delay_for(40), MAX_DELAY);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_is_refused_after_max_failures_counting_checks_in_flight() {
        let limiter = Arc::new(FailureLimiter::new(policy(10, 3)).unwrap());
        // Three concurrent reservations use the whole budget before any answer...
        let mut held = Vec::new();
        for user in ["a", "b", "c"] {
            held.push(go(&limiter, "192.0.2.7", user).await);
        }
        // ...so a fourth waits for them, and is refused once they failed.
        let fourth = tokio::spawn({
            let limiter = limiter.clone();
            async move { limiter.reserve(ip("192.0.2.7"), "d", false).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!fourth.is_finished(), "waits while the budget is in flight");
        for reservation in held {
            reservation.failed().await;
        }
        assert!(matches!(
            fourth.await.unwrap(),
            Admission::Refused { retry_after, .. } if retry_after > Duration::from_secs(1000)
        ));
        // One failure is forgotten after window / max_failures.
        tokio::time::advance(Duration::from_secs(1201)).await;
        go(&limiter, "192.0.2.7", "e").await.succeeded();
        // Another client is not affected, nor is the user for it.
        go(&limiter, "192.0.2.8", "a").await.succeeded();
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_waiting_on_its_own_checks_gets_in_when_they_succeed() {
        let limiter = Arc::new(FailureLimiter::new(policy(10, 2)).unwrap());
        let first = go(&limiter, "192.0.2.9", "a").await;
        let second = go(&limiter, "192.0.2.9", "b").await;
        let third = tokio::spawn({
            let limiter = limiter.clone();
            async move {
                matches!(
                    limiter.reserve(ip("192.0.2.9"), "c", false).await,
                    Admission::Go(_)
                )
            }
        });
        tokio::task::yield_now().await;
        first.succeeded();
        assert!(third.await.unwrap());
        second.succeeded();
    }

    #[tokio::test(start_paused = true)]
    async fn an_attacked_user_is_checked_one_at_a_time_never_refused_to_a_clean_client() {
        let limiter = Arc::new(FailureLimiter::new(policy(10, 3)).unwrap());
        for n in 1..=3 {
            go(&limiter, &format!("10.0.0.{n}"), "alice")
                .await
                .failed()
                .await;
        }
        // Under attack: the next check starts at once (the lane is free)...
        let started = Instant::now();
        let first = go(&limiter, "10.0.1.1", "Alice").await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        // ...and the one after waits for it and for the interval.
        let second = tokio::spawn({
            let limiter = limiter.clone();
            async move {
                let reservation = go(&limiter, "10.0.1.2", "alice").await;
                let waited = started.elapsed();
                reservation.succeeded();
                waited
            }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        first.failed().await;
        assert_eq!(second.await.unwrap(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_makes_room_for_a_cleaner_client() {
        let limiter = Arc::new(FailureLimiter::new(policy(10, 2)).unwrap());
        for n in 1..=2 {
            go(&limiter, &format!("10.0.0.{n}"), "alice")
                .await
                .failed()
                .await;
        }
        let lane = go(&limiter, "10.0.0.1", "alice").await;
        let wait = |client: &'static str| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                match limiter.reserve(ip(client), "alice", false).await {
                    Admission::Go(reservation) => {
                        reservation.succeeded();
                        true
                    }
                    Admission::Refused { .. } => false,
                }
            })
        };
        // 10.0.0.2 has a failure of its own; the others have none.
        let mut waiting = Vec::new();
        for client in ["10.0.0.2", "10.0.2.1", "10.0.2.2", "10.0.2.3"] {
            waiting.push(wait(client));
            tokio::task::yield_now().await;
        }
        // The queue (3) is now full of clean clients: a clean newcomer is
        // refused, not queued behind them.
        assert!(matches!(
            limiter.reserve(ip("10.0.2.4"), "alice", false).await,
            Admission::Refused { .. }
        ));
        // A password accepted recently skips the queue.
        match limiter.reserve(ip("10.0.2.5"), "alice", true).await {
            Admission::Go(reservation) => reservation.succeeded(),
            Admission::Refused { why, .. } => panic!("{why}"),
        }
        let started = Instant::now();
        lane.failed().await;
        let results: Vec<bool> = futures_util::future::join_all(waiting)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            results,
            [false, true, true, true],
            "the client with failures gave its place to a clean one"
        );
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(6),
            "the lane started at 0s, then three turns 2s apart"
        );
    }

    #[test]
    fn ipv6_clients_share_a_count_per_64() {
        let a = client_key("2001:db8:1:2::1".parse().unwrap());
        let b = client_key("2001:db8:1:2:ffff::9".parse().unwrap());
        let c = client_key("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            client_key("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_names_and_addresses_cannot_grow_the_maps_without_bound() {
        let limiter = FailureLimiter::new(policy(10, 3)).unwrap();
        for n in 0..(MAX_KEYS as u32 + 5_000) {
            let client = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            match limiter.reserve(client, &format!("user{n}"), false).await {
                Admission::Go(reservation) => reservation.failed().await,
                Admission::Refused { why, .. } => panic!("{why}"),
            }
        }
        let state = limiter.shared.lock();
        assert!(state.clients.len() <= MAX_KEYS, "{}", state.clients.len());
        assert!(state.users.len() <= MAX_KEYS, "{}", state.users.len());
    }
}
