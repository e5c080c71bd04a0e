//! The ShoppingList GraphQL server: `cargo run -p example`, then open
//! <http://127.0.0.1:4000/graphiql>. With no set-up it stores in an embedded SQLite file;
//! `DATABASE_URL=postgres://...` puts it on Postgres. `--help` lists the settings.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use entities_runtime::Runtime;
use example::api::{Auth, JwtVerifier};
use example::server::{self, HttpLimits};
use example::streams::{self, ReadModel};
use example::{MIGRATIONS, api};

/// Serves the ShoppingList over GraphQL (POST /api) with a GraphiQL page (GET /graphiql).
#[derive(Debug, Parser)]
#[command(version)]
struct Settings {
    /// Address to listen on.
    #[arg(long, env = "BIND", default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 4000)]
    port: u16,
    /// Database: `sqlite://FILE` (created if missing) or `postgres://...`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://shopping_list.db",
        // It may hold a password: `--help` must not print it.
        hide_env_values = true
    )]
    database_url: String,
    /// Seconds a shopping list stays in memory after its last use.
    #[arg(long, env = "IDLE_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: u64,
    /// How requests are authenticated: `open` trusts the `x-user-id` header as is (development,
    /// or behind a gateway that sets it); `jwt` needs `Authorization: Bearer <token>`, its
    /// `sub` the user: HS256 with the secret in `JWT_SECRET` (never a flag: the process list
    /// shows flags), or RS256/ES256 with `--jwt-public-key`.
    #[arg(long, env = "AUTH", value_enum, default_value_t = AuthMode::Open)]
    auth: AuthMode,
    /// With `--auth jwt`: the token issuer's public key, PEM (RSA for RS256, P-256 for ES256).
    #[arg(long, env = "JWT_PUBLIC_KEY")]
    jwt_public_key: Option<std::path::PathBuf>,
    /// With `--auth jwt`: take only tokens whose `aud` names this audience (this API).
    #[arg(long, env = "JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// With `--auth jwt`: take only tokens whose `iss` is this issuer.
    #[arg(long, env = "JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// Seconds a request waits for a database connection; with the database away, requests
    /// fail after this with `UNAVAILABLE` (HTTP 503, `Retry-After`).
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    db_acquire_timeout: u64,
    /// Seconds a connection has to send a request head, from its opening or its last answer
    /// (so also how long an idle keep-alive connection is kept).
    #[arg(long, env = "HEADER_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: u64,
    /// Seconds a request has to send its whole body.
    #[arg(long, env = "BODY_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    body_timeout: u64,
    /// Seconds within which a request is answered, or refused with `TIMEOUT` (408).
    #[arg(long, env = "REQUEST_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout: u64,
    /// Seconds a write to a client may make no progress (a client that reads nothing of its
    /// answer) before its connection is closed.
    #[arg(long, env = "WRITE_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    write_timeout: u64,
    /// Seconds between the server's pings on a WebSocket; one that answers nothing for two of
    /// them is closed.
    #[arg(long, env = "WEBSOCKET_PING", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    websocket_ping: u64,
    /// The most connections (WebSockets included) served at once; more wait to be accepted.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// Seconds a shutdown (SIGTERM, SIGINT) waits for the requests in flight.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value_t = 10)]
    shutdown_grace: u64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Clears a read model kept from the event log and replays the log into it, then exits. A
    /// server running on the same database goes on serving meanwhile; if one runs the read
    /// model's projector, that one replays, and this waits until it has caught up.
    Rebuild {
        #[arg(value_enum)]
        read_model: RebuildTarget,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AuthMode {
    Open,
    Jwt,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RebuildTarget {
    /// Item popularity (`popularItems`).
    PopularItems,
}

#[tokio::main]
async fn main() -> ExitCode {
    // sqlx reports Postgres's notices ("schema ... already exists, skipping") at info.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();
    let settings = Settings::parse();
    let outcome = match settings.command {
        Some(Command::Rebuild { read_model }) => rebuild(&settings, read_model).await,
        None => serve(settings).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

async fn start(settings: &Settings) -> Result<Runtime, Box<dyn std::error::Error>> {
    Ok(Runtime::builder(&settings.database_url)
        .migrations(MIGRATIONS)
        .idle_timeout(Duration::from_secs(settings.idle_timeout))
        .acquire_timeout(Duration::from_secs(settings.db_acquire_timeout))
        .build()
        .await?)
}

async fn rebuild(
    settings: &Settings,
    target: RebuildTarget,
) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = start(settings).await?;
    let read_model = match target {
        RebuildTarget::PopularItems => ReadModel::PopularItems,
    };
    tracing::info!(
        "rebuilding {target:?} in {}",
        redacted(&settings.database_url)
    );
    let rebuilt = streams::rebuild(&runtime, read_model).await;
    runtime.shutdown().await;
    rebuilt?;
    tracing::info!("rebuilt {target:?}");
    Ok(())
}

/// The authentication `settings` ask for, and its line for the log.
fn auth(settings: &Settings) -> Result<(Auth, String), String> {
    if settings.auth == AuthMode::Open {
        return Ok((
            Auth::Open,
            "authentication is off (--auth open): the x-user-id header is trusted as is; use \
             --auth jwt for a server that faces the internet"
                .to_owned(),
        ));
    }
    let secret = std::env::var("JWT_SECRET")
        .ok()
        .filter(|secret| !secret.is_empty());
    let mut verifier = match (secret, &settings.jwt_public_key) {
        (Some(secret), None) => JwtVerifier::hs256(secret.as_bytes())?,
        (None, Some(path)) => {
            let pem = std::fs::read(path)
                .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
            JwtVerifier::public_key(&pem)?
        }
        (Some(_), Some(_)) => {
            return Err("give JWT_SECRET or --jwt-public-key, not both".to_owned());
        }
        (None, None) => {
            return Err(
                "--auth jwt needs JWT_SECRET (HS256) or --jwt-public-key (RS256/ES256)".to_owned(),
            );
        }
    };
    if let Some(audience) = &settings.jwt_audience {
        verifier = verifier.expect_audience(audience);
    }
    if let Some(issuer) = &settings.jwt_issuer {
        verifier = verifier.expect_issuer(issuer);
    }
    let line = format!(
        "authentication: JWT ({:?}); requests to /api need a bearer token",
        verifier.algorithm()
    );
    Ok((Auth::Jwt(std::sync::Arc::new(verifier)), line))
}

async fn serve(settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    let (auth, auth_line) = auth(&settings)?;
    api::install_metrics();
    let runtime = start(&settings).await?;
    let address = SocketAddr::new(settings.bind, settings.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| format!("cannot listen on {address}: {error}"))?;
    let address = listener.local_addr()?;
    tracing::info!(
        "listening on http://{address}/api with database {}; GraphiQL at http://{address}/graphiql",
        redacted(&settings.database_url)
    );
    // After the line above: tools and tests read the address from the first line.
    match &auth {
        Auth::Open => tracing::warn!("{auth_line}"),
        Auth::Jwt(_) => tracing::info!("{auth_line}"),
    }
    let _streams = streams::start(&runtime);
    let limits = HttpLimits {
        header_timeout: Duration::from_secs(settings.header_timeout),
        body_timeout: Duration::from_secs(settings.body_timeout),
        request_timeout: Duration::from_secs(settings.request_timeout),
        write_timeout: Duration::from_secs(settings.write_timeout),
        websocket_ping: Duration::from_secs(settings.websocket_ping),
        max_connections: usize::try_from(settings.max_connections).unwrap_or(usize::MAX),
        shutdown_grace: Duration::from_secs(settings.shutdown_grace),
    };
    let app = api::router(runtime.clone(), &limits, auth);
    server::serve(listener, app, limits, async {
        let signal = stop_signal().await;
        tracing::info!("{signal}: shutting down: finishing requests, snapshotting live lists");
    })
    .await;
    runtime.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Waits for SIGTERM (how containers and systemd stop a service) or SIGINT (Ctrl-C); names it.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot listen for SIGTERM and SIGINT: runs until killed");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    }
}

/// The database URL without its password, for the log.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if scheme + 3 < at => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_stay_out_of_the_log() {
        assert_eq!(
            redacted("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redacted("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redacted("sqlite://shopping_list.db"),
            "sqlite://shopping_list.db"
        );
    }
}
