-- Live connections per session and edge (issue 18): edges report each
-- session's current count (and, now and then, all of them at once), and a
-- session's live connections are the sum over edges. Counts accumulated
-- from deltas drifted after an edge restarted (6 shown, 3 real).
CREATE TABLE session_connections (
    session_id TEXT NOT NULL,
    edge_id TEXT NOT NULL,
    connections BIGINT NOT NULL,
    PRIMARY KEY (session_id, edge_id)
);
CREATE INDEX session_connections_by_edge ON session_connections (edge_id);
-- Edges send every session's count again within a minute.
UPDATE sessions SET live_connections = 0;
