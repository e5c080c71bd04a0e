//! Who asks and which request it is: `x-user-id` and `x-request-id`, read into the
//! [`Context`] that every write stores, and echoed on the response.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use entities_runtime::Context;
use tracing::Instrument;

use super::auth::{Auth, JwtVerifier, TokenCaller, bearer};
use super::error::Code;
use super::http::error_response;

/// The caller's user id, stored as `created_by`. Absent (or empty): `anonymous`.
pub const USER_ID: HeaderName = HeaderName::from_static("x-user-id");
/// The request's id, stored with its action and events. Absent (or empty): a new UUID.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Makes a mutation idempotent (the IETF httpapi draft's header): sent again with the same key,
/// user and body, a mutation returns what it returned the first time and applies nothing. Its
/// value is the key, bare or as a quoted string (the draft's structured-field form).
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The longest user id, request id or idempotency key accepted, in bytes.
pub const MAX_ID_LEN: usize = 200;

/// A request's `Idempotency-Key`, as the middleware read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdempotencyKey(pub String);

/// A keyed request, as its mutations see it: the key, and the hash of the request's body.
pub(crate) struct KeyedRequest {
    pub key: String,
    pub fingerprint: String,
}

/// A WebSocket upgrade to `/api` with authentication on and no `Authorization` header (browsers
/// cannot set one there): its token comes in the `connection_init` message instead.
#[derive(Clone)]
pub(crate) struct TokenAtInit(pub Arc<JwtVerifier>);

/// When the request's bearer token stops being taken: a WebSocket upgraded with it is closed then.
#[derive(Clone, Copy)]
pub(crate) struct TokenExpiry(pub std::time::SystemTime);

/// Puts the request's [`Context`] in its extensions and echoes both ids on the response; a
/// header that is not printable ASCII or is too long is a `BAD_REQUEST`. With JWT
/// authentication, `/api` needs a valid bearer token (`UNAUTHENTICATED`, 401, otherwise), whose
/// `sub` is the user.
pub async fn middleware(State(auth): State<Auth>, mut request: Request, next: Next) -> Response {
    let verifier = match &auth {
        Auth::Jwt(verifier) if request.uri().path() == "/api" => Some(verifier),
        _ => None,
    };
    let user = match verifier {
        None => None,
        Some(verifier) => match authenticate(request.method(), request.headers(), verifier) {
            Ok(Some(caller)) => {
                if let Some(at) = caller.expires_at {
                    request.extensions_mut().insert(TokenExpiry(at));
                }
                Some(caller.user)
            }
            Ok(None) => {
                // A WebSocket without the header: its `connection_init` brings the token.
                request
                    .extensions_mut()
                    .insert(TokenAtInit(verifier.clone()));
                Some(PENDING_USER.to_owned())
            }
            Err(refusal) => return with_fresh_request_id(*refusal),
        },
    };
    let ctx = match context(request.headers(), user) {
        Ok(ctx) => ctx,
        Err(message) => {
            return with_fresh_request_id(error_response(
                StatusCode::BAD_REQUEST,
                Code::BadRequest,
                message,
            ));
        }
    };
    request.extensions_mut().insert(ctx.clone());
    match idempotency_key(request.headers()) {
        Ok(Some(key)) => {
            request.extensions_mut().insert(key);
        }
        Ok(None) => {}
        Err(message) => {
            let mut response = error_response(StatusCode::BAD_REQUEST, Code::BadRequest, message);
            if let Ok(value) = HeaderValue::from_str(request_id(&ctx)) {
                response.headers_mut().insert(REQUEST_ID, value);
            }
            return response;
        }
    }
    let span = tracing::info_span!(
        "request",
        request_id = request_id(&ctx),
        user = ctx.user_id()
    );
    let mut response = next.run(request).instrument(span).await;
    // Both ids passed `header_value`, so they are valid header values.
    for (name, value) in [(USER_ID, ctx.user_id()), (REQUEST_ID, request_id(&ctx))] {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// The user a WebSocket's context names until its `connection_init` brings the token.
const PENDING_USER: &str = "unauthenticated";

/// Still a request id to quote, as on every response.
fn with_fresh_request_id(mut response: Response) -> Response {
    if let Ok(value) = HeaderValue::from_str(&fresh_request_id()) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// The token's user; `None` for a WebSocket upgrade without an `Authorization` header; else
/// the refusal: `UNAUTHENTICATED` (401, with `WWW-Authenticate`), or `BAD_REQUEST` for an
/// `x-user-id` beside it.
fn authenticate(
    method: &axum::http::Method,
    headers: &HeaderMap,
    verifier: &JwtVerifier,
) -> Result<Option<TokenCaller>, Box<Response>> {
    if headers.contains_key(USER_ID) {
        return Err(Box::new(error_response(
            StatusCode::BAD_REQUEST,
            Code::BadRequest,
            format!(
                "the header `{USER_ID}` is not taken when requests are authenticated: the user \
                 is the token's `sub`"
            ),
        )));
    }
    let refused = |message: String, invalid: bool| {
        let mut response = error_response(StatusCode::UNAUTHORIZED, Code::Unauthenticated, message);
        let challenge = if invalid {
            "Bearer error=\"invalid_token\""
        } else {
            "Bearer"
        };
        response.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        Box::new(response)
    };
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        if method == axum::http::Method::GET && is_websocket_upgrade(headers) {
            return Ok(None);
        }
        return Err(refused(
            "authentication required: send `Authorization: Bearer <token>`".to_owned(),
            false,
        ));
    };
    let token = value.to_str().ok().and_then(bearer).ok_or_else(|| {
        refused(
            "the `Authorization` header must be `Bearer <token>`".to_owned(),
            true,
        )
    })?;
    verifier
        .verify(token)
        .map(Some)
        .map_err(|message| refused(message, true))
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"))
}

/// The context of a request: its user (the token's, or `x-user-id`'s, or anonymous) and id.
fn context(headers: &HeaderMap, user: Option<String>) -> Result<Context, String> {
    let user = match user {
        Some(user) => user,
        None => header_value(headers, &USER_ID)?
            .unwrap_or(Context::ANONYMOUS)
            .to_owned(),
    };
    // Pinned: every call the request makes stores the id its response quotes.
    let request_id = match header_value(headers, &REQUEST_ID)? {
        Some(request_id) => request_id.to_owned(),
        None => fresh_request_id(),
    };
    Ok(Context::new(user).with_request_id(request_id))
}

/// The `Idempotency-Key` header: printable ASCII, not blank, at most [`MAX_ID_LEN`] bytes;
/// surrounding double quotes (a structured-field string) are not part of the key.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, String> {
    let Some(value) = header_value(headers, &IDEMPOTENCY_KEY)? else {
        return Ok(None);
    };
    let key = value
        .strip_prefix('"')
        .and_then(|quoted| quoted.strip_suffix('"'))
        .unwrap_or(value)
        .trim();
    if key.is_empty() {
        return Err(format!("the header `{IDEMPOTENCY_KEY}` must not be blank"));
    }
    Ok(Some(IdempotencyKey(key.to_owned())))
}

fn fresh_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The request id of a request's context, which [`middleware`] always sets.
pub(crate) fn request_id(ctx: &Context) -> &str {
    ctx.request_id().unwrap_or_default()
}

/// The header's value, trimmed; `None` when absent or empty.
fn header_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, String> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(format!("the header `{name}` is given more than once"));
    }
    let value = value
        .to_str()
        .ok()
        .filter(|value| value.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        .ok_or_else(|| format!("the header `{name}` must be printable ASCII"))?
        .trim();
    if value.len() > MAX_ID_LEN {
        return Err(format!(
            "the header `{name}` is longer than {MAX_ID_LEN} characters"
        ));
    }
    Ok((!value.is_empty()).then_some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append((*name).clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn absent_or_empty_headers_give_anonymous_and_a_fresh_request_id() {
        for map in [headers(&[]), headers(&[(&USER_ID, " "), (&REQUEST_ID, "")])] {
            let ctx = context(&map, None).unwrap();
            assert_eq!(ctx.user_id(), Context::ANONYMOUS);
            assert!(uuid::Uuid::parse_str(request_id(&ctx)).is_ok());
        }
    }

    #[test]
    fn given_ids_are_kept_trimmed() {
        let ctx = context(
            &headers(&[(&USER_ID, " alice "), (&REQUEST_ID, "req-1")]),
            None,
        )
        .unwrap();
        assert_eq!((ctx.user_id(), request_id(&ctx)), ("alice", "req-1"));
        assert_eq!(ctx.correlation_id(), Some("req-1"));
    }

    #[test]
    fn an_idempotency_key_is_read_bare_or_quoted() {
        let key = |value: &str| idempotency_key(&headers(&[(&IDEMPOTENCY_KEY, value)]));
        assert_eq!(key("abc-1"), Ok(Some(IdempotencyKey("abc-1".into()))));
        assert_eq!(key("\"abc-1\""), Ok(Some(IdempotencyKey("abc-1".into()))));
        assert_eq!(idempotency_key(&headers(&[])), Ok(None));
        assert!(key("\"\"").is_err());
        assert!(key(&"k".repeat(MAX_ID_LEN + 1)).is_err());
    }

    #[test]
    fn long_repeated_or_unprintable_ids_are_refused() {
        let long = "x".repeat(MAX_ID_LEN + 1);
        assert!(context(&headers(&[(&USER_ID, &long)]), None).is_err());
        assert!(context(&headers(&[(&USER_ID, "a"), (&USER_ID, "b")]), None).is_err());
        let mut map = HeaderMap::new();
        map.insert(USER_ID, HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        assert!(context(&map, None).is_err());
        assert!(context(&headers(&[(&REQUEST_ID, "a\tb")]), None).is_err());
    }
}
