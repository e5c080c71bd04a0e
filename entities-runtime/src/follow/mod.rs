//! Freshness across runtimes: when another runtime on the same database commits to an entity
//! this one holds live, this one reads the new events, so that its `get` (and its watchers)
//! reflect the write within milliseconds; and its subscriptions wake.
//!
//! On Postgres every runtime announces its commits with `NOTIFY entities_log` (the runtime's id,
//! then the written entities' ids; see `notice`), sent by a task of its own after the commit
//! rather than in the transaction, where it would serialise every commit on Postgres's
//! notification lock; and only while another runtime listens (see `announce`). Every runtime
//! `LISTEN`s on a connection of its own; should that connection drop, notifications may have
//! been missed, so every live entity catches up once it is back. A runtime that dies between a
//! commit and its notice leaves the others to learn of that write at their next write to the
//! entity (its version check) or their subscriptions' next poll.
//!
//! SQLite has no notifications: a runtime looks at the log's last position every
//! `follow_interval` and catches up the live entities whose version is behind (only another
//! process's writes can put them there).

mod notice;
mod notify;

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};

use notice::Notice;
use sqlx::sqlite::SqlitePool;
use tokio_util::sync::CancellationToken;

use crate::shared::{Notices, Shared};
use crate::store::{self, Store};

/// The channel of the log's notifications.
const CHANNEL: &str = "entities_log";

/// The end of the listening connection's `application_name`: `entities listener`, or the
/// application's name then `listener`.
pub const LISTENER: &str = "listener";

/// How long a goodbye may take at shutdown: the database may be away.
const BYE_TIMEOUT: Duration = Duration::from_secs(1);

/// Listens for other runtimes' commits until shutdown; catches up the live entities they wrote
/// and wakes the subscriptions. Greets the other runtimes (see `announce`) and says goodbye.
pub(crate) async fn listen(shared: Weak<Shared>, pool: PgPool, shutdown: CancellationToken) {
    // A pool of its own: the listening connection is never one the writers wait for. Named, so
    // that whoever looks at the server's sessions tells it from the writers'.
    let options = (*pool.connect_options()).clone();
    let name = format!(
        "{} {LISTENER}",
        options.get_application_name().unwrap_or("entities")
    );
    let options = options.application_name(&name);
    let listener_pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(options);
    let mut delay = Duration::from_millis(50);
    let mut first = true;
    'connect: loop {
        let connected = async {
            let mut listener = PgListener::connect_with(&listener_pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let Some(instance) = shared.upgrade().map(|shared| shared.instance.clone()) else {
            break;
        };
        let mut listener = match connected.await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for other runtimes' commits; trying again");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => break 'connect,
                }
                delay = (delay * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        delay = Duration::from_millis(50);
        // Said again after every reconnect: whoever missed a greeting meanwhile answers this one.
        let mut greet = true;
        if !std::mem::take(&mut first) {
            // Back after a lost connection: whatever was announced meanwhile is lost.
            let Some(shared) = shared.upgrade() else {
                break;
            };
            catch_up_all(&shared);
        }
        loop {
            if std::mem::take(&mut greet)
                && let Err(error) = say(&mut listener, &Notice::Hello.payload(&instance)).await
            {
                tracing::warn!(%error, "lost the connection that listens for other runtimes' commits");
                continue 'connect;
            }
            let received = tokio::select! {
                received = listener.try_recv() => received,
                () = shutdown.cancelled() => {
                    let bye = Notice::Bye.payload(&instance);
                    let _ = tokio::time::timeout(BYE_TIMEOUT, say(&mut listener, &bye)).await;
                    break 'connect;
                }
            };
            let Some(shared) = shared.upgrade() else {
                break 'connect;
            };
            let notification = match received {
                Ok(Some(notification)) => notification,
                // Lost and connected again: notifications may have been missed.
                Ok(None) => {
                    catch_up_all(&shared);
                    greet = true;
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "lost the connection that listens for other runtimes' commits");
                    continue 'connect;
                }
            };
            let Some((sender, notice)) = notice::parse(notification.payload()) else {
                continue;
            };
            if sender == instance {
                continue;
            }
            let answer = match notice {
                Notice::Wrote(ids) => {
                    shared.announcer.moved();
                    for id in ids {
                        shared.registry.follow(&shared, id, None);
                    }
                    None
                }
                Notice::Hello => {
                    shared.announcer.peers.add(sender, &shared.counters);
                    Some(Notice::Here { to: sender })
                }
                Notice::Here { to } => {
                    let new = shared.announcer.peers.add(sender, &shared.counters);
                    if to == instance {
                        // It may have committed before it knew this runtime listens.
                        catch_up_all(&shared);
                    }
                    new.then_some(Notice::Here { to: sender })
                }
                Notice::Bye => {
                    shared.announcer.peers.remove(sender, &shared.counters);
                    None
                }
            };
            if let Some(answer) = answer
                && let Err(error) = say(&mut listener, &answer.payload(&instance)).await
            {
                tracing::warn!(%error, "lost the connection that listens for other runtimes' commits");
                continue 'connect;
            }
        }
    }
    listener_pool.close().await;
}

/// Sends one notification on the listening connection.
async fn say(listener: &mut PgListener, payload: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload)
        .execute(listener)
        .await
        .map(drop)
}

fn catch_up_all(shared: &Arc<Shared>) {
    shared.counters.follow_resyncs.incr();
    shared.announcer.moved();
    shared.registry.follow_all(shared);
}

/// SQLite: every `interval`, catches up the live entities that another process wrote to.
pub(crate) async fn poll(
    shared: Weak<Shared>,
    pool: SqlitePool,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut seen = match store::head(crate::sql::Target::SqlitePool(&pool), &[]).await {
        Ok(head) => head.position,
        Err(_) => 0,
    };
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.cancelled() => return,
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let changed = match store::head(crate::sql::Target::SqlitePool(&pool), &[]).await {
            Ok(head) if head.position > seen => store::changed_since(&pool, seen).await,
            Ok(_) => continue,
            Err(error) => Err(error),
        };
        match changed {
            Ok(changed) => {
                shared.announcer.moved();
                for (id, version, position) in changed {
                    seen = seen.max(position);
                    shared.registry.follow(&shared, id, Some(version));
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read which entities other processes wrote")
            }
        }
    }
}

/// Starts following other runtimes' writes, for the runtime's lifetime.
pub(crate) fn start(shared: &Arc<Shared>, notices: Option<Notices>) {
    match &shared.store {
        Store::Postgres(pool) => {
            if let Some(notices) = notices {
                // Ends when the runtime's announcer (and so the sender) is dropped.
                tokio::spawn(notify::notify(
                    pool.clone(),
                    shared.instance.clone(),
                    shared.counters.clone(),
                    notices,
                ));
            }
            if shared.config.follow_other_writers {
                shared.tasks.spawn(listen(
                    Arc::downgrade(shared),
                    pool.clone(),
                    shared.shutdown.clone(),
                ));
            }
        }
        Store::Sqlite(pool) => {
            if shared.config.follow_other_writers
                && shared.config.follow_interval > Duration::ZERO
                && !shared.in_memory
            {
                shared.tasks.spawn(poll(
                    Arc::downgrade(shared),
                    pool.clone(),
                    shared.config.follow_interval,
                    shared.shutdown.clone(),
                ));
            }
        }
    }
}
