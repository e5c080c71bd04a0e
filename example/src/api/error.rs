//! How the API reports failures: every error carries `extensions.code` and a message a person
//! understands; internal details go to the log, not to the client.

use async_graphql::{ErrorExtensions, Response};
use entities_runtime::{Context, Error};

use crate::ShoppingListError;

/// The `extensions.code` of an API error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// No such list, or no such item on it.
    NotFound,
    /// Another list has the name.
    NameTaken,
    /// The input breaks a rule: a blank name, a quantity below 1, a query too deep or too complex.
    Validation,
    /// Other writers kept changing the list; retrying the request is safe.
    Conflict,
    /// The request never reached GraphQL: malformed JSON, a body over the limit, a bad header.
    BadRequest,
    /// Our fault; the message names the request id to look for in the log.
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::NotFound => "NOT_FOUND",
            Code::NameTaken => "NAME_TAKEN",
            Code::Validation => "VALIDATION",
            Code::Conflict => "CONFLICT",
            Code::BadRequest => "BAD_REQUEST",
            Code::Internal => "INTERNAL",
        }
    }
}

/// A GraphQL error with its code.
pub fn coded(code: Code, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message)
        .extend_with(|_, extensions| extensions.set("code", code.as_str()))
}

/// The API's answer to a runtime error.
pub fn api_error(error: Error<ShoppingListError>, call: &Context) -> async_graphql::Error {
    use ShoppingListError::*;
    match error {
        Error::Rejected(rejection) => {
            let code = match rejection {
                NameTaken(_) => Code::NameTaken,
                ItemNotFound(_) => Code::NotFound,
                AlreadyExists(_) | BlankName | QuantityNotPositive(_) | ItemExists(_) => {
                    Code::Validation
                }
            };
            coded(code, rejection.to_string())
        }
        Error::NotFound { id, .. } => {
            coded(Code::NotFound, format!("there is no shopping list {id}"))
        }
        Error::Conflict { .. } => coded(
            Code::Conflict,
            "the list kept changing under this request; it changed nothing, and may be retried",
        ),
        error => {
            tracing::error!(request_id = %call.request_id, %error, "request failed");
            coded(
                Code::Internal,
                format!(
                    "internal error; it is logged under request id {}",
                    call.request_id
                ),
            )
        }
    }
}

/// Gives every error of `response` a code: those async-graphql raises itself (a query that does
/// not parse, names an unknown field, or is too deep or too complex) have none.
pub fn with_codes(mut response: Response) -> Response {
    for error in &mut response.errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", Code::Validation.as_str());
        }
    }
    response
}
