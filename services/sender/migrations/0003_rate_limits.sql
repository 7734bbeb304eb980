-- Send-rate windows shared by all sender replicas: one row per limit key and second.
-- See src/ratelimit.rs. Rows older than a minute are pruned.
create table rate_windows (
    key    text    not null, -- 'acct:{tenant}' or 'domain:{tenant}:{domain}'
    second bigint  not null, -- unix seconds
    used   integer not null,
    primary key (key, second)
);
