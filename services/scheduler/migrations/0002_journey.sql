-- The post-purchase journey: what the scheduler knows about orders, customers, products
-- and parcels, so emails that follow an order can show it, conditions can read it and
-- cross-sell can learn from it. Each row is scoped by tenant.

-- Events already applied to the tables below; a redelivered event changes nothing twice.
create table applied_events (
    event_id   uuid        primary key,
    applied_at timestamptz not null
);

-- The latest snapshot of each order (contracts Order as JSON). `updated_at` is the
-- source's time of the last applied change: an older replay does not overwrite a newer state.
create table orders (
    tenant     text        not null,
    order_id   text        not null,
    number     text        not null,
    email      text,
    state      text        not null default 'placed' check (state in ('placed', 'paid', 'fulfilled', 'cancelled')),
    snapshot   jsonb       not null,
    updated_at timestamptz not null,
    primary key (tenant, order_id)
);
create index orders_by_number on orders (tenant, number);

-- Customer facts that flow conditions read (`customer.orders_count`, …).
create table customers (
    tenant            text        not null,
    email             text        not null, -- lowercase
    orders_count      integer     not null default 0,
    total_spent_minor bigint      not null default 0,
    currency          text,
    first_order_at    timestamptz,
    last_order_at     timestamptz,
    accepts_marketing boolean,
    updated_at        timestamptz,
    primary key (tenant, email)
);

-- Products as orders showed them, and how often two were bought together.
create table products (
    tenant     text   not null,
    product_id text   not null,
    title      text   not null,
    url        text,
    image_url  text,
    price      jsonb, -- contracts Money
    primary key (tenant, product_id)
);
create table co_purchases (
    tenant text    not null,
    a      text    not null,
    b      text    not null,
    n      integer not null,
    primary key (tenant, a, b)
);

-- Parcels. `order_id` is null while a carrier update waits for the fulfillment that links
-- it (until `link_deadline`). The timers (`notify_due_at`, `stall_due_at`) are claimed with
-- FOR UPDATE SKIP LOCKED like flow timers.
create table shipments (
    tenant         text        not null,
    tracking_key   text        not null, -- normalised tracking number, or '#' || fulfillment id
    fulfillment_id text,
    order_id       text,
    carrier        text        not null,
    tracking_number text       not null,
    tracking_url   text,
    status         text,        -- canonical status, null before the first scan
    carrier_status text,
    message        text,
    location       text,
    status_at      timestamptz,
    estimated_delivery timestamptz,
    history        jsonb       not null default '[]', -- contracts Checkpoint list
    notified       text,        -- the status the customer was last told about
    notify_due_at  timestamptz,
    last_scan_at   timestamptz not null,
    stall_due_at   timestamptz,
    notify_seq     integer     not null default 0,
    stall_seq      integer     not null default 0,
    next_due_at    timestamptz,
    link_deadline  timestamptz,
    created_at     timestamptz not null,
    primary key (tenant, tracking_key)
);
create index shipments_by_fulfillment on shipments (tenant, fulfillment_id);
create index shipments_due on shipments (next_due_at) where order_id is not null and next_due_at is not null;
create index shipments_unlinked on shipments (link_deadline) where order_id is null;

-- Runs remember which order and customer they are about, so a goal event can end them.
alter table flow_runs add column order_id text;
alter table flow_runs add column email text;
create index flow_runs_active_by_order on flow_runs (tenant, order_id) where state = 'active';

-- Goal events seen per order, so a flow whose goal was already reached (say the order was
-- cancelled) does not start for that order at all.
create table goals_reached (
    tenant   text        not null,
    order_id text        not null,
    kind     text        not null,
    at       timestamptz not null,
    primary key (tenant, order_id, kind)
);
