-- When an admin or service token was last used (issue 12), so admins can
-- see which tokens are idle and revoke them. Written at most once a minute
-- per token, not on every request.
ALTER TABLE api_tokens ADD COLUMN last_used_ms INTEGER;
