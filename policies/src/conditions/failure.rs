//! Which condition of a block a request fails, in words, for `policy
//! explain`: "`groups_any` [admins] — the user is in [eng]". The checks
//! mirror [`Conditions::matches`] one for one, in the same order; the edge
//! never calls this (it allocates), and a test holds the two together.

use super::{contains_sorted, ClaimOp, ClaimTest, Conditions, RequestFacts, METHODS};
use crate::duration::format_seconds;
use crate::facts::{ClaimValue, CredentialKind, Identity};

impl Conditions {
    /// The first condition of the block that `request` fails, described, or
    /// `None` when every condition holds (exactly when [`Self::matches`]).
    pub(crate) fn first_failure(&self, request: &RequestFacts<'_>) -> Option<String> {
        let facts = request.facts;
        if self.methods != 0 && self.methods & request.method == 0 {
            let method = METHODS.iter().enumerate().find(|(i, _)| request.method & (1 << i) != 0);
            let method = method.map_or("another method", |(_, m)| *m);
            return Some(format!("`methods` {} — the request is {method}", list(method_names(self.methods))));
        }
        if !self.paths.is_empty() && !request.path.is_some_and(|p| self.paths.iter().any(|g| g.matches(p))) {
            let path =
                request.path.map_or_else(|| "a TCP flow, which has no path".to_owned(), |p| format!("the path is {p}"));
            return Some(format!("`paths` {} — {path}", list(self.paths.iter().map(|g| g.as_str()))));
        }
        if !self.source_ips.is_empty() && !self.source_ips.iter().any(|net| net.contains(&facts.source_ip)) {
            let nets = self.source_ips.iter().map(ToString::to_string).collect::<Vec<_>>();
            return Some(format!("`source_ip` {} — the client is {}", list(nets.iter()), facts.source_ip));
        }
        if let Some(window) = self.time.as_ref().filter(|w| !w.contains(facts.now)) {
            return Some(format!("`time` {} — it is {} there", window.describe(), window.local_time(facts.now)));
        }
        if !self.tests_identity() {
            return None;
        }
        let Some(id) = facts.identity else {
            return Some("the rule tests who the caller is — no login was presented".to_owned());
        };
        self.identity_failure(id, facts.now)
    }

    fn identity_failure(&self, id: &Identity, now: i64) -> Option<String> {
        if !self.emails.is_empty() && !contains_sorted(&self.emails, &id.email) {
            return Some(format!("`email` {} — the user is {}", list(self.emails.iter()), id.email));
        }
        if !self.email_domains.is_empty() && !contains_sorted(&self.email_domains, id.email_domain()) {
            let domain = id.email_domain();
            return Some(format!("`email_domain` {} — the user's domain is {domain}", list(self.email_domains.iter())));
        }
        if !self.groups_any.is_empty() && !self.groups_any.iter().any(|g| id.in_group(g)) {
            return Some(format!("`groups_any` {} — {}", list(self.groups_any.iter()), groups_of(id)));
        }
        let missing: Vec<&str> = self.groups_all.iter().filter(|g| !id.in_group(g)).map(|g| &**g).collect();
        if !missing.is_empty() {
            return Some(format!(
                "`groups_all` {} — the user is not in {}",
                list(self.groups_all.iter()),
                list(missing.iter())
            ));
        }
        if let Some(claim) = self.claims.iter().find(|c| !c.holds(id)) {
            return Some(claim_failure(claim, id));
        }
        if self.credentials != 0 && self.credentials & id.credential.bit() == 0 {
            let names = [CredentialKind::Browser, CredentialKind::Bearer, CredentialKind::Service]
                .into_iter()
                .filter(|k| self.credentials & k.bit() != 0)
                .map(CredentialKind::as_str);
            return Some(format!("`credential` {} — the caller used {}", list(names), id.credential.as_str()));
        }
        if let Some(max) = self.max_session_age.filter(|max| now - id.session_started_at > i64::from(*max)) {
            return Some(format!(
                "`max_session_age` {} — the session started {} ago",
                format_seconds(max),
                ago(now - id.session_started_at)
            ));
        }
        if let Some(max) = self.logged_in_within.filter(|max| now - id.auth_time > i64::from(*max)) {
            return Some(format!(
                "`logged_in_within` {} — the user logged in {} ago",
                format_seconds(max),
                ago(now - id.auth_time)
            ));
        }
        None
    }
}

fn claim_failure(claim: &ClaimTest, id: &Identity) -> String {
    let test = match claim.op {
        ClaimOp::Equals => format!("`claims` {} equals `{}`", claim.name, claim.value),
        ClaimOp::Contains => format!("`claims` {} contains `{}`", claim.name, claim.value),
    };
    let found = match id.claim(&claim.name) {
        None => "the token has no such claim".to_owned(),
        Some(ClaimValue::One(value)) => format!("the claim is `{value}`"),
        Some(ClaimValue::Many(values)) => format!("the claim is the list {}", list(values.iter())),
    };
    format!("{test} — {found}")
}

fn groups_of(id: &Identity) -> String {
    match id.groups() {
        [] => "the user is in no group".to_owned(),
        groups => format!("the user is in {}", list(groups.iter())),
    }
}

fn method_names(bits: u16) -> impl Iterator<Item = &'static str> {
    METHODS.iter().enumerate().filter(move |(i, _)| bits & (1 << i) != 0).map(|(_, m)| *m)
}

/// `[a, b, c]`.
fn list<T: AsRef<str>>(items: impl IntoIterator<Item = T>) -> String {
    let mut text = String::from("[");
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        text.push_str(item.as_ref());
    }
    text.push(']');
    text
}

/// A non-negative age in seconds as `2h5m`, `40s`.
fn ago(seconds: i64) -> String {
    format_seconds(u32::try_from(seconds.max(0)).unwrap_or(u32::MAX))
}
