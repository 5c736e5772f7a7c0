-- Security events out (issue 17): each SIEM sink reads the audit log in id
-- order from its cursor (last_id: the last entry it delivered). The cursor
-- moves only after the sink acknowledged a batch, under a lease (one
-- replica delivers at a time; a stale holder cannot move it), so a restart
-- or SIGKILL resumes where delivery stopped: at least once, in order.
CREATE TABLE siem_cursors (
    sink           TEXT PRIMARY KEY,
    last_id        BIGINT NOT NULL,
    lease_token    TEXT,
    lease_until_ms BIGINT NOT NULL,
    updated_ms     BIGINT NOT NULL
);
