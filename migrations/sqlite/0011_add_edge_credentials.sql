-- Per-edge credentials (issue 12). An edge enrolls once, with a one-time
-- join token (or, for the quickstart only, the bootstrap secret), and
-- registers the public half of a P-256 key it made itself; every later call
-- on the edge channel carries a short-lived ES256 assertion signed with that
-- key. A revoked edge id never enrolls again.

-- One-time join tokens: only the SHA-256 of the token is stored.
CREATE TABLE edge_join_tokens (
    id                  TEXT PRIMARY KEY,
    token_hash          TEXT NOT NULL UNIQUE,
    edge_id             TEXT,                       -- the edge must enroll as this id, when set
    name                TEXT,                       -- display name for the edge, when set
    created_ms          INTEGER NOT NULL,
    expires_ms          INTEGER NOT NULL,
    created_by          TEXT NOT NULL,
    used_ms             INTEGER,                    -- consumed (one use)
    used_by_edge        TEXT
);

-- Enrolled edges: one public key per edge id.
CREATE TABLE edge_credentials (
    edge_id             TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    public_key_pem      TEXT NOT NULL,              -- SPKI PEM of the edge's P-256 key
    key_fingerprint     TEXT NOT NULL,              -- SHA-256 of the SPKI DER, hex
    enrolled_via        TEXT NOT NULL,              -- 'join_token' or 'bootstrap'
    enrolled_ms         INTEGER NOT NULL,
    enrolled_by         TEXT NOT NULL,              -- who made the join token, or 'bootstrap secret'
    revoked_ms          INTEGER,
    revoked_by          TEXT,
    revoke_reason       TEXT
);

-- The fleet key every enrolled edge derives its login-state, loop-guard and
-- CLI-code keys from; made once, served only to authenticated edges.
CREATE TABLE fleet_keys (
    id                  INTEGER PRIMARY KEY,        -- always 1
    secret              TEXT NOT NULL,              -- 32 random bytes, base64url
    created_ms          INTEGER NOT NULL
);
