-- The send log: one row per message id, claimed before the message body is handed to
-- SMTP and updated with the outcome. See src/delivery.rs for the exactly-once rule.
create table deliveries (
    tenant      text        not null,
    message_id  text        not null,
    recipient   text        not null,
    lane        text        not null,
    template    text        not null,
    flow        text        not null,
    state       text        not null check (state in ('sending', 'sent', 'bounced', 'suppressed', 'indeterminate')),
    response    text,
    claimed_at  timestamptz not null,
    finished_at timestamptz,
    primary key (tenant, message_id)
);

-- Addresses not to mail: 'all' after a hard bounce or complaint, 'marketing' after an
-- unsubscribe (transactional mail still goes out).
create table suppressions (
    tenant     text        not null,
    email      text        not null, -- lowercase key
    scope      text        not null check (scope in ('all', 'marketing')),
    reason     text        not null,
    created_at timestamptz not null default now(),
    primary key (tenant, email, scope)
);
