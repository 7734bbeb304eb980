//! Subject and stream names. The only place they are spelled out.
//!
//! | stream      | subjects                          | retention  |
//! |-------------|-----------------------------------|------------|
//! | `PF_EVENTS` | `pf.events.{tenant}.{event type}` | limits/age |
//! | `PF_RENDER` | `pf.render.{lane}.{tenant}`       | work queue |
//! | `PF_SEND`   | `pf.send.{lane}.{tenant}`         | work queue |
//! | `PF_DLQ`    | `pf.dlq.{consumer}`               | limits/age |

use contracts::{EventKind, Lane, TenantId};

pub const EVENTS_STREAM: &str = "PF_EVENTS";
pub const RENDER_STREAM: &str = "PF_RENDER";
pub const SEND_STREAM: &str = "PF_SEND";
pub const DLQ_STREAM: &str = "PF_DLQ";

pub(crate) const EVENTS_ALL: &str = "pf.events.>";
pub(crate) const RENDER_ALL: &str = "pf.render.>";
pub(crate) const SEND_ALL: &str = "pf.send.>";
pub(crate) const DLQ_ALL: &str = "pf.dlq.>";

pub fn event(tenant: &TenantId, kind: EventKind) -> String {
    format!("pf.events.{tenant}.{}", kind.as_str())
}

pub fn event_filter(kind: EventKind) -> String {
    format!("pf.events.*.{}", kind.as_str())
}

pub fn render(lane: Lane, tenant: &TenantId) -> String {
    format!("pf.render.{}.{tenant}", lane.token())
}

pub fn render_filter(lane: Lane) -> String {
    format!("pf.render.{}.>", lane.token())
}

pub fn send(lane: Lane, tenant: &TenantId) -> String {
    format!("pf.send.{}.{tenant}", lane.token())
}

pub fn send_filter(lane: Lane) -> String {
    format!("pf.send.{}.>", lane.token())
}

pub fn dead_letter(consumer: &str) -> String {
    format!("pf.dlq.{consumer}")
}

/// Every subject pattern with the stream that holds it and the contract it carries, for
/// the AsyncAPI document in `proto/`.
pub fn catalogue() -> Vec<SubjectDoc> {
    let mut out: Vec<SubjectDoc> = EventKind::ALL
        .iter()
        .map(|k| SubjectDoc {
            pattern: format!("pf.events.{{tenant}}.{}", k.as_str()),
            stream: EVENTS_STREAM,
            schema: format!("{}.schema.json", k.as_str()),
            envelope: true,
        })
        .collect();
    for lane in Lane::ALL {
        out.push(SubjectDoc {
            pattern: format!("pf.render.{}.{{tenant}}", lane.token()),
            stream: RENDER_STREAM,
            schema: "render-request.schema.json".into(),
            envelope: false,
        });
        out.push(SubjectDoc {
            pattern: format!("pf.send.{}.{{tenant}}", lane.token()),
            stream: SEND_STREAM,
            schema: "outbound-message.schema.json".into(),
            envelope: false,
        });
    }
    out
}

#[derive(Debug, Clone)]
pub struct SubjectDoc {
    pub pattern: String,
    pub stream: &'static str,
    pub schema: String,
    /// True when the payload is an [`contracts::Envelope`] whose `data` has `schema`.
    pub envelope: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_match_their_filters() {
        let t = TenantId::parse("shop-1").unwrap();
        assert_eq!(event(&t, EventKind::OrderPlaced), "pf.events.shop-1.order.placed");
        assert_eq!(render(Lane::Transactional, &t), "pf.render.tx.shop-1");
        assert_eq!(send(Lane::Marketing, &t), "pf.send.mkt.shop-1");
        assert_eq!(event_filter(EventKind::EmailSent), "pf.events.*.email.sent");
    }
}
