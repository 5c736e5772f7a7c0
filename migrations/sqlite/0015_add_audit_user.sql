-- The per-user trail (issue 17): every audit row names the user it is about
-- (email and/or IdP subject) and the session, so "everything that happened
-- to bob" is one indexed query — session events were recorded under the
-- session id only. Filled by the store from the row's target; older rows
-- are filled here from the same rule.
ALTER TABLE audit_log ADD COLUMN user_email TEXT;
ALTER TABLE audit_log ADD COLUMN user_subject TEXT;
ALTER TABLE audit_log ADD COLUMN session_id TEXT;
UPDATE audit_log SET session_id = substr(target, 9) WHERE target LIKE 'session:%';
UPDATE audit_log SET
    user_email = (SELECT lower(s.email) FROM sessions s WHERE s.id = audit_log.session_id),
    user_subject = (SELECT s.subject FROM sessions s WHERE s.id = audit_log.session_id)
    WHERE session_id IS NOT NULL;
UPDATE audit_log SET user_email = lower(substr(target, 7)) WHERE target LIKE 'email:%';
UPDATE audit_log SET user_subject = substr(target, 5) WHERE target LIKE 'sub:%';
CREATE INDEX audit_by_user_email ON audit_log (user_email, id DESC);
CREATE INDEX audit_by_user_subject ON audit_log (user_subject, id DESC);
CREATE INDEX audit_by_session ON audit_log (session_id, id DESC);
