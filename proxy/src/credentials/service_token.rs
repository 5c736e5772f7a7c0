//! Service tokens (`pcst_…`), minted by the control plane and stored there
//! only as hashes: the edge asks the control plane what a token stands for
//! and caches a valid answer for [`VALIDITY_CACHE_S`]. Revoking a token does
//! not wait for that: the revocation is in the snapshot, which `evaluate`
//! checks on every request.

use std::sync::Arc;

use portcullis_policy::{ClaimValue, CredentialKind, Identity, IdentityParts, TokenId};

use super::{CredentialError, TokenCache};
use crate::authority_client::{AuthorityClient, AuthorityError};

/// Every service token starts with this.
pub const PREFIX: &str = "pcst_";
/// How long a looked-up token is trusted without asking again, seconds.
pub const VALIDITY_CACHE_S: i64 = 60;

/// Service-token lookups and their cache.
pub struct ServiceTokens {
    authority: Arc<AuthorityClient>,
    cache: TokenCache,
}

impl ServiceTokens {
    /// Lookups through `authority`, caching up to `capacity` tokens.
    pub fn new(authority: Arc<AuthorityClient>, capacity: usize) -> Self {
        Self { authority, cache: TokenCache::new(capacity) }
    }

    /// The identity a service token carries; `now` is Unix seconds.
    pub async fn verify(&self, token: &str, now: i64) -> Result<(Arc<Identity>, bool), CredentialError> {
        if let Some(identity) = self.cache.get(token, now) {
            return Ok((identity, true));
        }
        if token.len() > 256 {
            return Err(CredentialError::Malformed);
        }
        let found = self.authority.service_token(token).await.map_err(|e| match e {
            AuthorityError::Refused { .. } => CredentialError::Invalid,
            AuthorityError::Unavailable(_) => CredentialError::Unavailable,
        })?;
        let identity = Arc::new(Identity::new(IdentityParts {
            subject: found.subject,
            email: String::new(),
            groups: found.groups,
            claims: vec![("client_id".to_owned(), ClaimValue::One(found.name.into()))],
            credential: Some(CredentialKind::Service),
            session_id: None,
            token_id: Some(TokenId::new(&found.id)),
            issued_at: found.issued_at,
            auth_time: found.issued_at,
            session_started_at: found.issued_at,
        }));
        let valid_until = found.expires_at.map_or(now + VALIDITY_CACHE_S, |e| e.min(now + VALIDITY_CACHE_S));
        self.cache.insert(token, Arc::clone(&identity), valid_until);
        Ok((identity, false))
    }
}
