//! SMTP AUTH credential checking on the host side.
//!
//! An [`Authenticator`] is built from `[auth]` and answers one question per
//! AUTH attempt: are these the user's POP/IMAP credentials? It asks one
//! backend ([`imap`], [`pop3`], [`file`](mod@file) or [`smtp`]), remembers successes
//! for `cache_ttl` ([`cache`]), and reserves each attempt's place in the
//! per-client and per-user counts before asking ([`limiter`]).
//!
//! Checks are bounded work: at most `max_concurrent_checks` run at once
//! (all backends); an attempt waits for a free slot at most `timeout`, then
//! gets 454. A check is abandoned when its `timeout` passes or its caller
//! drops it: a `file` hash that has not started never starts, one that has
//! started runs out on the blocking pool and keeps its slot until it ends,
//! so memory stays within `max_concurrent_checks` hashes (about 19 MiB each
//! for argon2 with the default parameters). A timed-out check counts
//! against the client and the user like a failure.
//!
//! A backend that cannot give a clear answer (down, slow, garbled) yields
//! [`Verification::Unavailable`], never [`Verification::Accepted`].
//! Passwords are zeroized when dropped and never logged or Debug-printed.

pub mod cache;
pub mod file;
pub mod imap;
pub mod limiter;
pub mod pop3;
pub mod smtp;
mod transport;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use zeroize::Zeroizing;

use crate::config::AuthConfig;
use cache::SuccessCache;
use limiter::{Admission, FailureLimiter};

/// Passwords accepted recently are remembered (as keyed hashes) at most this
/// many at once, so that they skip an attacked user's queue.
const KNOWN_GOOD_SIZE: usize = 4096;

/// What the client sent. The password is zeroized on drop and never
/// Debug-printed.
pub struct Credentials {
    /// The authentication identity the client gave.
    pub user: String,
    password: Zeroizing<String>,
}

impl Credentials {
    /// Wraps a user name and password.
    pub fn new(user: String, password: Zeroizing<String>) -> Self {
        Self { user, password }
    }

    /// The password, for handing to a backend only.
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The answer to one AUTH attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Credentials are right: 235 2.7.0.
    Accepted,
    /// Credentials are wrong: 535 5.7.8.
    Rejected,
    /// Too many failures from this client or for this user: 454 4.7.0.
    Throttled {
        /// When the next attempt may be considered.
        retry_after: Duration,
    },
    /// The backend could not answer (down, slow, garbled): 454 4.7.0.
    Unavailable {
        /// What went wrong, for logs (never contains the password).
        reason: String,
    },
}

/// A backend's answer: `Ok(true)` accepted, `Ok(false)` rejected, `Err` = it
/// could not tell.
pub(crate) type BackendAnswer = anyhow::Result<bool>;

/// The credential store `[auth] backend` names.
enum Backend {
    Imap(imap::ImapBackend),
    Pop3(pop3::Pop3Backend),
    File(file::FileBackend),
    Smtp(smtp::SmtpBackend),
}

impl Backend {
    fn new(config: &AuthConfig) -> anyhow::Result<Self> {
        Ok(match config.backend.as_str() {
            "imap" => Self::Imap(imap::ImapBackend::new(transport::Connector::new(config)?)),
            "pop3" => Self::Pop3(pop3::Pop3Backend::new(transport::Connector::new(config)?)),
            "smtp" => Self::Smtp(smtp::SmtpBackend::new(
                transport::Connector::new(config)?,
                config.smtp_mechanism,
                config.ehlo_name.clone(),
            )),
            "file" => {
                let path = config
                    .users_file
                    .as_ref()
                    .context("auth.users_file: required for the file backend")?;
                Self::File(file::FileBackend::open(path)?)
            }
            other => anyhow::bail!("auth.backend: unknown backend {other:?}"),
        })
    }

    /// One check, holding `slot` (one of `max_concurrent_checks`) until its
    /// work is over, which for a started hash may be after this future is
    /// dropped.
    async fn check(&self, attempt: &Credentials, slot: OwnedSemaphorePermit) -> BackendAnswer {
        match self {
            Self::Imap(backend) => {
                let _slot = slot;
                backend.check(attempt).await
            }
            Self::Pop3(backend) => {
                let _slot = slot;
                backend.check(attempt).await
            }
            Self::File(backend) => backend.check(attempt, slot).await,
            Self::Smtp(backend) => {
                let _slot = slot;
                backend.check(attempt).await
            }
        }
    }
}

/// Checks AUTH attempts against the configured backend, with a success
/// cache and brute-force control.
pub struct Authenticator {
    backend: Backend,
    backend_name: String,
    timeout: Duration,
    cache: Option<SuccessCache>,
    /// Passwords accepted within `failure_window`: they skip an attacked
    /// user's queue (still checked by the backend).
    known_good: SuccessCache,
    limiter: FailureLimiter,
    slots: Arc<Semaphore>,
    max_checks: usize,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("backend", &self.backend_name)
            .field("timeout", &self.timeout)
            .field("cache", &self.cache.is_some())
            .field("max_concurrent_checks", &self.max_checks)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Builds the backend named in `[auth]`.
    pub fn new(config: &AuthConfig) -> anyhow::Result<Self> {
        let backend = Backend::new(config)
            .with_context(|| format!("setting up the {} auth backend", config.backend))?;
        let cache = (!config.cache_ttl.is_zero())
            .then(|| SuccessCache::new(config.cache_ttl, config.cache_size));
        Ok(Self {
            backend,
            backend_name: config.backend.clone(),
            timeout: config.timeout,
            cache,
            known_good: SuccessCache::new(config.failure_window, KNOWN_GOOD_SIZE),
            limiter: FailureLimiter::new(limiter::FailurePolicy::from_config(config))?,
            slots: Arc::new(Semaphore::new(config.max_concurrent_checks.max(1))),
            max_checks: config.max_concurrent_checks.max(1),
        })
    }

    /// Checks one AUTH attempt. Reserves its place in the brute-force counts
    /// first (may refuse, or wait for the user's turn when it is under
    /// attack), then asks the success cache or the backend within a bounded
    /// number of concurrent checks, and may sleep before answering a
    /// failure. Dropping the future abandons the check (counted as a
    /// failure if it had begun).
    pub async fn verify(&self, client: IpAddr, attempt: &Credentials) -> Verification {
        let cached = self
            .cache
            .as_ref()
            .is_some_and(|cache| cache.contains(&attempt.user, attempt.password()));
        let known = cached || self.known_good.contains(&attempt.user, attempt.password());
        let reservation = match self.limiter.reserve(client, &attempt.user, known).await {
            Admission::Go(reservation) => reservation,
            Admission::Refused { retry_after, why } => {
                tracing::warn!(
                    %client,
                    user = %attempt.user,
                    retry_after = ?retry_after,
                    "AUTH refused without asking the backend: {why}"
                );
                return Verification::Throttled { retry_after };
            }
        };
        if cached {
            reservation.succeeded();
            tracing::debug!(%client, user = %attempt.user, "AUTH accepted from the success cache");
            return Verification::Accepted;
        }
        // Waiting for a slot is bounded by the same timeout as the check.
        let slot =
            match tokio::time::timeout(self.timeout, self.slots.clone().acquire_owned()).await {
                Ok(Ok(slot)) => slot,
                Ok(Err(_)) | Err(_) => {
                    reservation.unavailable();
                    return self.unavailable(
                    client,
                    attempt,
                    format!(
                        "all {} credential checks (auth.max_concurrent_checks) stayed busy for {}",
                        self.max_checks,
                        humantime::format_duration(self.timeout)
                    ),
                );
                }
            };
        let answer =
            match tokio::time::timeout(self.timeout, self.backend.check(attempt, slot)).await {
                Ok(answer) => answer,
                Err(_) => {
                    reservation.timed_out();
                    return self.unavailable(
                        client,
                        attempt,
                        format!(
                            "no answer within {}",
                            humantime::format_duration(self.timeout)
                        ),
                    );
                }
            };
        match answer {
            Ok(true) => {
                reservation.succeeded();
                if let Some(cache) = &self.cache {
                    cache.insert(&attempt.user, attempt.password());
                }
                self.known_good.insert(&attempt.user, attempt.password());
                tracing::info!(%client, user = %attempt.user, backend = %self.backend_name, "AUTH accepted");
                Verification::Accepted
            }
            Ok(false) => {
                reservation.failed().await;
                Verification::Rejected
            }
            Err(error) => {
                reservation.unavailable();
                self.unavailable(client, attempt, format!("{error:#}"))
            }
        }
    }

    fn unavailable(&self, client: IpAddr, attempt: &Credentials, why: String) -> Verification {
        let reason = format!("{} backend: {why}", self.backend_name);
        tracing::warn!(%client, user = %attempt.user, %reason, "AUTH backend unavailable");
        Verification::Unavailable { reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, SmtpMechanism, TlsMode};

    fn parse(auth: &str) -> Result<Config, String> {
        Config::parse(&format!("[auth]\n{auth}\n")).map_err(|e| e.to_string())
    }

    #[test]
    fn auth_keys_have_safe_defaults() {
        let auth = parse("backend = \"imap\"\nserver = \"127.0.0.1:143\"")
            .unwrap()
            .auth
            .unwrap();
        assert!(auth.require_tls);
        assert_eq!(auth.tls, TlsMode::None);
        assert_eq!(auth.smtp_mechanism, SmtpMechanism::Plain);
        assert_eq!(auth.timeout, Duration::from_secs(10));
        assert_eq!(
            auth.cache_ttl,
            Duration::ZERO,
            "the cache is off by default"
        );
        assert_eq!(
            (auth.failures_before_delay, auth.max_failures),
            (3, 10),
            "brute-force control is on by default"
        );
        assert_eq!(auth.attack_check_interval, Duration::from_secs(2));
        assert_eq!(auth.attack_queue_size, 4);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(auth.max_concurrent_checks, 4 * cores);
        let file = parse("backend = \"file\"\nusers_file = \"/dev/null\"")
            .unwrap()
            .auth
            .unwrap();
        assert_eq!(file.max_concurrent_checks, cores, "one hash per core");
        assert!(Authenticator::new(&auth).is_ok());
    }

    #[test]
    fn bad_auth_values_name_their_key() {
        let cases = [
            ("backend = \"ldap\"", "auth.backend"),
            (
                "backend = \"imap\"\nserver = \"h:1\"\ntls = \"ssl\"",
                "auth.tls",
            ),
            (
                "backend = \"smtp\"\nserver = \"h:1\"\nsmtp_mechanism = \"cram-md5\"",
                "auth.smtp_mechanism",
            ),
            (
                "backend = \"imap\"\nserver = \"h:1\"\ntimeout = \"soon\"",
                "auth.timeout",
            ),
            (
                "backend = \"imap\"\nserver = \"h:1\"\ntimeout = \"0s\"",
                "auth.timeout",
            ),
            (
                "backend = \"imap\"\nserver = \"h:1\"\nmax_failures = 0",
                "auth.max_failures",
            ),
            (
                "backend = \"imap\"\nserver = \"h:1\"\nfailures_before_delay = 11",
                "auth.failures_before_delay",
            ),
            (
                "backend = \"imap\"\nserver = \"h:1\"\nmax_concurrent_checks = 0",
                "auth.max_concurrent_checks",
            ),
            (
                "backend = \"imap\"\nserver = \"h:1\"\nattack_check_interval = \"often\"",
                "auth.attack_check_interval",
            ),
            (
                "backend = \"imap\"\nserver = \"h:1\"\nattack_check_interval = \"2days\"",
                "auth.attack_check_interval",
            ),
            (
                "backend = \"imap\"\nserver = \"h:1\"\ntls_ca = \"/nonexistent/ca.pem\"",
                "auth.tls_ca",
            ),
            (
                "backend = \"imap\"\nserver = \"h:1\"\ntls_server_name = \"not a name\"",
                "auth.tls_server_name",
            ),
            ("backend = \"file\"", "auth.users_file"),
            (
                "backend = \"file\"\nusers_file = \"/nonexistent/users\"",
                "auth.users_file",
            ),
            ("backend = \"pop3\"", "auth.server"),
        ];
        for (auth, key) in cases {
            let error = parse(auth).expect_err(auth);
            assert!(error.contains(key), "{auth}: {error}");
        }
    }

    #[test]
    fn debug_never_shows_the_password() {
        let credentials = Credentials::new(
            "alice".to_string(),
            Zeroizing::new("s3cret-Pa55".to_string()),
        );
        let printed = format!("{credentials:?}");
        assert!(printed.contains("alice"));
        assert!(!printed.contains("s3cret-Pa55"), "{printed}");
        assert_eq!(credentials.password(), "s3cret-Pa55");
    }
}
