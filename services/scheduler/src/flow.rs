//! Flow runs: starting them (on a triggering event) and stepping them (when a timer is due).
//! The decisions are pure functions ([`next_action`], [`render_request`]); [`Engine`] is the
//! thin IO around them.

use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, HandleError};
use contracts::{Cause, Envelope, Event, Mailbox, MessageId, RenderRequest, SPEC_VERSION};
use kit::Clock;
use sqlx::{PgPool, Row};
use tenancy::{Flow, FlowStep, Tenant, Tenants};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span};
use uuid::Uuid;

/// What to do at `step` of a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepAction {
    Send { template: String },
    Wait(Duration),
    Finish,
}

pub fn next_action(flow: &Flow, step: usize) -> StepAction {
    match flow.steps.get(step) {
        Some(FlowStep::Send { template, .. }) => StepAction::Send { template: template.clone() },
        Some(FlowStep::Wait(d)) => StepAction::Wait(*d),
        None => StepAction::Finish,
    }
}

/// The run id of `flow` for the event with `trigger_key`: the same inputs, the same run.
pub fn run_id(tenant: &str, flow: &str, trigger_key: &str) -> Uuid {
    let name = format!("{tenant}\u{0}{flow}\u{0}{trigger_key}");
    Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
}

/// The render request for a send step, or `None` when the event names no recipient.
pub fn render_request(
    tenant: &Tenant,
    flow: &Flow,
    run: Uuid,
    step: u32,
    event: &Envelope,
    template: &str,
) -> Option<RenderRequest> {
    let (to, locale, data) = match &event.event {
        Event::OrderPlaced(p) => {
            let c = &p.order.customer;
            let email = c.email.clone()?;
            let name = match (&c.first_name, &c.last_name) {
                (Some(f), Some(l)) => Some(format!("{f} {l}")),
                (Some(n), None) | (None, Some(n)) => Some(n.clone()),
                (None, None) => None,
            };
            let data = serde_json::json!({ "order": p.order, "customer": c });
            (Mailbox { name, email }, c.locale.clone(), data)
        }
        _ => return None,
    };
    Some(RenderRequest {
        spec: SPEC_VERSION,
        message_id: MessageId::derive(&[tenant.id.as_str(), &run.to_string(), &step.to_string()]),
        tenant: tenant.id.clone(),
        lane: flow.lane,
        template: template.to_owned(),
        to,
        locale: locale.or_else(|| Some(tenant.locale.clone())),
        cause: Cause { flow: flow.id.clone(), run_id: run, step, event_id: event.id },
        data,
    })
}

pub struct Engine {
    pub(crate) pool: PgPool,
    pub(crate) bus: Bus,
    pub(crate) tenants: Tenants,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) wake: Notify,
    pub(crate) batch: i64,
}

impl Engine {
    /// Starts every enabled flow of the event's tenant that the event triggers. Idempotent.
    pub(crate) async fn start_runs(&self, event: &Envelope) -> Result<(), HandleError> {
        let Some(tenant) = self.tenants.get(&event.tenant) else {
            return Err(HandleError::transient(anyhow::anyhow!("tenant {} is not configured here", event.tenant)));
        };
        let now = self.clock.now();
        let body = serde_json::to_value(event).map_err(HandleError::permanent)?;
        let trace = serde_json::to_value(telemetry::current_context_headers()).map_err(HandleError::permanent)?;
        let mut started = 0;
        let mut tx = self.pool.begin().await.map_err(HandleError::transient)?;
        for flow in tenant.flows_for(event.kind()) {
            let id = run_id(tenant.id.as_str(), &flow.id, &event.idempotency_key);
            let inserted = sqlx::query(
                "insert into flow_runs (id, tenant, flow_id, trigger_key, event_id, event, trace_context, created_at)
                 values ($1, $2, $3, $4, $5, $6, $7, $8) on conflict do nothing",
            )
            .bind(id)
            .bind(tenant.id.as_str())
            .bind(&flow.id)
            .bind(&event.idempotency_key)
            .bind(event.id)
            .bind(&body)
            .bind(&trace)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(HandleError::transient)?
            .rows_affected();
            if inserted == 1 {
                sqlx::query("insert into timers (run_id, step, due_at) values ($1, 0, $2)")
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(HandleError::transient)?;
                started += 1;
            }
        }
        tx.commit().await.map_err(HandleError::transient)?;
        if started > 0 {
            tracing::info!(started, event_id = %event.id, "flow runs started");
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Fires due timers until `stop`. Wakes on new runs and every `poll` otherwise.
    pub(crate) async fn run_timers(&self, poll: Duration, stop: CancellationToken) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = self.wake.notified() => {},
                _ = tick.tick() => {},
            }
            loop {
                match self.fire_due().await {
                    // A fired send step makes the next step due at once: go round again.
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "firing timers failed; will retry");
                        break;
                    }
                }
                if stop.is_cancelled() {
                    return Ok(());
                }
            }
        }
    }

    /// Claims and fires up to `batch` due timers in one transaction. Returns how many.
    async fn fire_due(&self) -> anyhow::Result<usize> {
        let now = self.clock.now();
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "select t.run_id, t.step, t.due_at, r.tenant, r.flow_id, r.event, r.trace_context
             from timers t join flow_runs r on r.id = t.run_id
             where t.fired_at is null and t.due_at <= $1
             order by t.due_at
             limit $2
             for update of t skip locked",
        )
        .bind(now)
        .bind(self.batch)
        .fetch_all(&mut *tx)
        .await?;
        let fired = rows.len();
        for row in rows {
            let run: Uuid = row.try_get("run_id")?;
            let step: i32 = row.try_get("step")?;
            let due_at: OffsetDateTime = row.try_get("due_at")?;
            let trace: Vec<(String, String)> = serde_json::from_value(row.try_get("trace_context")?).unwrap_or_default();
            let span = info_span!("flow_step", tenant = %row.try_get::<String, _>("tenant")?, run = %run, step);
            telemetry::continue_trace(&span, &trace);
            let next = self.step(&row, run, step, due_at, now).instrument(span).await?;
            sqlx::query("update timers set fired_at = $3 where run_id = $1 and step = $2")
                .bind(run)
                .bind(step)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            match next {
                Some(due) => {
                    sqlx::query("insert into timers (run_id, step, due_at) values ($1, $2, $3) on conflict do nothing")
                        .bind(run)
                        .bind(step + 1)
                        .bind(due)
                        .execute(&mut *tx)
                        .await?;
                }
                None => {
                    sqlx::query("update flow_runs set state = 'done', finished_at = $2 where id = $1")
                        .bind(run)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(fired)
    }

    /// Executes one step; returns when the next step is due, or `None` when the run ends.
    async fn step(
        &self,
        row: &sqlx::postgres::PgRow,
        run: Uuid,
        step: i32,
        due_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> anyhow::Result<Option<OffsetDateTime>> {
        let tenant_id: String = row.try_get("tenant")?;
        let flow_id: String = row.try_get("flow_id")?;
        let Some(tenant) = self.tenants.find(&tenant_id) else {
            tracing::warn!(tenant = %tenant_id, "tenant no longer configured; ending run");
            return Ok(None);
        };
        let Some(flow) = tenant.flows.iter().find(|f| f.id == flow_id && f.enabled) else {
            tracing::info!(flow = %flow_id, "flow removed or disabled; ending run");
            return Ok(None);
        };
        let step_index = usize::try_from(step).unwrap_or(usize::MAX);
        match next_action(flow, step_index) {
            StepAction::Finish => Ok(None),
            StepAction::Wait(d) => Ok(Some(due_at + d)),
            StepAction::Send { template } => {
                let event: Envelope = serde_json::from_value(row.try_get("event")?)?;
                match render_request(tenant, flow, run, step as u32, &event, &template) {
                    Some(req) => {
                        self.bus.publish_render(&req).await?;
                        metrics::counter!("scheduler_render_requests_total", "lane" => flow.lane.token()).increment(1);
                        tracing::info!(message_id = %req.message_id, template = %template, "render requested");
                    }
                    None => tracing::info!(template = %template, "no recipient for this event; step skipped"),
                }
                Ok(Some(now))
            }
        }
    }
}
