-- Portal sessions recorded server side (issue 12): a portal cookie is
-- honoured only while its row stands, so logout and an admin's "end" stop
-- it at once, on every replica.
CREATE TABLE portal_sessions (
    id                  TEXT PRIMARY KEY,
    subject             TEXT NOT NULL,          -- the email (OIDC) or token:<name>
    method              TEXT NOT NULL,          -- 'oidc' or 'token'
    source_address      TEXT NOT NULL,
    created_ms          BIGINT NOT NULL,
    expires_ms          BIGINT NOT NULL,
    last_seen_ms        BIGINT NOT NULL,
    ended_ms            BIGINT,
    ended_by            TEXT,
    end_reason          TEXT
);
CREATE INDEX portal_sessions_by_end ON portal_sessions (ended_ms, expires_ms);
