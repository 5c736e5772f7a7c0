//! The OpenAPI document: served as OpenAPI 3.1, and in step with the router.
//!
//! Three checks keep them together: the documented routes are exactly the
//! routes this suite exercises ([`EXERCISED`]); every documented route is
//! served (never the router's `no such API endpoint`), and no documented
//! path serves a method the document leaves out; and every admin-API answer
//! in the whole suite comes from a documented route (`client.rs`), so a route
//! added to the router without documentation fails the tests that call it.

use std::collections::BTreeSet;

use axum::http::Method;
use serde_json::Value;

use crate::client::{api_doc_routes, documented_routes};
use crate::harness::TestApp;

api_tests!(openapi_document_matches_the_router);

/// Every `(method, path)` of the admin API the suite calls.
pub const EXERCISED: &[(&str, &str)] = &[
    ("get", "/api/v1/deliveries"),
    ("post", "/api/v1/deliveries/{id}/retry"),
    ("post", "/api/v1/signals"),
    ("get", "/api/v1/sessions"),
    ("get", "/api/v1/sessions/{id}"),
    ("post", "/api/v1/sessions/{id}/terminate"),
    ("post", "/api/v1/users/terminate"),
    ("get", "/api/v1/users/lock"),
    ("post", "/api/v1/users/lock"),
    ("post", "/api/v1/users/unlock"),
    ("get", "/api/v1/policy"),
    ("put", "/api/v1/policy"),
    ("post", "/api/v1/policy/validate"),
    ("get", "/api/v1/policy/history"),
    ("post", "/api/v1/policy/rollback"),
    ("post", "/api/v1/policy/explain"),
    ("post", "/api/v1/service-tokens"),
    ("get", "/api/v1/service-tokens"),
    ("delete", "/api/v1/service-tokens/{id}"),
    ("post", "/api/v1/admin-tokens"),
    ("get", "/api/v1/admin-tokens"),
    ("delete", "/api/v1/admin-tokens/{id}"),
    ("post", "/api/v1/signing-keys/rotate"),
    ("get", "/api/v1/signing-keys"),
    ("post", "/api/v1/signing-keys/{kid}/revoke"),
    ("get", "/api/v1/portal-sessions"),
    ("post", "/api/v1/portal-sessions/{id}/end"),
    ("get", "/api/v1/stream-key"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/edges"),
    ("post", "/api/v1/edges/join-tokens"),
    ("post", "/api/v1/edges/{id}/revoke"),
];

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch"];

async fn openapi_document_matches_the_router(t: TestApp) {
    let answer = t.get("/api/v1/openapi.json").send().await;
    let document = answer.ok();
    let version = document["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1"), "OpenAPI 3.1, found {version:?}");
    assert!(document["info"]["title"].is_string());
    assert!(document["components"]["securitySchemes"]["admin_token"].is_object(), "bearer auth is documented");
    let served = documented_routes(&document);
    assert_eq!(&served, api_doc_routes(), "the served document is `ApiDoc`");

    let exercised: BTreeSet<(String, String)> =
        EXERCISED.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
    let undocumented: Vec<_> = exercised.difference(&served).collect();
    assert!(undocumented.is_empty(), "routes the suite calls but the document lacks: {undocumented:?}");
    let untested: Vec<_> = served.difference(&exercised).collect();
    assert!(
        untested.is_empty(),
        "documented routes the suite does not exercise (add tests, then list them): {untested:?}"
    );

    assert_parameters_where_they_are_read(&document);

    // Every documented route is served, by exactly that route.
    for (method, path) in &served {
        assert!(path.starts_with("/api/v1/"), "{path}");
        let uri = path.replace("{id}", "no-such-id");
        let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
        let answer = t.api(method.clone(), &uri).send().await;
        assert!(!answer.is_fallback(), "{method} {path} is documented but the router does not serve it");
        assert_ne!(answer.status.as_u16(), 405, "{method} {path} is documented but not served with that method");
        assert_eq!(answer.route.as_deref(), Some(path.as_str()), "{method} {uri} was answered by another route");
        assert_documented_responses(&document, &method, path, answer.status.as_u16());
    }

    // No documented path serves a method the document leaves out.
    let paths: BTreeSet<&String> = served.iter().map(|(_, p)| p).collect();
    for path in paths {
        for method in METHODS {
            if served.contains(&((*method).to_owned(), path.clone())) {
                continue;
            }
            let uri = path.replace("{id}", "no-such-id");
            let http = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            let answer = t.api(http, &uri).send().await;
            assert_eq!(answer.status.as_u16(), 405, "{method} {path}: served but undocumented? {}", answer.text());
        }
    }

    // Routes of the router's source that no test calls are checked too.
    let routed = routes_in_router_source();
    let undocumented: Vec<_> = routed.difference(&served).collect();
    assert!(undocumented.is_empty(), "`api::router` serves routes the document lacks: {undocumented:?}");
    let unrouted: Vec<_> = served.difference(&routed).collect();
    assert!(unrouted.is_empty(), "the source scan missed documented routes (update it): {unrouted:?}");

    // The document needs no token: clients fetch it first.
    t.get("/api/v1/openapi.json").no_auth().send().await.ok();
}

/// The answer's status is documented, or is one of the errors every route can give.
fn assert_documented_responses(document: &Value, method: &Method, path: &str, status: u16) {
    let operation = &document["paths"][path][method.as_str().to_ascii_lowercase()];
    let responses = operation["responses"].as_object().unwrap_or_else(|| panic!("{method} {path}: no responses"));
    assert!(!responses.is_empty(), "{method} {path}: no responses documented");
    let generic = [400, 401, 403, 404, 413, 415, 422];
    assert!(
        responses.contains_key(&status.to_string()) || generic.contains(&status),
        "{method} {path}: answered {status}, documented {:?}",
        responses.keys().collect::<Vec<_>>()
    );
}

/// Every parameter is documented where the handler reads it: `in: path`
/// exactly for the `{…}` of its path, `in: query` for the rest (utoipa's
/// `IntoParams` puts a struct's fields in the path unless told otherwise,
/// and a client following the document then sends no query at all).
fn assert_parameters_where_they_are_read(document: &Value) {
    let paths = document["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("a path item") {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let name = parameter["name"].as_str().expect("a parameter name");
                let expected = if path.contains(&format!("{{{name}}}")) { "path" } else { "query" };
                assert_eq!(parameter["in"], expected, "{method} {path}: parameter `{name}`");
            }
        }
    }
}

/// `(method, path)` of every `.route(…)` of the `/api/v1` router, read from
/// `src/api/mod.rs`: catches a route that is added without documentation
/// even when no test calls it. The scan must find every documented route,
/// so a restructured router fails here until the scan follows it.
fn routes_in_router_source() -> BTreeSet<(String, String)> {
    let source = include_str!("../../src/api/mod.rs");
    let start = source.find("let api = Router::new()").expect("`let api = Router::new()` in api::router");
    let body = &source[start..];
    let body = &body[..body.find(';').expect("the api router ends with `;`")];
    let mut routes = BTreeSet::new();
    for chunk in body.split(".route(\"").skip(1) {
        let (path, rest) = chunk.split_once('"').expect("a quoted path");
        if path == "/openapi.json" {
            continue;
        }
        for method in METHODS {
            let tokens = [format!("({method}("), format!(" {method}("), format!(".{method}(")];
            if tokens.iter().any(|token| rest.contains(token.as_str())) {
                routes.insert(((*method).to_owned(), format!("/api/v1{path}")));
            }
        }
    }
    routes
}
