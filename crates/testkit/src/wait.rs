//! Polling with a deadline, for tests that wait on a condition instead of sleeping.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`eventually`] and [`eventually_ok`] retry.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Calls `f` every 20 ms until it returns `Some`, and returns that value.
///
/// An attempt still running at the deadline is cancelled.
///
/// # Panics
/// When `deadline` passes first; the message names `what` and the elapsed time.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let remaining = deadline.saturating_sub(start.elapsed());
        if let Ok(Some(value)) = tokio::time::timeout(remaining, f()).await {
            return value;
        }
        let elapsed = start.elapsed();
        if elapsed >= deadline {
            panic!("timed out after {elapsed:.2?} ({attempts} attempts) waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - elapsed)).await;
    }
}

/// Like [`eventually`] for fallible checks: calls `f` every 20 ms until it returns `Ok`.
///
/// # Panics
/// When `deadline` passes first; the message names `what`, the elapsed time and the last error.
pub async fn eventually_ok<T, F, Fut>(deadline: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let start = Instant::now();
    let mut attempts = 0u32;
    let mut last_error = String::from("no attempt finished");
    loop {
        attempts += 1;
        let remaining = deadline.saturating_sub(start.elapsed());
        match tokio::time::timeout(remaining, f()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(err)) => last_error = format!("{err:#}"),
            Err(_) => {
                last_error =
                    format!("attempt still running at the deadline (previous: {last_error})")
            }
        }
        let elapsed = start.elapsed();
        if elapsed >= deadline {
            panic!(
                "timed out after {elapsed:.2?} ({attempts} attempts) waiting for {what}; last error: {last_error}"
            );
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - elapsed)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn returns_once_ready() {
        let calls = AtomicU32::new(0);
        let value = eventually(Duration::from_secs(5), "third call", || async {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            (n >= 3).then_some(n)
        })
        .await;
        assert_eq!(value, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for the impossible")]
    async fn panics_at_deadline() {
        eventually(Duration::from_millis(60), "the impossible", || async {
            None::<()>
        })
        .await;
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for a hung check")]
    async fn cancels_attempts_running_past_the_deadline() {
        eventually(
            Duration::from_millis(60),
            "a hung check",
            std::future::pending::<Option<()>>,
        )
        .await;
    }

    #[tokio::test]
    async fn ok_variant_retries_errors() {
        let calls = AtomicU32::new(0);
        let value = eventually_ok(Duration::from_secs(5), "second call", || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => anyhow::bail!("not yet"),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(value, 1);
    }

    #[tokio::test]
    #[should_panic(expected = "last error: still broken: attempt")]
    async fn ok_variant_reports_last_error() {
        let calls = AtomicU32::new(0);
        eventually_ok(Duration::from_millis(60), "a fix", || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(anyhow::anyhow!("attempt {n}").context("still broken"))
        })
        .await;
    }
}
