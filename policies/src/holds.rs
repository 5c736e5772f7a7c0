//! Admission deadlines: how long a decision stays what it is if nothing but
//! the clock moves. The edge files every live connection (websocket, CONNECT
//! flow) under this instant and closes or re-checks it then, instead of
//! scanning all connections.
//!
//! ```text
//! evaluate(&snapshot, &facts) ─▶ Decision ─┐
//!                       holds_until(&snapshot, &facts, &decision) ─▶ Some(t) / None
//! ```
//!
//! What can change an answer with time alone: the credential's expiry, a
//! lock that lifts, a `time:` window opening or closing, and the
//! `logged_in_within` / `max_session_age` limits running out. Revocations,
//! group overrides and policy changes arrive as deltas and are handled by the
//! kill path. A group override changes which rule decides, never when: the
//! `decision` passed in was made with the overridden groups, nothing here
//! reads groups, and the override ends by a delta (`ExpireBefore`), not by
//! the clock.

use crate::evaluate::{Decision, Reason};
use crate::facts::Facts;
use crate::policy::Rule;
use crate::snapshot::{Snapshot, UserDenial};

/// The earliest Unix second after `facts.now` at which evaluating the same
/// facts could give another answer than `decision` because of time alone,
/// or `None` when only a change of snapshot can change it. Returns
/// `facts.now` itself when the identity has already expired.
///
/// Conservative: every `time:` window and session limit of the rules of the
/// decided route up to the deciding rule (all of them when no rule decided)
/// counts, whether or not that rule's other conditions hold. For a
/// [`Reason::LoginTooOld`] decision every rule of the route counts.
pub fn holds_until(snapshot: &Snapshot, facts: &Facts<'_>, decision: &Decision<'_>) -> Option<i64> {
    let now = facts.now;
    let mut earliest: Option<i64> = None;
    let mut consider = |at: Option<i64>| {
        if let Some(at) = at.filter(|&at| at > now) {
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
    };
    if let Some(identity) = facts.identity {
        if let Some(expires_at) = identity.expires_at() {
            if expires_at <= now {
                return Some(now);
            }
            consider(Some(expires_at));
        }
        if let Some(UserDenial::Locked(lock)) = snapshot.users.check(identity, now) {
            consider(lock.until);
        }
    }
    if let Some(route) = decision.route {
        // Only a rule that matched narrows the scan: the rule named by a
        // `LoginTooOld` decision did not match, and any rule may start to.
        let deciding = decision
            .rule
            .filter(|_| decision.reason == Reason::RuleMatched)
            .and_then(|rule| route.rules.iter().position(|r| std::ptr::eq(r, rule)));
        let rules: &[Rule] = match deciding {
            Some(position) => &route.rules[..=position],
            None => &route.rules,
        };
        for rule in rules {
            if facts.identity.is_none() && !rule.applies_to_anonymous() {
                continue;
            }
            for block in rule.blocks.iter() {
                consider(block.time.as_ref().and_then(|window| window.next_change_after(now)));
                if let Some(identity) = facts.identity {
                    // `now - auth_time <= limit` holds up to and including `auth_time + limit`.
                    let lapses = |since: i64, limit: Option<u32>| {
                        limit.map(|l| since.saturating_add(i64::from(l)).saturating_add(1))
                    };
                    consider(lapses(identity.auth_time, block.logged_in_within));
                    consider(lapses(identity.session_started_at, block.max_session_age));
                }
            }
        }
    }
    earliest
}

#[cfg(test)]
mod tests;
