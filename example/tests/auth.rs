//! `--auth jwt`: a request to /api needs a valid bearer token, whose `sub` is the user; a
//! missing, malformed, expired, forged or wrong-key token is `UNAUTHENTICATED` (401) and changes
//! nothing; `x-user-id` beside a token is refused. A WebSocket brings its token in
//! `connection_init`. Tokens signed here with the test keys of `tests/fixtures/jwt`.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use entities_runtime::Backend;
use example::api::{Auth, JwtVerifier};
use futures::SinkExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use support::Server;
use support::ws::{self, Socket, next};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &[u8] = b"a test secret of at least 32 bytes, for HS256";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/jwt/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A token for `sub`, expiring `expires_in` seconds from now (negative: in the past).
fn token(algorithm: Algorithm, key: &EncodingKey, sub: &str, expires_in: i64) -> String {
    encode(
        &Header::new(algorithm),
        &json!({ "sub": sub, "exp": now() + expires_in }),
        key,
    )
    .unwrap()
}

fn hs256(sub: &str, expires_in: i64) -> String {
    token(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET).unwrap(),
        sub,
        expires_in,
    )
}

async fn create(server: &Server, headers: &[(&str, &str)]) -> reqwest::Response {
    server
        .post_raw(
            json!({ "query": r#"mutation { createShoppingList(name: "mine") { id } }"# })
                .to_string(),
            headers,
        )
        .await
}

async fn refusal(response: reqwest::Response) -> (u16, Option<String>, String) {
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|value| value.to_str().unwrap().to_owned());
    let body: Value = response.json().await.unwrap();
    (
        status,
        challenge,
        body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_tokens_are_checked_and_their_subject_is_the_user() {
    let server = Server::start_with_auth(
        Backend::Sqlite,
        Auth::Jwt(Arc::new(JwtVerifier::hs256(SECRET).unwrap())),
    )
    .await;
    let good = format!("Bearer {}", hs256("alice", 60));
    let created: Value = create(&server, &[("authorization", &good)])
        .await
        .json()
        .await
        .unwrap();
    let id = created["data"]["createShoppingList"]["id"]
        .as_i64()
        .unwrap();
    let events = server.events().await;

    let other_secret = token(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another secret of at least 32 bytes long").unwrap(),
        "alice",
        60,
    );
    let cases = [
        (None, "no token"),
        (Some("Bearer not-a-token".to_owned()), "garbage"),
        (
            Some(format!("Basic {}", hs256("alice", 60))),
            "another scheme",
        ),
        (Some(format!("Bearer {}", hs256("alice", -600))), "expired"),
        (
            Some(format!("Bearer {other_secret}")),
            "signed with another key",
        ),
    ];
    for (authorization, case) in cases {
        let headers: Vec<(&str, &str)> = authorization
            .as_deref()
            .map(|value| ("authorization", value))
            .into_iter()
            .collect();
        let (status, challenge, code) = refusal(create(&server, &headers).await).await;
        assert_eq!((status, code.as_str()), (401, "UNAUTHENTICATED"), "{case}");
        assert!(
            challenge.is_some_and(|challenge| challenge.starts_with("Bearer")),
            "{case}"
        );
    }
    // Only a WebSocket upgrade may bring its token later: a POST saying `Upgrade` is refused.
    let (status, _, code) = refusal(create(&server, &[("upgrade", "websocket")]).await).await;
    assert_eq!((status, code.as_str()), (401, "UNAUTHENTICATED"));
    // A token and an x-user-id: the header could only contradict the token.
    let (status, _, code) =
        refusal(create(&server, &[("authorization", &good), ("x-user-id", "bob")]).await).await;
    assert_eq!((status, code.as_str()), (400, "BAD_REQUEST"));
    assert_eq!(
        server.events().await,
        events,
        "no refused request stored anything"
    );

    // The user is the token's subject.
    let (_, history) = server
        .graphql(
            &format!("{{ shoppingListHistory(id: {id}) {{ createdBy }} }}"),
            &[("authorization", &good)],
        )
        .await;
    assert_eq!(
        history["data"]["shoppingListHistory"][0]["createdBy"],
        "alice"
    );
    // What is not the API needs no token.
    for path in ["/health/live", "/graphiql", "/metrics"] {
        assert_eq!(server.get(path).await.status().as_u16(), 200, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_and_es256_tokens_are_checked_with_the_public_key() {
    let rsa = Server::start_with_auth(
        Backend::Sqlite,
        Auth::Jwt(Arc::new(
            JwtVerifier::public_key(&fixture("rs256-public.pem")).unwrap(),
        )),
    )
    .await;
    let signed = |private: &str| {
        token(
            Algorithm::RS256,
            &EncodingKey::from_rsa_pem(&fixture(private)).unwrap(),
            "carol",
            60,
        )
    };
    let good = format!("Bearer {}", signed("rs256-private.pem"));
    assert_eq!(
        create(&rsa, &[("authorization", &good)]).await.status(),
        200
    );
    let wrong_key = format!("Bearer {}", signed("other-rs256-private.pem"));
    let (status, _, code) = refusal(create(&rsa, &[("authorization", &wrong_key)]).await).await;
    assert_eq!((status, code.as_str()), (401, "UNAUTHENTICATED"));
    // The classic confusion: an HS256 token whose secret is the public key. Only RS256 is taken.
    let confused = token(
        Algorithm::HS256,
        &EncodingKey::from_secret(&fixture("rs256-public.pem")).unwrap(),
        "carol",
        60,
    );
    let (status, _, _) =
        refusal(create(&rsa, &[("authorization", &format!("Bearer {confused}"))]).await).await;
    assert_eq!(status, 401);

    let ec = Server::start_with_auth(
        Backend::Sqlite,
        Auth::Jwt(Arc::new(
            JwtVerifier::public_key(&fixture("es256-public.pem")).unwrap(),
        )),
    )
    .await;
    let es256 = token(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(&fixture("es256-private.pem")).unwrap(),
        "dave",
        60,
    );
    assert_eq!(
        create(&ec, &[("authorization", &format!("Bearer {es256}"))])
            .await
            .status(),
        200
    );
    assert_eq!(create(&ec, &[("authorization", &good)]).await.status(), 401);
}

async fn socket(server: &Server) -> Socket {
    ws::connect(&server.base, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_brings_its_token_in_connection_init() {
    let server = Server::start_with_auth(
        Backend::Sqlite,
        Auth::Jwt(Arc::new(JwtVerifier::hs256(SECRET).unwrap())),
    )
    .await;
    let mut refused = socket(&server).await;
    refused
        .send(Message::text(
            json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", hs256("eve", -600)) } })
                .to_string(),
        ))
        .await
        .unwrap();
    // Closed as async-graphql closes a refused `connection_init`: 1002, the reason in the frame.
    assert_eq!(
        next(&mut refused).await,
        Err(Some(1002)),
        "an expired token"
    );

    let mut accepted = socket(&server).await;
    accepted
        .send(Message::text(
            json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", hs256("eve", 60)) } })
                .to_string(),
        ))
        .await
        .unwrap();
    assert_eq!(next(&mut accepted).await.unwrap()["type"], "connection_ack");
}

/// A WebSocket lives no longer than its token is taken: at its `exp` (and the minute's leeway
/// given for clocks) the server closes it with 4401 and says why, whether the token came with
/// the upgrade or in `connection_init`. The tokens here expired 55 s ago: still taken for 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_is_closed_when_its_token_expires() {
    let server = Server::start_with_auth(
        Backend::Sqlite,
        Auth::Jwt(Arc::new(JwtVerifier::hs256(SECRET).unwrap())),
    )
    .await;
    let init = json!({ "type": "connection_init", "payload": {} }).to_string();

    let token = format!("Bearer {}", hs256("eve", -55));
    let mut with_header = ws::connect(&server.base, &[("authorization", &token)]).await;
    with_header.send(Message::text(init)).await.unwrap();
    assert_eq!(
        next(&mut with_header).await.unwrap()["type"],
        "connection_ack"
    );

    let mut at_init = socket(&server).await;
    at_init
        .send(Message::text(
            json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", hs256("eve", -55)) } })
                .to_string(),
        ))
        .await
        .unwrap();
    assert_eq!(next(&mut at_init).await.unwrap()["type"], "connection_ack");

    let expired = Some(example::api::CLOSE_TOKEN_EXPIRED);
    assert_eq!(next(&mut with_header).await, Err(expired));
    assert_eq!(next(&mut at_init).await, Err(expired));
}

/// A WebSocket that never sends `connection_init` gives its place back after the header
/// timeout, whether or not authentication is on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_that_never_initialises_is_closed() {
    let server = Server::start_with(
        Backend::Sqlite,
        example::server::HttpLimits {
            header_timeout: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .await;
    let mut silent = socket(&server).await;
    assert_eq!(
        next(&mut silent).await,
        Err(Some(example::api::CLOSE_INIT_TIMEOUT)),
        "closed, saying why"
    );
}

/// With an audience and an issuer set, only tokens naming both are taken; a token not yet valid
/// (`nbf`) is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audience_issuer_and_not_before_are_checked() {
    let verifier = JwtVerifier::hs256(SECRET)
        .unwrap()
        .expect_audience("shopping")
        .expect_issuer("https://issuer.example");
    let server = Server::start_with_auth(Backend::Sqlite, Auth::Jwt(Arc::new(verifier))).await;
    let key = EncodingKey::from_secret(SECRET).unwrap();
    let signed = |claims: Value| {
        let token = encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap();
        format!("Bearer {token}")
    };
    let exp = now() + 60;
    let good =
        json!({ "sub": "ann", "exp": exp, "aud": "shopping", "iss": "https://issuer.example" });
    assert_eq!(
        create(&server, &[("authorization", &signed(good))])
            .await
            .status(),
        200
    );
    for (claims, case) in [
        (
            json!({ "sub": "ann", "exp": exp, "iss": "https://issuer.example" }),
            "no audience",
        ),
        (
            json!({ "sub": "ann", "exp": exp, "aud": "billing", "iss": "https://issuer.example" }),
            "another audience",
        ),
        (
            json!({ "sub": "ann", "exp": exp, "aud": "shopping", "iss": "https://other.example" }),
            "another issuer",
        ),
        (
            json!({ "sub": "ann", "exp": exp, "aud": "shopping", "iss": "https://issuer.example", "nbf": now() + 600 }),
            "not yet valid",
        ),
    ] {
        let (status, _, code) =
            refusal(create(&server, &[("authorization", &signed(claims))]).await).await;
        assert_eq!((status, code.as_str()), (401, "UNAUTHENTICATED"), "{case}");
    }
}
