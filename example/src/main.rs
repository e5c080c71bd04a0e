//! The ShoppingList GraphQL server: `cargo run -p example`, then open
//! <http://127.0.0.1:4000/graphiql>. With no set-up it stores in an embedded SQLite file;
//! `DATABASE_URL=postgres://...` puts it on Postgres. `--help` lists the settings.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use entities_runtime::Runtime;
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

async fn serve(settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
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
    let _streams = streams::start(&runtime);
    axum::serve(listener, api::router(runtime.clone()))
        .with_graceful_shutdown(async {
            // No Ctrl-C handler (no terminal, say): run until killed.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            tracing::info!("shutting down: finishing requests, snapshotting live lists");
        })
        .await?;
    runtime.shutdown().await;
    tracing::info!("stopped");
    Ok(())
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
