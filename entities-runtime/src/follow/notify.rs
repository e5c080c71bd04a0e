//! The task that tells other runtimes of this runtime's commits.

use std::collections::BTreeSet;
use std::sync::Arc;

use sqlx::postgres::PgPool;
use tokio::sync::mpsc;

use super::notice;
use crate::entity::EntityId;
use crate::metrics::Counters;

/// Sends the notices of this runtime's commits, as many as are waiting in one round trip (the
/// announcer sends only those another runtime may listen for).
pub(crate) async fn notify(
    pool: PgPool,
    instance: String,
    counters: Arc<Counters>,
    mut notices: mpsc::UnboundedReceiver<Vec<EntityId>>,
) {
    while let Some(first) = notices.recv().await {
        let mut ids: BTreeSet<EntityId> = first.into_iter().collect();
        while let Ok(more) = notices.try_recv() {
            ids.extend(more);
        }
        let payloads = notice::wrote(&instance, &ids);
        match sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
            .bind(super::CHANNEL)
            .bind(&payloads)
            .execute(&pool)
            .await
        {
            Ok(_) => counters.notifications_sent.add(payloads.len() as u64),
            Err(error) => tracing::warn!(%error, "cannot notify other runtimes of a commit"),
        }
    }
}
