//! Test edges for the suite's edge-channel calls: each id is enrolled on
//! first use with the bootstrap secret (`POST /edge/v1/enroll` with a P-256
//! key made here), and every call then carries a fresh ES256 assertion
//! signed with that key, as a real edge's would.

use std::collections::HashMap;

use axum::http::Method;
use axum::Router;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{json, Value};

use crate::client::{Call, Listener};
use crate::harness::EDGE_SECRET;

/// The `aud` of edge assertions.
pub const AUDIENCE: &str = "portcullis-edge-channel";

/// A P-256 key pair: (PKCS#8 PEM private, SPKI PEM public).
pub fn new_key() -> (String, String) {
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let private = secret.to_pkcs8_pem(LineEnding::LF).expect("PKCS#8").to_string();
    let public = secret.public_key().to_public_key_pem(LineEnding::LF).expect("SPKI");
    (private, public)
}

/// Unix seconds now.
pub fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Signs `claims` with the PKCS#8 PEM `private` key (ES256).
pub fn sign(private: &str, claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(private.as_bytes()).expect("EC key");
    jsonwebtoken::encode(&Header::new(Algorithm::ES256), claims, &key).expect("sign")
}

/// The claims of a good assertion for edge `id`.
pub fn claims(id: &str) -> Value {
    let now = now_s();
    json!({ "iss": id, "sub": id, "aud": AUDIENCE, "iat": now, "exp": now + 60, "jti": format!("{:x}", rand::random::<u128>()) })
}

/// Enrolled test edges of one control plane, by id.
pub struct TestEdges {
    router: Router,
    keys: tokio::sync::Mutex<HashMap<String, String>>,
}

impl TestEdges {
    /// Test edges of the edge listener `router`.
    pub fn new(router: Router) -> Self {
        Self { router, keys: tokio::sync::Mutex::default() }
    }

    /// `POST /edge/v1/enroll` as `id` with `credential` and `public` key.
    pub async fn enroll(&self, id: &str, credential: &str, public: &str) -> crate::client::Answer {
        let call = Call::new(self.router.clone(), Listener::Edge, Method::POST, "/edge/v1/enroll")
            .bearer(credential)
            .json(json!({ "edge_id": id, "public_key": public }));
        // Boxed: a call authenticates through this very enrollment.
        Box::pin(call.send()).await
    }

    /// The private key of test edge `id`, enrolled on first use.
    pub async fn key(&self, id: &str) -> String {
        let mut keys = self.keys.lock().await;
        if let Some(private) = keys.get(id) {
            return private.clone();
        }
        let (private, public) = new_key();
        self.enroll(id, EDGE_SECRET, &public).await.ok();
        keys.insert(id.to_owned(), private.clone());
        private
    }

    /// A fresh assertion for test edge `id`.
    pub async fn assertion(&self, id: &str) -> String {
        sign(&self.key(id).await, &claims(id))
    }
}
