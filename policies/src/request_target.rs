//! The canonical request target: the one path that routing, `path:`
//! prefixes, path globs and the upstream request all use, so that what the
//! policy judged is exactly what the upstream receives.
//!
//! ```text
//! "/t/%61dmin/./x?q=1" ──canonicalize──▶ CanonicalTarget { path: "/t/admin/x", query: Some("q=1"), .. }
//! ```
//!
//! Accepted: origin form (`/…`) and absolute form (`http(s)://authority/…`,
//! whose authority must name the same host and port as `Host`). Escapes of
//! unreserved characters (`ALPHA DIGIT - . _ ~`) are decoded, every other
//! escape is kept with upper-case hex, and the few raw characters RFC 3986
//! does not allow in a path (`"`, `<`, `>`, `[`, `]`, `^`, `` ` ``, `{`, `|`,
//! `}`, space) are escaped, so two spellings of one path give one canonical
//! text. Dot segments are resolved (RFC 3986 §5.2.4) and empty segments
//! collapsed. Refused ([`TargetError`]): anything with more than one reading
//! in common servers, namely encoded `/`, `\` raw or encoded, control bytes,
//! raw non-ASCII, invalid escapes, escapes that are not UTF-8, `..` above the
//! root, dot segments carrying `;` parameters, `#`, and other forms.
//!
//! `;` path parameters are kept and flagged ([`CanonicalTarget::has_params`]);
//! [`CanonicalTarget::path_without_params`] is the path Tomcat-like servers
//! route on. One pass over the target, one allocation for the path.

use std::borrow::Cow;

use authority::{absolute_form, same_authority};

/// The longest request target accepted, in bytes.
pub const MAX_TARGET_LEN: usize = 8192;

/// A request target in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalTarget {
    /// The canonical path: starts with `/`, no dot or empty segments, only
    /// unreserved characters, sub-delimiters, `:`, `@`, `/` and upper-case
    /// `%XX` escapes of everything else. Keeps `;` parameters.
    pub path: String,
    /// The query (without `?`) exactly as sent, when there was a `?`.
    pub query: Option<String>,
    /// The authority of an absolute-form target, lowercased (`app.example:8443`).
    pub authority: Option<String>,
    /// True when a path segment carries `;` parameters.
    pub has_params: bool,
}

/// Why a request target was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The target is empty.
    #[error("the request target is empty")]
    Empty,
    /// The target is longer than [`MAX_TARGET_LEN`].
    #[error("the request target is {len} bytes long; at most {MAX_TARGET_LEN} are accepted")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// `*` (asterisk form, for `OPTIONS *`).
    #[error("the asterisk-form request target `*` is not served")]
    AsteriskForm,
    /// `host:port` (authority form, only meaningful for CONNECT).
    #[error("an authority-form request target (`host:port`) is only valid for CONNECT")]
    AuthorityForm,
    /// Neither origin form nor an `http(s)://` absolute form.
    #[error("the request target must start with `/` or `http://` / `https://`")]
    UnsupportedForm,
    /// The absolute form's authority is empty, has user information or
    /// characters a host name cannot have.
    #[error("the authority of the absolute-form request target is not a valid `host[:port]`")]
    BadAuthority,
    /// The absolute form names another host or port than `Host`.
    #[error("the absolute-form request target names another host or port than the Host header")]
    AuthorityMismatch,
    /// `%2F`: an encoded `/`, which servers split on or not.
    #[error("the path has an encoded `/` (`%2F`) at byte {at}")]
    EncodedSlash {
        /// Byte offset in the target.
        at: usize,
    },
    /// `%3B`: an encoded `;`, a path parameter to servers that decode
    /// before they strip parameters and plain data to the others.
    #[error("the path has an encoded `;` (`%3B`) at byte {at}")]
    EncodedSemicolon {
        /// Byte offset in the target.
        at: usize,
    },
    /// `\` raw or `%5C`, which some servers read as `/`.
    #[error("the path has a backslash (raw or `%5C`) at byte {at}")]
    Backslash {
        /// Byte offset in the target.
        at: usize,
    },
    /// A control byte (below 0x20, or 0x7F), raw or encoded (`%00`, `%0A`).
    #[error("the request target has a control byte (raw or encoded, such as `%00`) at byte {at}")]
    ControlByte {
        /// Byte offset in the target.
        at: usize,
    },
    /// A raw byte of 0x80 or above (non-ASCII must be percent-encoded).
    #[error("the request target has a raw non-ASCII byte at byte {at}; it must be percent-encoded")]
    NonAscii {
        /// Byte offset in the target.
        at: usize,
    },
    /// `%` not followed by two hex digits.
    #[error("the path has an invalid percent-escape at byte {at} (`%` must be followed by two hex digits)")]
    InvalidEscape {
        /// Byte offset in the target.
        at: usize,
    },
    /// Escapes whose decoded bytes are not UTF-8.
    #[error("the path's percent-escapes at byte {at} do not decode to UTF-8")]
    NotUtf8 {
        /// Byte offset in the target.
        at: usize,
    },
    /// A `..` segment would climb above `/`.
    #[error("the path climbs above the root with `..`")]
    AboveRoot,
    /// `.` or `..` with `;` parameters (`..;x`), read as a dot segment by some servers only.
    #[error("the path has a dot segment with `;` parameters (such as `..;`) at byte {at}")]
    DotSegmentParams {
        /// Byte offset in the target.
        at: usize,
    },
    /// `#`: a fragment is never sent in a request.
    #[error("the request target has a `#` at byte {at}")]
    Fragment {
        /// Byte offset in the target.
        at: usize,
    },
}

/// What the path scanner does with a raw byte.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Unreserved, sub-delimiter (but `;`), `:` or `@`: copied.
    Keep,
    /// `;`: a path parameter starts.
    Semicolon,
    /// `/`: a segment ends.
    Slash,
    /// `%`: an escape.
    Percent,
    /// Printable but not allowed raw in a path: escaped.
    Encode,
    /// `\`.
    Backslash,
    /// Below 0x20 or 0x7F.
    Control,
    /// 0x80 and above.
    NonAscii,
    /// `#`.
    Hash,
    /// `?`: the query starts.
    Question,
}

const fn classify(b: u8) -> Class {
    match b {
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => Class::Keep,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@' => Class::Keep,
        b';' => Class::Semicolon,
        b'/' => Class::Slash,
        b'%' => Class::Percent,
        b'\\' => Class::Backslash,
        b'#' => Class::Hash,
        b'?' => Class::Question,
        0..=0x1f | 0x7f => Class::Control,
        0x80..=0xff => Class::NonAscii,
        _ => Class::Encode,
    }
}

static CLASSES: [Class; 256] = {
    let mut table = [Class::Keep; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = classify(i as u8);
        i += 1;
    }
    table
};

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_escape(out: &mut String, b: u8) {
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 15)]));
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Canonicalizes a request target (origin or absolute form). `host` is the
/// `Host` header (or `:authority`); an absolute-form target must name the
/// same host and port, compared case-insensitively with default ports
/// equal. Without `host`, the absolute form's authority is returned for the
/// caller to route on.
pub fn canonicalize(target: &str, host: Option<&str>) -> Result<CanonicalTarget, TargetError> {
    if target.is_empty() {
        return Err(TargetError::Empty);
    }
    if target.len() > MAX_TARGET_LEN {
        return Err(TargetError::TooLong { len: target.len() });
    }
    let (start, authority) = if target.starts_with('/') {
        (0, None)
    } else if target == "*" {
        return Err(TargetError::AsteriskForm);
    } else {
        let (start, authority, tls) = absolute_form(target)?;
        if let Some(host) = host {
            if !same_authority(authority, host, tls) {
                return Err(TargetError::AuthorityMismatch);
            }
        }
        (start, Some(authority.to_ascii_lowercase()))
    };
    let rest = &target[start..];
    let (path, query) = match rest.find('?') {
        Some(q) => (&rest[..q], Some(&rest[q + 1..])),
        None => (rest, None),
    };
    let query = match query {
        Some(query) => Some(check_query(query, start + path.len() + 1)?.to_owned()),
        None => None,
    };
    let (path, has_params) = match simple_path(path) {
        true => (path.to_owned(), false),
        false if path.is_empty() => ("/".to_owned(), false),
        false => canonical_path(path, start)?,
    };
    Ok(CanonicalTarget { path, query, authority, has_params })
}

/// Checks a query: kept as sent, but no control bytes, raw non-ASCII or `#`.
fn check_query(query: &str, offset: usize) -> Result<&str, TargetError> {
    let bad = query.bytes().position(|b| !(0x20..0x7f).contains(&b) || b == b'#');
    match bad.map(|i| (offset + i, query.as_bytes()[i])) {
        None => Ok(query),
        Some((at, b'#')) => Err(TargetError::Fragment { at }),
        Some((at, 0x80..=0xff)) => Err(TargetError::NonAscii { at }),
        Some((at, _)) => Err(TargetError::ControlByte { at }),
    }
}

/// True when `path` is already canonical and has no parameters: starts with
/// `/`, only bytes copied as they are, no dot or empty segments inside.
fn simple_path(path: &str) -> bool {
    let Some((&b'/', rest)) = path.as_bytes().split_first() else {
        return false;
    };
    // Length of the current segment, and how many of its bytes are dots.
    let (mut length, mut dots) = (0usize, 0usize);
    for &b in rest {
        if b == b'/' {
            if length == 0 || (dots == length && length <= 2) {
                return false;
            }
            (length, dots) = (0, 0);
        } else if CLASSES[usize::from(b)] == Class::Keep {
            length += 1;
            dots += usize::from(b == b'.');
        } else {
            return false;
        }
    }
    length == 0 || dots < length || length > 2
}

/// The full canonicalization of a path (no query) starting at byte `offset`
/// of the target: decode, escape, resolve dot segments, collapse `//`.
fn canonical_path(path: &str, offset: usize) -> Result<(String, bool), TargetError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len() + 1);
    out.push('/');
    let mut has_params = false;
    // Byte in `out` where the current segment starts (just after a `/`).
    let mut segment_start = 1;
    let mut semicolon: Option<usize> = None;
    let mut i = usize::from(bytes.first() == Some(&b'/'));
    loop {
        let b = bytes.get(i).copied();
        match b.map(|b| CLASSES[usize::from(b)]) {
            None | Some(Class::Slash) => {
                let at_end = b.is_none();
                let segment = &out[segment_start..];
                let name = semicolon.map_or(segment, |s| &out[segment_start..s]);
                let dots = name == "." || name == "..";
                if dots && semicolon.is_some() {
                    return Err(TargetError::DotSegmentParams { at: offset + i });
                }
                if name == ".." {
                    if segment_start == 1 {
                        return Err(TargetError::AboveRoot);
                    }
                    let previous = out[..segment_start - 1].rfind('/').map_or(1, |p| p + 1);
                    out.truncate(previous);
                    segment_start = previous;
                } else if dots || segment.is_empty() {
                    out.truncate(segment_start);
                } else if !at_end {
                    out.push('/');
                    segment_start = out.len();
                }
                semicolon = None;
                if at_end {
                    return Ok((out, has_params));
                }
                i += 1;
            }
            Some(Class::Keep) => {
                let run = bytes[i..].iter().position(|&b| CLASSES[usize::from(b)] != Class::Keep);
                let end = run.map_or(bytes.len(), |n| i + n);
                out.push_str(&path[i..end]);
                i = end;
            }
            Some(Class::Semicolon) => {
                has_params = true;
                if semicolon.is_none() {
                    semicolon = Some(out.len());
                }
                out.push(';');
                i += 1;
            }
            Some(Class::Percent) => i = decode_escapes(bytes, i, offset, &mut out)?,
            Some(Class::Encode) => {
                push_escape(&mut out, bytes[i]);
                i += 1;
            }
            Some(Class::Backslash) => return Err(TargetError::Backslash { at: offset + i }),
            Some(Class::Control) => return Err(TargetError::ControlByte { at: offset + i }),
            Some(Class::NonAscii) => return Err(TargetError::NonAscii { at: offset + i }),
            Some(Class::Hash) => return Err(TargetError::Fragment { at: offset + i }),
            Some(Class::Question) => unreachable!("the query was split off before"),
        }
    }
}

/// The byte an escape at `i` encodes.
fn escape_at(bytes: &[u8], i: usize, offset: usize) -> Result<u8, TargetError> {
    let digits = bytes.get(i + 1..i + 3).ok_or(TargetError::InvalidEscape { at: offset + i })?;
    match (hex_value(digits[0]), hex_value(digits[1])) {
        (Some(high), Some(low)) => Ok((high << 4) | low),
        _ => Err(TargetError::InvalidEscape { at: offset + i }),
    }
}

/// Decodes the escape at `i` (and, for a UTF-8 lead byte, the escapes of its
/// continuation bytes) into `out`; returns the index after them.
fn decode_escapes(bytes: &[u8], i: usize, offset: usize, out: &mut String) -> Result<usize, TargetError> {
    let at = offset + i;
    let b = escape_at(bytes, i, offset)?;
    match b {
        b'/' => Err(TargetError::EncodedSlash { at }),
        b'\\' => Err(TargetError::Backslash { at }),
        // Some servers decode before they strip `;` parameters, some after.
        b';' => Err(TargetError::EncodedSemicolon { at }),
        0..=0x1f | 0x7f => Err(TargetError::ControlByte { at }),
        b if is_unreserved(b) => {
            out.push(char::from(b));
            Ok(i + 3)
        }
        0x00..=0x7f => {
            push_escape(out, b);
            Ok(i + 3)
        }
        lead => {
            let len = match lead {
                0xc2..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf4 => 4,
                _ => return Err(TargetError::NotUtf8 { at }),
            };
            let mut sequence = [lead, 0, 0, 0];
            for (k, slot) in sequence.iter_mut().enumerate().take(len).skip(1) {
                let next = i + 3 * k;
                if bytes.get(next) != Some(&b'%') {
                    return Err(TargetError::NotUtf8 { at });
                }
                *slot = escape_at(bytes, next, offset)?;
            }
            if std::str::from_utf8(&sequence[..len]).is_err() {
                return Err(TargetError::NotUtf8 { at });
            }
            for &byte in &sequence[..len] {
                push_escape(out, byte);
            }
            Ok(i + 3 * len)
        }
    }
}

impl CanonicalTarget {
    /// The path with every segment's `;` parameters removed (`/a;x/b;y` →
    /// `/a/b`) and the empty segments that leaves collapsed: what servers
    /// that strip parameters route on. Borrows when there are none.
    pub fn path_without_params(&self) -> Cow<'_, str> {
        if !self.has_params {
            return Cow::Borrowed(&self.path);
        }
        let mut out = String::with_capacity(self.path.len());
        let mut last_empty = false;
        for segment in self.path[1..].split('/') {
            let name = segment.split_once(';').map_or(segment, |(name, _)| name);
            last_empty = name.is_empty();
            if !last_empty {
                out.push('/');
                out.push_str(name);
            }
        }
        if last_empty || out.is_empty() {
            out.push('/');
        }
        Cow::Owned(out)
    }

    /// The path and query as the upstream's request line carries them.
    pub fn path_and_query(&self) -> Cow<'_, str> {
        match &self.query {
            None => Cow::Borrowed(&self.path),
            Some(query) => Cow::Owned(format!("{}?{query}", self.path)),
        }
    }
}

/// A canonical path in lower case for `case_insensitive_paths` routes:
/// ASCII letters lowercased, `%XX` escapes left upper-case (so the result is
/// still canonical). Borrows when there is nothing to lowercase.
pub fn lowercase_path(path: &str) -> Cow<'_, str> {
    if !outside_escapes(path).any(|(_, b)| b.is_ascii_uppercase()) {
        return Cow::Borrowed(path);
    }
    let mut out = path.as_bytes().to_vec();
    for (i, b) in outside_escapes(path) {
        out[i] = b.to_ascii_lowercase();
    }
    // Only ASCII letters changed, so the bytes are still the UTF-8 they were.
    Cow::Owned(String::from_utf8(out).unwrap_or_else(|_| path.to_owned()))
}

/// The bytes of `path` (with their index) that are not hex digits of a `%XX` escape.
fn outside_escapes(path: &str) -> impl Iterator<Item = (usize, u8)> + '_ {
    let mut escape_left = 0u8;
    path.bytes().enumerate().filter(move |&(_, b)| {
        if escape_left > 0 {
            escape_left -= 1;
            return false;
        }
        if b == b'%' {
            escape_left = 2;
        }
        true
    })
}

mod authority;
#[cfg(test)]
mod tests;
