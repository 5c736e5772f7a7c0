//! What crosses to the upstream, header by header: the hostile spellings
//! first.

use super::*;

fn identity(groups: &[&str]) -> Identity {
    Identity::new(portcullis_policy::IdentityParts {
        subject: "sub-alice".into(),
        email: "alice@corp.example".into(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        ..Default::default()
    })
}

fn plan<'a>(cookies: &'a SessionCookies, identity: Option<&'a Identity>) -> UpstreamHead<'a> {
    UpstreamHead {
        path_and_query: "/admin/users?x=1",
        identity,
        assertion: Some("a.b.c"),
        forwarded_for: "203.0.113.9",
        client_ip: "203.0.113.9".parse().unwrap(),
        proto: "https",
        host: "app.example",
        pass_client_headers: &[],
        authorization: AuthorizationUse::Foreign,
        forward_bearer: false,
        websocket: false,
        cookies,
    }
}

fn request(headers: &[(&str, &str)]) -> RequestHeader {
    let mut head = RequestHeader::build("GET", b"/%61dmin/users?x=1", None).unwrap();
    for (name, value) in headers {
        head.append_header(name.to_string(), *value).unwrap();
    }
    head
}

fn names(head: &RequestHeader) -> Vec<String> {
    head.headers.keys().map(|n| n.as_str().to_owned()).collect()
}

#[test]
fn lookalikes_of_the_identity_headers_never_pass() {
    let cookies = SessionCookies::new("portcullis_session", true);
    let alice = identity(&["staff"]);
    let mut head = request(&[
        ("X_Portcullis_User", "admin"),
        ("x-portcullis-user", "admin"),
        ("X-PORTCULLIS-GROUPS", "admins"),
        ("x_portcullis-email", "boss@corp.example"),
        ("X-Portcullis-Assertion", "forged"),
    ]);
    prepare(&mut head, &plan(&cookies, Some(&alice))).unwrap();
    assert_eq!(head.headers.get_all("x-portcullis-user").iter().count(), 1);
    assert_eq!(head.headers.get("x-portcullis-user").unwrap(), "sub-alice");
    assert_eq!(head.headers.get("x-portcullis-groups").unwrap(), "[\"staff\"]");
    assert_eq!(head.headers.get("x-portcullis-assertion").unwrap(), "a.b.c");
    for name in names(&head) {
        assert!(!name.contains('_'), "underscore spelling {name} reached the upstream");
    }
    let mut anonymous = request(&[("x-portcullis-user", "admin")]);
    prepare(&mut anonymous, &plan(&cookies, None)).unwrap();
    assert!(anonymous.headers.get("x-portcullis-user").is_none(), "no identity, no identity header");
}

#[test]
fn overrides_and_client_addressing_are_removed_unless_the_route_passes_them() {
    let cookies = SessionCookies::new("portcullis_session", true);
    let hostile = [
        ("Forwarded", "for=1.2.3.4;host=admin.example"),
        ("X-Real-IP", "10.0.0.1"),
        ("True-Client-IP", "10.0.0.1"),
        ("X-Original-URL", "/admin/users"),
        ("X-Rewrite-URL", "/admin/users"),
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-HTTP-Method", "DELETE"),
        ("X-Method-Override", "DELETE"),
        ("X_HTTP_Method_Override", "DELETE"),
        ("X-Forwarded-For", "10.0.0.1"),
        ("X-Forwarded-Host", "admin.example"),
        ("X_Forwarded_For", "10.0.0.1"),
    ];
    let mut head = request(&hostile);
    prepare(&mut head, &plan(&cookies, None)).unwrap();
    for (name, _) in &hostile[..9] {
        let lower = name.to_ascii_lowercase();
        if lower != "forwarded" {
            assert!(head.headers.get(lower.as_str()).is_none(), "{name} reached the upstream");
        }
    }
    assert!(head.headers.get("x_forwarded_for").is_none());
    assert_eq!(head.headers.get("forwarded").unwrap(), "for=203.0.113.9;proto=https;host=app.example");
    assert_eq!(head.headers.get("x-forwarded-for").unwrap(), "203.0.113.9");
    assert_eq!(head.headers.get("x-forwarded-host").unwrap(), "app.example");
    let passed: Vec<Box<str>> = vec!["x-http-method-override".into()];
    let mut head = request(&hostile);
    let mut opted = plan(&cookies, None);
    opted.pass_client_headers = &passed;
    prepare(&mut head, &opted).unwrap();
    assert_eq!(head.headers.get("x-http-method-override").unwrap(), "DELETE", "the route opted in");
    assert!(head.headers.get("x-real-ip").is_none());
}

#[test]
fn hop_by_hop_headers_and_the_ones_connection_names_are_removed() {
    let cookies = SessionCookies::new("portcullis_session", true);
    let mut head = request(&[
        ("Connection", "keep-alive, X-Secret, Upgrade, HTTP2-Settings"),
        ("X-Secret", "1"),
        ("Upgrade", "h2c"),
        ("HTTP2-Settings", "AAMAAABkAAQAoAAAAAIAAAAA"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers, deflate"),
        ("Proxy-Authorization", "Bearer someone-elses-session"),
        ("X-App", "kept"),
    ]);
    prepare(&mut head, &plan(&cookies, None)).unwrap();
    for name in [
        "connection",
        "x-secret",
        "upgrade",
        "http2-settings",
        "keep-alive",
        "proxy-connection",
        "te",
        "proxy-authorization",
    ] {
        assert!(head.headers.get(name).is_none(), "{name} reached the upstream");
    }
    assert_eq!(head.headers.get("x-app").unwrap(), "kept");
}

#[test]
fn a_checked_websocket_keeps_only_its_own_upgrade() {
    let cookies = SessionCookies::new("portcullis_session", true);
    let mut head = request(&[
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade, X-Portcullis-Groups"),
        ("Sec-WebSocket-Key", "k"),
    ]);
    let mut ws = plan(&cookies, None);
    ws.websocket = true;
    prepare(&mut head, &ws).unwrap();
    assert_eq!(head.headers.get("upgrade").unwrap(), "websocket");
    assert_eq!(head.headers.get("connection").unwrap(), "upgrade");
    assert_eq!(head.headers.get("sec-websocket-key").unwrap(), "k");
}

#[test]
fn the_upstream_gets_the_canonical_target_in_origin_form() {
    let cookies = SessionCookies::new("portcullis_session", true);
    let mut head = RequestHeader::build("GET", b"http://app.example/%61dmin/users?x=1", None).unwrap();
    head.insert_header("host", "app.example").unwrap();
    prepare(&mut head, &plan(&cookies, None)).unwrap();
    assert_eq!(head.raw_path(), b"/admin/users?x=1", "the verbatim absolute form is not what goes upstream");
    assert_eq!(head.uri.to_string(), "/admin/users?x=1");
    // HTTP/2 carries the host as `:authority` in the URI and may send no `Host`.
    let mut h2 = RequestHeader::build("GET", b"/", None).unwrap();
    h2.set_uri("https://app.example/%61dmin/users?x=1".parse().unwrap());
    prepare(&mut h2, &plan(&cookies, None)).unwrap();
    assert_eq!(h2.headers.get("host").unwrap(), "app.example", "the authority became Host");
    assert_eq!(h2.raw_path(), b"/admin/users?x=1");
}

#[test]
fn edge_credentials_stay_at_the_edge() {
    let cookies = SessionCookies::new("portcullis_session", true);
    let mut head = request(&[
        ("Cookie", "app=1; __Host-portcullis_session.app=TOKEN; theme=dark"),
        ("Authorization", "Bearer pcst_secret"),
    ]);
    let mut edge = plan(&cookies, None);
    edge.authorization = AuthorizationUse::Edge;
    prepare(&mut head, &edge).unwrap();
    let cookie = head.headers.get("cookie").unwrap().to_str().unwrap().to_owned();
    assert!(!cookie.contains("TOKEN") && cookie.contains("app=1") && cookie.contains("theme=dark"), "{cookie}");
    assert!(head.headers.get("authorization").is_none());
    for (forward, kept) in [(false, false), (true, true)] {
        let mut head = request(&[("Authorization", "Bearer idp.jwt.token")]);
        let mut idp = plan(&cookies, None);
        idp.authorization = AuthorizationUse::IdpToken;
        idp.forward_bearer = forward;
        prepare(&mut head, &idp).unwrap();
        assert_eq!(head.headers.get("authorization").is_some(), kept, "forward_bearer: {forward}");
    }
}

#[test]
fn groups_are_an_unambiguous_ascii_json_array() {
    assert_eq!(
        json_string_array(&["x,admins", "a\"b", "é", "back\\slash"]),
        r#"["x,admins","a\"b","\u00e9","back\\slash"]"#
    );
    assert_eq!(json_string_array::<&str>(&[]), "[]");
    let parsed: Vec<String> = serde_json::from_str(&json_string_array(&["x,admins", "é\u{1F600}"])).unwrap();
    assert_eq!(parsed, ["x,admins", "é\u{1F600}"]);
    assert!(is_own_header_lookalike("X_PORTCULLIS_user") && !is_own_header_lookalike("x-portcullisuser"));
}

#[test]
fn an_upstream_cannot_set_the_edge_cookies() {
    let cookies = SessionCookies::new("portcullis_session", false);
    let mut response = pingora_http::ResponseHeader::build(200, None).unwrap();
    for value in
        ["portcullis_session.app=evil; Path=/", "app=1", "__Host-portcullis_session.admin=x", " portcullis_session=y"]
    {
        response.append_header("set-cookie", value).unwrap();
    }
    drop_edge_set_cookies(&mut response, &cookies);
    let left: Vec<_> = response.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    assert_eq!(left, ["app=1"]);
}
