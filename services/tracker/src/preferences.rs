//! The recipient's pages: the preferences page (`/p/{token}`) and the unsubscribe page
//! (`/u/{token}`), and the tracker's own record of each recipient's choices.
//!
//! The choices live in the tracker's `preferences` table, one row per recipient and scope
//! (`marketing`, `topic:{id}`) with the time of the change. Two writers keep it:
//! - a change made here (a saved form, an unsubscribe POST): in one transaction, under a
//!   lock on the recipient, the stored choices are compared with the wanted ones and each
//!   difference is written as a hit (the outbox row that the relay publishes as
//!   `email.unsubscribed`, `email.topic_unsubscribed` or `email.resubscribed`) and as the
//!   new stored state. Nothing that changes nothing is recorded: a second press of the
//!   button, or saving an unchanged form, publishes nothing;
//! - the events of those three types, from everyone (a provider's unsubscribe reported by
//!   the sender, and the tracker's own): applied only when newer than the stored change,
//!   so the tracker's own events, replays and late arrivals change nothing.
//!
//! A GET never writes. A token that does not verify, or is not for this page, is a 404.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bus::HandleError;
use contracts::{EmailAddress, Envelope, Event};
use linktoken::{Action, Claims};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::choices::{self, Choices};
use crate::page::{self, Lang, TopicRow};
use crate::{Tracker, not_found};

/// The choices stored for `email` (a lowercase key).
async fn stored(db: &mut PgConnection, tenant: &str, email: &str) -> sqlx::Result<Choices> {
    let rows: Vec<(String, bool)> = sqlx::query_as("select scope, subscribed from preferences where tenant = $1 and email = $2")
        .bind(tenant)
        .bind(email)
        .fetch_all(db)
        .await?;
    Ok(Choices::from_rows(rows))
}

/// Stores one scope's state unless a later change is stored. `ours`: a change made here,
/// which also replaces a stored one of the same instant.
async fn store(
    db: &mut PgConnection,
    tenant: &str,
    email: &str,
    scope: &str,
    subscribed: bool,
    at: OffsetDateTime,
    ours: bool,
) -> sqlx::Result<u64> {
    let sql = if ours {
        "insert into preferences (tenant, email, scope, subscribed, changed_at) values ($1, $2, $3, $4, $5)
         on conflict (tenant, email, scope) do update set subscribed = excluded.subscribed, changed_at = excluded.changed_at
         where preferences.changed_at <= excluded.changed_at"
    } else {
        "insert into preferences (tenant, email, scope, subscribed, changed_at) values ($1, $2, $3, $4, $5)
         on conflict (tenant, email, scope) do update set subscribed = excluded.subscribed, changed_at = excluded.changed_at
         where preferences.changed_at < excluded.changed_at"
    };
    Ok(sqlx::query(sql).bind(tenant).bind(email).bind(scope).bind(subscribed).bind(at).execute(db).await?.rows_affected())
}

impl Tracker {
    /// Records what `want` makes of the recipient's stored choices (see the module doc) and
    /// returns the choices now in force. `topics`: the tenant's topic ids.
    async fn change_choices(
        &self,
        claims: &Claims,
        email: &EmailAddress,
        method: &'static str,
        topics: &[&str],
        want: impl FnOnce(&Choices) -> Choices,
    ) -> anyhow::Result<Choices> {
        let (tenant, key, now) = (claims.tenant.as_str(), email.key(), self.clock.now());
        let mut tx = self.pool.begin().await?;
        // One recipient's changes one at a time, on every replica: what is compared is what
        // gets replaced.
        sqlx::query("select pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("preferences/{tenant}/{key}"))
            .execute(&mut *tx)
            .await?;
        let current = stored(&mut tx, tenant, &key).await?;
        let changes = choices::changes(&current, &want(&current), topics);
        for change in &changes {
            sqlx::query(
                "insert into hits (id, tenant, message_id, kind, email, method, topic, machine, occurred_at)
                 values ($1, $2, $3, $4, $5, $6, $7, false, $8)",
            )
            .bind(Uuid::new_v4())
            .bind(tenant)
            .bind(claims.message_id.as_str())
            .bind(change.hit_kind())
            .bind(email.as_str())
            .bind(method)
            .bind(change.topic())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            store(&mut tx, tenant, &key, &change.scope(), change.subscribed(), now, true).await?;
        }
        let now_in_force = stored(&mut tx, tenant, &key).await?;
        tx.commit().await?;
        for change in &changes {
            metrics::counter!("tracker_hits_total", "kind" => change.hit_kind(), "machine" => "false").increment(1);
            tracing::info!(tenant = %tenant, message_id = %claims.message_id, kind = change.hit_kind(), topic = change.topic(), method, "choice recorded");
        }
        if !changes.is_empty() {
            self.relay.notify_one();
        }
        Ok(now_in_force)
    }

    /// Applies an unsubscribe or resubscribe event to the stored choices when it is newer
    /// than what is stored; other events are not for this.
    pub(crate) async fn apply_choice_event(&self, env: &Envelope) -> Result<(), HandleError> {
        let (recipient, topic, subscribed) = match &env.event {
            Event::EmailUnsubscribed(u) => (&u.recipient, None, false),
            Event::EmailTopicUnsubscribed(u) => (&u.recipient, Some(u.topic.as_str()), false),
            Event::EmailResubscribed(r) => (&r.recipient, r.topic.as_deref(), true),
            _ => return Ok(()),
        };
        let mut db = self.pool.acquire().await.map_err(HandleError::transient)?;
        let scope = choices::scope(topic);
        let n = store(&mut db, env.tenant.as_str(), &recipient.key(), &scope, subscribed, env.occurred_at, false)
            .await
            .map_err(HandleError::transient)?;
        tracing::debug!(tenant = %env.tenant, event_id = %env.id, scope = %scope, applied = n == 1, "choice event");
        Ok(())
    }

    /// The preferences page of `email` showing `choices`: in the token's locale (else the
    /// tenant's), with the tenant's name and its topics labelled for that locale.
    fn preferences_html(&self, claims: &Claims, email: &EmailAddress, locale: Option<&str>, choices: &Choices, saved: bool) -> String {
        let tenant = self.tenants.get(&claims.tenant);
        let fallback = tenant.map_or("en", |t| t.locale.as_str());
        let locale = locale.unwrap_or(fallback);
        let topics = tenant
            .map(|t| {
                t.topics
                    .iter()
                    .map(|topic| TopicRow { id: &topic.id, label: topic.label(locale, fallback), keeps: choices.keeps(&topic.id) })
                    .collect()
            })
            .unwrap_or_default();
        page::preferences(&page::Preferences {
            lang: Lang::from_tag(locale),
            shop: self.shop_name(claims),
            email: email.as_str(),
            topics,
            all_out: choices.all_out,
            saved,
        })
    }

    /// The tenant's name; its id when the tenant is not configured here (its links keep
    /// working: an unsubscribe must never fail for want of config).
    fn shop_name<'a>(&'a self, claims: &'a Claims) -> &'a str {
        self.tenants.get(&claims.tenant).map_or(claims.tenant.as_str(), |t| t.name.as_str())
    }

    fn topic_ids(&self, claims: &Claims) -> Vec<&str> {
        self.tenants.get(&claims.tenant).map(|t| t.topics.iter().map(|t| t.id.as_str()).collect()).unwrap_or_default()
    }

    /// The page's language: the token's locale, else the tenant's.
    fn lang(&self, claims: &Claims, locale: Option<&str>) -> Lang {
        Lang::from_tag(locale.unwrap_or_else(|| self.tenants.get(&claims.tenant).map_or("en", |t| t.locale.as_str())))
    }

    /// A link to the recipient's preferences page, relative to `/u/{token}`.
    fn preferences_link(&self, claims: &Claims, e: &EmailAddress, l: Option<&String>) -> String {
        let action = Action::Preferences { e: e.clone(), l: l.cloned() };
        let token = self.signer.sign(&Claims { tenant: claims.tenant.clone(), message_id: claims.message_id.clone(), action });
        format!("../p/{token}")
    }
}

/// A page: HTML, never cached or framed, no referrer (the URL holds the token).
fn html(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
        ],
        body,
    )
        .into_response()
}

fn unavailable(e: &anyhow::Error) -> Response {
    tracing::warn!(error = %format!("{e:#}"), "choice not recorded");
    (StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response()
}

/// GET `/p/{token}`: the recipient's choices. Reads only.
pub(crate) async fn preferences_page(State(t): State<Arc<Tracker>>, Path(token): Path<String>) -> Response {
    let Ok(claims) = t.signer.verify(&token) else { return not_found() };
    let Action::Preferences { e, l } = &claims.action else { return not_found() };
    let current = async {
        let mut db = t.pool.acquire().await?;
        stored(&mut db, claims.tenant.as_str(), &e.key()).await
    };
    match current.await {
        Ok(choices) => html(t.preferences_html(&claims, e, l.as_deref(), &choices, false)),
        Err(err) => unavailable(&err.into()),
    }
}

/// POST `/p/{token}`: the form's choices are recorded; the page comes back saying so.
pub(crate) async fn save_preferences(State(t): State<Arc<Tracker>>, Path(token): Path<String>, body: String) -> Response {
    let Ok(claims) = t.signer.verify(&token) else { return not_found() };
    let Action::Preferences { e, l } = &claims.action else { return not_found() };
    let topics = t.topic_ids(&claims);
    let wanted = match choices::parse_form(&body, &topics) {
        Ok(w) => w,
        Err(err) => return (StatusCode::BAD_REQUEST, err.to_string()).into_response(),
    };
    match t.change_choices(&claims, e, "preferences", &topics, |_| wanted).await {
        Ok(now) => html(t.preferences_html(&claims, e, l.as_deref(), &now, true)),
        Err(err) => unavailable(&err),
    }
}

/// GET `/u/{token}`: asks; a GET never unsubscribes (link scanners follow GETs).
pub(crate) async fn unsubscribe_page(State(t): State<Arc<Tracker>>, Path(token): Path<String>) -> Response {
    let Ok(claims) = t.signer.verify(&token) else { return not_found() };
    let Action::Unsubscribe { e, l } = &claims.action else { return not_found() };
    let link = t.preferences_link(&claims, e, l.as_ref());
    html(page::unsubscribe(t.lang(&claims, l.as_deref()), t.shop_name(&claims), e.as_str(), &link))
}

/// POST `/u/{token}`: leaves all marketing mail. Mail clients post RFC 8058's
/// `List-Unsubscribe=One-Click`; our page posts an empty form.
pub(crate) async fn unsubscribe(State(t): State<Arc<Tracker>>, Path(token): Path<String>, body: String) -> Response {
    let Ok(claims) = t.signer.verify(&token) else { return not_found() };
    let Action::Unsubscribe { e, l } = &claims.action else { return not_found() };
    let method = if body.contains("List-Unsubscribe=One-Click") { "one_click" } else { "link" };
    let leave_all = |c: &Choices| Choices { all_out: true, ..c.clone() };
    if let Err(err) = t.change_choices(&claims, e, method, &[], leave_all).await {
        return unavailable(&err);
    }
    let link = t.preferences_link(&claims, e, l.as_ref());
    html(page::unsubscribed(t.lang(&claims, l.as_deref()), t.shop_name(&claims), &link))
}
