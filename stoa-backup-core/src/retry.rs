//! One retry policy for every retry loop of stoa-backup: sink operations ([`RetrySink`]),
//! whole artifacts in the [`Pipeline`], and the HTTP providers' requests.
//!
//! A [`RetryPolicy`] bounds the attempts and waits between them with capped exponential
//! back-off (`base_delay`, doubled after each failed attempt, at most `max_delay`), spread
//! with [`Jitter`] so that many clients failing together do not retry together. A remote's
//! own wait ([`Error::retry_after`], an HTTP `Retry-After`) is honoured instead of the
//! back-off, capped by `max_delay`. Errors that retrying cannot fix
//! ([`Error::is_retryable`] is false) are returned at once.
//!
//! ```
//! use std::time::Duration;
//! use stoa_backup_core::{Error, ErrorKind, RetryPolicy};
//!
//! # async fn demo() -> stoa_backup_core::Result<()> {
//! let policy = RetryPolicy {
//!     attempts: 5,
//!     base_delay: Duration::from_millis(50),
//!     ..RetryPolicy::default()
//! };
//! let mut calls = 0;
//! let answer = policy
//!     .retry("fetch the answer", || {
//!         calls += 1;
//!         let failed = calls < 3;
//!         async move {
//!             if failed {
//!                 Err(Error::new(ErrorKind::Unavailable, "try again"))
//!             } else {
//!                 Ok(42)
//!             }
//!         }
//!     })
//!     .await?;
//! assert_eq!((answer, calls), (42, 3));
//! # Ok(()) }
//! ```
//!
//! [`RetrySink`]: crate::layers::RetrySink
//! [`Pipeline`]: crate::pipeline::Pipeline

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result};

/// How a back-off delay is spread at random.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// The exact back-off delay (deterministic; for tests and single clients).
    None,
    /// Anywhere between zero and the back-off delay ("full jitter": spreads retries the most).
    Full,
    /// Between half the back-off delay and all of it ("equal jitter": never retries at once,
    /// and delays still grow from one attempt to the next). The default.
    #[default]
    Equal,
}

/// Bounded retries with capped exponential back-off and jitter; see the [module
/// documentation](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = no retry; 0 is treated as 1).
    pub attempts: u32,
    /// Back-off before the first retry; doubled before each further one.
    pub base_delay: Duration,
    /// Longest wait between two attempts: caps the back-off and a remote's `Retry-After`.
    pub max_delay: Duration,
    /// How the back-off delay is spread.
    pub jitter: Jitter,
}

impl Default for RetryPolicy {
    /// 3 attempts, 200 ms doubling up to 30 s, equal jitter.
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            jitter: Jitter::Equal,
        }
    }
}

/// What a retry loop does with the outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryDecision {
    /// Keep the outcome: it is a success, or a failure retrying cannot fix.
    Done,
    /// Try again if attempts remain.
    Retry {
        /// How long the remote asked to wait (`Retry-After`), if it said.
        after: Option<Duration>,
        /// Why, for the log line (must not contain secrets).
        reason: String,
    },
}

impl RetryPolicy {
    /// One attempt, no retry.
    pub fn none() -> Self {
        RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Attempts in total, at least 1.
    pub fn max_attempts(&self) -> u32 {
        self.attempts.max(1)
    }

    /// The back-off before retry number `retry` (1 = the first retry) without jitter:
    /// `base_delay × 2^(retry-1)`, at most `max_delay`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        self.base_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay)
    }

    /// The wait before retry number `retry`: the remote's `retry_after` capped by
    /// `max_delay` when given, otherwise the jittered [`backoff`](Self::backoff).
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_delay);
        }
        let backoff = self.backoff(retry);
        match self.jitter {
            Jitter::None => backoff,
            Jitter::Full => random_up_to(backoff),
            Jitter::Equal => {
                let half = backoff / 2;
                half + random_up_to(backoff - half)
            }
        }
    }

    /// Runs `op` until it succeeds, fails with an error that is not retryable, or the
    /// attempts are used up; returns its last result. Waits [`delay`](Self::delay) between
    /// attempts, honouring [`Error::retry_after`]. `what` names the operation in the log.
    pub async fn retry<T, F, Fut>(&self, what: &str, op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.retry_when(what, op, |outcome: &Result<T>| match outcome {
            Ok(_) => RetryDecision::Done,
            Err(e) => RetryDecision::from(e),
        })
        .await
    }

    /// The general form of [`retry`](Self::retry): `decide` looks at each outcome (which
    /// need not be a `Result` of ours, e.g. an HTTP response with a 429 status) and says
    /// whether to try again. When the attempts are used up, the last outcome is returned
    /// as it is.
    pub async fn retry_when<T, F, Fut, D>(&self, what: &str, mut op: F, mut decide: D) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = T>,
        D: FnMut(&T) -> RetryDecision,
    {
        let attempts = self.max_attempts();
        let mut attempt = 1;
        loop {
            let outcome = op().await;
            match decide(&outcome) {
                RetryDecision::Retry { after, reason } if attempt < attempts => {
                    let delay = self.delay(attempt, after);
                    tracing::warn!(
                        what,
                        attempt,
                        attempts,
                        ?delay,
                        reason = %reason,
                        "retrying after a transient failure"
                    );
                    drop(outcome);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                _ => return outcome,
            }
        }
    }
}

/// A uniformly random duration in `[0, max]`.
fn random_up_to(max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::random_range(0..=nanos))
}

impl From<&Error> for RetryDecision {
    /// Retry when the error says retrying may help, waiting what the remote asked for.
    fn from(e: &Error) -> Self {
        if e.is_retryable() {
            RetryDecision::Retry {
                after: e.retry_after(),
                reason: e.to_string(),
            }
        } else {
            RetryDecision::Done
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::sync::{Arc, Mutex};
    use tokio::time::Instant;

    fn policy(attempts: u32, jitter: Jitter) -> RetryPolicy {
        RetryPolicy {
            attempts,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1_000),
            jitter,
        }
    }

    fn transient() -> Error {
        Error::new(ErrorKind::Unavailable, "503 slow down")
    }

    /// Runs `policy.retry` over an operation that fails with `fail(n)` on attempt `n` (1-based)
    /// while it returns `Some`, and records the (paused-clock) instant of every attempt.
    async fn run(
        policy: RetryPolicy,
        fail: impl Fn(u32) -> Option<Error>,
    ) -> (Result<u32>, Vec<Duration>) {
        let start = Instant::now();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let result = policy
            .retry("test op", || {
                let mut c = calls.lock().unwrap();
                c.push(start.elapsed());
                let n = c.len() as u32;
                let outcome = match fail(n) {
                    Some(e) => Err(e),
                    None => Ok(n),
                };
                async move { outcome }
            })
            .await;
        let at = calls.lock().unwrap().clone();
        // The gaps between attempts.
        let gaps = at.windows(2).map(|w| w[1] - w[0]).collect();
        (result, gaps)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn delays_double_and_cap_at_max_delay() {
        let (result, gaps) = run(policy(7, Jitter::None), |_| Some(transient())).await;
        assert_eq!(result.unwrap_err().kind(), ErrorKind::Unavailable);
        assert_eq!(
            gaps,
            [ms(100), ms(200), ms(400), ms(800), ms(1_000), ms(1_000)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn equal_jitter_stays_between_half_and_all_of_the_backoff() {
        for _ in 0..20 {
            let (_, gaps) = run(policy(7, Jitter::Equal), |_| Some(transient())).await;
            assert_eq!(gaps.len(), 6);
            for (i, gap) in gaps.iter().enumerate() {
                let full = policy(7, Jitter::None).backoff(i as u32 + 1);
                assert!(*gap >= full / 2 && *gap <= full, "retry {}: {gap:?}", i + 1);
            }
            // Below the cap, each delay is at least the previous one: they grow.
            assert!(gaps[..4].windows(2).all(|w| w[0] <= w[1]), "{gaps:?}");
        }
    }

    #[test]
    fn full_jitter_stays_within_the_backoff_and_spreads() {
        let p = policy(5, Jitter::Full);
        let samples: Vec<Duration> = (0..200).map(|_| p.delay(3, None)).collect();
        assert!(samples.iter().all(|d| *d <= ms(400)), "{samples:?}");
        // Not a constant: 200 draws from [0, 400 ms] spread over most of the range.
        let min = samples.iter().min().unwrap();
        let max = samples.iter().max().unwrap();
        assert!(*max - *min > ms(200), "{min:?}..{max:?}");
        assert!(p.delay(30, None) <= ms(1_000));
    }

    /// Moved from the providers' HTTP module, whose own back-off this policy replaced.
    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            attempts: 5,
            base_delay: ms(100),
            max_delay: ms(350),
            jitter: Jitter::None,
        };
        assert_eq!(p.backoff(1), ms(100));
        assert_eq!(p.backoff(2), ms(200));
        assert_eq!(p.backoff(3), ms(350));
    }

    #[test]
    fn backoff_does_not_overflow_on_many_retries() {
        let p = RetryPolicy {
            attempts: u32::MAX,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            jitter: Jitter::None,
        };
        assert_eq!(p.backoff(1), Duration::from_secs(1));
        assert_eq!(p.backoff(200), Duration::from_secs(60));
        assert_eq!(p.delay(u32::MAX, None), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_and_capped_by_max_delay() {
        let (result, gaps) = run(policy(4, Jitter::Equal), |n| match n {
            1 => Some(transient().with_retry_after(ms(700))),
            2 => Some(transient().with_retry_after(Duration::from_secs(3_600))),
            3 => Some(transient().with_retry_after(Duration::ZERO)),
            _ => None,
        })
        .await;
        assert_eq!(result.unwrap(), 4);
        assert_eq!(gaps, [ms(700), ms(1_000), Duration::ZERO]);
    }

    #[tokio::test(start_paused = true)]
    async fn stops_after_the_attempts_with_the_last_error() {
        let (result, gaps) = run(policy(3, Jitter::None), |n| {
            Some(transient().with_context("attempt", n.to_string()))
        })
        .await;
        let err = result.unwrap_err();
        assert_eq!(err.context_value("attempt"), Some("3"));
        assert_eq!(gaps.len(), 2);

        // 0 attempts means one, never none.
        let (result, gaps) = run(policy(0, Jitter::None), |_| Some(transient())).await;
        assert!(result.is_err());
        assert!(gaps.is_empty());
        let (result, gaps) = run(RetryPolicy::none(), |_| Some(transient())).await;
        assert!(result.is_err());
        assert!(gaps.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn never_retries_a_non_retryable_error() {
        let start = Instant::now();
        let (result, gaps) = run(policy(5, Jitter::None), |_| {
            Some(Error::new(ErrorKind::PermissionDenied, "403"))
        })
        .await;
        assert_eq!(result.unwrap_err().kind(), ErrorKind::PermissionDenied);
        assert!(gaps.is_empty());
        // An Unavailable error marked not retryable is not retried either.
        let (result, gaps) = run(policy(5, Jitter::None), |_| {
            Some(transient().with_retryable(false))
        })
        .await;
        assert!(result.is_err());
        assert!(gaps.is_empty());
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_when_returns_the_last_outcome_it_was_told_to_retry() {
        // An outcome that is not an error (e.g. an HTTP 429 response) is retried on the
        // caller's say, and handed back as it is once the attempts are used up.
        let mut calls = 0;
        let last = policy(3, Jitter::None)
            .retry_when(
                "status",
                || {
                    calls += 1;
                    let status = 429 + calls;
                    async move { status }
                },
                |status| match status {
                    429.. => RetryDecision::Retry {
                        after: Some(ms(5)),
                        reason: format!("HTTP {status}"),
                    },
                    _ => RetryDecision::Done,
                },
            )
            .await;
        assert_eq!((last, calls), (432, 3));
    }

    #[test]
    fn decision_from_an_error_follows_its_retryability() {
        let e = transient().with_retry_after(ms(9));
        assert_eq!(
            RetryDecision::from(&e),
            RetryDecision::Retry {
                after: Some(ms(9)),
                reason: e.to_string()
            }
        );
        assert_eq!(
            RetryDecision::from(&Error::config("bad")),
            RetryDecision::Done
        );
    }
}
