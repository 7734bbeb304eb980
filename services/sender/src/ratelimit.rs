//! Send-rate limits shared by every sender replica: per provider account and per recipient
//! domain, in the sender's own database.
//!
//! Each limit is a fixed one-second window per key. Taking a slot is one statement that
//! increments the window's counter only while it is under the limit; PostgreSQL's row lock
//! makes that atomic across replicas, so three replicas together never exceed what one
//! tenant's provider allows. A refused slot says how long to wait for the next window.
//!
//! The guard. A slot is counted in the window in which it was taken, but the message
//! reaches the server a little later (the SMTP commands and body, or one HTTP request). A
//! slot taken in the last moments of a window could land in the next one, on top of that
//! window's full quota. So a slot taken in the last [`GUARD`] of a window is taken in both
//! that window and the next: wherever the message lands, it is counted there. The limit
//! holds at the server as long as the exchange takes less than the guard. The cost is one
//! slot of the next window, and only when the message would otherwise have waited: a
//! message late in a window with room in both goes at once (it used to wait for the next
//! window, up to the guard's 250 ms, which an order confirmation should not), and one that
//! finds either window full waits for the next. With a backlog nothing changes: the quota
//! is used up at the start of each window anyway. One exception: a Postmark message may
//! wait in its batch queue after taking its slot (`transport/postmark.rs`), so one request
//! can carry slots of two windows; the count per window still holds, their arrival at
//! Postmark may bunch by up to one request's round trip.
//!
//! Windows are read from the service clock, so replicas on different hosts need agreeing
//! clocks (NTP); their skew eats into the guard. A clock that does not move (a test's
//! manual clock) never opens a new window: a tenant with limits then waits until it moves.
//!
//! Lanes. Both lanes count in the same windows (the provider counts all of the account's
//! mail), but marketing mail may only fill a window up to the limit minus a reserve
//! ([`reserve`]: a fifth, at least one, for limits of 2 or more); only transactional mail
//! may take the last slots. A campaign that keeps every window full at the start of each
//! second therefore still leaves room for an order confirmation in the same second, rather
//! than making it race 64 marketing sends for the next one.
//!
//! Invariant: a slot is taken before a message is handed to SMTP or a provider, never
//! after; a message that waits keeps its place (the caller retries the same message).
//! Invariant: a message's slots are taken in one order (account, then domain; for each,
//! this window, then the next), so concurrent takers lock window rows in the same order and
//! never deadlock.

use std::time::Duration;

use contracts::Lane;
use sqlx::PgPool;
use time::OffsetDateTime;

/// One limit: at most `per_second` messages counted under `key` (e.g. `acct:shop-1`,
/// `domain:shop-1:gmail.com`) in a window, as seen by one lane (see [`Limit::for_lane`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub key: String,
    pub per_second: u32,
}

/// The slots of a `per_second` limit that only transactional mail may take: a fifth,
/// at least one, and none for a limit of 1 (marketing would never send).
pub fn reserve(per_second: u32) -> u32 {
    if per_second < 2 { 0 } else { (per_second / 5).max(1) }
}

impl Limit {
    /// How far `lane` may fill this limit's windows: all of it for transactional mail, all
    /// but the [`reserve`] for marketing.
    pub fn for_lane(self, lane: Lane) -> Self {
        match lane {
            Lane::Transactional => self,
            Lane::Marketing => Self { per_second: self.per_second - reserve(self.per_second), ..self },
        }
    }

    /// The tenant's provider account.
    pub fn account(tenant: &str, per_second: u32) -> Self {
        Self { key: format!("acct:{tenant}"), per_second }
    }

    /// One recipient domain for the tenant (lowercase).
    pub fn domain(tenant: &str, domain: &str, per_second: u32) -> Self {
        Self { key: format!("domain:{tenant}:{}", domain.to_ascii_lowercase()), per_second }
    }
}

/// The end of each window in which no slot is taken (see the module docs).
pub const GUARD: Duration = Duration::from_millis(250);

/// A tenant's limits, from its `[delivery]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// `max_per_second`: the whole provider account.
    pub per_second: Option<u32>,
    /// `max_per_second_per_domain`: each recipient domain.
    pub per_domain: Option<u32>,
}

impl Limits {
    pub fn of(delivery: &tenancy::Delivery) -> Self {
        Self { per_second: delivery.max_per_second, per_domain: delivery.max_per_second_per_domain }
    }

    /// The limits one message of `lane` to `recipient_domain` is under: the account first,
    /// then the domain (the order in which their rows are locked).
    pub fn for_message(&self, tenant: &str, recipient_domain: &str, lane: Lane) -> Vec<Limit> {
        let account = self.per_second.map(|n| Limit::account(tenant, n));
        let domain = self.per_domain.map(|n| Limit::domain(tenant, recipient_domain, n));
        account.into_iter().chain(domain).map(|l| l.for_lane(lane)).collect()
    }
}

/// The window a moment falls in, and how long until the next one starts.
pub fn window(now: OffsetDateTime) -> (i64, Duration) {
    let second = now.unix_timestamp();
    let into = Duration::from_nanos(u64::from(now.nanosecond()));
    (second, Duration::from_secs(1).saturating_sub(into))
}

/// `Some(until_next)` when `now` is in the guard at the end of its window: a slot taken
/// now must also be taken in the next window.
pub fn in_guard(now: OffsetDateTime) -> Option<Duration> {
    let (_, until_next) = window(now);
    (until_next <= GUARD).then_some(until_next)
}

/// The windows a slot taken at `now` is counted in: this one, and in the guard the next.
pub fn windows_for(now: OffsetDateTime) -> (i64, Option<i64>) {
    let (second, _) = window(now);
    (second, in_guard(now).map(|_| second + 1))
}

/// Takes one slot under every limit, or none: `Ok(None)` when the message may go now,
/// `Ok(Some(wait))` when one limit is full for this second (nothing was taken).
pub async fn acquire(pool: &PgPool, limits: &[Limit], now: OffsetDateTime) -> sqlx::Result<Option<Duration>> {
    if limits.is_empty() {
        return Ok(None);
    }
    let (_, until_next) = window(now);
    let (this, next) = windows_for(now);
    let refused = |why: &'static str| {
        metrics::counter!("sender_rate_limited_total", "why" => why).increment(1);
        Ok(Some(until_next))
    };
    // One limit in one window: one statement, no transaction around it (the common case,
    // and the hot row is locked for the shortest time).
    if let ([limit], None) = (limits, next) {
        return if take(pool, limit, this).await?.is_some() { Ok(None) } else { refused("full") };
    }
    let mut tx = pool.begin().await?;
    for limit in limits {
        for (second, why) in [(Some(this), "full"), (next, "next_full")] {
            let Some(second) = second else { continue };
            if take(&mut *tx, limit, second).await?.is_none() {
                // Give back what was taken for this message so far.
                tx.rollback().await?;
                return refused(why);
            }
        }
    }
    tx.commit().await?;
    if next.is_some() {
        metrics::counter!("sender_rate_slots_in_two_windows_total").increment(1);
    }
    Ok(None)
}

/// One slot under `limit` in window `second`: the count after taking it, or `None` if the
/// window is full.
async fn take<'e>(db: impl sqlx::PgExecutor<'e>, limit: &Limit, second: i64) -> sqlx::Result<Option<i32>> {
    sqlx::query_scalar(
        "insert into rate_windows (key, second, used) values ($1, $2, 1)
         on conflict (key, second) do update set used = rate_windows.used + 1
         where rate_windows.used < $3
         returning used",
    )
    .bind(&limit.key)
    .bind(second)
    .bind(i32::try_from(limit.per_second).unwrap_or(i32::MAX))
    .fetch_optional(db)
    .await
}

/// Forgets windows older than a minute (they only matter during their second).
pub async fn prune(pool: &PgPool, now: OffsetDateTime) -> sqlx::Result<u64> {
    let (second, _) = window(now);
    Ok(sqlx::query("delete from rate_windows where second < $1").bind(second - 60).execute(pool).await?.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn windows_are_whole_seconds() {
        let (s, wait) = window(datetime!(2026-11-24 09:00:00.25 UTC));
        assert_eq!(s, datetime!(2026-11-24 09:00:00 UTC).unix_timestamp());
        assert_eq!(wait, Duration::from_millis(750));
        assert_eq!(window(datetime!(2026-11-24 09:00:01 UTC)).1, Duration::from_secs(1));
    }

    #[test]
    fn a_slot_in_the_guard_counts_in_this_window_and_the_next() {
        let at = |t| windows_for(t);
        let second = datetime!(2026-11-24 09:00:00 UTC).unix_timestamp();
        assert_eq!(at(datetime!(2026-11-24 09:00:00.1 UTC)), (second, None));
        assert_eq!(at(datetime!(2026-11-24 09:00:00.7 UTC)), (second, None));
        assert_eq!(at(datetime!(2026-11-24 09:00:00.8 UTC)), (second, Some(second + 1)));
    }

    #[test]
    fn the_guard_is_the_last_quarter_second() {
        assert_eq!(in_guard(datetime!(2026-11-24 09:00:00.25 UTC)), None);
        assert_eq!(in_guard(datetime!(2026-11-24 09:00:00.7 UTC)), None);
        assert_eq!(in_guard(datetime!(2026-11-24 09:00:00.75 UTC)), Some(Duration::from_millis(250)));
        assert_eq!(in_guard(datetime!(2026-11-24 09:00:00.999 UTC)), Some(Duration::from_millis(1)));
        assert_eq!(in_guard(datetime!(2026-11-24 09:00:01 UTC)), None);
    }

    #[test]
    fn a_message_is_under_the_account_limit_then_its_domain_limit() {
        let tx = Lane::Transactional;
        let both = Limits { per_second: Some(14), per_domain: Some(5) };
        assert_eq!(both.for_message("shop-1", "GMail.com", tx), vec![Limit::account("shop-1", 14), Limit::domain("shop-1", "gmail.com", 5)]);
        let account = Limits { per_second: Some(14), per_domain: None };
        assert_eq!(account.for_message("shop-1", "gmail.com", tx), vec![Limit::account("shop-1", 14)]);
        let domain = Limits { per_second: None, per_domain: Some(5) };
        assert_eq!(domain.for_message("shop-1", "gmail.com", tx), vec![Limit::domain("shop-1", "gmail.com", 5)]);
        assert!(Limits::default().for_message("shop-1", "gmail.com", tx).is_empty());
    }

    #[test]
    fn marketing_leaves_a_reserve_in_every_window_for_transactional_mail() {
        assert_eq!([1, 2, 4, 5, 9, 10, 14, 100].map(reserve), [0, 1, 1, 1, 1, 2, 2, 20]);
        let both = Limits { per_second: Some(14), per_domain: Some(5) };
        assert_eq!(
            both.for_message("shop-1", "gmail.com", Lane::Marketing),
            vec![Limit::account("shop-1", 12), Limit::domain("shop-1", "gmail.com", 4)]
        );
        // The same windows: the reserve is a lower cap on the same counter, not a second one.
        let mkt = Limit::account("shop-1", 14).for_lane(Lane::Marketing);
        assert_eq!(mkt.key, Limit::account("shop-1", 14).key);
        let one = Limits { per_second: Some(1), per_domain: None };
        assert_eq!(one.for_message("shop-1", "gmail.com", Lane::Marketing), vec![Limit::account("shop-1", 1)]);
    }

    #[test]
    fn limits_come_from_the_delivery_section() {
        let d = tenancy::Delivery { max_per_second: Some(50), max_per_second_per_domain: Some(10), ..Default::default() };
        assert_eq!(Limits::of(&d), Limits { per_second: Some(50), per_domain: Some(10) });
        assert_eq!(Limits::of(&tenancy::Delivery::default()), Limits::default());
    }

    #[test]
    fn keys_are_scoped_by_tenant_and_lowercase_domain() {
        assert_eq!(Limit::account("shop-1", 14).key, "acct:shop-1");
        assert_eq!(Limit::domain("shop-1", "GMail.com", 5).key, "domain:shop-1:gmail.com");
    }
}
