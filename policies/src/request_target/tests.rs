//! Hostile targets first, then the ordinary ones, then properties.

use proptest::prelude::*;

use super::*;
use crate::evaluate::is_normalized_path;

fn path(target: &str) -> String {
    canonicalize(target, None).unwrap_or_else(|e| panic!("{target}: {e}")).path
}

fn refused(target: &str) -> TargetError {
    match canonicalize(target, Some("app.example")) {
        Ok(ok) => panic!("{target} was accepted as {ok:?}"),
        Err(e) => e,
    }
}

#[test]
fn encoded_letters_are_decoded() {
    assert_eq!(path("/%61dmin/users"), "/admin/users");
    assert_eq!(path("/adm%69n/users"), "/admin/users");
    assert_eq!(path("/%61pi/x"), "/api/x");
    assert_eq!(path("/%41%5a%30%2d%2E%5f%7e"), "/AZ0-._~");
    assert_eq!(path("/%7e"), "/~");
}

#[test]
fn path_parameters_are_kept_and_flagged() {
    for (target, without) in [
        ("/admin;x/users", "/admin/users"),
        ("/admin;/users", "/admin/users"),
        ("/a;x=1;y/b;z", "/a/b"),
        ("/;x/admin", "/admin"),
        ("/a/;x", "/a/"),
        ("/a;x/", "/a/"),
        ("/;x", "/"),
    ] {
        let canonical = canonicalize(target, None).unwrap();
        assert!(canonical.has_params, "{target}");
        assert_eq!(canonical.path, target, "{target}");
        assert_eq!(canonical.path_without_params(), without, "{target}");
        assert!(is_normalized_path(&canonical.path_without_params()), "{target}");
    }
    let plain = canonicalize("/a/b", None).unwrap();
    assert!(!plain.has_params);
    assert!(matches!(plain.path_without_params(), Cow::Borrowed("/a/b")));
    // An encoded `;` is a parameter to servers that decode first and data to
    // the others: it has no single meaning.
    for target in ["/admin%3bx/users", "/admin%3B/users", "/t/..%3B/admin"] {
        assert!(matches!(refused(target), TargetError::EncodedSemicolon { .. }), "{target}");
    }
}

#[test]
fn dot_segments_with_parameters_are_refused() {
    for target in ["/t/..;/admin/users", "/t/..;x/admin", "/t/.;/admin", "/t/%2e%2E;x/a", "/a/.;"] {
        assert!(matches!(refused(target), TargetError::DotSegmentParams { .. }), "{target}");
    }
}

#[test]
fn absolute_form_must_name_the_host() {
    let ok = canonicalize("http://app.example/%61dmin/users", Some("app.example")).unwrap();
    assert_eq!(ok.path, "/admin/users");
    assert_eq!(ok.authority.as_deref(), Some("app.example"));
    for (target, host) in [
        ("http://APP.example/x", "app.example"),
        ("http://app.example:80/x", "App.Example"),
        ("http://app.example/x", "app.example:80"),
        ("HTTPS://app.example/x", "app.example:443"),
        ("https://app.example:443/x", "app.example"),
        ("http://app.example:8080/x", "app.example:8080"),
        ("http://[::1]:80/x", "[::1]"),
    ] {
        assert!(canonicalize(target, Some(host)).is_ok(), "{target} with Host {host}");
    }
    for (target, host) in [
        ("http://app.example/%61dmin/users", "other.example"),
        ("http://app.example:8080/x", "app.example"),
        ("https://app.example/x", "app.example:80"),
        ("http://app.example/x", "app.example:443"),
        ("http://app.example/x", "app.example.evil"),
        ("http://app.example/x", "app.example:99999"),
    ] {
        assert_eq!(canonicalize(target, Some(host)), Err(TargetError::AuthorityMismatch), "{target} with {host}");
    }
    assert_eq!(canonicalize("http://user@app.example/x", None), Err(TargetError::BadAuthority));
    assert_eq!(canonicalize("http:///x", None), Err(TargetError::BadAuthority));
    assert_eq!(canonicalize("http://app.example:8x/", None), Err(TargetError::BadAuthority));
    assert_eq!(canonicalize("http://[zz]/", None), Err(TargetError::BadAuthority));
    assert_eq!(canonicalize("ftp://app.example/x", None), Err(TargetError::UnsupportedForm));
    let bare = canonicalize("http://app.example?q", Some("app.example")).unwrap();
    assert_eq!((bare.path.as_str(), bare.query.as_deref()), ("/", Some("q")));
    assert_eq!(path("http://app.example"), "/");
    assert!(matches!(refused("http://app.example#x"), TargetError::Fragment { .. }));
}

#[test]
fn other_forms_are_refused() {
    assert_eq!(refused("*"), TargetError::AsteriskForm);
    assert_eq!(refused("example.com:443"), TargetError::AuthorityForm);
    assert_eq!(refused("admin/users"), TargetError::UnsupportedForm);
    assert_eq!(refused(""), TargetError::Empty);
}

#[test]
fn dot_segments_resolve_and_never_climb_above_the_root() {
    assert_eq!(path("/a/./b/../c"), "/a/c");
    assert_eq!(path("/a/b/.."), "/a/");
    assert_eq!(path("/a/b/."), "/a/b/");
    assert_eq!(path("/a/./"), "/a/");
    assert_eq!(path("/a/.."), "/");
    assert_eq!(path("/."), "/");
    assert_eq!(path("/a/%2E%2E/x"), "/x");
    assert_eq!(path("/a/%2e%2E/b"), "/b");
    assert_eq!(path("/a/..b/c.."), "/a/..b/c..");
    for target in ["/..", "/../a", "/a/../..", "/%2E%2E", "/%2e./x", "/a/b/../../../c"] {
        assert_eq!(refused(target), TargetError::AboveRoot, "{target}");
    }
}

#[test]
fn empty_segments_collapse() {
    assert_eq!(path("//a//b/"), "/a/b/");
    assert_eq!(path("//"), "/");
    assert_eq!(path("/a///"), "/a/");
    assert_eq!(path("/a//../b"), "/b");
}

#[test]
fn separators_in_disguise_are_refused() {
    assert!(matches!(refused("/a%2Fb"), TargetError::EncodedSlash { at: 2 }));
    assert!(matches!(refused("/a%2fb"), TargetError::EncodedSlash { .. }));
    assert!(matches!(refused("/a%5Cb"), TargetError::Backslash { .. }));
    assert!(matches!(refused("/a%5cb"), TargetError::Backslash { .. }));
    assert!(matches!(refused("/a\\b"), TargetError::Backslash { at: 2 }));
    assert!(matches!(refused("/..\\admin"), TargetError::Backslash { .. }));
}

#[test]
fn control_and_non_ascii_bytes_are_refused() {
    for target in ["/a%00", "/a%0a", "/a%0D", "/a%7f", "/a%1F"] {
        assert!(matches!(refused(target), TargetError::ControlByte { .. }), "{target}");
    }
    for target in ["/a\u{0}", "/a\n", "/a\t", "/a\u{7f}"] {
        assert!(matches!(refused(target), TargetError::ControlByte { at: 2 }), "{target:?}");
    }
    assert!(matches!(refused("/caf\u{e9}"), TargetError::NonAscii { at: 4 }));
}

#[test]
fn invalid_escapes_are_refused() {
    for target in ["/%", "/a%", "/%4", "/%G1", "/%1G", "/%%41", "/a%-1"] {
        assert!(matches!(refused(target), TargetError::InvalidEscape { .. }), "{target}");
    }
    for target in ["/%FF", "/%C3", "/%C3x", "/%C3%28", "/%C0%AF", "/%ED%A0%80", "/%80", "/%F8%88%80%80%80"] {
        assert!(matches!(refused(target), TargetError::NotUtf8 { .. }), "{target}");
    }
    assert!(matches!(refused("/%C3%G9"), TargetError::InvalidEscape { .. }));
}

#[test]
fn other_escapes_are_kept_upper_case() {
    assert_eq!(path("/caf%C3%A9"), "/caf%C3%A9");
    assert_eq!(path("/caf%c3%a9"), "/caf%C3%A9");
    assert_eq!(path("/%F0%9F%98%80"), "/%F0%9F%98%80");
    assert_eq!(path("/a%20b%3f%23%25"), "/a%20b%3F%23%25");
    assert_eq!(path("/a%2B"), "/a%2B", "sub-delimiters stay encoded: `+` and `%2B` differ in forms");
    assert_eq!(path("/a b|c{d}"), "/a%20b%7Cc%7Bd%7D", "raw characters a path may not have are escaped");
    assert_eq!(path("/a|b"), path("/a%7cb"));
}

#[test]
fn the_query_is_kept_as_sent_but_checked() {
    let canonical = canonicalize("/%61?b=%2F&c=/..//\\;%zz", None).unwrap();
    assert_eq!(canonical.path, "/a");
    assert_eq!(canonical.query.as_deref(), Some("b=%2F&c=/..//\\;%zz"));
    assert_eq!(canonical.path_and_query(), "/a?b=%2F&c=/..//\\;%zz");
    assert_eq!(canonicalize("/a?", None).unwrap().query.as_deref(), Some(""));
    assert_eq!(canonicalize("/a", None).unwrap().query, None);
    assert!(matches!(refused("/a?b#c"), TargetError::Fragment { at: 4 }));
    assert!(matches!(refused("/a#b"), TargetError::Fragment { at: 2 }));
    assert!(matches!(refused("/a?b\u{0}"), TargetError::ControlByte { at: 4 }));
    assert!(matches!(refused("/a?\u{e9}"), TargetError::NonAscii { .. }));
}

#[test]
fn long_targets_are_refused() {
    let at_limit = format!("/{}", "a".repeat(MAX_TARGET_LEN - 1));
    assert_eq!(path(&at_limit).len(), MAX_TARGET_LEN);
    let over = format!("/{}", "a".repeat(MAX_TARGET_LEN));
    assert_eq!(over.len(), 8193);
    assert_eq!(refused(&over), TargetError::TooLong { len: 8193 });
}

#[test]
fn canonical_targets_are_copied_once() {
    for target in ["/", "/a/b/", "/api/v1/users:search", "/a.b/c..d/~x/@me/!$&'()*+,="] {
        let canonical = canonicalize(target, None).unwrap();
        assert_eq!(canonical.path, target);
        assert!(!canonical.has_params);
    }
}

#[test]
fn lowercase_keeps_escapes_upper_case() {
    assert_eq!(lowercase_path("/Admin/CAF%C3%A9/%2B"), "/admin/caf%C3%A9/%2B");
    assert!(matches!(lowercase_path("/admin/%C3%A9"), Cow::Borrowed(_)));
    assert_eq!(lowercase_path("/%41A"), "/%41a");
}

#[test]
fn error_messages_say_what_was_wrong() {
    assert_eq!(refused("/a%2Fb").to_string(), "the path has an encoded `/` (`%2F`) at byte 2");
    assert!(refused("/..").to_string().contains("above the root"));
}

proptest! {
    /// Canonical paths are fixed points, contain no disguised separators or
    /// dot segments, and pass the evaluator's normal-form check.
    #[test]
    fn canonicalize_is_idempotent(raw in "(/|a|A|\\.|;|%2[eEfF]|%5[cC]|%4[1a]|%C3%A9|%7[cC]|%|\\\\|\\||~|x=1|\\?){0,24}") {
        let target = format!("/{raw}");
        if let Ok(canonical) = canonicalize(&target, None) {
            let path = &canonical.path;
            let again = canonicalize(path, None).expect("a canonical path is accepted");
            prop_assert_eq!(&again.path, path);
            prop_assert_eq!(again.has_params, canonical.has_params);
            for bad in ["/./", "/../", "//", "%2F", "%2f", "\\", "%5C", "%2E", "%2e"] {
                prop_assert!(!path.contains(bad), "{} contains {}", path, bad);
            }
            prop_assert!(!path.ends_with("/.") && !path.ends_with("/.."), "{}", path);
            prop_assert!(is_normalized_path(path), "{}", path);
            prop_assert!(is_normalized_path(&canonical.path_without_params()), "{}", path);
            let lower = lowercase_path(path);
            prop_assert_eq!(&canonicalize(&lower, None).expect("lowercase stays canonical").path, &*lower);
        }
    }
}
