-- One row per (tenant, flow, triggering business event): a redelivered event finds its run.
create table flow_runs (
    id            uuid        primary key,
    tenant        text        not null,
    flow_id       text        not null,
    trigger_key   text        not null, -- the event's idempotency key
    event_id      uuid        not null,
    event         jsonb       not null, -- the triggering envelope
    trace_context jsonb       not null default '[]', -- W3C headers, so steps join the trace
    state         text        not null default 'active' check (state in ('active', 'done', 'exited')),
    created_at    timestamptz not null,
    finished_at   timestamptz,
    unique (tenant, flow_id, trigger_key)
);

-- Durable timers: the next step of each active run and when it is due. Claimed with
-- FOR UPDATE SKIP LOCKED, so each fires on exactly one replica.
create table timers (
    run_id   uuid        not null references flow_runs (id),
    step     integer     not null,
    due_at   timestamptz not null,
    fired_at timestamptz,
    primary key (run_id, step)
);
create index timers_due on timers (due_at) where fired_at is null;
