//! What the evaluator knows about one request or TCP flow: the target, the
//! source address, the time, and (when logged in) the verified identity.
//!
//! An [`Identity`] is built once per verified credential and cached by the
//! edge, so its normalisation (lowercased email, sorted groups) is paid once,
//! not per request.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::ids::{SessionId, TokenId};

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A Portcullis session cookie from a browser login.
    Browser,
    /// A JWT access token issued by the identity provider.
    Bearer,
    /// A service token minted by the control plane.
    Service,
}

impl CredentialKind {
    /// The policy-language name (`browser`, `bearer`, `service`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Browser => "browser",
            Self::Bearer => "bearer",
            Self::Service => "service",
        }
    }

    pub(crate) fn bit(self) -> u8 {
        match self {
            Self::Browser => 1,
            Self::Bearer => 2,
            Self::Service => 4,
        }
    }
}

impl std::str::FromStr for CredentialKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "browser" => Ok(Self::Browser),
            "bearer" => Ok(Self::Bearer),
            "service" => Ok(Self::Service),
            _ => Err(format!("expected a credential kind (browser, bearer or service), found `{text}`")),
        }
    }
}

/// The value of a token claim that rules may test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimValue {
    /// A string, number or boolean, as text.
    One(Box<str>),
    /// An array of strings.
    Many(Box<[Box<str>]>),
}

/// Everything an identity carries, as the edge read it from a verified token.
#[derive(Debug, Clone, Default)]
pub struct IdentityParts {
    /// The IdP subject (`sub`).
    pub subject: String,
    /// Email address as issued; lowercased by [`Identity::new`].
    pub email: String,
    /// Group names; sorted and de-duplicated by [`Identity::new`].
    pub groups: Vec<String>,
    /// Other claims rules may test.
    pub claims: Vec<(String, ClaimValue)>,
    /// Which credential was presented.
    pub credential: Option<CredentialKind>,
    /// The Portcullis session, for browser sessions.
    pub session_id: Option<SessionId>,
    /// The token's id (`jti`), when it has one.
    pub token_id: Option<TokenId>,
    /// When the presented token was issued (Unix seconds: its `iat`).
    pub issued_at: i64,
    /// When the presented token was issued, Unix milliseconds, for tokens
    /// that say so (a session token's `iat_ms`). Ignored unless it falls in
    /// the second `issued_at` names; see [`Identity::issued_at_ms`].
    pub issued_at_ms: Option<i64>,
    /// When the user last authenticated at the IdP (Unix seconds).
    pub auth_time: i64,
    /// When the Portcullis session started (Unix seconds); `issued_at` for
    /// tokens without a session.
    pub session_started_at: i64,
    /// The control plane's key (`kid`) that signed the presented session
    /// token; `None` for credentials the control plane did not sign. The
    /// token dies with the key: [`crate::evaluate`] refuses it once the
    /// snapshot no longer publishes that key (emergency key revocation).
    pub signing_key: Option<String>,
}

/// The instant a token was issued, in milliseconds: the precise one when
/// the token carries it and it lies in the second its `iat` names, else the
/// first millisecond of that second. A token that only says "issued in
/// second S" may have been issued at any instant of S, so it counts as
/// issued as early as it could have been: a termination anywhere in S
/// revokes it (fail closed), never the other way round. Claims that
/// disagree count as the earlier of the two, for the same reason.
fn issued_at_ms(issued_at: i64, precise: Option<i64>) -> i64 {
    let start = issued_at.saturating_mul(1000);
    match precise {
        Some(ms) if ms.div_euclid(1000) == issued_at => ms,
        Some(ms) => ms.min(start),
        None => start,
    }
}

/// A verified, normalised identity.
#[derive(Debug, Clone)]
pub struct Identity {
    pub(crate) subject: Box<str>,
    pub(crate) email: Box<str>,
    domain_start: usize,
    pub(crate) groups: Box<[Box<str>]>,
    pub(crate) claims: Box<[(Box<str>, ClaimValue)]>,
    pub(crate) credential: CredentialKind,
    pub(crate) session_id: Option<SessionId>,
    pub(crate) token_id: Option<TokenId>,
    pub(crate) issued_at_ms: i64,
    pub(crate) auth_time: i64,
    pub(crate) session_started_at: i64,
    pub(crate) expires_at: Option<i64>,
    pub(crate) signing_key: Option<Box<str>>,
}

impl Identity {
    /// Normalises the parts: lowercases the email, sorts and de-duplicates
    /// groups. A missing credential kind counts as `bearer`.
    pub fn new(parts: IdentityParts) -> Self {
        let email = parts.email.to_ascii_lowercase();
        let domain_start = email.rfind('@').map_or(email.len(), |at| at + 1);
        let mut groups: Vec<Box<str>> = parts.groups.into_iter().map(String::into_boxed_str).collect();
        groups.sort_unstable();
        groups.dedup();
        Self {
            subject: parts.subject.into(),
            email: email.into(),
            domain_start,
            groups: groups.into(),
            claims: parts.claims.into_iter().map(|(k, v)| (k.into_boxed_str(), v)).collect(),
            credential: parts.credential.unwrap_or(CredentialKind::Bearer),
            session_id: parts.session_id,
            token_id: parts.token_id,
            issued_at_ms: issued_at_ms(parts.issued_at, parts.issued_at_ms),
            auth_time: parts.auth_time,
            session_started_at: parts.session_started_at,
            expires_at: None,
            signing_key: parts.signing_key.map(String::into_boxed_str),
        }
    }

    /// The same identity, valid until `expires_at` (Unix seconds: the
    /// presented token's `exp`, or a session's end); `None` for no limit.
    /// Admission deadlines ([`crate::holds_until`]) end there.
    #[must_use]
    pub fn with_expires_at(mut self, expires_at: Option<i64>) -> Self {
        self.expires_at = expires_at;
        self
    }

    /// The same identity with other groups (sorted and de-duplicated here):
    /// how the evaluator judges a token whose groups a
    /// [`crate::snapshot::GroupsOverride`] replaced.
    #[must_use]
    pub fn with_groups(&self, groups: &[String]) -> Self {
        let mut replaced: Vec<Box<str>> = groups.iter().map(|g| Box::from(g.as_str())).collect();
        replaced.sort_unstable();
        replaced.dedup();
        Self {
            subject: self.subject.clone(),
            email: self.email.clone(),
            domain_start: self.domain_start,
            groups: replaced.into(),
            claims: self.claims.clone(),
            credential: self.credential,
            session_id: self.session_id,
            token_id: self.token_id.clone(),
            issued_at_ms: self.issued_at_ms,
            auth_time: self.auth_time,
            session_started_at: self.session_started_at,
            expires_at: self.expires_at,
            signing_key: self.signing_key.clone(),
        }
    }

    /// When the credential stops being valid (Unix seconds), if it says.
    pub fn expires_at(&self) -> Option<i64> {
        self.expires_at
    }

    /// When the presented token was issued, Unix milliseconds: what a
    /// terminate-all (`revoked_before_ms`) is compared with.
    pub fn issued_at_ms(&self) -> i64 {
        self.issued_at_ms
    }

    /// The IdP subject.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The lowercased email.
    pub fn email(&self) -> &str {
        &self.email
    }

    /// The email's domain (after the last `@`), empty if there is none.
    pub fn email_domain(&self) -> &str {
        &self.email[self.domain_start..]
    }

    /// Sorted group names.
    pub fn groups(&self) -> &[Box<str>] {
        &self.groups
    }

    /// True when the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.binary_search_by(|g| (**g).cmp(group)).is_ok()
    }

    /// The credential kind.
    pub fn credential(&self) -> CredentialKind {
        self.credential
    }

    /// The control plane's key that signed the token, if it signed it.
    pub fn signing_key(&self) -> Option<&str> {
        self.signing_key.as_deref()
    }

    /// The Portcullis session id, if any.
    pub fn session_id(&self) -> Option<SessionId> {
        self.session_id
    }

    /// A claim the identity carries, by name.
    pub fn claim(&self, name: &str) -> Option<&ClaimValue> {
        self.claims.iter().find(|(k, _)| **k == *name).map(|(_, v)| v)
    }
}

/// What is being reached.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// An HTTP request. `host` is lowercase without a port; `path` is the
    /// canonical path ([`crate::request_target::canonicalize`]; without its
    /// `;` parameters on routes that allow them), with no query string.
    /// Routes with `case_insensitive_paths` lowercase it themselves.
    Http {
        /// Request host.
        host: &'a str,
        /// Request path.
        path: &'a str,
        /// Request method, e.g. `GET`.
        method: &'a str,
    },
    /// A TCP flow opened with `CONNECT name:port`.
    Tcp {
        /// The CONNECT target, e.g. `ssh.internal:22`.
        name: &'a str,
    },
}

/// The facts one decision is made on.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// What is being reached.
    pub target: Target<'a>,
    /// The client's address (after trusted-proxy handling).
    pub source_ip: IpAddr,
    /// The time of the request, Unix seconds.
    pub now: i64,
    /// The verified identity, or `None` for an anonymous request.
    pub identity: Option<&'a Identity>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_normalised() {
        let identity = Identity::new(IdentityParts {
            email: "Bob@Corp.Example".into(),
            groups: vec!["dev".into(), "admins".into(), "dev".into()],
            ..Default::default()
        });
        assert_eq!(identity.email(), "bob@corp.example");
        assert_eq!(identity.email_domain(), "corp.example");
        assert_eq!(identity.groups().len(), 2);
        assert!(identity.in_group("admins") && identity.in_group("dev") && !identity.in_group("sre"));
    }
}
