//! A real server for the HTTP tests: the app on 127.0.0.1 and a free port, over a real database.
#![allow(dead_code, reason = "each test file uses its own part of the support")]

pub mod cluster;
pub mod ws;

use entities_runtime::testing::TestDatabase;
use entities_runtime::{Backend, Runtime};
use example::{MIGRATIONS, api};
use serde_json::{Value, json};

pub struct Server {
    pub base: String,
    pub runtime: Runtime,
    pub client: reqwest::Client,
    /// The projector and subscriber the server runs beside the API.
    pub streams: example::streams::Streams,
    url: String,
    _db: Option<TestDatabase>,
}

impl Server {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, example::server::HttpLimits::default()).await
    }

    /// A server with these connection and request limits.
    pub async fn start_with(backend: Backend, limits: example::server::HttpLimits) -> Self {
        let db = TestDatabase::new(backend).await;
        let runtime = Runtime::builder(&db.url)
            .migrations(MIGRATIONS)
            .build()
            .await
            .expect("runtime");
        let url = db.url.clone();
        Self::serve(runtime, limits, url, Some(db)).await
    }

    /// A server over `runtime`, on a database the caller keeps.
    pub async fn over(runtime: Runtime, url: &str) -> Self {
        Self::serve(
            runtime,
            example::server::HttpLimits::default(),
            url.to_owned(),
            None,
        )
        .await
    }

    /// A server that authenticates requests as `auth` says.
    pub async fn start_with_auth(backend: Backend, auth: api::Auth) -> Self {
        let db = TestDatabase::new(backend).await;
        let runtime = Runtime::builder(&db.url)
            .migrations(MIGRATIONS)
            .build()
            .await
            .expect("runtime");
        let url = db.url.clone();
        Self::serve_with(runtime, Default::default(), url, Some(db), auth).await
    }

    async fn serve(
        runtime: Runtime,
        limits: example::server::HttpLimits,
        url: String,
        db: Option<TestDatabase>,
    ) -> Self {
        Self::serve_with(runtime, limits, url, db, api::Auth::Open).await
    }

    async fn serve_with(
        runtime: Runtime,
        limits: example::server::HttpLimits,
        url: String,
        db: Option<TestDatabase>,
        auth: api::Auth,
    ) -> Self {
        api::install_metrics();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let base = format!("http://{}", listener.local_addr().expect("bound"));
        let app = api::router(runtime.clone(), &limits, auth);
        tokio::spawn(example::server::serve(
            listener,
            app,
            limits,
            std::future::pending(),
        ));
        let streams = example::streams::start(&runtime);
        Self {
            base,
            streams,
            runtime,
            client: reqwest::Client::new(),
            url,
            _db: db,
        }
    }

    /// The server's address, `127.0.0.1:PORT`, for a raw connection.
    pub fn address(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// The URL of the server's database, for a second runtime on it.
    pub fn database_url(&self) -> &str {
        &self.url
    }

    /// GETs `path` (`/health/ready`, say).
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("the server answers")
    }

    /// POSTs `body` as is to /api.
    pub async fn post_raw(
        &self,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}/api", self.base))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("the server answers")
    }

    /// Runs a GraphQL query; returns the HTTP status and the JSON body.
    pub async fn graphql(&self, query: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let response = self
            .post_raw(json!({ "query": query }).to_string(), headers)
            .await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    /// The HTTP status, and the `extensions.code` and message of the first error, of `query`.
    pub async fn error(&self, query: &str) -> (u16, String, String) {
        self.error_of_body(&json!({ "query": query }).to_string())
            .await
    }

    /// The HTTP status, and the `extensions.code` and message of the first error, of a POST of
    /// `body` as JSON.
    pub async fn error_of_body(&self, body: &str) -> (u16, String, String) {
        let response = self.post_raw(body.to_owned(), &[]).await;
        first_error(response).await
    }

    /// How many events the database holds, over every list.
    pub async fn events(&self) -> i64 {
        let sql = match self.runtime.backend() {
            Backend::Postgres => "SELECT count(*) FROM entities.entity_events",
            Backend::Sqlite => "SELECT count(*) FROM entity_events",
        };
        let (count,) = self
            .runtime
            .database()
            .query(sql)
            .fetch_one()
            .await
            .unwrap();
        count
    }
}

/// The HTTP status, and the `extensions.code` and message of the first error, of `response`,
/// which must be JSON of GraphQL's shape.
pub async fn first_error(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("a JSON body");
    let error = &body["errors"][0];
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    (
        status,
        text(&error["extensions"]["code"]),
        text(&error["message"]),
    )
}

#[allow(unused_imports, reason = "not every test file runs on both backends")]
pub use entities_runtime::testing::on_both_backends;
