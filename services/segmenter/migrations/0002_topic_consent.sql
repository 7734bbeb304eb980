-- Consent per marketing topic (the tracker's preferences page) lives beside consent to all
-- marketing mail, one row per channel. No schema change: the channel names the topic.
comment on column consents.channel is
    'email_marketing (all marketing mail) or email_marketing:{topic} (one topic of the preferences page)';
comment on column consents.source is
    'how: one_click, link, preferences, provider, complaint, shop';
