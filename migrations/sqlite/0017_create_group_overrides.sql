-- Group overrides (an identity provider's token-claims-change): the groups a
-- user has now. Edges judge the user's tokens issued at or before since_ms
-- with them instead of the groups the tokens carry; a token issued later
-- carries the fresh groups. One row per user, keyed like users.user_key
-- ('sub:…' / 'email:…'); a newer override replaces the row. expires_ms is
-- when no token the override covers can be alive: the change log's
-- ExpireBefore deletes the row then, as edges forget it.
CREATE TABLE group_overrides (
    user_key    TEXT PRIMARY KEY,
    groups_json TEXT NOT NULL,
    since_ms    INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL
);
CREATE INDEX group_overrides_by_expiry ON group_overrides (expires_ms);
