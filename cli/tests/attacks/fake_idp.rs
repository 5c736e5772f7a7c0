//! A minimal OpenID provider in the test process: discovery, a JWKS with
//! one P-256 key (`kid` [`KID`]) and a token endpoint that turns any code
//! into an ID token for `lin@corp.example` carrying the code as its nonce
//! (the test reads the nonce from the authorization URL the edge built and
//! uses it as the code). The same key signs the IdP access tokens the
//! token cases forge variations of.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::header::CONTENT_TYPE;
use axum::routing::{get, post};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use serde_json::{json, Value};

/// The key id of the IdP's signing key.
pub const KID: &str = "idp-key-1";
/// The login client id the edge is registered with.
pub const CLIENT_ID: &str = "edge";
/// The client secret.
pub const CLIENT_SECRET: &str = "edge-client-secret-0123456789abcdef";
/// The audience of API access tokens the edge accepts.
pub const API_AUDIENCE: &str = "http://api.corp.example/";

/// Unix seconds now.
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// A running fake IdP.
pub struct FakeIdp {
    /// Issuer URL (`http://127.0.0.1:PORT`).
    pub issuer: String,
    /// The JWKS document as served.
    pub jwks: String,
    key: EncodingKey,
}

impl FakeIdp {
    /// Starts serving on a free loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the IdP");
        let issuer = format!("http://127.0.0.1:{}", listener.local_addr().expect("address").port());
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let pem = p256::pkcs8::EncodePrivateKey::to_pkcs8_pem(&secret, p256::pkcs8::LineEnding::LF).expect("PEM");
        let key = EncodingKey::from_ec_pem(pem.as_bytes()).expect("EC key");
        let point = secret.public_key().to_encoded_point(false);
        let coordinate = |c: Option<&p256::FieldBytes>| URL_SAFE_NO_PAD.encode(c.expect("coordinate"));
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": KID, "alg": "ES256", "use": "sig",
            "x": coordinate(point.x()), "y": coordinate(point.y()),
        }]})
        .to_string();
        let discovery = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        })
        .to_string();
        let idp = Self { issuer: issuer.clone(), jwks: jwks.clone(), key };
        let signer = std::sync::Arc::new(Self { issuer, jwks: String::new(), key: idp.key.clone() });
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { ([(CONTENT_TYPE, "application/json")], discovery) }),
            )
            .route("/jwks", get(move || async move { ([(CONTENT_TYPE, "application/json")], jwks) }))
            .route(
                "/token",
                post(move |body: String| {
                    let answer = signer.token_response(&body);
                    async move { ([(CONTENT_TYPE, "application/json")], answer) }
                }),
            );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        idp
    }

    /// The token endpoint's answer to a form body carrying `code`.
    fn token_response(&self, form: &str) -> String {
        let code = form
            .split('&')
            .find_map(|pair| pair.strip_prefix("code="))
            .map(|c| c.replace("%2B", "+").replace("%2F", "/").replace("%3D", "="))
            .unwrap_or_default();
        let id_token = self.sign(
            "JWT",
            &json!({
                "iss": self.issuer, "sub": "sub-lin", "aud": CLIENT_ID, "exp": now() + 300, "iat": now(),
                "auth_time": now(), "nonce": code, "email": "lin@corp.example", "email_verified": true, "groups": ["staff"],
            }),
        );
        let access_token = self.access_token(&json!({}));
        json!({"access_token": access_token, "token_type": "Bearer", "expires_in": 300, "id_token": id_token})
            .to_string()
    }

    /// `claims` signed with the IdP's key, header `typ` as given.
    pub fn sign(&self, typ: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(KID.into());
        header.typ = Some(typ.into());
        jsonwebtoken::encode(&header, claims, &self.key).expect("sign")
    }

    /// The claims of a valid API access token for `ivy@corp.example`, with `overrides` merged in
    /// (a `null` override removes the claim).
    pub fn access_claims(&self, overrides: &Value) -> Value {
        let mut claims = json!({
            "iss": self.issuer, "sub": "sub-ivy", "aud": API_AUDIENCE, "exp": now() + 600, "iat": now(),
            "client_id": "robot", "email": "ivy@corp.example", "groups": ["staff"], "jti": format!("jti-{}", rand::random::<u64>()),
        });
        if let (Some(target), Some(changes)) = (claims.as_object_mut(), overrides.as_object()) {
            for (name, value) in changes {
                if value.is_null() {
                    target.remove(name);
                } else {
                    target.insert(name.clone(), value.clone());
                }
            }
        }
        claims
    }

    /// A valid API access token (`typ: at+jwt`) with `overrides`.
    pub fn access_token(&self, overrides: &Value) -> String {
        self.sign("at+jwt", &self.access_claims(overrides))
    }
}
