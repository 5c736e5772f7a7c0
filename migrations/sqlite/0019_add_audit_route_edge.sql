-- Security events out (issue 17): an audit row names the route and the edge
-- it happened on, so the trail filters by them (a denial, a TCP flow, live
-- connections an edge closed), and how many occurrences it stands for: an
-- edge sums a burst of identical denials or closed connections into one row
-- (occurrences > 1) instead of dropping them. Older rows happened once, and
-- their edge is the actor `edge:<id>` that wrote them.
ALTER TABLE audit_log ADD COLUMN route TEXT;
ALTER TABLE audit_log ADD COLUMN edge_id TEXT;
ALTER TABLE audit_log ADD COLUMN occurrences BIGINT NOT NULL DEFAULT 1;
UPDATE audit_log SET edge_id = substr(actor, 6) WHERE actor LIKE 'edge:%';
CREATE INDEX audit_by_route ON audit_log (route, id DESC);
CREATE INDEX audit_by_edge ON audit_log (edge_id, id DESC);
