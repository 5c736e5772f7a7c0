//! The test suites' OpenID issuer: **for tests only**. It serves what a
//! relying party needs to verify the ID tokens it issues, and nothing else:
//!
//! | endpoint | standard |
//! |---|---|
//! | `/.well-known/openid-configuration` | OpenID Connect Discovery 1.0 §4 (provider metadata; `issuer` is exactly the URL it is fetched under) |
//! | `/jwks` | RFC 7517 JSON Web Key Set: its one ES256 (P-256) key, made at start |
//!
//! There is no login: the tests hold the key ([`TestIssuer::id_token`]) and
//! sign ID tokens for any identity, which a control plane configured with
//! [`TestIssuer::login_idp`] accepts as a login. One per test process
//! ([`TestIssuer::shared`]), serving from a thread of its own so it
//! outlives every test's runtime; [`TestIssuer::start`] makes another (a
//! "foreign" issuer), and [`TestKey`] signs tokens no issuer published.

use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::now;
use crate::tokens::Signer;

/// The client id (`aud`) of the tokens the test issuer signs by default.
pub const TEST_CLIENT_ID: &str = "portcullis-tests";
/// Seconds the ID tokens are valid by default.
pub const TEST_TOKEN_TTL_S: i64 = 600;

/// A P-256 signing key.
pub struct TestKey {
    signer: Signer,
}

impl TestKey {
    /// A fresh key.
    pub fn generate() -> Self {
        Self { signer: Signer::generate() }
    }

    /// A fresh key that claims to be `kid` (to forge a published key's tokens).
    pub fn with_kid(kid: &str) -> Self {
        Self { signer: Signer::generate_with_kid(Some(kid)) }
    }

    /// Its key id.
    pub fn kid(&self) -> &str {
        self.signer.kid()
    }

    /// Its public key as a JWK Set.
    pub fn jwks(&self) -> Value {
        self.signer.jwks()
    }

    /// `claims`, signed (ES256, `typ: JWT`, this key's `kid`).
    pub fn sign(&self, claims: &Value) -> String {
        self.signer.sign("JWT", claims).expect("ES256 signing with a fresh key")
    }
}

/// A running test issuer.
pub struct TestIssuer {
    url: String,
    key: TestKey,
}

impl TestIssuer {
    /// Starts an issuer on a free loopback port, served by a thread of its own.
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the test issuer");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let url = format!("http://{}", listener.local_addr().expect("test issuer address"));
        let key = TestKey::generate();
        let discovery = json!({
            "issuer": url,
            "authorization_endpoint": format!("{url}/authorize"),
            "token_endpoint": format!("{url}/token"),
            "jwks_uri": format!("{url}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        });
        let jwks = key.jwks();
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || async move { axum::Json(discovery) }),
            )
            .route("/jwks", axum::routing::get(move || async move { axum::Json(jwks) }));
        std::thread::Builder::new()
            .name("test-issuer".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    let _ = axum::serve(listener, app).await;
                });
            })
            .expect("spawn the test issuer");
        Self { url, key }
    }

    /// The issuer of this test process, started on first use.
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<TestIssuer> = OnceLock::new();
        SHARED.get_or_init(Self::start)
    }

    /// Its issuer URL (`http://127.0.0.1:PORT`), the `iss` of its tokens.
    pub fn issuer(&self) -> &str {
        &self.url
    }

    /// Its signing key (published in its JWKS).
    pub fn key(&self) -> &TestKey {
        &self.key
    }

    /// This issuer as an entry of the control plane's `login_idps`, in TOML:
    /// `{ issuer = "…", audiences = ["portcullis-tests"] }`.
    pub fn login_idp(&self) -> String {
        format!("{{ issuer = \"{}\", audiences = [\"{TEST_CLIENT_ID}\"] }}", self.url)
    }

    /// The claims of a fresh login of `subject` (`email`, in `groups`):
    /// `iss`, `aud` [`TEST_CLIENT_ID`], `iat` and `auth_time` now, `exp` in
    /// [`TEST_TOKEN_TTL_S`], a verified email, a random `nonce` and `jti`.
    pub fn claims(&self, subject: &str, email: &str, groups: &[&str]) -> Value {
        let now = now();
        json!({
            "iss": self.url, "aud": TEST_CLIENT_ID, "sub": subject, "email": email, "email_verified": true,
            "groups": groups, "iat": now, "exp": now + TEST_TOKEN_TTL_S, "auth_time": now,
            "nonce": crate::random_id(), "jti": crate::random_id(),
        })
    }

    /// `claims` signed with this issuer's key.
    pub fn id_token(&self, claims: &Value) -> String {
        self.key.sign(claims)
    }

    /// The body of `POST /edge/v1/sessions` for the login an older helper
    /// describes by asserting it (`subject`, `email`, `groups`, `auth_time`,
    /// `idp_session_id`, plus `route`, `source_address` and `user_agent`):
    /// an ID token of this issuer for that identity, and its nonce.
    pub fn login_body(&self, asserted: &Value) -> Value {
        let text = |name: &str| asserted[name].as_str().unwrap_or_default();
        let groups: Vec<&str> =
            asserted["groups"].as_array().map(|g| g.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        let mut claims = self.claims(text("subject"), text("email"), &groups);
        if let Some(auth_time) = asserted["auth_time"].as_i64() {
            claims["auth_time"] = json!(auth_time);
        }
        if let Some(sid) = asserted["idp_session_id"].as_str() {
            claims["sid"] = json!(sid);
        }
        let mut body = json!({ "id_token": self.id_token(&claims), "nonce": claims["nonce"] });
        for name in ["route", "source_address", "user_agent"] {
            if let Some(value) = asserted.get(name) {
                body[name] = value.clone();
            }
        }
        body
    }
}
