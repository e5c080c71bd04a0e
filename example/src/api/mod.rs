//! The ShoppingList over HTTP: GraphQL at `POST /api` (the original's schema, and more) and a
//! GraphiQL page at `GET /graphiql`, served entirely from the binary.
//!
//! Every request gets a [`Context`]: the user from `x-user-id` (absent: `anonymous`), the request
//! id from `x-request-id` (absent: a new UUID). Both are stored with the actions and events the
//! request causes, and echoed in the response headers.
//!
//! Errors never become an HTTP 500: GraphQL errors come back with status 200 and
//! `extensions.code` (see [`error::Code`]); a request that never reaches GraphQL (malformed JSON,
//! a body over [`BODY_LIMIT`], a bad header) gets a 4xx with the same JSON shape, code
//! `BAD_REQUEST`.

pub mod error;
pub mod schema;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use entities_runtime::{Context, Runtime};

use error::Code;
use schema::ApiSchema;

/// The deepest query accepted: the original's deepest (`shoppingList { items { ... } }`) is 3.
pub const DEPTH_LIMIT: usize = 8;
/// The most complex query accepted (async-graphql's count: one per field, lists weighted).
pub const COMPLEXITY_LIMIT: usize = 1_000;
/// The largest page of `shoppingLists`.
pub const PAGE_LIMIT: i32 = 100;
/// The largest request body accepted, in bytes.
pub const BODY_LIMIT: usize = 64 * 1024;
/// The longest `x-user-id` or `x-request-id` accepted.
pub const HEADER_LIMIT: usize = 200;

const USER_ID: HeaderName = HeaderName::from_static("x-user-id");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The app: `/api`, `/graphiql` and its assets.
pub fn router(runtime: Runtime) -> Router {
    Router::new()
        .route("/api", post(graphql))
        .route("/graphiql", get(graphiql_page))
        .route("/graphiql/{asset}", get(graphiql_asset))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(Arc::new(schema::schema(runtime)))
}

async fn graphql(
    State(schema): State<Arc<ApiSchema>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let ctx = match request_context(&headers) {
        Ok(ctx) => ctx,
        Err(message) => return bad_request(StatusCode::BAD_REQUEST, message, None),
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("the request body is larger than {BODY_LIMIT} bytes")
            } else {
                rejection.body_text()
            };
            return bad_request(status, message, Some(&ctx));
        }
    };
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            let message = format!(
                "the body is not a GraphQL request: expected JSON like {{\"query\": \"...\", \"variables\": {{}}}} ({error})"
            );
            return bad_request(StatusCode::BAD_REQUEST, message, Some(&ctx));
        }
    };
    let response = error::with_codes(schema.execute(request.data(ctx.clone())).await);
    let mut reply = axum::Json(response).into_response();
    echo(&mut reply, &ctx);
    reply
}

/// The request's context from its headers.
fn request_context(headers: &HeaderMap) -> Result<Context, String> {
    let header = |name: &HeaderName| -> Result<Option<String>, String> {
        let Some(value) = headers.get(name) else {
            return Ok(None);
        };
        match value.to_str() {
            Ok(value) if !value.is_empty() && value.len() <= HEADER_LIMIT => {
                Ok(Some(value.to_owned()))
            }
            _ => Err(format!(
                "`{name}` must be 1 to {HEADER_LIMIT} visible ASCII characters"
            )),
        }
    };
    let user = header(&USER_ID)?.unwrap_or_else(|| Context::ANONYMOUS.to_owned());
    let ctx = Context::new(user);
    Ok(match header(&REQUEST_ID)? {
        Some(request_id) => ctx.with_request_id(request_id),
        None => ctx,
    })
}

/// Sends the user and request ids back, so a client can quote them.
fn echo(reply: &mut Response, ctx: &Context) {
    for (name, value) in [(USER_ID, &ctx.user_id), (REQUEST_ID, &ctx.request_id)] {
        if let Ok(value) = HeaderValue::from_str(value) {
            reply.headers_mut().insert(name, value);
        }
    }
}

/// A request that never reached GraphQL, answered in GraphQL's error shape.
fn bad_request(status: StatusCode, message: String, ctx: Option<&Context>) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": Code::BadRequest.as_str() } }]
    });
    let mut reply = (status, axum::Json(body)).into_response();
    if let Some(ctx) = ctx {
        echo(&mut reply, ctx);
    }
    reply
}

async fn graphiql_page() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("index.html"),
    )
}

/// The vendored GraphiQL files (see `example/assets/graphiql/README.md`) and the page's script.
async fn graphiql_asset(Path(asset): Path<String>) -> Response {
    let (content_type, body): (&str, &'static [u8]) = match asset.as_str() {
        "graphiql.min.js" => (
            "text/javascript",
            include_bytes!("../../assets/graphiql/graphiql.min.js"),
        ),
        "graphiql.min.css" => (
            "text/css",
            include_bytes!("../../assets/graphiql/graphiql.min.css"),
        ),
        "react.production.min.js" => (
            "text/javascript",
            include_bytes!("../../assets/graphiql/react.production.min.js"),
        ),
        "react-dom.production.min.js" => (
            "text/javascript",
            include_bytes!("../../assets/graphiql/react-dom.production.min.js"),
        ),
        "init.js" => ("text/javascript", include_bytes!("init.js")),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}
