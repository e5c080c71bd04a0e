//! `POST /api`: a GraphQL request in JSON in, a GraphQL response out. What cannot run at all is
//! answered with a 4xx in the same JSON shape, never with a bare status or a 500.

use async_graphql::{Name, PathSegment, ServerError, Value};
use axum::Extension;
use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use entities_runtime::Context;
use serde::Serialize;

use super::BODY_LIMIT;
use super::error::{Code, code_of, set_code};
use super::observability::ResponseCode;
use super::request_context::TokenAtInit;
use super::request_context::{IdempotencyKey, KeyedRequest};
use super::schema::ApiSchema;
use crate::server::HttpLimits;
use sha2::{Digest, Sha256};

/// How soon a client told `UNAVAILABLE` or `UNKNOWN_OUTCOME` may try again (`Retry-After`).
pub const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs one GraphQL request, as the caller of the request's [`Context`].
pub(super) async fn graphql(
    State(schema): State<ApiSchema>,
    Extension(call): Extension<Context>,
    Extension(limits): Extension<HttpLimits>,
    key: Option<Extension<IdempotencyKey>>,
    token_at_init: Option<Extension<TokenAtInit>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Only a WebSocket may bring its token later; a POST that says `Upgrade` is none.
    if token_at_init.is_some() {
        return error_response(
            StatusCode::UNAUTHORIZED,
            Code::Unauthenticated,
            "authentication required: send `Authorization: Bearer <token>`",
        );
    }
    // The whole body within the body timeout: a client sending a byte now and then is cut.
    let body = match tokio::time::timeout(limits.body_timeout, to_bytes(body, BODY_LIMIT)).await {
        Ok(Ok(body)) => body,
        Ok(Err(error)) if is_too_large(&error) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                Code::BadRequest,
                format!("the request body is larger than {} KiB", BODY_LIMIT / 1024),
            );
        }
        Ok(Err(error)) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                Code::BadRequest,
                format!("cannot read the request body: {error}"),
            );
        }
        Err(_) => {
            tracing::warn!(timeout = ?limits.body_timeout, "request body timed out");
            let mut response = error_response(
                StatusCode::REQUEST_TIMEOUT,
                Code::Timeout,
                format!(
                    "the request body did not arrive within {} s",
                    limits.body_timeout.as_secs_f64()
                ),
            );
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
    };
    // JSON only: a browser's cross-site form cannot send it without the site's consent (CORS).
    if !is_json(&headers) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::BadRequest,
            "send the request as JSON, with `Content-Type: application/json`",
        );
    }
    let request = match parse(&body) {
        Ok(request) => request,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, Code::BadRequest, message),
    };
    if let Err(message) = required_variables_given(&request) {
        return error_response(StatusCode::BAD_REQUEST, Code::ValidationFailed, message);
    }
    let mut request = request.data(call);
    if let Some(Extension(IdempotencyKey(key))) = key {
        // "The same request" is the same body: its hash, with the key, is what a retry repeats.
        let fingerprint = Sha256::digest(&body)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        request = request.data(KeyedRequest { key, fingerprint });
    }
    respond(schema.execute(request).await)
}

/// Whether reading the body failed on [`BODY_LIMIT`].
fn is_too_large(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = source {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// `GET /api` that is no WebSocket upgrade: queries are POSTed; point a person at GraphiQL.
pub(super) async fn wrong_method() -> Response {
    let mut response = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        Code::BadRequest,
        "POST a GraphQL request as JSON to /api, or open /graphiql in a browser",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

/// An error response of the GraphQL shape: `{"errors": [{"message", "extensions": {"code"}}]}`.
pub(crate) fn error_response(
    status: StatusCode,
    code: Code,
    message: impl Into<String>,
) -> Response {
    let mut error = ServerError::new(message, None);
    set_code(&mut error, code);
    let mut response = (
        status,
        axum::Json(Shape {
            data: None,
            errors: &[error],
        }),
    )
        .into_response();
    response.extensions_mut().insert(ResponseCode(code));
    response
}

/// A response body: `data` only when the request ran, `errors` only when there are any.
#[derive(Serialize)]
struct Shape<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
    #[serde(skip_serializing_if = "<[ServerError]>::is_empty")]
    errors: &'a [ServerError],
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case("application/json"))
}

/// The body as one GraphQL request, or what is wrong with it in words.
fn parse(body: &[u8]) -> Result<async_graphql::Request, String> {
    const SHAPE: &str = r#"{"query": "...", "variables": {...}, "operationName": "..."}"#;
    let mut value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|error| format!("the request body is not valid JSON: {error}"))?;
    let Some(fields) = value.as_object_mut() else {
        return Err(if value.is_array() {
            format!("batched requests are not supported: send one request, {SHAPE}")
        } else {
            format!("the request body must be a JSON object, {SHAPE}")
        });
    };
    // Clients send `null` for "none" as often as they leave the field out.
    fields.retain(|_, field| !field.is_null());
    if !fields
        .get("query")
        .is_some_and(serde_json::Value::is_string)
    {
        return Err(format!(
            "the request has no `query` string: expected {SHAPE}"
        ));
    }
    serde_json::from_value(value).map_err(|error| {
        format!("the request is not a GraphQL request ({error}): expected {SHAPE}")
    })
}

/// Every non-null variable the operation declares without a default is given, and not null:
/// async-graphql would find out only when a field uses it, after the fields before it ran (a
/// mutation before it, say). A query that does not parse passes: the schema says why.
fn required_variables_given(request: &async_graphql::Request) -> Result<(), String> {
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return Ok(());
    };
    let operation = document.operations.iter().find(|(name, _)| {
        request.operation_name.is_none()
            || name.map(|name| name.as_str()) == request.operation_name.as_deref()
    });
    let Some((_, operation)) = operation else {
        return Ok(());
    };
    for definition in &operation.node.variable_definitions {
        let definition = &definition.node;
        let name = definition.name.node.as_str();
        let given = request
            .variables
            .get(name)
            .is_some_and(|value| *value != Value::Null);
        if !definition.var_type.node.nullable && definition.default_value.is_none() && !given {
            return Err(format!(
                "the variable `${name}` of type `{}` is required: give it a value in `variables`",
                definition.var_type.node
            ));
        }
    }
    Ok(())
}

/// The response as JSON. A request that did not run (only request-stage errors, no data) is a
/// 400 without `data`; anything that ran is a 200, its errors beside its data.
fn respond(mut response: async_graphql::Response) -> Response {
    // Whether any field produced data: a field that failed on its arguments (a variable null
    // where the argument is not) ran nothing.
    let ran = response.data != Value::Null;
    // async-graphql leaves a failed field out of `data` (and `data` null when every field
    // failed); GraphQL, like the original, has it `null` beside its error. Every root field is
    // nullable, and only root fields fail, so that is where the nulls go.
    for error in &response.errors {
        if let [PathSegment::Field(key)] = error.path.as_slice() {
            if response.data == Value::Null {
                response.data = Value::Object(Default::default());
            }
            if let Value::Object(fields) = &mut response.data {
                fields.entry(Name::new(key)).or_insert(Value::Null);
            }
        }
    }
    for error in &mut response.errors {
        if code_of(error).is_none() {
            // async-graphql's own refusals outside parse and validation: a field's argument
            // that its type refuses (a variable left undefined), or no operation to run (an
            // unknown `operationName`, several operations and none named).
            let code = if error.path.is_empty() {
                Code::BadRequest
            } else {
                Code::ValidationFailed
            };
            set_code(error, code);
        }
    }
    let refused = !ran
        && !response.errors.is_empty()
        && response
            .errors
            .iter()
            .all(|error| code_of(error).is_some_and(Code::is_request_error));
    let retry_later = response
        .errors
        .iter()
        .any(|error| code_of(error).is_some_and(Code::is_retry_later));
    let (status, data) = if refused {
        (StatusCode::BAD_REQUEST, None)
    } else if retry_later {
        // The data beside stays: other fields (reads served from memory) may have answered.
        (StatusCode::SERVICE_UNAVAILABLE, Some(&response.data))
    } else {
        (StatusCode::OK, Some(&response.data))
    };
    let body = Shape {
        data,
        errors: &response.errors,
    };
    let first_code = response.errors.first().and_then(code_of);
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(code) = first_code {
        response.extensions_mut().insert(ResponseCode(code));
    }
    if retry_later {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(RETRY_AFTER.as_secs()),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_recognised_with_parameters_and_in_any_case() {
        for (value, json) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(is_json(&headers), json, "{value}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn bodies_that_are_not_one_graphql_request_say_why() {
        let reason = |body: &str| parse(body.as_bytes()).map(|_| ()).unwrap_err();
        assert!(reason("{\"query\": ").contains("not valid JSON"));
        assert!(reason("[{\"query\": \"{ a }\"}]").contains("batched"));
        assert!(reason("42").contains("JSON object"));
        assert!(reason("{\"variables\": {}}").contains("no `query`"));
        assert!(
            reason("{\"query\": \"{ a }\", \"variables\": 3}").contains("not a GraphQL request")
        );
        let request = parse(br#"{"query": "{ a }", "variables": null, "operationName": null}"#)
            .expect("nulls are as good as absent");
        assert_eq!(request.query, "{ a }");
    }
}
