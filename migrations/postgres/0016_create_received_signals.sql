-- Signals in (issue 16): every Security Event Token (and API signal) that
-- was applied, by its source and jti, written in the same transaction as
-- what it did, so a replayed or redelivered event is recognised and never
-- applied twice, across restarts and replicas. `acked`: for a polled
-- transmitter (RFC 8936), whether the transmitter has been told (the next
-- poll carries the jtis not yet acknowledged).
CREATE TABLE received_signals (
    source      TEXT NOT NULL,
    jti         TEXT NOT NULL,
    event_types TEXT NOT NULL,
    iat_ms      BIGINT NOT NULL,
    received_ms BIGINT NOT NULL,
    outcome     TEXT NOT NULL,
    acked       INTEGER NOT NULL,
    PRIMARY KEY (source, jti)
);
CREATE INDEX received_signals_unacked ON received_signals (source, acked);
CREATE INDEX received_signals_by_time ON received_signals (received_ms);
