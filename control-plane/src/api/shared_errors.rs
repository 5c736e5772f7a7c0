//! The error answers every admin-API operation can give whatever it does,
//! added to each operation of the OpenAPI document so a client (and a
//! schema checker) finds every status the API may answer: 401 and 403 from
//! the [`Caller`](super::auth::Caller) extractor every operation takes; 400
//! from a query string that does not parse (`ApiQuery`); and from a body,
//! 413 when it is too large, then for JSON (`ApiJson`) 415 without
//! `Content-Type: application/json` and 422 when it does not deserialize,
//! for text (`ApiText`, the policy's YAML) 400 when it is not UTF-8.
//! An operation's own description of a status is kept.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Response};

/// Adds the shared error answers to every operation.
pub struct SharedErrors;

impl utoipa::Modify for SharedErrors {
    fn modify(&self, openapi: &mut OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                add_shared_errors(operation);
            }
        }
    }
}

fn add_shared_errors(operation: &mut Operation) {
    let mut errors = vec![
        ("401", "No admin token, or an unknown, revoked or expired one (code `unauthorized`)."),
        ("403", "The token lacks the scope this operation needs (code `insufficient_scope`)."),
    ];
    let has_query = operation.parameters.iter().flatten().any(|p| matches!(p.parameter_in, ParameterIn::Query));
    if has_query {
        errors.push(("400", "The query string does not parse (code `bad_request`)."));
    }
    if let Some(body) = &operation.request_body {
        errors.push(("413", "The request body is larger than `max_body_bytes` (code `body_too_large`)."));
        if body.content.contains_key("application/json") {
            errors.push(("415", "The body is not sent as `Content-Type: application/json`."));
            errors.push(("422", "The JSON body does not match the schema (code `invalid_body`)."));
        } else {
            errors.push(("400", "The body is not UTF-8 text (code `bad_request`)."));
        }
    }
    for (status, description) in errors {
        operation.responses.responses.entry(status.to_owned()).or_insert_with(|| error_response(description));
    }
}

fn error_response(description: &str) -> RefOr<Response> {
    let body = Content::new(Some(Ref::from_schema_name("ErrorBody")));
    RefOr::T(Response::builder().description(description).content("application/json", body).build())
}
