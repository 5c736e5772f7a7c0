-- Core tables of the control plane. Times are Unix milliseconds (`*_ms`)
-- except where a column says `_s`; lists are JSON text.

CREATE TABLE sessions (
    id                   TEXT PRIMARY KEY,          -- 32 hex digits
    subject              TEXT NOT NULL,
    email                TEXT NOT NULL,             -- lowercased
    groups_json          TEXT NOT NULL DEFAULT '[]',
    idp_issuer           TEXT NOT NULL DEFAULT '',
    idp_session_id       TEXT,
    route                TEXT NOT NULL,
    created_ms           INTEGER NOT NULL,
    last_seen_ms         INTEGER NOT NULL,
    expires_ms           INTEGER NOT NULL,
    auth_time_s          INTEGER NOT NULL,
    ended_ms             INTEGER,
    end_reason           TEXT,
    source_addresses_json TEXT NOT NULL DEFAULT '[]',
    user_agent           TEXT NOT NULL DEFAULT '',
    edges_json           TEXT NOT NULL DEFAULT '[]',
    live_connections     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sessions_by_created ON sessions (created_ms DESC, id DESC);
CREATE INDEX sessions_by_email ON sessions (email, created_ms DESC);
CREATE INDEX sessions_by_subject ON sessions (subject, ended_ms);
CREATE INDEX sessions_by_idp_session ON sessions (idp_session_id);
CREATE INDEX sessions_terminated ON sessions (ended_ms, expires_ms);

CREATE TABLE users (
    user_key            TEXT PRIMARY KEY,           -- 'sub:<subject>' or 'email:<email>'
    lock_reason         TEXT,
    locked_until_s      INTEGER,
    locked              INTEGER NOT NULL DEFAULT 0,
    revoked_before_s    INTEGER,
    updated_ms          INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id                  TEXT PRIMARY KEY,
    kind                TEXT NOT NULL,              -- 'admin' or 'service'
    name                TEXT NOT NULL,
    token_hash          TEXT NOT NULL UNIQUE,       -- SHA-256 hex; the token itself is never stored
    scopes              TEXT NOT NULL DEFAULT '',   -- space separated
    subject             TEXT NOT NULL DEFAULT '',   -- service tokens: the identity they carry
    groups_json         TEXT NOT NULL DEFAULT '[]',
    created_ms          INTEGER NOT NULL,
    expires_ms          INTEGER,
    revoked_ms          INTEGER,
    created_by          TEXT NOT NULL
);

CREATE TABLE policy_versions (
    version             INTEGER PRIMARY KEY,
    document            TEXT NOT NULL,
    author              TEXT NOT NULL,
    message             TEXT NOT NULL,
    created_ms          INTEGER NOT NULL
);

CREATE TABLE audit_log (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms               INTEGER NOT NULL,
    actor               TEXT NOT NULL,
    action              TEXT NOT NULL,
    target              TEXT NOT NULL,
    reason              TEXT NOT NULL DEFAULT '',
    source_address      TEXT NOT NULL DEFAULT '',
    seq                 INTEGER                     -- change-log sequence, when the action made one
);
CREATE INDEX audit_by_time ON audit_log (at_ms DESC, id DESC);

CREATE TABLE edges (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    applied_seq         INTEGER NOT NULL DEFAULT 0,
    last_heartbeat_ms   INTEGER NOT NULL,
    live_connections    INTEGER NOT NULL DEFAULT 0
);

-- Connections each edge closed for a change, for termination receipts.
CREATE TABLE change_acks (
    seq                 INTEGER NOT NULL,
    edge_id             TEXT NOT NULL,
    closed_connections  INTEGER NOT NULL,
    PRIMARY KEY (seq, edge_id)
);

-- The stream edges resume from: one row per change, the wire-encoded delta.
CREATE TABLE change_log (
    seq                 INTEGER PRIMARY KEY,
    at_ms               INTEGER NOT NULL,
    delta               BLOB NOT NULL
);

CREATE TABLE signing_keys (
    kid                 TEXT PRIMARY KEY,
    alg                 TEXT NOT NULL,
    private_pem         TEXT NOT NULL,
    x                   TEXT NOT NULL,
    y                   TEXT,
    created_ms          INTEGER NOT NULL,
    retired_ms          INTEGER
);
