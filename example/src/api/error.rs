//! The API's error codes (`extensions.code`) and how each failure maps to one.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ErrorExtensions, ServerError, ServerResult, ValidationResult, Variables};
use entities_runtime::{Context, Error};

use super::request_context::request_id;
use super::{COMPLEXITY_LIMIT, DEPTH_LIMIT};
use crate::ShoppingListError;

/// The `extensions.code` of every error the API returns.
///
/// The domain's codes come with HTTP 200 and `data` (the failed field is `null`); the request
/// codes (`BAD_REQUEST`, `GRAPHQL_*`, `QUERY_TOO_*`) mean nothing ran: HTTP 4xx, no `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// No list with that id, or no item with that id on the list.
    NotFound,
    /// Another list has that name.
    NameTaken,
    /// The domain refused the input: a blank name, a quantity not above 0, a page out of bounds.
    Validation,
    /// Other writers kept changing the list; trying again may succeed.
    Conflict,
    /// The request's `Idempotency-Key` was used before with another body (or by another of the
    /// request's mutations): nothing was applied. A GraphQL error beside `data`, like the domain's,
    /// so that one mutation's reused key does not hide the others' results.
    IdempotencyKeyReused,
    /// The database is away (or the server is shutting down): nothing was applied; try again
    /// after the response's `Retry-After` (HTTP 503).
    Unavailable,
    /// A mutation's commit got no answer (the database went away during it): it may or may not
    /// be applied. Send it again with the same `Idempotency-Key` to apply it exactly once
    /// (HTTP 503).
    UnknownOutcome,
    /// Authentication is on and the request has no valid bearer token (HTTP 401).
    Unauthenticated,
    /// The list is not the caller's, nor shared with them.
    Forbidden,
    /// The server failed (a bug, a statement the database refused); logged with the request
    /// id, never detailed.
    Internal,
    /// The HTTP request is not a GraphQL request: not JSON, too large, a batch, a bad header.
    BadRequest,
    /// The query does not parse.
    ParseFailed,
    /// The query does not fit the schema: an unknown field, a missing or mistyped argument, an
    /// `Int` out of range.
    ValidationFailed,
    /// The query is nested deeper than [`DEPTH_LIMIT`].
    TooDeep,
    /// The query is costlier than [`COMPLEXITY_LIMIT`], or its answer would hold more list data
    /// than the response budget.
    TooComplex,
    /// The request's body did not arrive, or the request was not answered, in time (408).
    Timeout,
}

impl Code {
    pub const ALL: [Code; 16] = [
        Code::NotFound,
        Code::NameTaken,
        Code::Validation,
        Code::Conflict,
        Code::IdempotencyKeyReused,
        Code::Unavailable,
        Code::UnknownOutcome,
        Code::Unauthenticated,
        Code::Forbidden,
        Code::Internal,
        Code::BadRequest,
        Code::ParseFailed,
        Code::ValidationFailed,
        Code::TooDeep,
        Code::TooComplex,
        Code::Timeout,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Code::NotFound => "NOT_FOUND",
            Code::NameTaken => "NAME_TAKEN",
            Code::Validation => "VALIDATION",
            Code::Conflict => "CONFLICT",
            Code::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            Code::Unavailable => "UNAVAILABLE",
            Code::UnknownOutcome => "UNKNOWN_OUTCOME",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::Forbidden => "FORBIDDEN",
            Code::Internal => "INTERNAL",
            Code::BadRequest => "BAD_REQUEST",
            Code::ParseFailed => "GRAPHQL_PARSE_FAILED",
            Code::ValidationFailed => "GRAPHQL_VALIDATION_FAILED",
            Code::TooDeep => "QUERY_TOO_DEEP",
            Code::TooComplex => "QUERY_TOO_COMPLEX",
            Code::Timeout => "TIMEOUT",
        }
    }

    pub fn parse(code: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == code)
    }

    /// Whether the code says "try again later" (HTTP 503 with `Retry-After`).
    pub const fn is_retry_later(self) -> bool {
        matches!(self, Code::Unavailable | Code::UnknownOutcome)
    }

    /// Whether the code stops a request before anything runs (an HTTP 4xx).
    pub const fn is_request_error(self) -> bool {
        matches!(
            self,
            Code::BadRequest
                | Code::ParseFailed
                | Code::ValidationFailed
                | Code::TooDeep
                | Code::TooComplex
                | Code::Timeout
                | Code::Unauthenticated
        )
    }
}

/// An error with `message` and `extensions.code`.
pub(crate) fn coded(code: Code, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message)
        .extend_with(|_, extensions| extensions.set("code", code.as_str()))
}

/// The code of an error, if it has one.
pub(crate) fn code_of(error: &ServerError) -> Option<Code> {
    match error.extensions.as_ref()?.get("code")? {
        async_graphql::Value::String(code) => Code::parse(code),
        _ => None,
    }
}

pub(crate) fn set_code(error: &mut ServerError, code: Code) {
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", code.as_str());
}

/// A failed call to a list, as the API reports it.
///
/// `ItemNotFound` is `NOT_FOUND` like an unknown list: in both, the caller named something that
/// is not there. The other refusals are `VALIDATION` (the create-only ones, `AlreadyExists` and
/// `ItemExists`, cannot arise through this API: ids are the server's). Whatever is not the
/// caller's doing is `INTERNAL`: logged with the request id, which the message quotes, and never
/// described to the client.
pub(crate) fn api_error(error: Error<ShoppingListError>, call: &Context) -> async_graphql::Error {
    match error {
        Error::Rejected(refusal) => {
            let code = match refusal {
                ShoppingListError::NameTaken(_) => Code::NameTaken,
                ShoppingListError::Forbidden(_) | ShoppingListError::NotOwner(_) => Code::Forbidden,
                ShoppingListError::ItemNotFound(_) => Code::NotFound,
                ShoppingListError::AlreadyExists(_)
                | ShoppingListError::BlankName
                | ShoppingListError::NameTooLong(_)
                | ShoppingListError::ControlCharacter(_)
                | ShoppingListError::ListFull
                | ShoppingListError::BadUserId
                | ShoppingListError::QuantityNotPositive(_)
                | ShoppingListError::ItemExists(_) => Code::Validation,
            };
            coded(code, refusal.to_string())
        }
        // Every action's content comes from the request here: what the store cannot keep (a
        // NUL in an item id, say) is the caller's to fix, and nothing was stored.
        Error::Payload { message, .. } => coded(
            Code::Validation,
            format!("the request holds what cannot be stored: {message}"),
        ),
        Error::NotFound { id, .. } => {
            coded(Code::NotFound, format!("no shopping list with id {id}"))
        }
        Error::Conflict { id, attempts, .. } => {
            tracing::warn!(
                request_id = request_id(call),
                list = id,
                attempts,
                "version conflict"
            );
            coded(
                Code::Conflict,
                format!("shopping list {id} kept changing while this request ran; try again"),
            )
        }
        Error::IdempotencyKeyReused { key } => coded(
            Code::IdempotencyKeyReused,
            format!(
                "the idempotency key `{}` was used before for another request: send a new key \
                 for a new request",
                key.rsplit_once(':').map_or(key.as_str(), |(key, _)| key)
            ),
        ),
        // A batch's refusal names its item.
        Error::InBatch { index, error } => {
            let mut error = api_error(*error, call);
            error.message = format!("item {index}: {}", error.message);
            error
        }
        Error::ShuttingDown => coded(
            Code::Unavailable,
            "the server is shutting down; try again when it is back",
        ),
        Error::OutcomeUnknown(_) | Error::Unanswered { .. } => {
            tracing::warn!(request_id = request_id(call), user = call.user_id(), %error, "commit outcome unknown");
            coded(
                Code::UnknownOutcome,
                "the database did not answer the commit: the change may or may not be applied; \
                 send the request again with the same `Idempotency-Key` to apply it exactly once",
            )
        }
        error if error.is_unavailable() => {
            tracing::warn!(request_id = request_id(call), %error, "database unavailable");
            coded(
                Code::Unavailable,
                "the database is unavailable: nothing was applied; try again shortly",
            )
        }
        error => {
            tracing::error!(request_id = request_id(call), user = call.user_id(), %error, "request failed");
            coded(
                Code::Internal,
                format!(
                    "internal error: the server logged it under request id {}",
                    request_id(call)
                ),
            )
        }
    }
}

/// Gives the errors of the parse and validation stages their codes and plain messages.
pub(crate) struct RequestErrorCodes;

impl ExtensionFactory for RequestErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RequestErrorCodes)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for RequestErrorCodes {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables).await.map_err(|mut error| {
            // The parser's own guard against deep nesting, before the depth limit is checked.
            let code = if error.message.starts_with("The recursion depth") {
                Code::TooDeep
            } else {
                Code::ParseFailed
            };
            set_code(&mut error, code);
            error
        })
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|mut error| {
                    // async-graphql reports its limits by these messages (pinned by the tests).
                    let code = match error.message.as_str() {
                        "Query is nested too deep." => {
                            error.message = format!(
                                "the query is nested too deep: at most {DEPTH_LIMIT} levels of fields"
                            );
                            Code::TooDeep
                        }
                        "Query is too complex." => {
                            error.message = format!(
                                "the query is too complex: it selects more than {COMPLEXITY_LIMIT} fields \
                                 (a page of lists counts its fields once per list)"
                            );
                            Code::TooComplex
                        }
                        _ => Code::ValidationFailed,
                    };
                    set_code(&mut error, code);
                    error
                })
                .collect()
        })
    }
}
