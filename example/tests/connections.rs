//! What a client can hold of the server, over raw TCP: a connection that sends nothing, a head
//! or a body that trickles, a body declared huge, more connections than the server serves, a
//! request that takes too long, a client that reads nothing of its answers; and every error in
//! the JSON error shape.

mod support;

use std::time::Duration;

use entities_runtime::{Backend, sqlx};
use example::server::HttpLimits;
use serde_json::Value;
use support::{Server, on_both_backends};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

on_both_backends!(a_request_not_answered_in_time_is_a_timeout_and_its_mutation_still_applies);

/// Long enough for any answer on a loaded machine; the timeouts under test are far shorter.
const PATIENCE: Duration = Duration::from_secs(10);

fn limits() -> HttpLimits {
    HttpLimits {
        header_timeout: Duration::from_secs(60),
        body_timeout: Duration::from_secs(60),
        request_timeout: Duration::from_secs(60),
        ..HttpLimits::default()
    }
}

/// Everything the server sends until it closes the connection; panics if it does not close
/// within [`PATIENCE`].
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut received))
        .await
        .expect("the server closes the connection")
        .ok();
    received
}

/// The status and JSON body of one HTTP response (with `Content-Length`).
fn response(bytes: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("an HTTP response: {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head:?}"));
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_trickling_connections_are_closed_after_the_header_timeout() {
    let server = Server::start_with(
        Backend::Sqlite,
        HttpLimits {
            header_timeout: Duration::from_millis(300),
            ..limits()
        },
    )
    .await;
    // Nothing sent at all.
    let mut silent = TcpStream::connect(server.address()).await.unwrap();
    assert!(until_closed(&mut silent).await.is_empty());
    // Half a head.
    let mut trickle = TcpStream::connect(server.address()).await.unwrap();
    trickle
        .write_all(b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Le")
        .await
        .unwrap();
    let sent = until_closed(&mut trickle).await;
    assert!(
        sent.is_empty() || response(&sent).0 == 408,
        "{:?}",
        String::from_utf8_lossy(&sent)
    );
    // A keep-alive connection idle after its answer.
    let mut idle = TcpStream::connect(server.address()).await.unwrap();
    idle.write_all(b"GET /favicon.ico HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answered = until_closed(&mut idle).await;
    assert!(
        String::from_utf8_lossy(&answered).starts_with("HTTP/1.1 204"),
        "answered first, then closed: {:?}",
        String::from_utf8_lossy(&answered)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_is_a_timeout_and_changes_nothing() {
    let server = Server::start_with(
        Backend::Sqlite,
        HttpLimits {
            body_timeout: Duration::from_millis(300),
            ..limits()
        },
    )
    .await;
    let events = server.events().await;
    let mut stream = TcpStream::connect(server.address()).await.unwrap();
    stream
        .write_all(
            b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"query\": \"mut",
        )
        .await
        .unwrap();
    let (status, body) = response(&until_closed(&mut stream).await);
    assert_eq!((status, code(&body)), (408, "TIMEOUT"), "{body}");
    assert_eq!(server.events().await, events);
}

/// The finding: `content-length: 10000000000` with a 2-byte body was never answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_declared_too_large_is_refused_at_once() {
    let server = Server::start_with(Backend::Sqlite, limits()).await;
    let mut stream = TcpStream::connect(server.address()).await.unwrap();
    stream
        .write_all(
            b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 10000000000\r\n\r\n{}",
        )
        .await
        .unwrap();
    let (status, body) = response(&until_closed(&mut stream).await);
    assert_eq!((status, code(&body)), (413, "BAD_REQUEST"), "{body}");
    assert_eq!(
        body["errors"][0]["message"],
        "the request body is larger than 64 KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    let server = Server::start_with(
        Backend::Sqlite,
        HttpLimits {
            max_connections: 2,
            ..limits()
        },
    )
    .await;
    let first = TcpStream::connect(server.address()).await.unwrap();
    let _second = TcpStream::connect(server.address()).await.unwrap();
    let mut third = TcpStream::connect(server.address()).await.unwrap();
    third
        .write_all(b"GET /favicon.ico HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut byte = [0; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), third.peek(&mut byte))
            .await
            .is_err(),
        "not served while two connections are held"
    );
    drop(first);
    let answered = until_closed(&mut third).await;
    assert!(
        String::from_utf8_lossy(&answered).starts_with("HTTP/1.1 204"),
        "{:?}",
        String::from_utf8_lossy(&answered)
    );
}

/// A client that asks for large answers and reads none of them: once the server's writes make
/// no progress for the write timeout, its connection is closed and its place freed. Here it
/// holds the only place, so another client is served only after the cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_nothing_of_its_answers_is_cut_after_the_write_timeout() {
    let server = Server::start_with(
        Backend::Sqlite,
        HttpLimits {
            write_timeout: Duration::from_millis(300),
            max_connections: 1,
            ..limits()
        },
    )
    .await;
    const ANSWERS: usize = 20;
    let script = std::fs::metadata(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/graphiql/graphiql.min.js"
    ))
    .unwrap()
    .len() as usize;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket
        .connect(server.address().parse().unwrap())
        .await
        .unwrap();
    stuck
        .write_all(
            "GET /graphiql/graphiql.min.js HTTP/1.1\r\nHost: x\r\n\r\n"
                .repeat(ANSWERS)
                .as_bytes(),
        )
        .await
        .unwrap();

    let served = tokio::time::timeout(PATIENCE, server.get("/health/live"))
        .await
        .expect("another client is served once the stuck one is cut");
    assert_eq!(served.status().as_u16(), 200);
    let received = until_closed(&mut stuck).await;
    assert!(
        received.len() < ANSWERS * script,
        "cut before its answers were written: {} of {} bytes",
        received.len(),
        ANSWERS * script
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_has_the_json_shape() {
    let server = Server::start_with(Backend::Sqlite, limits()).await;
    for method in ["PUT", "DELETE", "PATCH", "OPTIONS"] {
        let response = server
            .client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}/api", server.base),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 405, "{method}");
        assert!(response.headers().contains_key("allow"), "{method}");
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(code(&body), "BAD_REQUEST", "{method}");
    }
    let missing = server.get("/no-such-page").await;
    assert_eq!(missing.status().as_u16(), 404);
    let body: Value = missing.json().await.expect("a JSON body");
    assert_eq!(code(&body), "NOT_FOUND");
}

/// Holds the write path of a list's database: Postgres, the list's row; SQLite, the file's
/// one write lock.
enum Blocker {
    Postgres(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl Blocker {
    async fn hold(url: &str, backend: Backend, list: i64) -> Self {
        use sqlx::Connection;
        match backend {
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
                sqlx::query("SELECT 1 FROM entities.entities WHERE id = $1 FOR UPDATE")
                    .bind(list)
                    .execute(&mut conn)
                    .await
                    .unwrap();
                Self::Postgres(conn)
            }
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                Self::Sqlite(conn)
            }
        }
    }

    async fn release(self) {
        match self {
            Self::Postgres(mut conn) => sqlx::query("ROLLBACK").execute(&mut conn).await.map(drop),
            Self::Sqlite(mut conn) => sqlx::query("ROLLBACK").execute(&mut conn).await.map(drop),
        }
        .unwrap();
    }
}

async fn a_request_not_answered_in_time_is_a_timeout_and_its_mutation_still_applies(
    backend: Backend,
) {
    let server = Server::start_with(
        backend,
        HttpLimits {
            request_timeout: Duration::from_millis(500),
            ..limits()
        },
    )
    .await;
    let (_, created) = server
        .graphql(
            r#"mutation { createShoppingList(name: "slow") { id } }"#,
            &[],
        )
        .await;
    let id = created["data"]["createShoppingList"]["id"]
        .as_i64()
        .unwrap();
    let blocker = Blocker::hold(server.database_url(), backend, id).await;
    let (status, body) = server
        .graphql(
            &format!(r#"mutation {{ changeShoppingListName(shoppingListId: {id}, name: "renamed") {{ id }} }}"#),
            &[],
        )
        .await;
    assert_eq!((status, code(&body)), (408, "TIMEOUT"), "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key")
    );
    blocker.release().await;
    // The runtime went on with the action: as the answer said, it may be applied.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (_, list) = server
            .graphql(&format!("{{ shoppingList(id: {id}) {{ name }} }}"), &[])
            .await;
        if list["data"]["shoppingList"]["name"] == "renamed" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// hyper refuses a head it cannot parse before the app sees it; the answer still has the JSON
/// error shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_is_not_valid_http_gets_the_json_error_shape() {
    let server = Server::start_with(Backend::Sqlite, limits()).await;
    let mut stream = TcpStream::connect(server.address()).await.unwrap();
    stream
        .write_all(
            b"POST /api HTTP/1.1\r\nHost: x\r\nx-user-id: a\x01b\r\nContent-Length: 2\r\n\r\n{}",
        )
        .await
        .unwrap();
    let (status, body) = response(&until_closed(&mut stream).await);
    assert_eq!((status, code(&body)), (400, "BAD_REQUEST"), "{body}");
    // The connection's other answers are untouched: a keep-alive request, then a bad one.
    let mut stream = TcpStream::connect(server.address()).await.unwrap();
    stream
        .write_all(
            b"GET /favicon.ico HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost\x01: x\r\n\r\n",
        )
        .await
        .unwrap();
    let answered = String::from_utf8_lossy(&until_closed(&mut stream).await).into_owned();
    assert!(answered.starts_with("HTTP/1.1 204"), "{answered}");
    assert!(answered.contains("HTTP/1.1 400"), "{answered}");
    assert!(answered.contains(r#""code":"BAD_REQUEST""#), "{answered}");
}
