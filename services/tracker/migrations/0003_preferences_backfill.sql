-- Unsubscribes recorded before the preferences table existed: the page must show them.
-- (Unsubscribes reported by providers still on the bus arrive through the tracker's new
-- email.unsubscribed consumer, which starts from the oldest retained event.)
insert into preferences (tenant, email, scope, subscribed, changed_at)
select tenant, lower(email), 'marketing', false, max(occurred_at)
from hits
where kind = 'unsubscribe' and email is not null
group by tenant, lower(email)
on conflict do nothing;
