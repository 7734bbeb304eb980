-- The preferences page (see src/preferences.rs).

-- Each recipient's marketing choices: 'marketing' (all marketing mail) and 'topic:{id}'
-- (one topic), with the time of the change. Written with each change made here and by the
-- unsubscribe/resubscribe events of others (a provider's unsubscribe); a change older
-- than the stored one does not overwrite it.
create table preferences (
    tenant     text        not null,
    email      text        not null, -- lowercase key
    scope      text        not null check (scope = 'marketing' or scope like 'topic:%'),
    subscribed boolean     not null,
    changed_at timestamptz not null,
    primary key (tenant, email, scope)
);

-- Changes of choice are hits too (the outbox): leaving a topic, opting back in.
alter table hits add column topic text;
alter table hits drop constraint hits_kind_check;
alter table hits add constraint hits_kind_check
    check (kind in ('open', 'click', 'unsubscribe', 'topic_unsubscribe', 'resubscribe'));

-- "One unsubscribe per message" becomes "one hit per change": a change is recorded only
-- when it differs from the stored choice (under a lock on the recipient), and after
-- opting back in, the same email's unsubscribe link must work again.
drop index hits_one_unsubscribe;
