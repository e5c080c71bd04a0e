//! The middleware that bounds a request before and around the API: a body declared too large is
//! refused at once, a request gets a deadline, and every error leaves in the JSON error shape.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::BODY_LIMIT;
use super::error::Code;
use super::http::error_response;
use crate::server::HttpLimits;

/// A body declared larger than [`BODY_LIMIT`] is refused before a byte of it is read (413), and
/// the connection closed: reading on, or draining it, is what the client asked the server to
/// spend.
pub async fn declared_length(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > BODY_LIMIT as u64) {
        let mut response = error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::BadRequest,
            format!("the request body is larger than {} KiB", BODY_LIMIT / 1024),
        );
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    next.run(request).await
}

/// Answers `TIMEOUT` (408) when the request is not answered within
/// [`HttpLimits::request_timeout`].
pub async fn deadline(State(limits): State<HttpLimits>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(path, timeout = ?limits.request_timeout, "request timed out");
            let mut response = error_response(
                StatusCode::REQUEST_TIMEOUT,
                Code::Timeout,
                format!(
                    "the request was not answered within {} s; a mutation in it may have been \
                     applied: send it again with the same `Idempotency-Key` to be sure",
                    limits.request_timeout.as_secs_f64()
                ),
            );
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

/// Gives an error that left without a JSON body (a path that does not exist, a method a route
/// does not take) the JSON error shape every other error has.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => (
            Code::NotFound,
            "no such page: the API is POST /api, GraphiQL is GET /graphiql".to_owned(),
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            Code::BadRequest,
            "this method is not served here: POST a GraphQL request to /api, or GET /graphiql"
                .to_owned(),
        ),
        status if status.is_server_error() => {
            (Code::Internal, format!("the server failed: {status}"))
        }
        status => (
            Code::BadRequest,
            format!("the request was refused: {status}"),
        ),
    };
    let (parts, _) = response.into_parts();
    let mut shaped = error_response(status, code, message);
    // What the route said beside its status stays (`Allow`, say); the body is the shape's.
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            shaped.headers_mut().insert(name, value.clone());
        }
    }
    shaped
}
