-- Requests granted per attendee per UTC day, for the events' daily request caps.
CREATE TABLE request_counts (
    event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    day TEXT NOT NULL,
    used BIGINT NOT NULL,
    PRIMARY KEY (event_id, user_id, day)
);
