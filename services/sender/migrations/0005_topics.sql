-- Marketing topics (the tracker's preferences page): leaving one topic suppresses the
-- marketing mail of that topic only, scope 'topic:{id}'.
alter table suppressions drop constraint suppressions_scope_check;
alter table suppressions add constraint suppressions_scope_check
    check (scope in ('all', 'marketing') or scope like 'topic:%');

-- The latest opt-out or opt-in applied per recipient and scope, so that unsubscribe and
-- resubscribe events, which travel on separate subjects and consumers and may arrive in
-- any order, end in the state of the latest change, and a replay changes nothing. See
-- `Unsubscribes` in src/delivery.rs. Only unsubscribe suppressions ('marketing',
-- 'topic:{id}') are ever lifted by an opt-in; 'all' (hard bounce, complaint) never is.
create table subscription_changes (
    tenant     text        not null,
    email      text        not null, -- lowercase key
    scope      text        not null check (scope = 'marketing' or scope like 'topic:%'),
    subscribed boolean     not null,
    changed_at timestamptz not null, -- when the recipient made the change (event time)
    primary key (tenant, email, scope)
);
