//! `GET /api` upgraded to a WebSocket: GraphQL subscriptions (`graphql-transport-ws`, or the
//! older `graphql-ws`), as async-graphql serves them, within the server's bounds. The socket
//! keeps its connection's place among the server's connections for as long as it lives, takes
//! messages of at most [`BODY_LIMIT`] and runs at most [`OPERATION_LIMIT`] operations at once. The
//! server pings it every [`HttpLimits::websocket_ping`] and drops it when it has sent nothing
//! (not even a pong: browsers and WebSocket libraries answer pings themselves) for two of them;
//! it closes it, with a close frame that says why, when it sends no `connection_init` within
//! the header timeout (4408), when its token expires (4401) and when the server shuts down
//! (1001). (async-graphql's own keepalive is not used: it counts only the client's protocol
//! messages, so it closed sockets that only listened.)

use std::collections::HashSet;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

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

use super::BODY_LIMIT;
use super::auth::bearer;
use super::http::wrong_method;
use super::request_context::{TokenAtInit, TokenExpiry};
use super::schema::ApiSchema;
use crate::server::{ConnectionPermit, HttpLimits};

/// How long the server waits for the client's answer to its close frame.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(1);

/// The most operations (subscriptions, queries) one socket runs at once; one more is refused
/// with an `error` message (`QUERY_TOO_COMPLEX`) until one of them completes.
pub const OPERATION_LIMIT: usize = 100;

/// The close code when the socket's token expires: graphql-ws's "Unauthorized".
pub const CLOSE_TOKEN_EXPIRED: u16 = 4401;
/// The close code at shutdown: the WebSocket standard's "going away".
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// The close code for a socket that sends no `connection_init` in time: graphql-ws's
/// "Connection initialisation timeout".
pub const CLOSE_INIT_TIMEOUT: u16 = 4408;

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
        ping_every: limits.websocket_ping,
        permit: permit.map(|Extension(permit)| permit),
        token_at_init: token_at_init.map(|Extension(TokenAtInit(verifier))| verifier),
        expires_at: token_expiry.map(|Extension(TokenExpiry(at))| at),
    };
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        // A message is a request: bounded as a request's body is.
        .max_message_size(BODY_LIMIT)
        .max_frame_size(BODY_LIMIT)
        .on_upgrade(move |stream| socket.serve(stream))
}

/// One upgraded socket and what bounds it.
struct Socket {
    schema: ApiSchema,
    protocol: GraphQLProtocol,
    call: Context,
    init_within: Duration,
    /// How often the server pings; a client that sends nothing for two of them is gone.
    ping_every: Duration,
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
            ping_every,
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
                        expiry.send_replace(caller.expires_at);
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
        // send frames of its own (pings, a close frame) and end the session when it must.
        let (mut to_client, from_client) = stream.split();
        // Any frame from the client (a pong, say) shows it is there.
        let heard = Arc::new(Mutex::new(Instant::now()));
        let operations = Arc::new(Mutex::new(HashSet::new()));
        let (refuse, mut refusals) = futures::channel::mpsc::channel::<Message>(REFUSALS);
        let from_client = from_client
            .inspect({
                let heard = heard.clone();
                move |_| *heard.lock().expect("not poisoned") = Instant::now()
            })
            .filter({
                let (operations, mut refuse) = (operations.clone(), refuse);
                move |message| {
                    let admitted = admit(&operations, message, &mut refuse);
                    std::future::ready(admitted)
                }
            });
        // No queue beyond the one message in hand: a client that reads slowly holds at most
        // one answer here (besides the socket's own buffer).
        let (session_out, mut outgoing) = futures::channel::mpsc::channel::<Message>(0);
        let session = GraphQLWebSocket::new_with_pair(session_out, from_client, schema, protocol)
            .on_connection_init(on_init)
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
        let mut pings =
            tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut session_ended = false;
        let close = loop {
            tokio::select! {
                () = &mut session => {
                    session_ended = true;
                    break None;
                }
                Some(message) = outgoing.next() => {
                    ended(&operations, &message);
                    if let Err(error) = to_client.send(message).await {
                        tracing::info!(%error, "WebSocket closed: a message could not be written");
                        return;
                    }
                }
                Some(refusal) = refusals.next() => {
                    if let Err(error) = to_client.send(refusal).await {
                        tracing::info!(%error, "WebSocket closed: a message could not be written");
                        return;
                    }
                }
                _ = pings.tick() => {
                    if heard.lock().expect("not poisoned").elapsed() > 2 * ping_every {
                        tracing::info!("WebSocket closed: no answer to two pings");
                        return;
                    }
                    if let Err(error) = to_client.send(Message::Ping(Default::default())).await {
                        tracing::info!(%error, "WebSocket closed: a ping could not be written");
                        return;
                    }
                }
                () = &mut uninitialised => {
                    tracing::info!("WebSocket closed: no connection_init within {init_within:?}");
                    break Some((CLOSE_INIT_TIMEOUT, "connection_init was not received in time"));
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
            if to_client.send(Message::Close(Some(frame))).await.is_err() {
                return;
            }
            // The closing handshake: the client answers with its close frame, which ends the
            // session's input. Reading it (for a moment at most) lets the socket close cleanly
            // rather than be reset with the client's bytes unread.
            if !session_ended {
                let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
                    loop {
                        tokio::select! {
                            () = &mut session => return,
                            Some(_) = outgoing.next() => {}
                        }
                    }
                })
                .await;
            }
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

/// Refusals waiting to be sent; more are dropped.
const REFUSALS: usize = 16;

/// How much of a message's start holds its `id` and `type`.
const HEAD: usize = 256;

/// The ids of the operations a socket runs now.
type Operations = Arc<Mutex<HashSet<String>>>;

/// Whether a client's message goes on to the session: a new operation past
/// [`OPERATION_LIMIT`] does not, and is answered with an `error` message instead. Counts the
/// operations the client starts and stops (`subscribe`/`complete` in graphql-transport-ws,
/// `start`/`stop` in graphql-ws).
fn admit(
    operations: &Operations,
    message: &Result<Message, axum::Error>,
    refuse: &mut futures::channel::mpsc::Sender<Message>,
) -> bool {
    let Ok(Message::Text(text)) = message else {
        return true;
    };
    let Some((kind, id)) = kind_and_id(text) else {
        return true;
    };
    let mut running = operations.lock().expect("not poisoned");
    match kind.as_str() {
        "subscribe" | "start" if !running.contains(&id) => {
            if running.len() >= OPERATION_LIMIT {
                let error = serde_json::json!({
                    "type": "error",
                    "id": id,
                    "payload": [{
                        "message": format!(
                            "at most {OPERATION_LIMIT} operations run at once on one WebSocket: \
                             complete one first"
                        ),
                        "extensions": { "code": "QUERY_TOO_COMPLEX" },
                    }],
                });
                // A client that sends more while its refusals go unread is not answered: what
                // it can make the server hold stays bounded.
                let _ = refuse.try_send(Message::Text(error.to_string().into()));
                return false;
            }
            running.insert(id);
        }
        "complete" | "stop" => {
            running.remove(&id);
        }
        _ => {}
    }
    true
}

/// Forgets an operation the server ended (its `complete`, or its `error`).
fn ended(operations: &Operations, message: &Message) {
    let Message::Text(text) = message else {
        return;
    };
    // A message's type comes before its payload (`{"id":..,"type":..,"payload":..}`): only
    // the messages whose head says they end an operation are parsed, never a large `next`.
    let head = &text.as_bytes()[..text.len().min(HEAD)];
    let ends = [&b"\"type\":\"complete\""[..], b"\"type\":\"error\""]
        .iter()
        .any(|kind| head.windows(kind.len()).any(|window| window == *kind));
    if let Some((kind, id)) = ends.then(|| kind_and_id(text)).flatten()
        && matches!(kind.as_str(), "complete" | "error")
    {
        operations.lock().expect("not poisoned").remove(&id);
    }
}

/// A protocol message's `type` and `id`, when it has both.
fn kind_and_id(text: &str) -> Option<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "type")]
        kind: String,
        id: String,
    }
    serde_json::from_str::<Head>(text)
        .ok()
        .map(|head| (head.kind, head.id))
}
