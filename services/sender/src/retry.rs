//! When a temporary delivery failure is retried, and when the sender gives up.
//!
//! Pure: the caller reads the time of the first attempt from the database and "now" from
//! the injected clock, and passes the jitter in.

use std::time::Duration;

use time::OffsetDateTime;

/// The retry schedule for temporary failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first retry waits about this long; each further one twice as long as the last.
    pub base: Duration,
    pub max: Duration,
    /// Measured from the first attempt. Past it the message is given up.
    pub deadline: Duration,
}

/// What to do after a temporary failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Try again after this delay.
    Retry(Duration),
    /// Stop: the message becomes a non-permanent bounce with this reason.
    GiveUp(String),
}

impl RetryPolicy {
    /// `failures` counts temporary failures so far, this one included (1 after the first).
    /// `jitter` is uniform in [0, 1): the delay varies by ±25 % so messages that failed
    /// together do not retry together.
    pub fn next(&self, first_attempt: OffsetDateTime, now: OffsetDateTime, failures: u32, jitter: f64, last_error: &str) -> Next {
        let elapsed: Duration = (now - first_attempt).try_into().unwrap_or(Duration::ZERO);
        if elapsed >= self.deadline {
            return Next::GiveUp(format!("gave up after {}: last error {last_error}", human(elapsed)));
        }
        let exp = self.base.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        let delay = exp.min(self.max).mul_f64(0.75 + jitter.clamp(0.0, 1.0) * 0.5);
        // Never sleep past the deadline: the last try happens at it, not up to `max` later.
        let left = self.deadline - elapsed;
        Next::Retry(delay.min(left).max(Duration::from_millis(10)))
    }
}

/// `1d 2h`, `3h 5m`, `4m 10s`, `12s`: the two largest units.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, _) => format!("{mins}m {secs}s"),
        (0, _, _) => format!("{hours}h {mins}m"),
        _ => format!("{days}d {hours}h"),
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const POLICY: RetryPolicy =
        RetryPolicy { base: Duration::from_secs(1), max: Duration::from_secs(300), deadline: Duration::from_secs(24 * 3600) };
    const T0: OffsetDateTime = datetime!(2025-03-01 12:00 UTC);

    #[test]
    fn retries_back_off_exponentially_with_jitter_and_a_cap() {
        let at = |failures, jitter| POLICY.next(T0, T0 + time::Duration::minutes(1), failures, jitter, "451");
        assert_eq!(at(1, 0.5), Next::Retry(Duration::from_secs(1)));
        assert_eq!(at(2, 0.5), Next::Retry(Duration::from_secs(2)));
        assert_eq!(at(5, 0.5), Next::Retry(Duration::from_secs(16)));
        assert_eq!(at(30, 0.5), Next::Retry(Duration::from_secs(300)), "capped");
        assert_eq!(at(3, 0.0), Next::Retry(Duration::from_secs(3)), "-25 %");
        let Next::Retry(high) = at(3, 0.999_999) else { panic!("gave up") };
        assert!(high > Duration::from_millis(4990) && high < Duration::from_secs(5), "+25 %: {high:?}");
    }

    #[test]
    fn gives_up_at_the_deadline_counted_from_the_first_attempt() {
        let just_before = T0 + time::Duration::hours(24) - time::Duration::seconds(1);
        assert!(matches!(POLICY.next(T0, just_before, 40, 0.5, "x"), Next::Retry(_)));
        let at = T0 + time::Duration::hours(24);
        assert_eq!(
            POLICY.next(T0, at, 40, 0.5, "503 service unavailable"),
            Next::GiveUp("gave up after 1d 0h: last error 503 service unavailable".into())
        );
        let later = T0 + time::Duration::hours(30) + time::Duration::minutes(7);
        assert_eq!(POLICY.next(T0, later, 2, 0.5, "429"), Next::GiveUp("gave up after 1d 6h: last error 429".into()));
    }

    #[test]
    fn the_last_retry_is_not_scheduled_past_the_deadline() {
        let near = T0 + time::Duration::hours(24) - time::Duration::seconds(20);
        assert_eq!(POLICY.next(T0, near, 30, 0.5, "x"), Next::Retry(Duration::from_secs(20)));
    }

    #[test]
    fn a_clock_behind_the_first_attempt_counts_as_no_time_passed() {
        let earlier = T0 - time::Duration::hours(1);
        assert_eq!(POLICY.next(T0, earlier, 1, 0.5, "x"), Next::Retry(Duration::from_secs(1)));
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_secs(12)), "12s");
        assert_eq!(human(Duration::from_secs(250)), "4m 10s");
        assert_eq!(human(Duration::from_secs(3 * 3600 + 5 * 60 + 9)), "3h 5m");
        assert_eq!(human(Duration::from_secs(86_400 + 7200)), "1d 2h");
    }
}
