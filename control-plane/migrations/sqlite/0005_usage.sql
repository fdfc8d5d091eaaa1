-- Token caps on events, and the max_tokens → max_completion_tokens switch on resources.
ALTER TABLE events ADD COLUMN daily_token_cap BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN token_budget BIGINT NOT NULL DEFAULT 0;
ALTER TABLE resources ADD COLUMN use_max_completion_tokens INTEGER NOT NULL DEFAULT 0;

-- Usage, aggregated per hour (hour_ms: the UTC hour the requests started in, Unix ms). No foreign
-- key to events: usage is a record of what was spent and outlives a deleted event or resource.
CREATE TABLE usage_hourly (
    event_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    deployment_name TEXT NOT NULL,
    hour_ms BIGINT NOT NULL,
    requests BIGINT NOT NULL,
    -- HTTP status 400 and above.
    errors BIGINT NOT NULL,
    streamed BIGINT NOT NULL,
    usage_unknown BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    total_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    ttfb_ms BIGINT NOT NULL,
    PRIMARY KEY (event_id, user_id, resource_id, deployment_name, hour_ms)
);
CREATE INDEX usage_hourly_event_hour ON usage_hourly (event_id, hour_ms);
CREATE INDEX usage_hourly_hour ON usage_hourly (hour_ms);

-- Batches already applied (exactly-once delivery from the edges), kept for a while then purged.
CREATE TABLE usage_batches (
    batch_id TEXT PRIMARY KEY,
    applied_at_ms BIGINT NOT NULL
);
CREATE INDEX usage_batches_applied ON usage_batches (applied_at_ms);

-- Keys of token counts that may be reported more than once (a run's usage): counted once.
CREATE TABLE usage_once (
    once_key TEXT PRIMARY KEY,
    applied_at_ms BIGINT NOT NULL
);
CREATE INDEX usage_once_applied ON usage_once (applied_at_ms);

-- Tokens leased per counter, for the token caps: period is the UTC day (YYYY-MM-DD) of an
-- attendee's daily cap, or 'event' (with user_id '') for the event's budget.
CREATE TABLE token_counts (
    event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    period TEXT NOT NULL,
    used BIGINT NOT NULL,
    PRIMARY KEY (event_id, user_id, period)
);
