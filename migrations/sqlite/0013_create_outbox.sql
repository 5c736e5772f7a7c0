-- The durable outbox (issue 15): work that must reach something outside the
-- control plane (a relying party's sign-out API, later the SIEM sinks) is
-- committed in the same transaction as the action that causes it, then
-- delivered by a worker with retries. A job is claimed with a lease
-- (lease_token, lease_until_ms): a replica that dies mid-delivery leaves a
-- lease that expires, and the job is delivered again with the same id, which
-- is also the idempotency key the receiver sees. `target` narrows the sink
-- (an SSF stream id for the SSF transmitter's jobs).
CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    sink            TEXT NOT NULL,
    target          TEXT,
    event           TEXT NOT NULL,
    user_key        TEXT,
    seq             INTEGER,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    deadline_ms     INTEGER NOT NULL,
    lease_token     TEXT,
    lease_until_ms  INTEGER,
    last_error      TEXT,
    detail          TEXT,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL,
    finished_ms     INTEGER
);
CREATE INDEX outbox_due ON outbox (state, sink, next_attempt_ms);
CREATE INDEX outbox_by_seq ON outbox (seq);
CREATE INDEX outbox_by_user ON outbox (user_key, created_ms);
