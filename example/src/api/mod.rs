//! The ShoppingList over HTTP: GraphQL at `POST /api` (the original's schema, and more),
//! subscriptions over a WebSocket at the same path (`graphql-transport-ws`), and a GraphiQL page
//! at `GET /graphiql`, served entirely from the binary.
//!
//! Every request gets a [`Context`](entities_runtime::Context): the user from `x-user-id`
//! (absent: `anonymous`), the request id from `x-request-id` (absent: a new UUID). Both are
//! stored with the actions and events the request causes, and echoed in the response headers.
//! A request with an `Idempotency-Key` ([`IDEMPOTENCY_KEY`]) makes each of its mutations a keyed
//! call: the key scoped to the user and to the mutation's field, the body's hash as the request's
//! fingerprint. Sent again with the same key and body, a mutation returns its first result and
//! applies nothing; with another body it is `IDEMPOTENCY_KEY_REUSED`.
//!
//! Every error carries `extensions.code` ([`Code`]) and a message a person understands; a
//! user's mistake is never an HTTP 500:
//!
//! - the domain's refusals (`NOT_FOUND`, `NAME_TAKEN`, `VALIDATION`, `CONFLICT`, `FORBIDDEN`),
//!   `IDEMPOTENCY_KEY_REUSED` and `INTERNAL` come with HTTP 200 and `data`, the failed field
//!   `null`;
//! - a request that cannot run at all gets a 4xx and no `data`: `BAD_REQUEST` for a body that is
//!   not a GraphQL request in JSON (400), not sent as `application/json` (415) or over
//!   [`BODY_LIMIT`] (413), or a bad `x-user-id`/`x-request-id`/`Idempotency-Key` (400);
//!   `UNAUTHENTICATED` (401) without a valid bearer token when authentication is on;
//!   `GRAPHQL_PARSE_FAILED`, `GRAPHQL_VALIDATION_FAILED`, `QUERY_TOO_DEEP` (over
//!   [`DEPTH_LIMIT`]) and `QUERY_TOO_COMPLEX` (over [`COMPLEXITY_LIMIT`]) for a query that does
//!   not parse, does not fit the schema or is too costly (400); `TIMEOUT` (408) for a body that
//!   does not arrive, or a request not answered, in time (see [`HttpLimits`]);
//! - an answer that would hold more list data than [`RESPONSE_BUDGET`] has the fields past it
//!   `null`, each with `QUERY_TOO_COMPLEX` (HTTP 200: the others keep their data);
//! - a path that does not exist (404) or a method a route does not take (405) has the same JSON
//!   shape.

mod auth;
mod budget;
mod error;
mod graphiql;
mod guards;
mod http;
mod observability;
mod request_context;
mod schema;
mod websocket;

pub use auth::{Auth, JwtVerifier};
pub use budget::RESPONSE_BUDGET;
pub use error::Code;
pub use observability::install as install_metrics;
pub use request_context::{IDEMPOTENCY_KEY, MAX_ID_LEN, REQUEST_ID, USER_ID};
pub use schema::{ApiSchema, schema};
pub use websocket::{CLOSE_GOING_AWAY, CLOSE_INIT_TIMEOUT, CLOSE_TOKEN_EXPIRED, OPERATION_LIMIT};

use axum::{Extension, Router};

use crate::server::HttpLimits;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::Redirect;
use axum::routing::get;

/// The deepest query accepted, in levels of fields. The API's own queries need 3
/// (`shoppingLists { items { name } }`); GraphiQL's introspection query, which loads the
/// schema for its docs and completion, needs 15.
pub const DEPTH_LIMIT: usize = 16;
/// The most complex query accepted: each field counts 1, and a field of `shoppingLists` counts
/// once per list of the page. GraphiQL's introspection query counts 217.
pub const COMPLEXITY_LIMIT: usize = 1_000;
/// The largest page of `shoppingLists`.
pub const PAGE_LIMIT: i32 = 100;
/// The longest page of `shoppingListHistory`.
pub const HISTORY_LIMIT: i32 = 500;
/// The longest `popularItems` answer.
pub const POPULAR_LIMIT: i32 = 100;
/// The most items one `addItems` adds.
pub const BATCH_LIMIT: usize = 100;
/// The largest request body `/api` reads, in bytes: 64 KiB.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The app: `/api`, `/graphiql` and its files, and `/`, which leads to GraphiQL; each request
/// bounded by `limits` (its body and its whole run; the connection's are the server's).
pub fn router(runtime: entities_runtime::Runtime, limits: &HttpLimits, auth: Auth) -> Router {
    Router::new()
        .route("/api", get(websocket::subscriptions).post(http::graphql))
        .route("/graphiql", get(graphiql::page))
        .route("/graphiql/{file}", get(graphiql::file))
        .route("/", get(|| async { Redirect::to("/graphiql") }))
        // Browsers ask for it; there is none, and a 404 would be a console error on every visit.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/metrics", get(observability::metrics))
        .route("/health/live", get(observability::live))
        .route("/health/ready", get(observability::ready))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            limits.clone(),
            guards::deadline,
        ))
        .layer(axum::middleware::from_fn(guards::declared_length))
        .layer(axum::middleware::from_fn_with_state(
            auth,
            request_context::middleware,
        ))
        .layer(axum::middleware::from_fn(guards::json_errors))
        .layer(axum::middleware::from_fn(observability::count_requests))
        .layer(Extension(limits.clone()))
        .layer(Extension(runtime.clone()))
        .with_state(schema(runtime))
}
