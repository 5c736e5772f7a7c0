-- Shared Signals streams (issue 15): receivers (another SSO, an app) ask the
-- control plane's SSF transmitter for security events about users. Each
-- stream belongs to the API token that made it (owner). A push stream's
-- Authorization header is the receiver's secret: stored sealed by the
-- key-encryption key, never echoed back. Its events travel through the
-- outbox (sink ssf-push or ssf-poll, target = the stream id).
CREATE TABLE ssf_streams (
    id                   TEXT PRIMARY KEY,
    owner                TEXT NOT NULL,
    audience             TEXT NOT NULL,
    method               TEXT NOT NULL,
    endpoint_url         TEXT,
    authorization_sealed TEXT,
    events_requested     TEXT NOT NULL,
    events_delivered     TEXT NOT NULL,
    description          TEXT,
    status               TEXT NOT NULL,
    status_reason        TEXT,
    created_ms           BIGINT NOT NULL,
    updated_ms           BIGINT NOT NULL
);
CREATE INDEX ssf_streams_by_owner ON ssf_streams (owner);
CREATE INDEX outbox_by_target ON outbox (sink, target, state);
