//! Every key of the edge's configuration with its documentation: the one
//! list `--help-config` prints and the README's table is checked against.

/// Every key with its documentation (printed by `portcullis edge --help-config`).
pub const KEYS: &[(&str, &str)] = &[
    ("listen", "plain-HTTP listener for protected apps (default 127.0.0.1:8080)"),
    ("https_listen", "HTTPS listener (HTTP/1.1 and HTTP/2); needs tls_cert and tls_key"),
    ("tls_cert", "PEM certificate chain for https_listen"),
    ("tls_key", "PEM private key for https_listen"),
    ("metrics_listen", "listener for /metrics, /healthz and /readyz (default 127.0.0.1:9090); keep it private"),
    (
        "metrics_token",
        "when set, /metrics answers only `Authorization: Bearer <metrics_token>` (at least 32 characters); /healthz and \
         /readyz stay open for probes",
    ),
    ("control_plane_url", "the control plane's edge channel (default http://127.0.0.1:7401); one replica"),
    (
        "control_plane_urls",
        "the edge channels of several control-plane replicas, in order of preference: the edge streams from one \
         and moves to the next when it fails (instead of control_plane_url)",
    ),
    (
        "control_plane_ca",
        "PEM file of the CA certificate(s) an https:// control plane's certificate must chain to: the only roots \
         trusted for it, read at start (default: the system's roots)",
    ),
    (
        "control_plane_pins",
        "SHA-256 pins of the control plane's public key, sha256//<base64>: its certificate's key must match one, \
         besides chaining to control_plane_ca, or alone without it (default none)",
    ),
    (
        "allow_plain_http",
        "allow http:// control-plane URLs whose host is not loopback; refused otherwise: use https:// (default false)",
    ),
    (
        "join_token",
        "one-time join token from `portcullis edges join-token`: enrolls this edge at its first start (needs \
         credential_file)",
    ),
    (
        "credential_file",
        "where this edge keeps its private key (PKCS#8 PEM, written 0600 in a 0700 folder at enrollment); if the \
         file exists the edge uses it and needs no join_token",
    ),
    (
        "edge_secret",
        "bootstrap secret shared with the control plane, for the quickstart and tests only: enrolls without a join \
         token (at least 32 characters); without credential_file the key lives in memory and the edge enrolls at \
         every start",
    ),
    (
        "stream_public_key",
        "the control plane's stream-signing public key, which every snapshot, delta and heartbeat must be signed \
         with: `ed25519:<base64url>` or a PEM `PUBLIC KEY` (as `GET /api/v1/stream-key` and the control plane's \
         start-up log show it), or the path of a file holding either. Production sets it; when absent, the edge \
         pins the key the control plane serves on first contact (trust on first use) for the life of the process",
    ),
    ("edge_id", "this edge's id: letters, digits, '-', '_', '.' (default edge-1)"),
    ("edge_name", "display name in the portal (default: the id)"),
    ("session_issuer", "issuer of session tokens: the control plane's `issuer` (default http://127.0.0.1:7400)"),
    (
        "cookie_name",
        "base name of the edge's cookies: route R's session cookie is <name>.R, __Host-<name>.R when Secure \
         (default portcullis_session)",
    ),
    (
        "max_staleness_s",
        "seconds without a frame from any control-plane replica (heartbeats come every second) before /readyz \
         fails and stale_mode applies (default 5)",
    ),
    (
        "stale_mode",
        "once stale: keep (keep enforcing the last snapshot) or deny (refuse requests and close live connections); \
         a route's own `stale_mode` option overrides it (default keep)",
    ),
    ("token_cache_size", "verified tokens kept in memory (default 100000)"),
    ("threads", "worker threads for the proxy (default 2)"),
    ("cookie_secure", "mark cookies Secure (default true); false only for plain-HTTP development"),
    ("trusted_proxies", "addresses or CIDR networks whose X-Forwarded-For/-Proto are believed (default none)"),
    ("assertion_key_file", "PKCS#8 PEM P-256 key signing the identity assertion (default: a new key per start)"),
    ("assertion_issuer", "`iss` of identity assertions (default portcullis)"),
    ("oidc_issuer", "OpenID provider issuer URL; enables browser login, IdP bearer tokens and back-channel logout"),
    ("oidc_client_id", "client id registered at the OpenID provider (required with oidc_issuer)"),
    ("oidc_client_secret", "client secret, for confidential clients"),
    ("oidc_scopes", "scopes requested at login (default [\"openid\", \"email\", \"profile\"])"),
    ("oidc_groups_claim", "claim carrying the user's groups (default groups)"),
    ("oidc_post_logout_redirect_url", "where the IdP sends the browser after logout (registered at the IdP)"),
    (
        "bearer_audiences",
        "accepted `aud` of IdP access tokens (default [oidc_client_id]); a token whose aud holds the client id is \
         refused as an ID token unless this key is set and names the client id",
    ),
    ("bearer_algorithms", "accepted signature algorithms of IdP tokens (default RS256, ES256, PS256, EdDSA)"),
    ("clock_skew_s", "seconds of clock difference tolerated when checking token times (default 30)"),
    ("bearer_token_types", "accepted `typ` of IdP access tokens (default [\"at+jwt\", \"application/at+jwt\"])"),
    (
        "device_logins_per_hour",
        "device logins (portcullis connect) one client address may start per hour, a quarter of them at once; \
         raise it for many users behind one address (default 20)",
    ),
    (
        "log_format",
        "`text` (readable lines, colour only on a terminal) or `json` (one JSON object per line, for log \
         collectors) (default text)",
    ),
];
