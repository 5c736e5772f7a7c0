//! The reference of a denial: what the end user is shown instead of the
//! policy's reason, and what an admin searches the audit log for.
//!
//! 60 random bits, written as 12 Crockford base32 characters in three
//! groups (`K7Q2-M9XD-4RTA`): easy to read aloud or type from a
//! screenshot (no `I`, `L`, `O` or `U`; any case; `O` is read as `0`, `I`
//! and `L` as `1`), and too many to enumerate. The edge draws one per
//! denial it reports one by one, and one per summed burst, which every
//! denial of the burst shows (`proxy/src/activity/denials.rs`); the report
//! carries it (`ActivityEvent::Denied::reference`), and the control plane
//! writes it into the audit row's reason as ` (ref K7Q2-M9XD-4RTA)`
//! ([`DenialReference::audit_text`]), where the audit log's `reference`
//! filter looks for it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Crockford's base32 alphabet.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters in a reference (5 bits each).
const CHARS: usize = 12;
/// The bits a reference keeps.
const MASK: u64 = (1 << (5 * CHARS)) - 1;

/// A denial's reference (60 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DenialReference(u64);

/// Text that is not a denial reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a denial reference: expected 12 letters and digits such as K7Q2-M9XD-4RTA")]
pub struct InvalidDenialReference;

impl DenialReference {
    /// The reference made of the low 60 bits of `random` (the edge passes a
    /// fresh random number).
    pub fn from_random(random: u64) -> Self {
        Self(random & MASK)
    }

    /// The 12 characters without the dashes.
    fn chars(self) -> [u8; CHARS] {
        let mut out = [0u8; CHARS];
        for (i, c) in out.iter_mut().enumerate() {
            let shift = 5 * (CHARS - 1 - i);
            *c = ALPHABET[((self.0 >> shift) & 31) as usize];
        }
        out
    }

    /// How the audit row's reason carries it: ` (ref K7Q2-M9XD-4RTA)`.
    pub fn audit_text(self) -> String {
        format!(" (ref {self})")
    }
}

impl fmt::Display for DenialReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chars = self.chars();
        for (i, group) in chars.chunks(4).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            // The alphabet is ASCII.
            f.write_str(std::str::from_utf8(group).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl FromStr for DenialReference {
    type Err = InvalidDenialReference;

    /// Reads a reference as a person may type it: any case, with or
    /// without dashes or spaces, `O` for `0` and `I` or `L` for `1`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut value = 0u64;
        let mut count = 0;
        for c in text.trim().chars() {
            let digit = match c.to_ascii_uppercase() {
                '-' | ' ' => continue,
                'O' => 0,
                'I' | 'L' => 1,
                c => ALPHABET.iter().position(|&a| char::from(a) == c).ok_or(InvalidDenialReference)? as u64,
            };
            count += 1;
            if count > CHARS {
                return Err(InvalidDenialReference);
            }
            value = value << 5 | digit;
        }
        if count == CHARS {
            Ok(Self(value))
        } else {
            Err(InvalidDenialReference)
        }
    }
}

impl Serialize for DenialReference {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DenialReference {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_reads_back_as_written_and_as_typed() {
        for random in [0, 1, u64::MAX, 0x0123_4567_89ab_cdef, 0xdead_beef] {
            let reference = DenialReference::from_random(random);
            let text = reference.to_string();
            assert_eq!(text.len(), 14, "{text}");
            assert_eq!(text.parse(), Ok(reference), "{text}");
            assert_eq!(text.to_ascii_lowercase().replace('-', " ").parse(), Ok(reference), "{text}");
        }
        assert_eq!(DenialReference::from_random(0).to_string(), "0000-0000-0000");
        assert_eq!(DenialReference::from_random(u64::MAX).to_string(), "ZZZZ-ZZZZ-ZZZZ");
        let typed: DenialReference = "oooo-iiii-llll".parse().expect("confusable letters");
        assert_eq!(typed.to_string(), "0000-1111-1111");
    }

    #[test]
    fn anything_else_is_not_a_reference() {
        for text in ["", "K7Q2-M9XD", "K7Q2-M9XD-4RTA-0", "K7Q2-M9XD-4RTU", "ref K7Q2-M9XD-4RTA", "%"] {
            assert_eq!(text.parse::<DenialReference>(), Err(InvalidDenialReference), "{text:?}");
        }
    }

    #[test]
    fn on_the_wire_it_is_its_text() {
        let reference = DenialReference::from_random(0x0123_4567_89ab_cdef);
        let json = serde_json::to_string(&reference).expect("json");
        assert_eq!(json, format!("\"{reference}\""));
        assert_eq!(serde_json::from_str::<DenialReference>(&json).expect("back"), reference);
        assert!(serde_json::from_str::<DenialReference>("\"nope\"").is_err());
    }
}
