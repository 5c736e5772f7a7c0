-- The key the control plane signs its edge stream with (every snapshot,
-- delta and heartbeat frame), separate from the session-signing keys.
-- Made once by whichever replica starts first and shared by all of them;
-- edges pin its public half. `purpose` names what it signs ('stream'), and
-- at most one key per purpose is current (not retired), so two replicas
-- starting at once cannot both make one (INSERT ... ON CONFLICT DO NOTHING).
CREATE TABLE stream_signing_keys (
    kid                 TEXT PRIMARY KEY,
    purpose             TEXT NOT NULL,
    algorithm           TEXT NOT NULL,
    private_pem         TEXT NOT NULL,
    public_key          TEXT NOT NULL,
    created_ms          INTEGER NOT NULL,
    retired_ms          INTEGER
);

CREATE UNIQUE INDEX stream_signing_keys_one_current ON stream_signing_keys (purpose) WHERE retired_ms IS NULL;
