//! The provider's ES256 key and the tokens it signs: ID tokens, JWT access
//! tokens (RFC 9068) and back-channel logout tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{PendingCode, User};

/// The signing key.
pub(crate) struct Signer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    jwks: Value,
}

/// base64url(SHA-256(verifier)): the PKCE S256 challenge.
pub(crate) fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The claims a user's tokens carry.
pub(crate) fn user_claims(user: &User) -> Value {
    json!({
        "sub": user.name, "email": user.email, "email_verified": true, "name": user.name,
        "preferred_username": user.name, "groups": user.groups,
    })
}

impl Signer {
    /// A fresh P-256 key.
    pub(crate) fn generate() -> Self {
        Self::generate_with_kid(None)
    }

    /// A fresh P-256 key under `kid` (default: derived from the key).
    pub(crate) fn generate_with_kid(kid: Option<&str>) -> Self {
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let pem = secret.to_pkcs8_pem(LineEnding::LF).expect("PKCS#8 encoding of a fresh key");
        let encoding = EncodingKey::from_ec_pem(pem.as_bytes()).expect("a fresh P-256 key");
        let point = secret.public_key().to_encoded_point(false);
        let (x, y) = (point.x().expect("x").to_vec(), point.y().expect("y").to_vec());
        let kid = kid.map_or_else(
            || URL_SAFE_NO_PAD.encode(&Sha256::digest([x.as_slice(), y.as_slice()].concat())[..8]),
            str::to_owned,
        );
        let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
        let decoding = DecodingKey::from_ec_components(&x, &y).expect("the key's own public point");
        let jwks = json!({ "keys": [{ "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid, "x": x, "y": y }] });
        Self { encoding, decoding, kid, jwks }
    }

    /// The public key set.
    pub(crate) fn jwks(&self) -> Value {
        self.jwks.clone()
    }

    /// The key id.
    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs `claims` (ES256, this key's `kid`, `typ`).
    pub(crate) fn sign(&self, typ: &str, claims: &Value) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some(typ.into());
        jsonwebtoken::encode(&header, claims, &self.encoding)
    }

    /// The ID token of a code exchange.
    pub(crate) fn id_token(
        &self,
        issuer: &str,
        client_id: &str,
        user: &User,
        code: &PendingCode,
        now: i64,
        ttl: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let mut claims = user_claims(user);
        claims["iss"] = json!(issuer);
        claims["aud"] = json!(client_id);
        claims["iat"] = json!(now);
        claims["exp"] = json!(now + ttl);
        claims["auth_time"] = json!(code.auth_time);
        claims["sid"] = json!(code.sid);
        if let Some(nonce) = &code.nonce {
            claims["nonce"] = json!(nonce);
        }
        self.sign("JWT", &claims)
    }

    /// A JWT access token for the client's own use (e.g. `userinfo`).
    pub(crate) fn access_token(
        &self,
        issuer: &str,
        client_id: &str,
        user: &User,
        now: i64,
        ttl: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let mut claims = user_claims(user);
        claims["iss"] = json!(issuer);
        claims["aud"] = json!(client_id);
        claims["client_id"] = json!(client_id);
        claims["iat"] = json!(now);
        claims["exp"] = json!(now + ttl);
        claims["jti"] = json!(crate::random_id());
        self.sign("at+jwt", &claims)
    }

    /// The subject of one of its own access tokens.
    pub(crate) fn verify_access_token(&self, token: &str, issuer: &str) -> Option<String> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[issuer]);
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Value>(token, &self.decoding, &validation).ok()?;
        (data.header.typ.as_deref() == Some("at+jwt")).then(|| data.claims["sub"].as_str().map(str::to_owned))?
    }

    /// An OIDC back-channel logout token.
    pub(crate) fn logout_token(
        &self,
        issuer: &str,
        client_id: &str,
        subject: &str,
        sid: &str,
        now: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = json!({
            "iss": issuer, "aud": client_id, "sub": subject, "sid": sid, "iat": now, "exp": now + 120,
            "jti": crate::random_id(),
            "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
        });
        self.sign("logout+jwt", &claims)
    }
}
