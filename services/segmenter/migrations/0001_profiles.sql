-- Customer profiles, one per tenant and address; consent records; processed events.
create table profiles (
    tenant            text        not null,
    email             text        not null, -- lowercase key
    address           text        not null, -- as the shop sent it
    external_id       text,
    first_name        text,
    last_name         text,
    locale            text,
    country           text,
    first_order_at    timestamptz,
    last_order_at     timestamptz,
    order_count       integer     not null default 0,
    total_spent_minor bigint      not null default 0,
    currency          text,
    accepts_marketing boolean,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    primary key (tenant, email)
);

create table consents (
    tenant      text        not null,
    email       text        not null,
    channel     text        not null, -- 'email_marketing'
    status      text        not null check (status in ('subscribed', 'unsubscribed')),
    source      text        not null, -- how: 'one_click', 'link', 'shop'
    message_id  text,                 -- the email it came from, if any
    recorded_at timestamptz not null,
    primary key (tenant, email, channel)
);

-- Every event applied, so a redelivered event changes nothing.
create table processed_events (
    tenant       text        not null,
    event_id     uuid        not null,
    processed_at timestamptz not null default now(),
    primary key (tenant, event_id)
);
