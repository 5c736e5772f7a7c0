//! Assertions on one request the upstream received: the edge's identity
//! headers and nothing that looks like them, headers that must be absent,
//! and no edge cookie or Portcullis credential.

use serde_json::Value;

use crate::recording_upstream::Recorded;

/// The identity headers the edge sets.
pub const OWN: [&str; 5] = [
    "x-portcullis-user",
    "x-portcullis-email",
    "x-portcullis-groups",
    "x-portcullis-session",
    "x-portcullis-assertion",
];

/// A header name lowercased with `_` read as `-` (as CGI/WSGI servers fold them).
pub fn folded(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// The request carries exactly the edge's identity for `subject` in `groups`
/// (in any order),
/// each header once and spelled as the edge spells it, and no look-alike.
pub fn identity(seen: &Recorded, subject: &str, groups: &[&str]) -> Result<(), String> {
    for (name, _) in &seen.headers {
        let folded = folded(name);
        if folded.starts_with("x-portcullis-") && (!OWN.contains(&folded.as_str()) || name.contains('_')) {
            return Err(format!("a client look-alike header reached the upstream: {name}"));
        }
    }
    for name in ["x-portcullis-user", "x-portcullis-groups"] {
        let count = seen.headers.iter().filter(|(n, _)| folded(n) == name).count();
        if count != 1 {
            return Err(format!("{name} arrived {count} times: {}", seen.describe()));
        }
    }
    let user = seen.header("x-portcullis-user").unwrap_or("");
    if user != subject {
        return Err(format!("x-portcullis-user is {user:?}, expected {subject:?}"));
    }
    let raw = seen.header("x-portcullis-groups").unwrap_or("");
    if !raw.is_ascii() {
        return Err(format!("x-portcullis-groups is not ASCII: {raw:?}"));
    }
    let parsed: Result<Vec<String>, _> = serde_json::from_str::<Value>(raw)
        .map_err(|e| e.to_string())
        .and_then(|v| serde_json::from_value::<Vec<String>>(v).map_err(|e| e.to_string()));
    let mut expected: Vec<&str> = groups.to_vec();
    expected.sort_unstable();
    match parsed {
        Ok(mut list) => {
            list.sort();
            if list == expected {
                Ok(())
            } else {
                Err(format!("x-portcullis-groups is {list:?}, expected {groups:?}"))
            }
        }
        Err(e) => Err(format!("x-portcullis-groups {raw:?} is not a JSON array of strings ({e})")),
    }
}

/// None of `names` arrived.
pub fn absent(seen: &Recorded, names: &[&str]) -> Result<(), String> {
    let found: Vec<String> = seen
        .headers
        .iter()
        .filter(|(n, _)| names.iter().any(|x| n.eq_ignore_ascii_case(x)))
        .map(|(n, v)| format!("{n}: {v}"))
        .collect();
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!("these must not reach the upstream: {}", found.join(" | ")))
    }
}

/// True for a cookie name the edge owns (base `portcullis_session`).
pub fn is_edge_cookie(name: &str) -> bool {
    let bare = name.strip_prefix("__Host-").or_else(|| name.strip_prefix("__Secure-")).unwrap_or(name);
    bare == "portcullis_session" || bare.starts_with("portcullis_session.") || bare.starts_with("portcullis_session_")
}

/// No edge cookie, and no Portcullis token anywhere in the request.
pub fn no_credentials(seen: &Recorded, tokens: &[&str]) -> Result<(), String> {
    for cookie in seen.cookies() {
        let name = cookie.split('=').next().unwrap_or("");
        if is_edge_cookie(name) {
            return Err(format!("the edge's cookie reached the upstream: {name}"));
        }
    }
    for (name, value) in &seen.headers {
        if let Some(token) = tokens.iter().find(|t| !t.is_empty() && value.contains(**t)) {
            let start: String = token.chars().take(12).collect();
            return Err(format!("a credential ({start}…) reached the upstream in {name}"));
        }
    }
    Ok(())
}

/// Runs every check, keeping the first failure.
pub fn all(checks: impl IntoIterator<Item = Result<(), String>>) -> Result<(), String> {
    checks.into_iter().collect::<Result<Vec<()>, String>>().map(|_| ())
}
