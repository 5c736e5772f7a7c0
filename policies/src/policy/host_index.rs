//! Finds the route for a request without scanning every route: exact hosts
//! and wildcard suffixes are hash lookups (one per label of the request
//! host), then the longest matching path prefix among that host's few routes.
//! Routes with `case_insensitive_paths` (whose prefixes are lower case)
//! match their prefix without regard to ASCII case.

use std::collections::HashMap;

use foldhash::fast::FixedState;

use super::{Route, RouteTarget};

/// Routes of one host, longest path prefix first: (prefix, route, case-insensitive).
type PrefixList = Vec<(Box<str>, usize, bool)>;

/// Host → route lookup tables.
#[derive(Debug, Default)]
pub struct HostIndex {
    exact: HashMap<Box<str>, PrefixList, FixedState>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<Box<str>, PrefixList, FixedState>,
    tcp: HashMap<Box<str>, usize, FixedState>,
}

impl HostIndex {
    /// Indexes `routes` by host, wildcard suffix and TCP name.
    pub(crate) fn build(routes: &[Route]) -> Self {
        let mut index = Self::default();
        for (i, route) in routes.iter().enumerate() {
            match &route.target {
                RouteTarget::Http { host, path_prefix, .. } => {
                    let prefix: Box<str> = path_prefix.clone().unwrap_or_else(|| "/".into());
                    let table = match host.strip_prefix("*.") {
                        Some(suffix) => index.wildcard.entry(suffix.into()),
                        None => index.exact.entry(host.clone()),
                    };
                    table.or_default().push((prefix, i, route.options.case_insensitive_paths));
                }
                RouteTarget::Tcp { name, .. } => {
                    index.tcp.insert(name.clone(), i);
                }
            }
        }
        for list in index.exact.values_mut().chain(index.wildcard.values_mut()) {
            list.sort_by_key(|(prefix, _, _)| std::cmp::Reverse(prefix.len()));
        }
        index
    }

    /// The route index for an HTTP request: an exact host beats a wildcard,
    /// a longer wildcard suffix beats a shorter one, and within a host the
    /// longest path prefix wins.
    pub(crate) fn http_route(&self, host: &str, path: &str) -> Option<usize> {
        if let Some(found) = self.exact.get(host).and_then(|list| longest_prefix(list, path)) {
            return Some(found);
        }
        let mut rest = host;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if let Some(found) = self.wildcard.get(rest).and_then(|list| longest_prefix(list, path)) {
                return Some(found);
            }
        }
        None
    }

    /// The route index for a CONNECT target.
    pub(crate) fn tcp_route(&self, name: &str) -> Option<usize> {
        self.tcp.get(name).copied()
    }
}

fn longest_prefix(list: &PrefixList, path: &str) -> Option<usize> {
    list.iter().find(|(prefix, _, any_case)| path_has_prefix(path, prefix, *any_case)).map(|(_, i, _)| *i)
}

/// `/api` covers `/api` and `/api/…` but not `/apix`; with `any_case`, also `/API/…`.
pub(crate) fn path_has_prefix(path: &str, prefix: &str, any_case: bool) -> bool {
    let rest = match path.get(..prefix.len()) {
        Some(head) if head == prefix || (any_case && head.eq_ignore_ascii_case(prefix)) => &path[prefix.len()..],
        _ => return false,
    };
    prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_respect_segment_boundaries() {
        assert!(path_has_prefix("/api", "/api", false));
        assert!(path_has_prefix("/api/x", "/api", false));
        assert!(!path_has_prefix("/apix", "/api", false));
        assert!(path_has_prefix("/anything", "/", false));
        assert!(path_has_prefix("/api/x", "/api/", false));
        assert!(!path_has_prefix("/API/x", "/api", false));
        assert!(path_has_prefix("/API/x", "/api", true));
        assert!(!path_has_prefix("/APIx", "/api", true));
        assert!(!path_has_prefix("/\u{e9}", "/a", true), "a prefix ending inside a character does not match");
    }
}
