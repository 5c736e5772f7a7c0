//! The login service's own answers: redirects (302, or 303 after a POST)
//! that may set cookies, small bodies, and reading the small JSON bodies
//! and query parameters its endpoints take.

use std::borrow::Cow;

use bytes::Bytes;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// Largest JSON body of the CLI login calls.
const MAX_JSON_BODY: usize = 16 * 1024;

/// The value of query parameter `name`, decoded.
pub(super) fn query_param<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v)
}

/// A 302 to `location`, setting `cookies`.
pub(super) async fn redirect(session: &mut Session, location: &str, cookies: &[String]) -> pingora_core::Result<bool> {
    redirect_with(session, 302, location, cookies).await
}

/// A redirect with `status` (303: the browser follows a POST's answer with a GET).
pub(super) async fn redirect_with(
    session: &mut Session,
    status: u16,
    location: &str,
    cookies: &[String],
) -> pingora_core::Result<bool> {
    let mut header = ResponseHeader::build(status, Some(3 + cookies.len()))?;
    header.insert_header("location", location)?;
    header.insert_header("cache-control", "no-store")?;
    header.insert_header("content-length", "0")?;
    for cookie in cookies {
        header.append_header("set-cookie", cookie.as_str())?;
    }
    session.write_response_header(Box::new(header), true).await?;
    Ok(true)
}

/// A JSON request body of at most [`MAX_JSON_BODY`] bytes; `None` when it
/// is too large or not the expected JSON.
pub(super) async fn read_json<T: serde::de::DeserializeOwned>(
    session: &mut Session,
) -> pingora_core::Result<Option<T>> {
    let mut body = Vec::new();
    while let Some(chunk) = session.read_request_body().await? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_JSON_BODY {
            return Ok(None);
        }
    }
    Ok(serde_json::from_slice(&body).ok())
}

/// A complete answer with `body`.
pub(super) async fn answer(
    session: &mut Session,
    status: u16,
    content_type: &str,
    body: String,
) -> pingora_core::Result<bool> {
    let mut header = ResponseHeader::build(status, Some(3))?;
    header.insert_header("content-type", content_type)?;
    header.insert_header("content-length", body.len().to_string())?;
    header.insert_header("cache-control", "no-store")?;
    session.write_response_header(Box::new(header), false).await?;
    session.write_response_body(Some(Bytes::from(body)), true).await?;
    Ok(true)
}
