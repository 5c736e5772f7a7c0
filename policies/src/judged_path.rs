//! The path an HTTP request is judged on, computed the way the edge's gate
//! does it, for `policy explain` (control plane and CLI) to judge exactly
//! what the edge judges:
//!
//! ```text
//! target ─canonicalize─▶ CanonicalTarget ─route on path_without_params─▶ Route
//!   `;` parameters: refused unless `allow_path_parameters`
//!   judged path: without parameters, lowercased on `case_insensitive_paths`
//! ```

use std::borrow::Cow;

use crate::policy::{Policy, Route};
use crate::request_target::{canonicalize, lowercase_path, CanonicalTarget, TargetError};

/// Why the edge answers 400 before any rule is consulted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    /// The request target has no single meaning (`bad_request_target`).
    #[error("the edge answers 400 (bad_request_target): {0}")]
    BadTarget(#[from] TargetError),
    /// `;` path parameters on a route without `allow_path_parameters` (`path_parameters`).
    #[error("the edge answers 400 (path_parameters): route `{route}` does not accept `;` parameters in the path")]
    PathParameters {
        /// The route's name.
        route: String,
    },
}

impl PathRefusal {
    /// The error code the edge renders: `bad_request_target` or `path_parameters`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadTarget(_) => "bad_request_target",
            Self::PathParameters { .. } => "path_parameters",
        }
    }
}

/// An HTTP request target as the edge routes and judges it.
#[derive(Debug, Clone)]
pub struct JudgedPath<'p> {
    /// The canonical target (see [`JudgedPath::upstream_path`] for what the
    /// upstream receives).
    pub canonical: CanonicalTarget,
    /// The route serving it, when one does.
    pub route: Option<&'p Route>,
    /// The path the route's rules judge: the canonical path without `;`
    /// parameters, lowercased on a `case_insensitive_paths` route.
    pub judged: String,
}

impl JudgedPath<'_> {
    /// The path the edge sends upstream: the canonical path with its
    /// parameters, lowercased on a `case_insensitive_paths` route.
    pub fn upstream_path(&self) -> Cow<'_, str> {
        match self.route {
            Some(route) if route.options.case_insensitive_paths => lowercase_path(&self.canonical.path),
            _ => Cow::Borrowed(&self.canonical.path),
        }
    }
}

/// Canonicalizes `target` (origin or absolute form; `host` is the request's
/// host, checked against an absolute form's authority), finds the route of
/// `host` (any case, no port) and returns the path its rules judge.
pub fn judged_path<'p>(policy: &'p Policy, host: &str, target: &str) -> Result<JudgedPath<'p>, PathRefusal> {
    let canonical = canonicalize(target, Some(host))?;
    let host = host.to_ascii_lowercase();
    let plain = canonical.path_without_params().into_owned();
    let route = policy.http_route(&host, &plain);
    let judged = match route {
        Some(route) if canonical.has_params && !route.options.allow_path_parameters => {
            return Err(PathRefusal::PathParameters { route: route.name().to_owned() })
        }
        Some(route) if route.options.case_insensitive_paths => match lowercase_path(&plain) {
            Cow::Owned(lower) => lower,
            Cow::Borrowed(_) => plain,
        },
        _ => plain,
    };
    Ok(JudgedPath { canonical, route, judged })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicySource;

    fn policy() -> Policy {
        let text = "version: 1\nroutes:\n\
            \x20 - name: root\n    host: app.example\n    upstream: http://127.0.0.1:9\n    rules:\n\
            \x20     - public: true\n        allow: {}\n\
            \x20 - name: api\n    host: app.example\n    path: /api\n    upstream: http://127.0.0.1:9\n\
            \x20   options: {allow_path_parameters: true}\n    rules:\n\
            \x20     - public: true\n        allow: {}\n\
            \x20 - name: iis\n    host: app.example\n    path: /legacy\n    upstream: http://127.0.0.1:9\n\
            \x20   options: {case_insensitive_paths: true}\n    rules:\n\
            \x20     - public: true\n        allow: {}\n";
        Policy::compile(PolicySource { name: "t".into(), text: text.into() }).unwrap_or_else(|e| panic!("{e}"))
    }

    fn judged(target: &str) -> Result<(Option<String>, String, String), PathRefusal> {
        let policy = policy();
        let j = judged_path(&policy, "App.Example", target)?;
        Ok((j.route.map(|r| r.name().to_owned()), j.judged.clone(), j.upstream_path().into_owned()))
    }

    #[test]
    fn targets_the_edge_refuses_are_refused() {
        for bad in ["/a%2fb", "/a\\b", "/%00", "/%G1", "/../x", "*", "http://other.example/x", "/x#y"] {
            assert!(matches!(judged(bad), Err(PathRefusal::BadTarget(_))), "{bad}");
        }
        // Parameters on a route without the option: the edge answers 400.
        let refused = judged("/admin;x/users").unwrap_err();
        assert_eq!(refused, PathRefusal::PathParameters { route: "root".into() });
        assert_eq!(refused.code(), "path_parameters");
        assert!(refused.to_string().starts_with("the edge answers 400"), "{refused}");
    }

    #[test]
    fn encodings_dots_and_absolute_forms_judge_the_canonical_path() {
        let expect = |route: &str, path: &str| Ok((Some(route.to_owned()), path.to_owned(), path.to_owned()));
        assert_eq!(judged("/%61pi/x"), expect("api", "/api/x"));
        assert_eq!(judged("/t/../api/./x"), expect("api", "/api/x"));
        assert_eq!(judged("//api//x?q=1"), expect("api", "/api/x"));
        assert_eq!(judged("http://app.example/%61pi/x"), expect("api", "/api/x"));
        // Parameters allowed: the rules judge the path without them.
        assert_eq!(
            judged("/api;v=1/x;jsessionid=2"),
            Ok((Some("api".into()), "/api/x".into(), "/api;v=1/x;jsessionid=2".into()))
        );
        // Case-insensitive routes judge the lowercased path.
        assert_eq!(judged("/LEGACY/Admin%c3%a9"), expect("iis", "/legacy/admin%C3%A9"));
        assert_eq!(judged("/Api/x"), expect("root", "/Api/x"));
    }
}
