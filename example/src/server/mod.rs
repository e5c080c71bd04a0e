//! The HTTP server around the app: accepts connections up to a bound, gives each request head,
//! body and whole request a deadline, and on shutdown stops accepting, lets the requests in
//! flight finish within a grace period, and cuts what is left.
//!
//! `axum::serve` sets none of this (hyper's header timeout, for one, needs a timer it does not
//! give), so connections are served here with hyper's HTTP/1 builder directly.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt;

mod shaped_errors;
use shaped_errors::ShapedErrors;

/// The server's bounds on what clients may hold, and for how long.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// A connection's request head must arrive within this of the connection's opening or of
    /// its last answer: a client that sends nothing, or a head byte by byte, is cut. (hyper has
    /// one timer for both, so this is also how long an idle keep-alive connection is kept.)
    pub header_timeout: Duration,
    /// A request's body must arrive whole within this of the handler's first read.
    pub body_timeout: Duration,
    /// A request must be answered within this; past it, `TIMEOUT` (408). A mutation cut so may
    /// still be applied: retry it with the same `Idempotency-Key`.
    pub request_timeout: Duration,
    /// A write to the client (an answer, a WebSocket message) that makes no progress for this
    /// long ends the connection: a client that reads nothing of a large answer holds its
    /// buffers and its place among the connections no longer.
    pub write_timeout: Duration,
    /// How often the server pings a WebSocket; one that sends nothing (no pong) for two of
    /// them is closed and its place freed.
    pub websocket_ping: Duration,
    /// The most connections (WebSockets included) served at once; more wait to be accepted.
    pub max_connections: usize,
    /// How long a shutdown waits for the requests in flight before cutting them.
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            websocket_ping: Duration::from_secs(30),
            // Well below the usual 1,024 open files, which the pool and the database share.
            max_connections: 512,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// A connection's place among [`HttpLimits::max_connections`] and among the connections a
/// shutdown waits for, in each of its requests' extensions: a WebSocket keeps it for as long as
/// it lives, after its upgrade ends the HTTP connection.
#[derive(Clone)]
pub struct ConnectionPermit {
    _place: Arc<OwnedSemaphorePermit>,
    /// Held while open: the shutdown waits (within its grace) until every one is dropped.
    _open: watch::Receiver<()>,
    draining: watch::Receiver<bool>,
}

impl ConnectionPermit {
    /// Resolves once the server has begun to shut down: a WebSocket then says goodbye.
    pub async fn shutdown_started(&self) {
        let mut draining = self.draining.clone();
        // The sender lives as long as the server; were it gone, so is the server.
        let _ = draining.wait_for(|draining| *draining).await;
    }
}

/// How often the log says that the connection limit holds clients back.
const LIMIT_LOG_EVERY: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` resolves, then drains: no more connections,
/// the requests in flight get [`HttpLimits::shutdown_grace`] to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // Told to every connection at shutdown; each holds a receiver of `open` while it runs.
    let (draining, _) = watch::channel(false);
    let (open, all_closed) = watch::channel(());
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut limit_logged: Option<tokio::time::Instant> = None;
    loop {
        if permits.available_permits() == 0
            && limit_logged.is_none_or(|at| at.elapsed() >= LIMIT_LOG_EVERY)
        {
            tracing::warn!(
                max_connections = limits.max_connections,
                "at the connection limit: new connections wait to be accepted"
            );
            limit_logged = Some(tokio::time::Instant::now());
        }
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, say: wait, rather than spin on the error.
                    tracing::error!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
        stream.set_write_timeout(Some(limits.write_timeout));
        let permit = ConnectionPermit {
            _place: Arc::new(permit),
            _open: all_closed.clone(),
            draining: draining.subscribe(),
        };
        let service = app
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(permit.clone());
                request.map(axum::body::Body::new)
            });
        let connection = builder
            .serve_connection(
                TokioIo::new(ShapedErrors::new(Box::pin(stream))),
                TowerToHyperService::new(service),
            )
            .with_upgrades();
        let (mut draining, still_open) = (draining.subscribe(), all_closed.clone());
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let ended = loop {
                tokio::select! {
                    ended = connection.as_mut() => break ended,
                    // Finishes the request in flight, if any, then closes.
                    Ok(()) = draining.changed() => connection.as_mut().graceful_shutdown(),
                }
            };
            match ended {
                Ok(()) => {}
                Err(error) if error.is_timeout() => {
                    tracing::info!("connection closed: no request head within the header timeout");
                }
                Err(error) if stalled_write(&error) => {
                    tracing::info!(
                        "connection closed: timed out (a write to the client made no progress within the write timeout)"
                    );
                }
                Err(error) => tracing::debug!(%error, "connection ended with an error"),
            }
            drop(still_open);
        });
    }
    drop(listener);
    draining.send_replace(true);
    drop(all_closed);
    tokio::select! {
        () = open.closed() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(
                grace = ?limits.shutdown_grace,
                connections = open.receiver_count(),
                "requests still running after the grace period: cut"
            );
        }
    }
}

/// Whether hyper's connection ended on the write timeout of its stream.
fn stalled_write(error: &hyper::Error) -> bool {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
}
