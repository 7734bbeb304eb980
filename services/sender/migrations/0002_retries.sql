-- Temporary delivery failures: when the first attempt was, so retries stop at the
-- deadline, and how many there were. Rows are kept after the outcome, as history.
create table retries (
    tenant           text        not null,
    message_id       text        not null,
    first_attempt_at timestamptz not null,
    failures         integer     not null,
    last_error       text        not null,
    updated_at       timestamptz not null,
    primary key (tenant, message_id)
);

-- 'expired': temporary failures until the retry deadline, then given up (announced as a
-- non-permanent bounce; the address is not suppressed).
alter table deliveries drop constraint deliveries_state_check;
alter table deliveries add constraint deliveries_state_check
    check (state in ('sending', 'sent', 'bounced', 'suppressed', 'indeterminate', 'expired'));
