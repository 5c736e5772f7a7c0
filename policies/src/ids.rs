//! Identifiers that travel in snapshots: session ids minted by the control
//! plane, token ids (JWT `jti` or service-token ids) and user references.
//!
//! A [`SessionId`] is 128 random bits, shown as 32 lowercase hex digits. It is
//! stored as bytes so that a million terminated sessions stay small.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A Portcullis session id: 128 bits minted by the control plane.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; 16]);

/// A session id that is not 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid session id: expected 32 hexadecimal digits")]
pub struct InvalidSessionId;

impl SessionId {
    /// Wraps raw bytes (the control plane fills them from a CSPRNG).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl FromStr for SessionId {
    type Err = InvalidSessionId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits = text.as_bytes();
        if digits.len() != 32 {
            return Err(InvalidSessionId);
        }
        let mut bytes = [0u8; 16];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            *byte = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        Ok(Self(bytes))
    }
}

fn hex_value(digit: u8) -> Result<u8, InvalidSessionId> {
    match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        b'A'..=b'F' => Ok(digit - b'A' + 10),
        _ => Err(InvalidSessionId),
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

impl Serialize for SessionId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 16]>::deserialize(deserializer).map(Self)
        }
    }
}

/// The id of a revocable token: a JWT `jti` or a service-token id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenId(Arc<str>);

impl TokenId {
    /// Wraps a token id as issued.
    pub fn new(id: &str) -> Self {
        Self(Arc::from(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for TokenId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenId({:?})", &*self.0)
    }
}

/// Names a user for locks and terminate-all: by the IdP subject, or by email
/// (an admin may lock an email that has not logged in yet). Emails are stored
/// lowercased.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum UserRef {
    /// The IdP `sub` claim.
    Subject(Arc<str>),
    /// The user's email address, lowercased.
    Email(Arc<str>),
}

impl UserRef {
    /// A reference by subject.
    pub fn subject(sub: &str) -> Self {
        Self::Subject(Arc::from(sub))
    }

    /// A reference by email; the address is lowercased.
    pub fn email(email: &str) -> Self {
        Self::Email(Arc::from(email.to_ascii_lowercase()))
    }
}

impl fmt::Debug for UserRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for UserRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Subject(sub) => write!(f, "sub:{sub}"),
            Self::Email(email) => write!(f, "email:{email}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_round_trips_through_hex() {
        let id = SessionId::from_bytes([0xab; 16]);
        assert_eq!(id.to_string(), "ab".repeat(16));
        assert_eq!(id.to_string().parse::<SessionId>(), Ok(id));
        assert_eq!("AB".repeat(16).parse::<SessionId>(), Ok(id));
    }

    #[test]
    fn malformed_session_ids_are_rejected() {
        for bad in ["", "abc", &"g".repeat(32), &"a".repeat(31), &"a".repeat(33), "ä".repeat(16).as_str()] {
            assert_eq!(bad.parse::<SessionId>(), Err(InvalidSessionId), "{bad:?}");
        }
    }

    #[test]
    fn email_refs_are_lowercased() {
        assert_eq!(UserRef::email("Alice@Corp.Example"), UserRef::email("alice@corp.example"));
    }
}
