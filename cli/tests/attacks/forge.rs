//! Building tokens: the parts of a compact JWS, claims with changes, and
//! signing a header and claims with a key (the control plane's own, read
//! from its database, or the fake IdP's).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::Value;

use crate::world::World;

/// Base64url of a JSON value.
pub fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// (header, payload, signature) of a compact JWS.
pub fn parts(token: &str) -> (Value, Value, String) {
    let mut split = token.split('.');
    let mut decode = || -> Value {
        let part = split.next().expect("token part");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
    };
    let (header, payload) = (decode(), decode());
    (header, payload, token.rsplit('.').next().unwrap_or("").to_owned())
}

/// `base` with `changes` merged in (a `null` removes the claim).
pub fn with(base: &Value, changes: &Value) -> Value {
    let mut out = base.clone();
    for (name, value) in changes.as_object().expect("object") {
        if value.is_null() {
            out.as_object_mut().expect("object").remove(name);
        } else {
            out[name] = value.clone();
        }
    }
    out
}

/// `claims` signed under `header` with `key`.
pub fn sign(header: &Value, claims: &Value, key: &EncodingKey) -> String {
    let header: Header = serde_json::from_value(header.clone()).expect("header");
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

/// A session token like `user`'s for `route`, re-signed with the control
/// plane's key after `changes` to its claims.
pub fn session_token(world: &World, user: &str, route: &str, changes: &Value) -> String {
    let (header, payload, _) = parts(world.token(user, route));
    let key = EncodingKey::from_ec_pem(world.signing_key.private_pem.as_bytes()).expect("the control plane's key");
    sign(&header, &with(&payload, changes), &key)
}
