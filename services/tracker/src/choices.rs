//! A recipient's marketing choices and how a form or a click changes them (pure).
//!
//! Two independent switches: all marketing mail (`marketing`), and each topic the tenant
//! declares (`topic:{id}`). Leaving all marketing keeps the topic choices, so opting back
//! in restores them as they were. A change is recorded only when it changes something:
//! pressing a button twice, or saving an unchanged form, records nothing.

use std::collections::BTreeSet;

/// What the tracker knows of one recipient's choices. Nothing recorded: receives all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Choices {
    /// Left all of the tenant's marketing mail.
    pub all_out: bool,
    /// The topics left, by id.
    pub topics_out: BTreeSet<String>,
}

impl Choices {
    /// From stored `(scope, subscribed)` rows; unknown scopes are ignored.
    pub fn from_rows(rows: impl IntoIterator<Item = (String, bool)>) -> Self {
        let mut c = Self::default();
        for (scope, subscribed) in rows {
            match scope.strip_prefix("topic:") {
                Some(topic) if !subscribed => {
                    c.topics_out.insert(topic.to_owned());
                }
                Some(_) => {}
                None if scope == "marketing" => c.all_out = !subscribed,
                None => {}
            }
        }
        c
    }

    /// Whether the recipient keeps `topic` (regardless of all marketing).
    pub fn keeps(&self, topic: &str) -> bool {
        !self.topics_out.contains(topic)
    }
}

/// One change of choice; each becomes one hit, one event and one stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `email.unsubscribed`.
    LeaveAll,
    /// `email.resubscribed` without a topic.
    RejoinAll,
    /// `email.topic_unsubscribed`.
    LeaveTopic(String),
    /// `email.resubscribed` with the topic.
    RejoinTopic(String),
}

impl Change {
    /// The hit kind recorded for it (the outbox row; see `hit_event`).
    pub fn hit_kind(&self) -> &'static str {
        match self {
            Self::LeaveAll => "unsubscribe",
            Self::LeaveTopic(_) => "topic_unsubscribe",
            Self::RejoinAll | Self::RejoinTopic(_) => "resubscribe",
        }
    }

    pub fn topic(&self) -> Option<&str> {
        match self {
            Self::LeaveTopic(t) | Self::RejoinTopic(t) => Some(t),
            Self::LeaveAll | Self::RejoinAll => None,
        }
    }

    /// The stored scope: `marketing` or `topic:{id}`.
    pub fn scope(&self) -> String {
        scope(self.topic())
    }

    pub fn subscribed(&self) -> bool {
        matches!(self, Self::RejoinAll | Self::RejoinTopic(_))
    }
}

/// The stored scope of a topic, or of all marketing mail (`None`).
pub fn scope(topic: Option<&str>) -> String {
    topic.map_or_else(|| "marketing".to_owned(), |t| format!("topic:{t}"))
}

/// What turns `current` into `wanted`, for the tenant's `topics` only (a topic no longer
/// declared is left as it is).
pub fn changes(current: &Choices, wanted: &Choices, topics: &[&str]) -> Vec<Change> {
    let mut out = Vec::new();
    match (current.all_out, wanted.all_out) {
        (false, true) => out.push(Change::LeaveAll),
        (true, false) => out.push(Change::RejoinAll),
        _ => {}
    }
    for &topic in topics {
        match (current.keeps(topic), wanted.keeps(topic)) {
            (true, false) => out.push(Change::LeaveTopic(topic.to_owned())),
            (false, true) => out.push(Change::RejoinTopic(topic.to_owned())),
            _ => {}
        }
    }
    out
}

/// Why a posted form was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// Not the page's form: a checkbox left unticked sends nothing, so an empty body
    /// cannot mean "untick everything"; the page's form always sends `v=1`.
    #[error("not the preferences form")]
    NotTheForm,
}

/// The choices a posted preferences form (`application/x-www-form-urlencoded`) asks for:
/// `topic={id}` for each ticked topic (unticked ones are left), `all=1` to leave all
/// marketing mail, and the form's marker `v=1`. Unknown topics and fields are ignored.
pub fn parse_form(body: &str, topics: &[&str]) -> Result<Choices, FormError> {
    let mut marked = false;
    let mut ticked = BTreeSet::new();
    let mut all_out = false;
    for (key, value) in url::form_urlencoded::parse(body.trim().as_bytes()) {
        match key.as_ref() {
            "v" => marked |= value == "1",
            "topic" => {
                ticked.insert(value.into_owned());
            }
            "all" => all_out |= value == "1",
            _ => {}
        }
    }
    if !marked {
        return Err(FormError::NotTheForm);
    }
    let topics_out = topics.iter().filter(|t| !ticked.contains(**t)).map(|t| (*t).to_owned()).collect();
    Ok(Choices { all_out, topics_out })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPICS: &[&str] = &["newsletter", "offers", "recommendations"];

    fn out(topics: &[&str]) -> BTreeSet<String> {
        topics.iter().map(|t| (*t).to_owned()).collect()
    }

    #[test]
    fn stored_rows_become_choices() {
        let rows = [
            ("marketing".to_owned(), false),
            ("topic:offers".to_owned(), false),
            ("topic:newsletter".to_owned(), true),
            ("something-else".to_owned(), false),
        ];
        let c = Choices::from_rows(rows);
        assert!(c.all_out);
        assert_eq!(c.topics_out, out(&["offers"]));
        assert!(c.keeps("newsletter") && !c.keeps("offers"));
        assert_eq!(Choices::from_rows([]), Choices::default(), "nothing recorded: receives everything");
    }

    #[test]
    fn forms_parse_ticked_topics_and_leaving_all() {
        let c = parse_form("v=1&topic=newsletter&topic=recommendations", TOPICS).unwrap();
        assert_eq!(c, Choices { all_out: false, topics_out: out(&["offers"]) });
        let c = parse_form("v=1&all=1&topic=offers&topic=unknown&extra=x", TOPICS).unwrap();
        assert_eq!(c, Choices { all_out: true, topics_out: out(&["newsletter", "recommendations"]) });
        assert_eq!(parse_form("v=1", TOPICS).unwrap().topics_out.len(), 3, "nothing ticked: every topic left");
        assert_eq!(parse_form("v=1&topic=news%20letter", &["news letter"]).unwrap().topics_out.len(), 0, "decoded");
        for bad in ["", "topic=offers", "List-Unsubscribe=One-Click", "v=2&all=1"] {
            assert_eq!(parse_form(bad, TOPICS), Err(FormError::NotTheForm), "{bad:?}");
        }
    }

    #[test]
    fn only_what_differs_is_changed() {
        let none = Choices::default();
        assert!(changes(&none, &none, TOPICS).is_empty(), "saving an unchanged form records nothing");
        let wanted = Choices { all_out: false, topics_out: out(&["offers"]) };
        assert_eq!(changes(&none, &wanted, TOPICS), [Change::LeaveTopic("offers".into())]);
        assert_eq!(changes(&wanted, &none, TOPICS), [Change::RejoinTopic("offers".into())]);
        let gone = Choices { all_out: true, topics_out: out(&["offers"]) };
        assert_eq!(changes(&wanted, &gone, TOPICS), [Change::LeaveAll], "topic choices are kept while all are left");
        assert_eq!(
            changes(&gone, &none, TOPICS),
            [Change::RejoinAll, Change::RejoinTopic("offers".into())]
        );
        // A topic the tenant no longer declares is left alone.
        let old = Choices { all_out: false, topics_out: out(&["retired"]) };
        assert!(changes(&old, &none, TOPICS).is_empty());
    }

    #[test]
    fn changes_name_their_hit_scope_and_direction() {
        let c = Change::LeaveTopic("offers".into());
        assert_eq!((c.hit_kind(), c.scope(), c.subscribed()), ("topic_unsubscribe", "topic:offers".to_owned(), false));
        let c = Change::RejoinAll;
        assert_eq!((c.hit_kind(), c.scope(), c.subscribed(), c.topic()), ("resubscribe", "marketing".to_owned(), true, None));
        assert_eq!(Change::LeaveAll.hit_kind(), "unsubscribe");
    }
}
