//! `GET /api` upgraded to a WebSocket: GraphQL subscriptions (`graphql-transport-ws`, or the
//! older `graphql-ws`), as async-graphql serves them, within the server's bounds. The socket
//! keeps its connection's place among the server's connections for as long as it lives, must
//! say `connection_init` within the header timeout and answer pings, is closed when its token
//! expires (4401) and when the server shuts down (1001), each with a close frame that says why.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::Extension;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::Response;
use entities_runtime::Context;
use futures::{SinkExt, StreamExt};
use tokio::sync::watch;

use super::auth::bearer;
use super::http::wrong_method;
use super::request_context::{TokenAtInit, TokenExpiry};
use super::schema::ApiSchema;
use crate::server::{ConnectionPermit, HttpLimits};

/// How long a WebSocket may leave the server's ping unanswered.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// The close code when the socket's token expires: graphql-ws's "Unauthorized".
pub const CLOSE_TOKEN_EXPIRED: u16 = 4401;
/// The close code at shutdown: the WebSocket standard's "going away".
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// Messages the session has written and the socket not yet sent.
const OUTGOING: usize = 16;

/// `GET /api`: a WebSocket upgrade for subscriptions, run as the caller of the upgrade
/// request's [`Context`]; anything else is pointed at POST and GraphiQL.
#[allow(
    clippy::too_many_arguments,
    reason = "one argument per extractor, as axum handlers take them"
)]
pub(super) async fn subscriptions(
    State(schema): State<ApiSchema>,
    Extension(call): Extension<Context>,
    Extension(limits): Extension<HttpLimits>,
    permit: Option<Extension<ConnectionPermit>>,
    token_at_init: Option<Extension<TokenAtInit>>,
    token_expiry: Option<Extension<TokenExpiry>>,
    protocol: Result<GraphQLProtocol, StatusCode>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let (Ok(protocol), Ok(upgrade)) = (protocol, upgrade) else {
        return wrong_method().await;
    };
    let socket = Socket {
        schema,
        protocol,
        call,
        init_within: limits.header_timeout,
        permit: permit.map(|Extension(permit)| permit),
        token_at_init: token_at_init.map(|Extension(TokenAtInit(verifier))| verifier),
        expires_at: token_expiry.map(|Extension(TokenExpiry(at))| at),
    };
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |stream| socket.serve(stream))
}

/// One upgraded socket and what bounds it.
struct Socket {
    schema: ApiSchema,
    protocol: GraphQLProtocol,
    call: Context,
    init_within: Duration,
    permit: Option<ConnectionPermit>,
    /// The verifier of a token that comes in `connection_init`, when the upgrade had none.
    token_at_init: Option<Arc<super::auth::JwtVerifier>>,
    /// When the upgrade's token stops being taken.
    expires_at: Option<SystemTime>,
}

impl Socket {
    async fn serve(self, stream: WebSocket) {
        let Socket {
            schema,
            protocol,
            call,
            init_within,
            permit,
            token_at_init,
            expires_at,
        } = self;
        let initialised = Arc::new(AtomicBool::new(false));
        let (expiry, expires) = watch::channel(expires_at);
        let on_init = {
            let initialised = initialised.clone();
            move |payload: serde_json::Value| async move {
                let call = match token_at_init {
                    None => call,
                    // The token comes in `connection_init`'s payload (`{"Authorization":
                    // "Bearer ..."}`); without a valid one the socket is closed (1002, the
                    // reason in the close frame: how async-graphql refuses an init).
                    Some(verifier) => {
                        let caller = ["Authorization", "authorization"]
                            .iter()
                            .find_map(|name| payload.get(*name)?.as_str())
                            .and_then(bearer)
                            .ok_or_else(|| {
                                async_graphql::Error::new(
                                    "authentication required: send `{\"Authorization\": \"Bearer <token>\"}` in `connection_init`",
                                )
                            })
                            .and_then(|token| {
                                verifier.verify(token).map_err(async_graphql::Error::new)
                            })?;
                        expiry.send_replace(Some(caller.expires_at));
                        Context::new(caller.user)
                            .with_request_id(call.request_id().unwrap_or_default().to_owned())
                    }
                };
                initialised.store(true, Ordering::Relaxed);
                let mut data = async_graphql::Data::default();
                data.insert(call);
                Ok(data)
            }
        };
        // The session writes into a channel, not the socket, so that this task can still
        // send a close frame of its own when it ends the session.
        let (mut to_client, from_client) = stream.split();
        let (session_out, mut outgoing) = futures::channel::mpsc::channel::<Message>(OUTGOING);
        let session = GraphQLWebSocket::new_with_pair(session_out, from_client, schema, protocol)
            .on_connection_init(on_init)
            // A client that stops answering pings is dropped, and its place freed.
            .keepalive_timeout(KEEPALIVE)
            .serve();
        let mut session = pin!(session);
        // A socket that never says `connection_init` (its head, as it were) is dropped too.
        let mut uninitialised = pin!(async {
            tokio::time::sleep(init_within).await;
            if initialised.load(Ordering::Relaxed) {
                std::future::pending::<()>().await;
            }
        });
        let mut expired = pin!(expired(expires));
        let mut shutdown = pin!(async {
            match &permit {
                Some(permit) => permit.shutdown_started().await,
                None => std::future::pending().await,
            }
        });
        let close = loop {
            tokio::select! {
                () = &mut session => break None,
                Some(message) = outgoing.next() => {
                    if to_client.send(message).await.is_err() {
                        return;
                    }
                }
                () = &mut uninitialised => {
                    tracing::info!("WebSocket closed: no connection_init within {init_within:?}");
                    break None;
                }
                () = &mut expired => {
                    tracing::info!("WebSocket closed: its token expired");
                    break Some((CLOSE_TOKEN_EXPIRED, "the token expired: connect again with a new one"));
                }
                () = &mut shutdown => break Some((CLOSE_GOING_AWAY, "the server is shutting down")),
            }
        };
        // What the session wrote before it ended (its own close frame, say) still goes out.
        while let Ok(message) = outgoing.try_recv() {
            if to_client.send(message).await.is_err() {
                return;
            }
        }
        if let Some((code, reason)) = close {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = to_client.send(Message::Close(Some(frame))).await;
        }
        let _ = to_client.close().await;
    }
}

/// Resolves when the token's time is up: the upgrade's, or the one `connection_init` brings
/// (never, without a token).
async fn expired(mut expires: watch::Receiver<Option<SystemTime>>) {
    let at = loop {
        if let Some(at) = *expires.borrow_and_update() {
            break at;
        }
        if expires.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let left = at.duration_since(SystemTime::now()).unwrap_or_default();
    tokio::time::sleep(left).await;
}
