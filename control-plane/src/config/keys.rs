//! Every key of the control plane's configuration with its documentation: the one
//! list `--help-config` prints and the README's table is checked against.

/// Every key of the file, with its documentation (kept in sync with
/// [`RawConfig`] by a test, and printed by `--help-config`).
pub const KEYS: &[(&str, &str)] = &[
    ("listen", "address of the admin API, portal, /healthz, /readyz and /metrics (default 127.0.0.1:7400)"),
    ("edge_listen", "address of the edge channel: snapshot stream, reports, session creation (default 127.0.0.1:7401)"),
    ("database_url", "sqlite://PATH (default sqlite://data/portcullis.db) or postgres://USER@HOST/DB"),
    ("issuer", "the `iss` of session tokens; also the public URL of this control plane (default http://<listen>, https://<listen> with tls_cert)"),
    (
        "edge_secret",
        "bootstrap secret, for the quickstart and tests only: an edge holding it may enroll without a join token \
         (at least 32 characters); unset (the default), edges enroll with join tokens only",
    ),
    ("bootstrap_token", "admin token to create on first start instead of writing a new one to admin_token_file"),
    ("admin_token_file", "where a new first-start admin token is written, mode 0600 (default: admin-token beside a SQLite database)"),
    ("key_encryption_key", "key-encryption key (at least 32 characters) sealing the private keys stored in the database; prefer key_encryption_key_file or PORTCULLIS_KEY_ENCRYPTION_KEY"),
    ("key_encryption_key_file", "file holding the key-encryption key; without it or key_encryption_key, SQLite uses key-encryption.key next to the database (made on first start) and PostgreSQL refuses to start"),
    ("receipt_wait_ms", "how long ?wait=true waits for every edge to apply a change (default 5000)"),
    ("change_log_retention", "change-log rows kept for edges to resume from (default 100000)"),
    ("metrics_token", "when set, /metrics answers only `Authorization: Bearer <metrics_token>` (at least 32 characters); /healthz and /readyz stay open for probes"),
    ("max_body_bytes", "largest accepted request body in bytes (default 1048576)"),
    ("public_url", "the URL browsers reach this control plane at, for the portal's OIDC redirect URI <public_url>/portal/callback (default: issuer, i.e. http://<listen>)"),
    ("oidc_issuer", "OpenID provider admins log in to the portal with (discovery at <issuer>/.well-known/openid-configuration); unset: portal login with an admin API token only"),
    ("oidc_client_id", "the portal's client id at the OpenID provider (required with oidc_issuer)"),
    ("oidc_client_secret", "the portal's client secret (confidential client), if any"),
    ("oidc_scopes", "scopes the portal asks for at login; add the one that releases groups, e.g. \"groups\" (default [\"openid\", \"email\", \"profile\"])"),
    ("oidc_groups_claim", "the ID-token claim that carries groups (default groups)"),
    ("portal_admin_group", "members of this group may use the portal after an OIDC login; others get 403 (default admins)"),
    ("portal_cookie_secure", "mark portal cookies Secure (default true); false only for plain-HTTP development"),
    ("portal_session_lifetime_s", "how long a portal login lasts, seconds, at most 86400 (default 28800)"),
    ("tls_cert", "PEM certificate chain both listeners (listen and edge_listen) serve HTTPS with; needs tls_key; read at start"),
    ("tls_key", "PEM private key of tls_cert (PKCS#8, SEC1 or PKCS#1); keep it mode 0600"),
    ("allow_plain_http", "serve plain HTTP on a listen or edge_listen address that is not loopback, without tls_cert; refused otherwise (default false)"),
    (
        "login_idps",
        "the OpenID providers edges log users in with: a session is created only for an ID token one of them \
         signed, verified here. A list of tables with `issuer` (exactly the tokens' `iss`; discovery at \
         <issuer>/.well-known/openid-configuration), `audiences` (the edges' client ids; the token's `aud` must \
         hold one), `groups_claim` (groups unless set) and `trust_unverified_email` (false unless set: a token \
         without `email_verified: true` is refused). In the environment as TOML: \
         [{ issuer = \"https://idp.example\", audiences = [\"portcullis-edge\"] }]. Unset: every login is refused",
    ),
    (
        "relying_parties",
        "the services a termination also signs the user out of (README: Relying parties). A list of tables \
         with `name`, `kind` (webhook, okta, entra, google, keycloak, auth0, slack), `on` (the actions that \
         reach it: terminate_user (default), terminate_session, lock), `url`, the credential as `secret_file` \
         or `secret_env` (never written in the file), the kind's own keys (`client_id`, `tenant`, `realm`, \
         `token_url`, `admin_email`, `revoke_oauth_tokens`) and limits `concurrency` (4), `deadline_s` \
         (86400: undelivered after this, a job is dead) and `timeout_ms` (10000)",
    ),
    (
        "log_format",
        "`text` (readable lines, colour only on a terminal) or `json` (one JSON object per line, for log \
         collectors) (default text)",
    ),
    (
        "login_clock_skew_s",
        "seconds of clock difference tolerated on ID-token times (exp, iat, auth_time) at session creation, \
         at most 300 (default 30)",
    ),
    (
        "ssf_transmitters",
        "the Shared Signals transmitters whose events end sessions here (README: Signals in). A list of tables \
         with `name`, `issuer`, `audience` (public_url unless set), `jwks_url` (unless set: from the issuer's \
         /.well-known/ssf-configuration), `login_issuer` (whose sessions its session ids name; issuer unless \
         set), `delivery` (push or poll; push unless set), the push bearer token as `push_token_file` or \
         `push_token_env`, our token at the transmitter as `poll_token_file` or `poll_token_env`, `poll_url`, \
         `manage_stream`, `universal_logout` (accept Okta Global Token Revocation from this issuer), \
         `max_age_s` (604800), `poll_interval_ms` (1000), `max_events` (100) and `actions` (event → ignore, \
         terminate_session, terminate_user, lock, terminate_and_lock or reevaluate). Unset: none",
    ),
    (
        "siem_sinks",
        "where security events go (README: Sending events to your SIEM). A list of tables with `name`, `kind` \
         (nats, webhook, syslog, splunk, elastic or sqs), `url` (nats://host:port, an https:// URL, a queue URL, \
         tcp://host:port or tls://host:port), `stream` (PORTCULLIS; created if missing), `subject_prefix` (portcullis), \
         `ca_file` and `hostname` (syslog; hostname also Splunk's host), `index` (elastic; portcullis-events), `endpoint`, `region` and `access_key_id` (sqs), \
         the credential as `token_file` or `token_env` (the NATS token, the webhook's HMAC key, the HEC token, \
         the Elastic API key, the SQS secret access key), `batch` (500) and `start` (beginning or now; beginning unless set). Unset: none",
    ),
    (
        "ssf_push_private_networks",
        "let Shared Signals receivers push to loopback (127.0.0.0/8, ::1) and private addresses (10/8, 172.16/12, \
         192.168/16, 100.64/10, fc00::/7), literal or resolved (default false). Link-local (169.254.0.0/16: \
         cloud metadata), unspecified, multicast and broadcast addresses are refused always",
    ),
];
