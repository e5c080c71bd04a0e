//! `GET /graphiql`: the GraphiQL page and its files, all embedded in the binary, so it works
//! with no CDN and no network. The vendored files come from `scripts/vendor-graphiql` (see
//! `example/assets/graphiql/README.md`); the page (`index.html`, `init.js`) is ours.

use axum::extract::Path;
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Everything the page loads comes from this server. GraphiQL sets inline styles, and its CSS
/// carries its fonts and icons as `data:` URLs.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The files under `/graphiql/`: name, content type, contents.
const FILES: &[(&str, &str, &str)] = &[
    ("init.js", JAVASCRIPT, include_str!("init.js")),
    (
        "graphiql.min.js",
        JAVASCRIPT,
        include_str!("../../assets/graphiql/graphiql.min.js"),
    ),
    (
        "graphiql.min.css",
        CSS,
        include_str!("../../assets/graphiql/graphiql.min.css"),
    ),
    (
        "react.production.min.js",
        JAVASCRIPT,
        include_str!("../../assets/graphiql/react.production.min.js"),
    ),
    (
        "react-dom.production.min.js",
        JAVASCRIPT,
        include_str!("../../assets/graphiql/react-dom.production.min.js"),
    ),
];

pub(super) async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("index.html"),
    )
        .into_response()
}

pub(super) async fn file(Path(name): Path<String>) -> Response {
    let Some(&(_, content_type, contents)) = FILES.iter().find(|(file, ..)| *file == name) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let headers: [(HeaderName, &str); 3] = [
        (header::CONTENT_TYPE, content_type),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // The names carry no version: after an upgrade a browser fetches them again within an hour.
        (header::CACHE_CONTROL, "public, max-age=3600"),
    ];
    (headers, contents).into_response()
}
