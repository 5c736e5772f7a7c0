//! Service tokens (`pcst_…`), minted by the control plane and stored there
//! only as hashes: the edge asks the control plane what a token stands for
//! and caches a valid answer for [`VALIDITY_CACHE_S`]. Revoking a token does
//! not wait for that: the revocation is in the snapshot, which `evaluate`
//! checks on every request. A token the control plane does not know is
//! remembered as such for a minute, and lookups are budgeted per client
//! ([`super::lookup_guard`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use portcullis_policy::{ClaimValue, CredentialKind, Identity, IdentityParts, TokenId};

use super::lookup_guard::{service_token_format_ok, NegativeCache, Refused};
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
    unknown: NegativeCache,
}

impl ServiceTokens {
    /// Lookups through `authority`, caching up to `capacity` tokens.
    pub fn new(authority: Arc<AuthorityClient>, capacity: usize) -> Self {
        Self { authority, cache: TokenCache::new(capacity), unknown: NegativeCache::default() }
    }

    /// The identity a service token carries; `now` is Unix seconds. A
    /// lookup at the control plane is charged to `client_ip`'s budget.
    pub async fn verify(
        &self,
        token: &str,
        now: i64,
        client_ip: IpAddr,
    ) -> Result<(Arc<Identity>, bool), CredentialError> {
        if let Some(identity) = self.cache.get(token, now) {
            return Ok((identity, true));
        }
        if !service_token_format_ok(token) {
            Refused::Format.count();
            return Err(CredentialError::Malformed);
        }
        if self.unknown.contains(token, now) {
            Refused::NegativeCache.count();
            return Err(CredentialError::Invalid);
        }
        if !self.authority.lookup_budget().try_acquire(client_ip, Instant::now()) {
            return Err(CredentialError::RateLimited);
        }
        let found = match self.authority.service_token(token).await {
            Ok(found) => found,
            Err(AuthorityError::Refused { .. }) => {
                self.unknown.insert(token, now);
                return Err(CredentialError::Invalid);
            }
            Err(AuthorityError::Unavailable(_)) => return Err(CredentialError::Unavailable),
        };
        let identity = Arc::new(
            Identity::new(IdentityParts {
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
            })
            .with_expires_at(found.expires_at),
        );
        let valid_until = found.expires_at.map_or(now + VALIDITY_CACHE_S, |e| e.min(now + VALIDITY_CACHE_S));
        self.cache.insert(token, Arc::clone(&identity), valid_until);
        Ok((identity, false))
    }
}
