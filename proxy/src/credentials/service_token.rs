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
                issued_at_ms: found.issued_at_ms,
                auth_time: found.issued_at,
                session_started_at: found.issued_at,
                // Opaque, looked up at the control plane: no key signed it.
                signing_key: None,
            })
            .with_expires_at(found.expires_at),
        );
        let valid_until = found.expires_at.map_or(now + VALIDITY_CACHE_S, |e| e.min(now + VALIDITY_CACHE_S));
        self.cache.insert(token, Arc::clone(&identity), valid_until);
        Ok((identity, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::lookup_guard::NEGATIVE_TTL_S;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A control plane that knows no service token and counts the lookups it answers.
    async fn forgetful_control_plane() -> (Arc<AuthorityClient>, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let lookups = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&lookups);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    let _ = stream.read(&mut buffer).await;
                    let body = r#"{"error":{"code":"unknown_token","message":"no such token"}}"#;
                    let answer = format!(
                        "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                         connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        let planes = crate::control_planes::ControlPlanes::new(crate::control_planes::ChannelConfig::single(
            url,
            "s",
            "edge-test",
        ));
        (Arc::new(AuthorityClient::new(Arc::new(planes))), lookups)
    }

    fn token(n: usize) -> String {
        format!("pcst_{n:0>43}")
    }

    #[tokio::test]
    async fn malformed_unknown_and_excess_tokens_cost_no_lookup() {
        let (authority, lookups) = forgetful_control_plane().await;
        let tokens = ServiceTokens::new(authority, 16);
        let attacker: IpAddr = "203.0.113.9".parse().unwrap();
        for malformed in
            ["pcst_", "pcst_short", &format!("pcst_{}!", "a".repeat(43)), &format!("pcst_{}", "a".repeat(300))]
        {
            let refused = tokens.verify(malformed, 1_000, attacker).await.err();
            assert_eq!(refused, Some(CredentialError::Malformed), "{malformed}");
        }
        assert_eq!(lookups.load(Ordering::SeqCst), 0, "malformed tokens are refused unread");

        assert_eq!(tokens.verify(&token(0), 1_000, attacker).await.err(), Some(CredentialError::Invalid));
        assert_eq!(tokens.verify(&token(0), 1_030, attacker).await.err(), Some(CredentialError::Invalid));
        assert_eq!(lookups.load(Ordering::SeqCst), 1, "an unknown token is asked about once a minute");
        assert_eq!(
            tokens.verify(&token(0), 1_000 + NEGATIVE_TTL_S, attacker).await.err(),
            Some(CredentialError::Invalid)
        );
        assert_eq!(lookups.load(Ordering::SeqCst), 2, "and again after the minute");

        let mut limited = 0;
        for n in 1..40 {
            if tokens.verify(&token(n), 1_000, attacker).await.err() == Some(CredentialError::RateLimited) {
                limited += 1;
            }
        }
        let asked = lookups.load(Ordering::SeqCst);
        assert!(asked <= 2 + 20, "the burst bounds what one client makes the edge ask: {asked}");
        assert!(limited >= 39 - 20, "the rest are refused with RateLimited: {limited}");
        let neighbour: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(tokens.verify(&token(99), 1_000, neighbour).await.err(), Some(CredentialError::Invalid));
        assert_eq!(lookups.load(Ordering::SeqCst), asked + 1, "other clients keep their budget");
    }
}
