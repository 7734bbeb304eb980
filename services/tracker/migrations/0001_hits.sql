-- Messages we know were sent (from email.sent), for reports and attribution.
create table messages (
    tenant     text        not null,
    message_id text        not null,
    recipient  text        not null,
    template   text        not null,
    flow       text        not null,
    lane       text        not null,
    sent_at    timestamptz not null,
    primary key (tenant, message_id)
);

-- Every recorded hit. Also the outbox: rows with published_at null are announced on the
-- bus by the relay, so a hit is never recorded without its event, even across crashes.
create table hits (
    id           uuid        primary key,
    tenant       text        not null,
    message_id   text        not null,
    kind         text        not null check (kind in ('open', 'click', 'unsubscribe')),
    url          text,
    email        text,
    method       text,
    user_agent   text,
    machine      boolean     not null default false,
    occurred_at  timestamptz not null,
    published_at timestamptz
);
create index hits_unpublished on hits (occurred_at) where published_at is null;
create index hits_message on hits (tenant, message_id);
-- One unsubscribe per message, however often the button is pressed.
create unique index hits_one_unsubscribe on hits (tenant, message_id) where kind = 'unsubscribe';
