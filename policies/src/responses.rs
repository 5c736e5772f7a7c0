//! Automated response rules: the `responses:` section of the policy
//! document. Each rule names a trigger — repeated denials of one session,
//! a signal from a security tool, a session used from an address outside
//! the allowed networks — and what to do: end the session, end every
//! session of the user, lock the user, or demand a new sign-in. A rule in
//! `dry_run` only audits what it would have done. The control plane
//! evaluates them (it sees denials, signals and addresses); edges ignore
//! the section. Pure: matching is tested here, counting lives with the
//! control plane's store.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::error::Location;

/// One response rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseRule {
    /// Its name (unique in the document), named in the audit log.
    pub name: Arc<str>,
    /// Where it is written.
    pub at: Location,
    /// What sets it off.
    pub when: Trigger,
    /// What it does.
    pub then: ResponseAction,
    /// Only audit what it would do.
    pub dry_run: bool,
}

/// What sets a response rule off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// At least `at_least` denials of one session within `within_s` seconds.
    Denials {
        /// How many.
        at_least: u32,
        /// Within how long, seconds.
        within_s: u32,
    },
    /// A signal (API or Shared Signals) of one of `types` (any, when
    /// empty) with one of `risk_levels` (any, when empty).
    Signal {
        /// Signal types (`edr.malware`, `risk-level-change`, …).
        types: Vec<String>,
        /// Risk levels (`low`, `medium`, `high`), lowercase.
        risk_levels: Vec<String>,
    },
    /// A session used from an address outside these networks.
    SourceOutside(Vec<IpNet>),
}

/// What a response rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseAction {
    /// End the session (the next login must be a new sign-in at the IdP).
    TerminateSession,
    /// End every session of the user.
    TerminateUser,
    /// Lock the user.
    Lock,
    /// End the session and demand a new sign-in (today the same as
    /// `terminate_session`, named for intent).
    RequireReauth,
}

impl ResponseAction {
    /// Every name, for error messages.
    pub const NAMES: &'static str = "terminate_session, terminate_user, lock, require_reauth";

    /// Parses a name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "terminate_session" => Self::TerminateSession,
            "terminate_user" => Self::TerminateUser,
            "lock" => Self::Lock,
            "require_reauth" => Self::RequireReauth,
            _ => return None,
        })
    }

    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TerminateSession => "terminate_session",
            Self::TerminateUser => "terminate_user",
            Self::Lock => "lock",
            Self::RequireReauth => "require_reauth",
        }
    }
}

impl Trigger {
    /// Whether a signal of `kind` at `risk_level` sets this trigger off.
    pub fn matches_signal(&self, kind: &str, risk_level: Option<&str>) -> bool {
        let Self::Signal { types, risk_levels } = self else { return false };
        let type_ok = types.is_empty() || types.iter().any(|t| t == kind);
        let risk_ok = risk_levels.is_empty()
            || risk_level.is_some_and(|level| risk_levels.iter().any(|r| r.eq_ignore_ascii_case(level)));
        type_ok && risk_ok
    }

    /// Whether a session seen from `address` sets this trigger off.
    pub fn matches_address(&self, address: IpAddr) -> bool {
        let Self::SourceOutside(allowed) = self else { return false };
        !allowed.iter().any(|net| net.contains(&address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_match_by_type_and_risk() {
        let high = Trigger::Signal { types: vec![], risk_levels: vec!["high".into()] };
        assert!(high.matches_signal("edr.malware", Some("HIGH")));
        assert!(!high.matches_signal("edr.malware", Some("low")));
        assert!(!high.matches_signal("edr.malware", None));
        let typed = Trigger::Signal { types: vec!["edr.malware".into()], risk_levels: vec![] };
        assert!(typed.matches_signal("edr.malware", None));
        assert!(!typed.matches_signal("siem.alert", Some("high")));
        assert!(!Trigger::Denials { at_least: 1, within_s: 1 }.matches_signal("x", None));
    }

    #[test]
    fn a_document_compiles_its_responses() {
        let text = "version: 1\nroutes: []\nresponses:\n  - name: brute-force\n    when: { denials: { at_least: 5, within: 10m } }\n    then: terminate_session\n  - name: risky\n    when: { signal: { type: [edr.malware], risk_level: high } }\n    then: lock\n    dry_run: true\n  - name: office\n    when: { source_outside: [10.0.0.0/8] }\n    then: require_reauth\n";
        let policy = crate::Policy::compile(crate::PolicySource { name: "p".into(), text: text.into() }).unwrap();
        let rules = policy.responses();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0].when, Trigger::Denials { at_least: 5, within_s: 600 });
        assert_eq!((rules[0].then, rules[0].dry_run), (ResponseAction::TerminateSession, false));
        assert_eq!(
            rules[1].when,
            Trigger::Signal { types: vec!["edr.malware".into()], risk_levels: vec!["high".into()] }
        );
        assert!(rules[1].dry_run);
        assert_eq!(rules[2].then, ResponseAction::RequireReauth);
        assert_eq!(rules[2].at.line, 11);
    }

    #[test]
    fn addresses_outside_the_allowed_networks_match() {
        let trigger = Trigger::SourceOutside(vec!["10.0.0.0/8".parse().unwrap(), "2001:db8::/32".parse().unwrap()]);
        assert!(!trigger.matches_address("10.1.2.3".parse().unwrap()));
        assert!(!trigger.matches_address("2001:db8::1".parse().unwrap()));
        assert!(trigger.matches_address("203.0.113.9".parse().unwrap()));
    }
}
