//! The shipment state machine: how carrier updates become customer notifications. Pure:
//! the caller loads a [`Shipment`], applies updates with the time they arrived, asks what
//! is due, and stores the result.
//!
//! Rules (each has a test below):
//! - state never regresses: once a final status (delivered, returned, expired) is reached,
//!   nothing changes; an update older (by carrier time) than the current status only adds
//!   to the history;
//! - a repeated status changes nothing the customer sees;
//! - the first status change arms a notification `burst_window` later; further changes
//!   inside the window fold into it, so a burst becomes one email with the latest status
//!   and the whole history;
//! - every accepted scan re-arms the "stalled" alarm `stalled_after` later; a final status
//!   disarms it; a stall is reported once per quiet period.

use std::time::Duration;

use contracts::{Checkpoint, ShipmentStatus, ShipmentView};
use time::OffsetDateTime;

/// Everything the scheduler keeps about one parcel.
#[derive(Debug, Clone, PartialEq)]
pub struct Shipment {
    pub carrier: String,
    pub tracking_number: String,
    pub tracking_url: Option<String>,
    pub current: Option<Current>,
    pub estimated_delivery: Option<OffsetDateTime>,
    /// Status changes, oldest first.
    pub history: Vec<Checkpoint>,
    /// The status the customer was last told about.
    pub notified: Option<ShipmentStatus>,
    pub notify_due_at: Option<OffsetDateTime>,
    /// When the last carrier scan arrived (our clock), or when the parcel was announced.
    pub last_scan_at: OffsetDateTime,
    pub stall_due_at: Option<OffsetDateTime>,
}

/// The latest accepted status.
#[derive(Debug, Clone, PartialEq)]
pub struct Current {
    pub status: ShipmentStatus,
    pub carrier_status: String,
    pub message: Option<String>,
    pub location: Option<String>,
    /// When the carrier says it happened.
    pub at: OffsetDateTime,
}

/// One carrier (or shop) report about the parcel.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub current: Current,
    pub estimated_delivery: Option<OffsetDateTime>,
    pub tracking_url: Option<String>,
    /// History lines the report carries (aggregators send the full history every time).
    pub checkpoints: Vec<Checkpoint>,
}

/// What an update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The status changed; a notification is (or already was) armed.
    Changed,
    /// Same status again, or an older report: history and scan time only.
    Recorded,
    /// The parcel had already reached a final status.
    IgnoredFinal,
}

/// The timing a tenant chose for its shipments.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub burst_window: Duration,
    pub stalled_after: Duration,
}

impl Shipment {
    /// A parcel announced by a fulfillment (or first seen in a carrier update) at `now`.
    pub fn new(carrier: String, tracking_number: String, now: OffsetDateTime, timing: Timing) -> Self {
        Self {
            carrier,
            tracking_number,
            tracking_url: None,
            current: None,
            estimated_delivery: None,
            history: Vec::new(),
            notified: None,
            notify_due_at: None,
            last_scan_at: now,
            stall_due_at: Some(now + timing.stalled_after),
        }
    }

    pub fn is_final(&self) -> bool {
        self.current.as_ref().is_some_and(|c| c.status.is_final())
    }

    /// Applies one report that arrived at `now`.
    pub fn apply(&mut self, update: Update, now: OffsetDateTime, timing: Timing) -> Applied {
        if self.is_final() {
            return Applied::IgnoredFinal;
        }
        for c in update.checkpoints {
            self.record(c);
        }
        let u = update.current;
        self.record(Checkpoint {
            at: u.at,
            status: u.status,
            carrier_status: u.carrier_status.clone(),
            message: u.message.clone(),
            location: u.location.clone(),
        });
        if update.tracking_url.is_some() {
            self.tracking_url = update.tracking_url;
        }
        self.last_scan_at = self.last_scan_at.max(now);
        let older = self.current.as_ref().is_some_and(|c| u.at < c.at);
        let same = self.current.as_ref().is_some_and(|c| c.status == u.status);
        let applied = if older {
            Applied::Recorded
        } else {
            if update.estimated_delivery.is_some() {
                self.estimated_delivery = update.estimated_delivery;
            }
            self.current = Some(u);
            if same {
                Applied::Recorded
            } else {
                self.notify_due_at.get_or_insert(now + timing.burst_window);
                Applied::Changed
            }
        };
        self.stall_due_at = if self.is_final() { None } else { Some(self.last_scan_at + timing.stalled_after) };
        applied
    }

    /// Adds a history line unless it is already there; keeps the history in time order.
    fn record(&mut self, c: Checkpoint) {
        let dup = self.history.iter().any(|h| h.at == c.at && h.status == c.status && h.carrier_status == c.carrier_status);
        if !dup {
            let at = self.history.partition_point(|h| h.at <= c.at);
            self.history.insert(at, c);
        }
    }

    /// The notification due at `now`, if any: `(previous, view)`. Clears the alarm; the
    /// caller publishes and stores in one go. A burst that ended where it began (A → B →
    /// A) yields nothing.
    pub fn take_notification(&mut self, now: OffsetDateTime) -> Option<(Option<ShipmentStatus>, ShipmentView)> {
        let due = self.notify_due_at.is_some_and(|d| d <= now);
        if !due {
            return None;
        }
        self.notify_due_at = None;
        let status = self.current.as_ref()?.status;
        if self.notified == Some(status) {
            return None;
        }
        let previous = self.notified.replace(status);
        Some((previous, self.view()?))
    }

    /// The stall report due at `now`, if any: days without a scan. Reported once per quiet
    /// period (the next scan re-arms it).
    pub fn take_stall(&mut self, now: OffsetDateTime) -> Option<u32> {
        let due = self.stall_due_at.is_some_and(|d| d <= now);
        if !due || self.is_final() {
            return None;
        }
        self.stall_due_at = None;
        let days = (now - self.last_scan_at).whole_days();
        Some(u32::try_from(days).unwrap_or(0))
    }

    /// The earliest moment something is due.
    pub fn next_due(&self) -> Option<OffsetDateTime> {
        match (self.notify_due_at, self.stall_due_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The shipment as journey events carry it. `None` before any status is known.
    pub fn view(&self) -> Option<ShipmentView> {
        let c = self.current.as_ref()?;
        Some(ShipmentView {
            carrier: self.carrier.clone(),
            tracking_number: self.tracking_number.clone(),
            tracking_url: self.tracking_url.clone(),
            status: c.status,
            carrier_status: c.carrier_status.clone(),
            message: c.message.clone(),
            location: c.location.clone(),
            status_at: c.at,
            estimated_delivery: self.estimated_delivery,
            history: self.history.clone(),
        })
    }

    /// A view for a parcel with no carrier status yet (a stall right after the label).
    pub fn view_or_announced(&self, announced_at: OffsetDateTime) -> ShipmentView {
        self.view().unwrap_or_else(|| ShipmentView {
            carrier: self.carrier.clone(),
            tracking_number: self.tracking_number.clone(),
            tracking_url: self.tracking_url.clone(),
            status: ShipmentStatus::InfoReceived,
            carrier_status: String::new(),
            message: None,
            location: None,
            status_at: announced_at,
            estimated_delivery: self.estimated_delivery,
            history: self.history.clone(),
        })
    }
}

/// The key a tracking number is stored under: carriers and shops disagree on case and
/// spacing (`1z 999…` vs `1Z999…`), never on the characters.
pub fn tracking_key(number: &str) -> String {
    number.chars().filter(|c| !c.is_whitespace() && *c != '-').flat_map(char::to_uppercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ShipmentStatus::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-24 09:00 UTC);
    const TIMING: Timing = Timing { burst_window: Duration::from_secs(600), stalled_after: Duration::from_secs(5 * 86_400) };

    fn min(n: i64) -> time::Duration {
        time::Duration::minutes(n)
    }

    fn update(status: ShipmentStatus, at: OffsetDateTime) -> Update {
        Update {
            current: Current { status, carrier_status: format!("{status:?}"), message: None, location: None, at },
            estimated_delivery: None,
            tracking_url: None,
            checkpoints: Vec::new(),
        }
    }

    fn parcel() -> Shipment {
        Shipment::new("ups".into(), "1Z999".into(), T0, TIMING)
    }

    #[test]
    fn a_change_notifies_after_the_burst_window_with_the_latest_status() {
        let mut s = parcel();
        assert_eq!(s.apply(update(InTransit, T0), T0, TIMING), Applied::Changed);
        assert_eq!(s.apply(update(OutForDelivery, T0 + min(2)), T0 + min(2), TIMING), Applied::Changed);
        assert_eq!(s.apply(update(FailedAttempt, T0 + min(5)), T0 + min(5), TIMING), Applied::Changed);
        assert_eq!(s.notify_due_at, Some(T0 + min(10)), "the window counts from the first change");
        assert_eq!(s.take_notification(T0 + min(9)), None, "not before the window ends");
        let (previous, view) = s.take_notification(T0 + min(10)).unwrap();
        assert_eq!(previous, None);
        assert_eq!(view.status, FailedAttempt);
        let statuses: Vec<_> = view.history.iter().map(|h| h.status).collect();
        assert_eq!(statuses, [InTransit, OutForDelivery, FailedAttempt]);
        assert_eq!(s.take_notification(T0 + min(20)), None, "fires once");
    }

    #[test]
    fn repeats_send_nothing() {
        let mut s = parcel();
        s.apply(update(InTransit, T0), T0, TIMING);
        s.take_notification(T0 + min(10)).unwrap();
        assert_eq!(s.apply(update(InTransit, T0 + min(30)), T0 + min(30), TIMING), Applied::Recorded);
        assert_eq!(s.notify_due_at, None);
        assert_eq!(s.take_notification(T0 + min(60)), None);
    }

    #[test]
    fn nothing_changes_after_delivery() {
        let mut s = parcel();
        s.apply(update(Delivered, T0), T0, TIMING);
        s.take_notification(T0 + min(10)).unwrap();
        let late = update(InTransit, T0 - min(60));
        assert_eq!(s.apply(late, T0 + min(30), TIMING), Applied::IgnoredFinal);
        assert_eq!(s.current.as_ref().unwrap().status, Delivered);
        assert_eq!(s.history.len(), 1, "a late update after the end is not even recorded");
        assert_eq!(s.stall_due_at, None, "a delivered parcel cannot stall");
        assert_eq!(s.take_stall(T0 + time::Duration::days(30)), None);
    }

    #[test]
    fn an_older_update_fills_the_history_without_moving_the_status() {
        let mut s = parcel();
        s.apply(update(OutForDelivery, T0), T0, TIMING);
        assert_eq!(s.apply(update(InTransit, T0 - min(90)), T0 + min(1), TIMING), Applied::Recorded);
        assert_eq!(s.current.as_ref().unwrap().status, OutForDelivery);
        let statuses: Vec<_> = s.history.iter().map(|h| h.status).collect();
        assert_eq!(statuses, [InTransit, OutForDelivery], "history stays in carrier-time order");
    }

    #[test]
    fn a_burst_that_returns_to_the_notified_status_is_silent() {
        let mut s = parcel();
        s.apply(update(InTransit, T0), T0, TIMING);
        s.take_notification(T0 + min(10)).unwrap();
        s.apply(update(Exception, T0 + min(11)), T0 + min(11), TIMING);
        s.apply(update(InTransit, T0 + min(12)), T0 + min(12), TIMING);
        assert_eq!(s.take_notification(T0 + min(21)), None);
    }

    #[test]
    fn zero_window_notifies_each_change() {
        let timing = Timing { burst_window: Duration::ZERO, ..TIMING };
        let mut s = Shipment::new("ups".into(), "1Z".into(), T0, timing);
        s.apply(update(InTransit, T0), T0, timing);
        assert_eq!(s.take_notification(T0).unwrap().1.status, InTransit);
        s.apply(update(OutForDelivery, T0 + min(1)), T0 + min(1), timing);
        let (previous, view) = s.take_notification(T0 + min(1)).unwrap();
        assert_eq!((previous, view.status), (Some(InTransit), OutForDelivery));
    }

    #[test]
    fn aggregator_histories_are_merged_without_duplicates() {
        let mut s = parcel();
        let mut u = update(InTransit, T0 + min(5));
        let first = Checkpoint { at: T0, status: InfoReceived, carrier_status: "pre_transit".into(), message: None, location: None };
        u.checkpoints = vec![first.clone()];
        s.apply(u.clone(), T0 + min(5), TIMING);
        s.apply(u, T0 + min(6), TIMING);
        assert_eq!(s.history.len(), 2);
        assert_eq!(s.history[0], first);
    }

    #[test]
    fn silence_raises_one_stall_per_quiet_period() {
        let mut s = parcel();
        s.apply(update(InTransit, T0), T0, TIMING);
        let day = time::Duration::days(1);
        assert_eq!(s.take_stall(T0 + day * 4), None);
        assert_eq!(s.take_stall(T0 + day * 5), Some(5));
        assert_eq!(s.take_stall(T0 + day * 6), None, "once per quiet period");
        s.apply(update(InTransit, T0 + day * 7), T0 + day * 7, TIMING);
        assert_eq!(s.stall_due_at, Some(T0 + day * 12), "a new scan re-arms it");
        assert_eq!(s.next_due(), Some(T0 + min(10)), "the notification not yet taken comes first");
    }

    #[test]
    fn a_parcel_never_scanned_stalls_from_its_announcement() {
        let mut s = parcel();
        assert_eq!(s.take_stall(T0 + time::Duration::days(5)), Some(5));
        assert_eq!(s.view_or_announced(T0).status, InfoReceived);
    }

    #[test]
    fn tracking_keys_ignore_case_spaces_and_dashes() {
        assert_eq!(tracking_key("1z 999-aa1 0123"), "1Z999AA10123");
    }
}
