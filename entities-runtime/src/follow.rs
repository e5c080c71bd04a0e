//! Freshness across runtimes: when another runtime on the same database commits to an entity
//! this one holds live, this one reads the new events, so that its `get` (and its watchers)
//! reflect the write within milliseconds; and its subscriptions wake.
//!
//! On Postgres every runtime announces its commits with `NOTIFY entities_log` (the payload: the
//! runtime's id, then the written entities' ids), sent by a task of its own after the commit
//! rather than in the transaction, where it would serialise every commit on Postgres's
//! notification lock. Every runtime `LISTEN`s on a connection of its own; should that connection
//! drop, notifications may have been missed, so every live entity catches up once it is back. A
//! runtime that dies between a commit and its notice leaves the others to learn of that write at
//! their next write to the entity (its version check) or their subscriptions' next poll.
//!
//! SQLite has no notifications: a runtime looks at the log's last position every
//! `follow_interval` and catches up the live entities whose version is behind (only another
//! process's writes can put them there).

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sqlx::sqlite::SqlitePool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::entity::EntityId;
use crate::shared::{Notices, Shared};
use crate::store::{self, Store};

/// The channel of the log's notifications.
const CHANNEL: &str = "entities_log";

/// Postgres's limit for a payload is 8000 bytes.
const MAX_PAYLOAD: usize = 7900;

/// The payloads that announce `ids`, written by runtime `instance`: as few as fit.
fn payloads(instance: &str, ids: &BTreeSet<EntityId>) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut payload = String::from(instance);
    for id in ids {
        let id = id.to_string();
        if payload.len() + 1 + id.len() > MAX_PAYLOAD {
            payloads.push(std::mem::replace(&mut payload, String::from(instance)));
        }
        payload.push(' ');
        payload.push_str(&id);
    }
    payloads.push(payload);
    payloads
}

/// The runtime and entity ids of a payload; `None` if it is not one of ours.
fn parse(payload: &str) -> Option<(&str, Vec<EntityId>)> {
    let mut words = payload.split(' ');
    let instance = words.next()?;
    let ids = words.map(str::parse).collect::<Result<_, _>>().ok()?;
    Some((instance, ids))
}

/// Sends the notices of this runtime's commits, as many as are waiting in one round trip.
pub(crate) async fn notify(
    pool: PgPool,
    instance: String,
    mut notices: mpsc::UnboundedReceiver<Vec<EntityId>>,
) {
    while let Some(first) = notices.recv().await {
        let mut ids: BTreeSet<EntityId> = first.into_iter().collect();
        while let Ok(more) = notices.try_recv() {
            ids.extend(more);
        }
        let payloads = payloads(&instance, &ids);
        if let Err(error) = sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
            .bind(CHANNEL)
            .bind(&payloads)
            .execute(&pool)
            .await
        {
            tracing::warn!(%error, "cannot notify other runtimes of a commit");
        }
    }
}

/// Listens for other runtimes' commits until shutdown; catches up the live entities they wrote
/// and wakes the subscriptions.
pub(crate) async fn listen(shared: Weak<Shared>, pool: PgPool, shutdown: CancellationToken) {
    // A pool of its own: the listening connection is never one the writers wait for.
    let options = (*pool.connect_options()).clone();
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
        if !std::mem::take(&mut first) {
            // Back after a lost connection: whatever was announced meanwhile is lost.
            let Some(shared) = shared.upgrade() else {
                break;
            };
            catch_up_all(&shared);
        }
        loop {
            let received = tokio::select! {
                received = listener.try_recv() => received,
                () = shutdown.cancelled() => break 'connect,
            };
            let Some(shared) = shared.upgrade() else {
                break 'connect;
            };
            match received {
                Ok(Some(notification)) => {
                    let Some((instance, ids)) = parse(notification.payload()) else {
                        continue;
                    };
                    if instance == shared.instance {
                        continue;
                    }
                    shared.announcer.moved();
                    for id in ids {
                        shared.registry.follow(&shared, id, None);
                    }
                }
                // Lost and connected again: notifications may have been missed.
                Ok(None) => catch_up_all(&shared),
                Err(error) => {
                    tracing::warn!(%error, "lost the connection that listens for other runtimes' commits");
                    continue 'connect;
                }
            }
        }
    }
    listener_pool.close().await;
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
                tokio::spawn(notify(pool.clone(), shared.instance.clone(), notices));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_split_below_the_limit_and_parse_back() {
        let ids: BTreeSet<EntityId> = (1..2_000).map(|id| id * 1_000_003).collect();
        let payloads = payloads("runtime-1", &ids);
        assert!(payloads.len() > 1);
        let mut back = BTreeSet::new();
        for payload in &payloads {
            assert!(payload.len() <= MAX_PAYLOAD);
            let (instance, ids) = parse(payload).unwrap();
            assert_eq!(instance, "runtime-1");
            back.extend(ids);
        }
        assert_eq!(back, ids);
    }
}
