//! Flow runs: starting them (on a triggering event whose condition holds), ending them (on a
//! goal event), and stepping them (when a timer is due). The decisions are pure functions
//! ([`next_action`], [`render_request`], and the `context` module); [`Engine`] is the thin
//! IO around them.

use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, HandleError};
use contracts::{Cause, Envelope, EventKind, Lane, MessageId, Order, RenderRequest, SPEC_VERSION};
use kit::Clock;
use sqlx::{PgPool, Row};
use tenancy::{Condition, Flow, FlowStep, Tenant, Tenants};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span};
use uuid::Uuid;

use crate::context;
use crate::journey;

/// What to do at `step` of a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepAction {
    /// `topic`: the marketing topic the message belongs to (the step's, else the flow's).
    Send { template: String, offer: Option<String>, when: Option<Condition>, topic: Option<String> },
    Wait(Duration),
    Finish,
}

pub fn next_action(flow: &Flow, step: usize) -> StepAction {
    match flow.steps.get(step) {
        Some(FlowStep::Send { template, offer, when, topic }) => StepAction::Send {
            template: template.clone(),
            offer: offer.clone(),
            when: when.clone(),
            topic: topic.clone(),
        },
        Some(FlowStep::Wait(d)) => StepAction::Wait(*d),
        None => StepAction::Finish,
    }
}

/// The run id of `flow` for the event with `trigger_key`: the same inputs, the same run.
pub fn run_id(tenant: &str, flow: &str, trigger_key: &str) -> Uuid {
    let name = format!("{tenant}\u{0}{flow}\u{0}{trigger_key}");
    Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
}

/// What a send step knows when it fires.
pub struct StepInput<'a> {
    pub event: &'a Envelope,
    /// The order's latest snapshot, else the one the event carries.
    pub order: Option<&'a Order>,
    pub offer: Option<serde_json::Value>,
    pub recommendations: Vec<serde_json::Value>,
}

/// The render request for a send step, or `None` when nobody can be addressed. `topic`
/// (marketing only) travels with the message so the sender can honour topic opt-outs.
pub fn render_request(
    tenant: &Tenant,
    flow: &Flow,
    run: Uuid,
    step: u32,
    input: StepInput<'_>,
    template: &str,
    topic: Option<&str>,
) -> Option<RenderRequest> {
    let (to, locale) = context::recipient(input.event, input.order)?;
    let data = context::template_data(input.event, input.order, input.offer, input.recommendations);
    Some(RenderRequest {
        spec: SPEC_VERSION,
        message_id: MessageId::derive(&[tenant.id.as_str(), &run.to_string(), &step.to_string()]),
        tenant: tenant.id.clone(),
        lane: flow.lane,
        template: template.to_owned(),
        to,
        locale: locale.or_else(|| Some(tenant.locale.clone())),
        topic: topic.filter(|_| flow.lane == Lane::Marketing).map(str::to_owned),
        cause: Cause { flow: flow.id.clone(), run_id: run, step, event_id: input.event.id },
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
    /// Applies one event: the journey tables, the goals it reaches (ending runs), and the
    /// flows it starts (whose condition holds), all in one transaction. Idempotent: an
    /// event applied before changes nothing.
    pub(crate) async fn handle_event(&self, event: &Envelope) -> Result<(), HandleError> {
        let Some(tenant) = self.tenants.get(&event.tenant) else {
            return Err(HandleError::transient(anyhow::anyhow!("tenant {} is not configured here", event.tenant)));
        };
        let now = self.clock.now();
        let mut tx = self.pool.begin().await.map_err(HandleError::transient)?;
        if !journey::apply(&mut tx, tenant, event, now).await.map_err(HandleError::transient)? {
            tracing::debug!(event_id = %event.id, "event applied before; nothing to do");
            return Ok(());
        }
        let (order_id, email) = context::subject_of(event);
        let exited = self.reach_goals(&mut tx, tenant, event.kind(), order_id.as_deref(), email.as_deref(), now).await?;
        let started = self.start_runs(&mut tx, tenant, event, order_id.as_deref(), email.as_deref(), now).await?;
        tx.commit().await.map_err(HandleError::transient)?;
        if exited > 0 {
            tracing::info!(exited, event_id = %event.id, "flow runs reached their goal");
        }
        if started > 0 {
            tracing::info!(started, event_id = %event.id, "flow runs started");
        }
        // Runs start at once and parcels may have become due: let the timer loop look.
        self.wake.notify_one();
        Ok(())
    }

    /// Ends the active runs of this tenant's flows that have `kind` as a goal and are about
    /// the same order (or, for runs without one, the same customer).
    async fn reach_goals(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        tenant: &Tenant,
        kind: EventKind,
        order_id: Option<&str>,
        email: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<u64, HandleError> {
        let flows: Vec<&str> = tenant.flows.iter().filter(|f| f.exit_on.contains(&kind)).map(|f| f.id.as_str()).collect();
        if flows.is_empty() || (order_id.is_none() && email.is_none()) {
            return Ok(0);
        }
        if let Some(order_id) = order_id {
            sqlx::query("insert into goals_reached (tenant, order_id, kind, at) values ($1, $2, $3, $4) on conflict do nothing")
                .bind(tenant.id.as_str())
                .bind(order_id)
                .bind(kind.as_str())
                .bind(now)
                .execute(&mut **tx)
                .await
                .map_err(HandleError::transient)?;
        }
        let rows = sqlx::query(
            "update flow_runs set state = 'exited', finished_at = $5
             where tenant = $1 and flow_id = any($2) and state = 'active'
               and ((order_id is not null and order_id = $3) or (order_id is null and email = $4))
             returning id",
        )
        .bind(tenant.id.as_str())
        .bind(&flows)
        .bind(order_id)
        .bind(email)
        .bind(now)
        .fetch_all(&mut **tx)
        .await
        .map_err(HandleError::transient)?;
        let ids: Vec<Uuid> = rows.iter().filter_map(|r| r.try_get("id").ok()).collect();
        if !ids.is_empty() {
            sqlx::query("update timers set fired_at = $2 where run_id = any($1) and fired_at is null")
                .bind(&ids)
                .bind(now)
                .execute(&mut **tx)
                .await
                .map_err(HandleError::transient)?;
            metrics::counter!("scheduler_runs_exited_total").increment(ids.len() as u64);
        }
        Ok(ids.len() as u64)
    }

    /// Starts every enabled flow the event triggers whose condition holds.
    async fn start_runs(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        tenant: &Tenant,
        event: &Envelope,
        order_id: Option<&str>,
        email: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<u64, HandleError> {
        let flows: Vec<&Flow> = tenant.flows_for(event.kind()).collect();
        if flows.is_empty() {
            return Ok(0);
        }
        // Read only what these flows need: the order and customer facts for conditions (and
        // the order for the run's email when the event names none), reached goals for goals.
        let conditional = flows.iter().any(|f| f.when.is_some());
        let snapshot = match order_id {
            Some(id) if conditional || email.is_none() => {
                journey::order(tx, tenant.id.as_str(), id).await.map_err(HandleError::transient)?
            }
            _ => None,
        };
        let order = snapshot.as_ref().or_else(|| context::order_in(event));
        let email = email.map(str::to_owned).or_else(|| order.and_then(|o| o.customer.email.as_ref().map(contracts::EmailAddress::key)));
        let vars = if conditional {
            let facts = journey::customer(tx, tenant.id.as_str(), email.as_deref()).await.map_err(HandleError::transient)?;
            context::condition_vars(event, order, &facts)
        } else {
            serde_json::Value::Null
        };
        let reached: Vec<String> = match order_id {
            Some(id) if flows.iter().any(|f| !f.exit_on.is_empty()) => {
                sqlx::query_scalar("select kind from goals_reached where tenant = $1 and order_id = $2")
                    .bind(tenant.id.as_str())
                    .bind(id)
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(HandleError::transient)?
            }
            _ => Vec::new(),
        };
        let body = serde_json::to_value(event).map_err(HandleError::permanent)?;
        let trace = serde_json::to_value(telemetry::current_context_headers()).map_err(HandleError::permanent)?;
        let mut started = 0;
        for flow in flows {
            if flow.exit_on.iter().any(|k| reached.iter().any(|r| r == k.as_str())) {
                tracing::info!(flow = %flow.id, "goal already reached for this order; flow not started");
                continue;
            }
            if let Some(cond) = &flow.when
                && !condition(cond, &vars, &flow.id)
            {
                continue;
            }
            let id = run_id(tenant.id.as_str(), &flow.id, &event.idempotency_key);
            let inserted = sqlx::query(
                "insert into flow_runs (id, tenant, flow_id, trigger_key, event_id, event, trace_context, created_at, order_id, email)
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) on conflict do nothing",
            )
            .bind(id)
            .bind(tenant.id.as_str())
            .bind(&flow.id)
            .bind(&event.idempotency_key)
            .bind(event.id)
            .bind(&body)
            .bind(&trace)
            .bind(now)
            .bind(order_id)
            .bind(email.as_deref())
            .execute(&mut **tx)
            .await
            .map_err(HandleError::transient)?
            .rows_affected();
            if inserted == 1 {
                sqlx::query("insert into timers (run_id, step, due_at) values ($1, 0, $2)")
                    .bind(id)
                    .bind(now)
                    .execute(&mut **tx)
                    .await
                    .map_err(HandleError::transient)?;
                metrics::counter!("scheduler_runs_started_total", "flow" => flow.id.clone()).increment(1);
                started += 1;
            }
        }
        Ok(started)
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
            // Once per wake-up, not once per batch: expiry is housekeeping.
            if let Err(e) = journey::expire_unlinked(&self.pool, self.clock.now()).await {
                tracing::warn!(error = %format!("{e:#}"), "expiring unlinked carrier updates failed; will retry");
            }
            loop {
                let shipments = match self.fire_shipments().await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "firing shipment timers failed; will retry");
                        0
                    }
                };
                match self.fire_due().await.map(|n| n + shipments) {
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

    /// Publishes the shipment events due now (notifications after a burst window, stalls),
    /// then commits the parcels' new state. Returns how many events were published.
    async fn fire_shipments(&self) -> anyhow::Result<usize> {
        let now = self.clock.now();
        let mut tx = self.pool.begin().await?;
        let events = journey::due_shipment_events(&mut tx, &self.tenants, now, self.batch).await?;
        for event in &events {
            self.bus.publish_event(event).await?;
            metrics::counter!("scheduler_shipment_events_total", "type" => event.kind().as_str()).increment(1);
            tracing::info!(event_id = %event.id, kind = event.kind().as_str(), key = %event.idempotency_key, "shipment event published");
        }
        tx.commit().await?;
        Ok(events.len())
    }

    /// Claims and fires up to `batch` due timers in one transaction. Returns how many.
    async fn fire_due(&self) -> anyhow::Result<usize> {
        let now = self.clock.now();
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "select t.run_id, t.step, t.due_at, r.tenant, r.flow_id, r.event, r.trace_context, r.order_id
             from timers t join flow_runs r on r.id = t.run_id
             where t.fired_at is null and t.due_at <= $1 and r.state = 'active'
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
            let next = self.step(&mut tx, &row, run, step, due_at, now).instrument(span).await?;
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
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
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
            StepAction::Send { template, offer, when, topic } => {
                let event: Envelope = serde_json::from_value(row.try_get("event")?)?;
                let order_id: Option<String> = row.try_get("order_id")?;
                let snapshot = match &order_id {
                    Some(id) => journey::order(tx, tenant.id.as_str(), id).await?,
                    None => None,
                };
                let order = snapshot.as_ref().or_else(|| context::order_in(&event));
                if let Some(cond) = &when {
                    let email = order.and_then(|o| o.customer.email.as_ref().map(contracts::EmailAddress::key));
                    let facts = journey::customer(tx, tenant.id.as_str(), email.as_deref()).await?;
                    if !condition(cond, &context::condition_vars(&event, order, &facts), &flow.id) {
                        tracing::info!(template = %template, "step condition false; step skipped");
                        return Ok(Some(now));
                    }
                }
                let offer = offer.as_ref().and_then(|name| tenant.offers.get(name)).map(|o| context::offer_json(o, now));
                let recommendations = match order {
                    Some(o) if event.kind() == EventKind::OrderPlaced && tenant.cross_sell.enabled => {
                        self.recommendations(tx, tenant, o).await?
                    }
                    _ => Vec::new(),
                };
                let input = StepInput { event: &event, order, offer, recommendations };
                match render_request(tenant, flow, run, step as u32, input, &template, topic.as_deref()) {
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

    /// Products bought together with the order's, topped up with the shop's own picks.
    async fn recommendations(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        tenant: &Tenant,
        order: &Order,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let want = tenant.cross_sell.count;
        let mut out = journey::bought_together(tx, tenant.id.as_str(), order, want).await?;
        let ordered: Vec<&str> = order.lines.iter().map(|l| l.title.as_str()).collect();
        for pick in &tenant.cross_sell.picks {
            if out.len() >= want {
                break;
            }
            let shown = out.iter().any(|p| p["title"] == pick.title.as_str());
            if !shown && !ordered.contains(&pick.title.as_str()) {
                out.push(context::product_json(pick));
            }
        }
        Ok(out)
    }
}

/// Evaluates a flow or step condition; one that cannot be evaluated counts as false.
fn condition(cond: &Condition, vars: &serde_json::Value, flow: &str) -> bool {
    match context::holds(cond, vars) {
        Ok(v) => v,
        Err(e) => {
            metrics::counter!("scheduler_condition_errors_total", "flow" => flow.to_owned()).increment(1);
            tracing::warn!(flow, error = %e, "condition could not be evaluated; treated as false");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use contracts::{Event, Lane, OrderPlaced};
    use tenancy::Tenants;

    use super::*;
    use crate::context::tests::{envelope, order};

    /// The tenant `demo` with `flows` (file name, text), loaded from a scratch directory.
    fn tenant(test: &str, flows: &[(&str, &str)]) -> Arc<Tenant> {
        let root = std::env::temp_dir().join(format!("postflow-scheduler-{test}-{}", std::process::id()));
        let dir = root.join("demo");
        std::fs::create_dir_all(dir.join("flows")).unwrap();
        let toml = "name = \"Demo\"\n[sender]\nfrom = \"shop@demo.example\"\nphysical_address = \"1 Main St\"\n";
        std::fs::write(dir.join("tenant.toml"), toml).unwrap();
        for (name, text) in flows {
            std::fs::write(dir.join("flows").join(name), text).unwrap();
        }
        let loaded = Tenants::load_dir(&root);
        std::fs::remove_dir_all(&root).unwrap();
        loaded.unwrap().find("demo").unwrap().clone()
    }

    #[test]
    fn the_topic_of_a_marketing_step_travels_with_the_render_request() {
        let flow = "trigger = \"order.placed\"\nlane = \"marketing\"\ntopic = \"recommendations\"\n\
                    [[steps]]\nsend = \"picks\"\n[[steps]]\nwait = \"7d\"\n[[steps]]\nsend = \"sale\"\ntopic = \"offers\"\n";
        let tenant = tenant("topic", &[("winback.toml", flow)]);
        let flow = tenant.flows.iter().find(|f| f.id == "winback").unwrap();
        let event = envelope(Event::OrderPlaced(OrderPlaced { order: order() }));
        let mut topics = Vec::new();
        for step in [0, 2] {
            let StepAction::Send { template, topic, .. } = next_action(flow, step) else { panic!("step {step} sends") };
            let input = StepInput { event: &event, order: context::order_in(&event), offer: None, recommendations: Vec::new() };
            let req = render_request(&tenant, flow, Uuid::nil(), step as u32, input, &template, topic.as_deref()).unwrap();
            assert_eq!(req.lane, Lane::Marketing);
            topics.push(req.topic);
        }
        assert_eq!(topics, [Some("recommendations".to_owned()), Some("offers".to_owned())]);

        // The built-in (transactional) journey has no topics.
        let confirmation = tenant.flows.iter().find(|f| f.id == "order-confirmation").unwrap();
        let StepAction::Send { template, topic, .. } = next_action(confirmation, 0) else { panic!("sends") };
        let input = StepInput { event: &event, order: context::order_in(&event), offer: None, recommendations: Vec::new() };
        let req = render_request(&tenant, confirmation, Uuid::nil(), 0, input, &template, topic.as_deref()).unwrap();
        assert_eq!(req.topic, None);
    }
}
