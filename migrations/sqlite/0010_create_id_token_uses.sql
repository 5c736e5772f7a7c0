-- Each IdP ID token creates at most one session (issue 12). The key is the
-- SHA-256 (hex) of the token's signed part, `header.payload`: a copy of the
-- token with a re-encoded signature has the same key. A row is kept until
-- the token expires (then the token is refused as expired anyway).
CREATE TABLE id_token_uses (
    token_hash  TEXT PRIMARY KEY,
    issuer      TEXT NOT NULL,
    expires_ms  INTEGER NOT NULL,
    used_ms     INTEGER NOT NULL
);
CREATE INDEX id_token_uses_by_expiry ON id_token_uses (expires_ms);
