//! A reusable timeout for the many short waits of one connection.
//!
//! `tokio::time::timeout` registers a fresh timer in the runtime's timer
//! wheel for every wait that does not finish at once and removes it again
//! when the wait ends: two locked wheel updates per command and side, about
//! a tenth of the proxy's own CPU per message. [`LazyTimeout`] keeps one
//! timer per connection side and only records each wait's deadline; the
//! timer is moved when it fires before the recorded deadline (once per
//! timeout period on a busy connection) or when a deadline is earlier than
//! the timer's.

use std::future::Future;
use std::pin::Pin;
use tokio::time::{Instant, Sleep};

/// The wait did not finish before its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// One timer serving a sequence of waits, each with its own deadline.
#[derive(Debug, Default)]
pub struct LazyTimeout {
    /// Created on first use (creating a timer needs the runtime).
    timer: Option<Pin<Box<Sleep>>>,
}

impl LazyTimeout {
    /// A timeout with no timer yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Run `wait` for at most `limit` from now.
    pub async fn run_for<F: Future>(
        &mut self,
        limit: std::time::Duration,
        wait: F,
    ) -> Result<F::Output, Elapsed> {
        self.run(Instant::now() + limit, wait).await
    }

    /// Run `wait` until it finishes or `deadline` passes.
    pub async fn run<F: Future>(
        &mut self,
        deadline: Instant,
        wait: F,
    ) -> Result<F::Output, Elapsed> {
        let timer = match &mut self.timer {
            Some(timer) => {
                if deadline < timer.deadline() {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            none => none.insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        let mut wait = std::pin::pin!(wait);
        loop {
            tokio::select! {
                biased;
                output = &mut wait => return Ok(output),
                () = timer.as_mut() => {
                    // The timer may still be set for an earlier wait's deadline.
                    if Instant::now() >= deadline {
                        return Err(Elapsed);
                    }
                    timer.as_mut().reset(deadline);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A wait that never finishes, given `limit` from now, elapses exactly then.
    async fn assert_elapses_after(timeout: &mut LazyTimeout, limit: Duration) {
        let started = Instant::now();
        let output = timeout
            .run(started + limit, std::future::pending::<()>())
            .await;
        assert_eq!(output, Err(Elapsed));
        assert_eq!(started.elapsed(), limit);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_that_finishes_in_time_returns_its_output() {
        let mut timeout = LazyTimeout::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let output = timeout
            .run(deadline, async {
                tokio::time::sleep(Duration::from_secs(9)).await;
                7
            })
            .await;
        assert_eq!(output, Ok(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_past_its_deadline_elapses_at_the_deadline() {
        let mut timeout = LazyTimeout::new();
        assert_elapses_after(&mut timeout, Duration::from_secs(10)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn later_waits_get_their_own_full_deadline() {
        let mut timeout = LazyTimeout::new();
        // Many short waits, each well inside its own 10 s but together far
        // beyond the first wait's deadline.
        for _ in 0..5 {
            let deadline = Instant::now() + Duration::from_secs(10);
            let output = timeout
                .run(deadline, tokio::time::sleep(Duration::from_secs(6)))
                .await;
            assert_eq!(output, Ok(()));
        }
        assert_elapses_after(&mut timeout, Duration::from_secs(10)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_than_the_last_one_is_kept() {
        let mut timeout = LazyTimeout::new();
        let far = Instant::now() + Duration::from_secs(300);
        assert_eq!(timeout.run(far, async {}).await, Ok(()));
        assert_elapses_after(&mut timeout, Duration::from_secs(2)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_already_past_elapses_unless_the_wait_is_ready() {
        let mut timeout = LazyTimeout::new();
        let past = Instant::now();
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(timeout.run(past, async { 1 }).await, Ok(1));
        assert_eq!(
            timeout.run(past, std::future::pending::<()>()).await,
            Err(Elapsed)
        );
    }
}
