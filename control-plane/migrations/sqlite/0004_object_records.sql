-- Foundry object ownership leaves the catalog: records no longer take catalog versions (edges look
-- them up on demand), they may expire, and an object may have a second name (an alias).
DROP INDEX foundry_objects_version;
DROP INDEX foundry_objects_event;
ALTER TABLE foundry_objects DROP COLUMN version;
-- 0: never expires.
ALTER TABLE foundry_objects ADD COLUMN expires_at_ms BIGINT NOT NULL DEFAULT 0;
-- Non-empty for an alias: the id (same kind) it names.
ALTER TABLE foundry_objects ADD COLUMN alias_of TEXT NOT NULL DEFAULT '';
-- One attendee's objects of one kind in creation order (also serves deletes by event).
CREATE INDEX foundry_objects_owner ON foundry_objects (event_id, user_id, kind, created_at_ms, id);
CREATE INDEX foundry_objects_alias ON foundry_objects (kind, alias_of) WHERE alias_of <> '';
CREATE INDEX foundry_objects_expiry ON foundry_objects (expires_at_ms) WHERE expires_at_ms > 0;

-- Forget invalidations for the edges' ownership caches. Each forget takes the next number from
-- object_forget_seq under its row lock, so numbers become visible in order (an autoincrement key
-- is handed out at insert, not at commit) and the counter survives pruning of this log.
CREATE TABLE object_forget_seq (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    seq BIGINT NOT NULL
);
INSERT INTO object_forget_seq (singleton, seq) VALUES (1, 0);
CREATE TABLE object_forgets (
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (seq, kind, id)
);

-- Forgotten objects used to travel as catalog removals.
DELETE FROM removals WHERE kind = 'foundry-object';
