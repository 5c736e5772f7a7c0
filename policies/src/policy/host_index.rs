//! Finds the route for a request without scanning every route: exact hosts
//! and wildcard suffixes are hash lookups (one per label of the request
//! host), then the longest matching path prefix among that host's few routes.

use std::collections::HashMap;

use foldhash::fast::FixedState;

use super::{Route, RouteTarget};

/// Routes of one host, longest path prefix first.
type PrefixList = Vec<(Box<str>, usize)>;

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
                    table.or_default().push((prefix, i));
                }
                RouteTarget::Tcp { name, .. } => {
                    index.tcp.insert(name.clone(), i);
                }
            }
        }
        for list in index.exact.values_mut().chain(index.wildcard.values_mut()) {
            list.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
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
    list.iter().find(|(prefix, _)| path_has_prefix(path, prefix)).map(|(_, i)| *i)
}

/// `/api` covers `/api` and `/api/…` but not `/apix`.
pub(crate) fn path_has_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_respect_segment_boundaries() {
        assert!(path_has_prefix("/api", "/api"));
        assert!(path_has_prefix("/api/x", "/api"));
        assert!(!path_has_prefix("/apix", "/api"));
        assert!(path_has_prefix("/anything", "/"));
        assert!(path_has_prefix("/api/x", "/api/"));
    }
}
