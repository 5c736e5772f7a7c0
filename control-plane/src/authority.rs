//! The session authority: the control plane is the only holder of the
//! session-signing key. It creates an ES256 key on first start (stored
//! sealed with the key-encryption key, rotatable, revocable in an
//! emergency), signs session tokens for logins edges complete, and
//! publishes the public keys in the snapshot so edges verify without any
//! secret. Every replica follows the current key in the database within a
//! second ([`SessionAuthority::follow`]), so a rotation or revocation made
//! through one replica is not undone by another signing with the old key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::ecdsa::SigningKey;
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use crate::key_vault::KeyVault;
use crate::model::{now_ms, Actor, SessionRecord, SigningKeyRecord};
use crate::store::{Store, StoreError, StoreResult};

/// The purpose session-signing keys are sealed under ([`KeyVault::seal`]).
pub const SESSION_KEY_PURPOSE: &str = "session-signing";

/// `typ` header of session tokens, so no other JWT is mistaken for one.
pub const SESSION_TOKEN_TYPE: &str = "portcullis-session+jwt";
/// `aud` of session tokens.
pub const SESSION_TOKEN_AUDIENCE: &str = "portcullis-edge";

/// The claims of a session token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// The control plane's issuer URL.
    pub iss: String,
    /// Always [`SESSION_TOKEN_AUDIENCE`].
    pub aud: String,
    /// IdP subject.
    pub sub: String,
    /// Email, lowercased.
    pub email: String,
    /// Groups at login.
    pub groups: Vec<String>,
    /// Portcullis session id.
    pub sid: String,
    /// Issued at, seconds (the standard claim).
    pub iat: i64,
    /// Issued at, milliseconds: what edges compare with a user's
    /// terminate-all, so a login later in the same second as a termination
    /// is not taken for one it revoked. Always in the second `iat` names;
    /// absent from tokens signed before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat_ms: Option<i64>,
    /// Expires, seconds.
    pub exp: i64,
    /// IdP authentication time, seconds.
    pub auth_time: i64,
    /// The IdP's session id, for back-channel logout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idp_sid: Option<String>,
    /// Route the login was for.
    pub route: String,
    /// The client address at login (edges compare it for `on_ip_change`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub login_ip: String,
}

struct ActiveKey {
    kid: String,
    encoding: EncodingKey,
}

/// Signs session tokens with the current key.
pub struct SessionAuthority {
    issuer: String,
    vault: KeyVault,
    key: RwLock<ActiveKey>,
}

/// A new ES256 key as stored (its private key sealed by `vault`).
fn generate_key(vault: &KeyVault, now: i64) -> StoreResult<SigningKeyRecord> {
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| StoreError::Corrupt(format!("key encoding: {e}")))?;
    let point = key.verifying_key().to_encoded_point(false);
    let (x, y) = (point.x().map(|x| URL_SAFE_NO_PAD.encode(x)), point.y().map(|y| URL_SAFE_NO_PAD.encode(y)));
    let mut kid_bytes = [0u8; 9];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut kid_bytes);
    let kid = URL_SAFE_NO_PAD.encode(kid_bytes);
    Ok(SigningKeyRecord {
        private_pem: vault.seal(SESSION_KEY_PURPOSE, &kid, &pem),
        kid,
        alg: "ES256".into(),
        x: x.unwrap_or_default(),
        y,
        created_ms: now,
        retired_ms: None,
        revoked_ms: None,
    })
}

fn active(vault: &KeyVault, record: &SigningKeyRecord) -> StoreResult<ActiveKey> {
    let pem = vault
        .open(SESSION_KEY_PURPOSE, &record.kid, &record.private_pem)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let encoding = EncodingKey::from_ec_pem(pem.as_bytes())
        .map_err(|e| StoreError::Corrupt(format!("signing key {}: {e}", record.kid)))?;
    Ok(ActiveKey { kid: record.kid.clone(), encoding })
}

impl SessionAuthority {
    /// Loads the current key, creating one on first start; seals any key
    /// stored before sealing existed.
    pub async fn load_or_create(store: &dyn Store, issuer: &str, vault: KeyVault) -> StoreResult<Self> {
        let keys = store.signing_keys().await?;
        for key in keys.iter().filter(|k| !KeyVault::is_sealed(&k.private_pem)) {
            store.reseal_signing_key(&key.kid, &vault.seal(SESSION_KEY_PURPOSE, &key.kid, &key.private_pem)).await?;
            tracing::info!(kid = %key.kid, "sealed a stored session-signing key with the key-encryption key");
        }
        let current = match keys.iter().rev().find(|k| k.retired_ms.is_none()) {
            Some(key) => key.clone(),
            None => {
                let key = generate_key(&vault, now_ms())?;
                store.add_signing_key(&key, &Actor::system(), now_ms()).await?;
                tracing::info!(kid = %key.kid, "created the session-signing key");
                key
            }
        };
        let key = RwLock::new(active(&vault, &current)?);
        Ok(Self { issuer: issuer.to_owned(), vault, key })
    }

    /// Replaces the signing key; the old public key stays published so
    /// tokens it signed keep verifying until they expire.
    pub async fn rotate(&self, store: &dyn Store, actor: &Actor) -> StoreResult<u64> {
        let key = generate_key(&self.vault, now_ms())?;
        let seq = store.add_signing_key(&key, actor, now_ms()).await?;
        *self.key.write().await = active(&self.vault, &key)?;
        Ok(seq)
    }

    /// Revokes key `kid` at once (a leaked key): it is no longer published,
    /// so every token it signed dies on every edge. The current key is
    /// replaced by a new one in the same change. `None`: no such key, or
    /// already revoked.
    pub async fn revoke(&self, store: &dyn Store, kid: &str, reason: &str, actor: &Actor) -> StoreResult<Option<u64>> {
        let mut current = self.key.write().await;
        let replacement = match store.signing_keys().await?.iter().find(|k| k.kid == kid) {
            Some(key) if key.retired_ms.is_none() => Some(generate_key(&self.vault, now_ms())?),
            _ => None,
        };
        let seq = store.revoke_signing_key(kid, replacement.as_ref(), reason, actor, now_ms()).await?;
        if let (Some(_), Some(key)) = (seq, &replacement) {
            *current = active(&self.vault, key)?;
        }
        Ok(seq)
    }

    /// The id of the key new tokens are signed with.
    pub async fn current_kid(&self) -> String {
        self.key.read().await.kid.clone()
    }

    /// Switches to the store's current key if another replica rotated or
    /// revoked it; returns whether it switched.
    pub async fn refresh(&self, store: &dyn Store) -> StoreResult<bool> {
        let keys = store.signing_keys().await?;
        let Some(latest) = keys.iter().rev().find(|k| k.retired_ms.is_none()) else { return Ok(false) };
        if self.key.read().await.kid == latest.kid {
            return Ok(false);
        }
        *self.key.write().await = active(&self.vault, latest)?;
        tracing::info!(kid = %latest.kid, "now signing with the session-signing key another replica made current");
        Ok(true)
    }

    /// Follows the store's current key every `period` (see [`Self::refresh`]).
    pub fn follow(self: &std::sync::Arc<Self>, store: std::sync::Arc<dyn Store>, period: std::time::Duration) {
        let authority = std::sync::Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = authority.refresh(&*store).await {
                    tracing::warn!(error = %e, "could not check the session-signing key");
                }
            }
        });
    }

    /// The issuer written into tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs the token for a recorded session.
    pub async fn sign(&self, session: &SessionRecord) -> StoreResult<String> {
        let claims = SessionClaims {
            iss: self.issuer.clone(),
            aud: SESSION_TOKEN_AUDIENCE.into(),
            sub: session.subject.clone(),
            email: session.email.clone(),
            groups: session.groups.clone(),
            sid: session.id.clone(),
            iat: session.created_ms.div_euclid(1000),
            iat_ms: Some(session.created_ms),
            exp: session.expires_ms.div_euclid(1000),
            auth_time: session.auth_time_s,
            idp_sid: session.idp_session_id.clone(),
            route: session.route.clone(),
            login_ip: session.source_addresses.first().cloned().unwrap_or_default(),
        };
        self.sign_claims(SESSION_TOKEN_TYPE, &claims).await
    }

    /// Signs other control-plane tokens (portal sessions, under their own
    /// `typ` and audience) with the current key.
    pub async fn sign_claims<T: Serialize>(&self, typ: &str, claims: &T) -> StoreResult<String> {
        let key = self.key.read().await;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        header.typ = Some(typ.into());
        jsonwebtoken::encode(&header, claims, &key.encoding).map_err(|e| StoreError::Corrupt(format!("signing: {e}")))
    }
}

/// Verifies a session token against published keys (used by tests and,
/// in the same way, by edges).
pub fn verify(token: &str, keys: &[portcullis_policy::snapshot::PublicKey], issuer: &str) -> Option<SessionClaims> {
    let header = jsonwebtoken::decode_header(token).ok()?;
    if header.alg != Algorithm::ES256 || header.typ.as_deref() != Some(SESSION_TOKEN_TYPE) {
        return None;
    }
    let key = keys.iter().find(|k| Some(&k.kid) == header.kid.as_ref())?;
    let decoding = DecodingKey::from_ec_components(&key.x, key.y.as_deref()?).ok()?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[SESSION_TOKEN_AUDIENCE]);
    validation.set_issuer(&[issuer]);
    jsonwebtoken::decode::<SessionClaims>(token, &decoding, &validation).ok().map(|d| d.claims)
}
