//! A `graphql-transport-ws` client for the tests, over tokio-tungstenite (which answers the
//! server's pings whenever the socket is read).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket to `/api` of the server at `base` (`http://...`), speaking
/// `graphql-transport-ws`, with `headers` on the upgrade.
pub async fn connect(base: &str, headers: &[(&str, &str)]) -> Socket {
    let url = format!("{}/api", base.replacen("http://", "ws://", 1));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    for (name, value) in headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
            .expect("a header name");
        request
            .headers_mut()
            .insert(name, value.parse().expect("a header value"));
    }
    let (socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the WebSocket upgrade");
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "graphql-transport-ws"
    );
    socket
}

/// A socket to the server at `base`, past `connection_init` and its `connection_ack`.
pub async fn acknowledged(base: &str) -> Socket {
    let mut socket = connect(base, &[]).await;
    send(
        &mut socket,
        serde_json::json!({ "type": "connection_init" }),
    )
    .await;
    assert_eq!(next(&mut socket).await.unwrap()["type"], "connection_ack");
    socket
}

pub async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::text(message.to_string()))
        .await
        .expect("sent");
}

/// The next JSON message (pings and pongs skipped), or how the socket closed: `Err(Some(code))`
/// after a close frame, `Err(None)` when it ended without one. Panics after 10 s of nothing.
pub async fn next(socket: &mut Socket) -> Result<Value, Option<u16>> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("an answer within 10 s");
        match message {
            Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Close(frame))) => return Err(frame.map(|frame| frame.code.into())),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Err(None),
        }
    }
}
