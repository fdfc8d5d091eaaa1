CREATE TABLE catalog_meta (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    catalog_id TEXT NOT NULL,
    version BIGINT NOT NULL
);

CREATE TABLE resources (
    id TEXT PRIMARY KEY,
    friendly_name TEXT NOT NULL,
    deployment_name TEXT NOT NULL,
    model_type TEXT NOT NULL,
    endpoint_url TEXT NOT NULL,
    region TEXT NOT NULL,
    use_managed_identity BOOLEAN NOT NULL DEFAULT FALSE,
    identity_client_id TEXT,
    active BOOLEAN NOT NULL,
    encrypted_key BYTEA,
    version BIGINT NOT NULL
);
CREATE INDEX resources_version ON resources (version);

CREATE TABLE events (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    starts_at_ms BIGINT NOT NULL,
    ends_at_ms BIGINT NOT NULL,
    time_zone TEXT NOT NULL,
    max_token_cap BIGINT NOT NULL,
    daily_request_cap BIGINT NOT NULL,
    organizer_name TEXT NOT NULL,
    organizer_email TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    version BIGINT NOT NULL
);
CREATE INDEX events_version ON events (version);

CREATE TABLE event_resources (
    event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    resource_id TEXT NOT NULL REFERENCES resources (id),
    position BIGINT NOT NULL,
    PRIMARY KEY (event_id, resource_id)
);
CREATE INDEX event_resources_resource ON event_resources (resource_id);

CREATE TABLE attendees (
    event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    key_hash BYTEA NOT NULL UNIQUE,
    active BOOLEAN NOT NULL,
    created_at_ms BIGINT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (event_id, user_id)
);
CREATE INDEX attendees_version ON attendees (version);

CREATE TABLE removals (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX removals_version ON removals (version);
