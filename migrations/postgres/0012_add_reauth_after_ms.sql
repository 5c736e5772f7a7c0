-- Re-authentication after termination (issue 15): a login whose IdP
-- `auth_time` is not after this instant (milliseconds) is refused, so the
-- user must sign in again at the identity provider. Set when an admin ends
-- one of the user's sessions and when the user is unlocked; a
-- terminate-all's `revoked_before_ms` and an expired lock count too.
ALTER TABLE users ADD COLUMN reauth_after_ms BIGINT;
