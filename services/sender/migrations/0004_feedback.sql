-- Feedback deliveries already applied, so a replay changes nothing: the delivery's own
-- replay key (Mailgun signature token, SNS MessageId) and each piece of feedback's event
-- id ('event:{id}:{recipient}'). See src/feedback_store.rs. Pruned after 30 days.
create table feedback_replays (
    tenant      text        not null,
    provider    text        not null, -- 'ses', 'postmark', 'sendgrid', 'mailgun'
    key         text        not null,
    received_at timestamptz not null,
    primary key (tenant, provider, key)
);
create index feedback_replays_received_at on feedback_replays (received_at);
