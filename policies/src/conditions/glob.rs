//! Path globs for rules: `*` and `?` match within one path segment, a whole
//! segment `**` matches any number of segments (including none). Matching
//! does not allocate and runs in time linear in the path for each `**`.

use std::fmt;

/// A compiled path glob such as `/api/*/reports/**`.
#[derive(Clone, PartialEq, Eq)]
pub struct PathGlob {
    source: Box<str>,
    segments: Box<[Segment]>,
}

#[derive(Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    Wild(Box<str>),
    AnyDepth,
}

impl PathGlob {
    /// Compiles a glob; it must start with `/`, and `**` must be a whole segment.
    pub fn new(pattern: &str) -> Result<Self, String> {
        let rest =
            pattern.strip_prefix('/').ok_or_else(|| format!("a path glob starts with `/`, found `{pattern}`"))?;
        let segments = rest
            .split('/')
            .map(|segment| match segment {
                "**" => Ok(Segment::AnyDepth),
                s if s.contains("**") => Err(format!("`**` must be a whole path segment in `{pattern}`")),
                s if s.contains(['*', '?']) => Ok(Segment::Wild(s.into())),
                s => Ok(Segment::Literal(s.into())),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { source: pattern.into(), segments })
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The first path segment when it is literal (`/reports/*` → `reports`):
    /// every matching path starts with it.
    pub(crate) fn literal_first_segment(&self) -> Option<&str> {
        match self.segments.first() {
            Some(Segment::Literal(segment)) if self.segments.len() > 1 || !segment.is_empty() => Some(segment),
            _ => None,
        }
    }

    /// True when `path` (starting with `/`, no query string) matches.
    pub fn matches(&self, path: &str) -> bool {
        let Some(path) = path.strip_prefix('/') else {
            return false;
        };
        let pattern = &self.segments;
        let (mut p, mut s) = (0usize, 0usize); // pattern index, byte offset of the current path segment
        let mut backtrack: Option<(usize, usize)> = None;
        loop {
            if s > path.len() {
                return pattern[p..].iter().all(|seg| *seg == Segment::AnyDepth);
            }
            let end = path[s..].find('/').map_or(path.len(), |i| s + i);
            if let Some(seg) = pattern.get(p) {
                let step = match seg {
                    Segment::AnyDepth => {
                        backtrack = Some((p + 1, s));
                        p += 1;
                        continue;
                    }
                    Segment::Literal(lit) => **lit == path[s..end],
                    Segment::Wild(glob) => wildcard_match(glob.as_bytes(), &path.as_bytes()[s..end]),
                };
                if step {
                    p += 1;
                    s = end + 1;
                    continue;
                }
            }
            // Let the last `**` absorb one more segment and retry after it.
            let Some((after, from)) = backtrack else {
                return false;
            };
            let absorbed = path[from..].find('/').map_or(path.len(), |i| from + i) + 1;
            backtrack = Some((after, absorbed));
            p = after;
            s = absorbed;
        }
    }
}

/// Classic single-star wildcard matching within one segment.
fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

impl fmt::Debug for PathGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PathGlob({})", self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, path: &str) -> bool {
        PathGlob::new(pattern).unwrap().matches(path)
    }

    #[test]
    fn literal_and_single_segment_wildcards() {
        assert!(matches("/healthz", "/healthz"));
        assert!(!matches("/healthz", "/healthz/x"));
        assert!(matches("/api/*/reports", "/api/v1/reports"));
        assert!(!matches("/api/*/reports", "/api/v1/x/reports"));
        assert!(matches("/files/*.pdf", "/files/a.pdf"));
        assert!(!matches("/files/*.pdf", "/files/a.pdf.exe"));
        assert!(matches("/v?/x", "/v2/x"));
    }

    #[test]
    fn double_star_spans_segments() {
        assert!(matches("/admin/**", "/admin"));
        assert!(matches("/admin/**", "/admin/"));
        assert!(matches("/admin/**", "/admin/a/b/c"));
        assert!(!matches("/admin/**", "/administrator"));
        assert!(matches("/**/secret", "/a/b/secret"));
        assert!(matches("/**/secret", "/secret"));
        assert!(matches("/a/**/b/**/c", "/a/x/b/y/z/c"));
        assert!(!matches("/a/**/b/**/c", "/a/x/c"));
        assert!(matches("/**", "/"));
    }

    #[test]
    fn malformed_globs_are_rejected() {
        assert!(PathGlob::new("admin/*").is_err());
        assert!(PathGlob::new("/a**b").is_err());
    }
}
