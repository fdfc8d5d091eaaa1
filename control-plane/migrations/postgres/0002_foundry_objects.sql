-- Foundry objects created through the proxy, and the attendee who created each.
CREATE TABLE foundry_objects (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX foundry_objects_version ON foundry_objects (version);
CREATE INDEX foundry_objects_event ON foundry_objects (event_id);
