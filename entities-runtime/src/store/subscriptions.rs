//! The rows of durable subscriptions: their checkpoints, and who runs each.
//!
//! A subscription runs in one runtime at a time. On Postgres that runtime holds a session
//! advisory lock on a connection of its own (taken out of the pool), and reads and writes
//! everything of the subscription through that connection: should the connection break, the
//! lock and the right to write go together, and another runtime takes over at once. On SQLite,
//! whose locks other processes cannot see per row, the runtime holds a lease on the row
//! (`holder`, `lease_until`), renewed while it runs and taken over once it expires. On both,
//! every move of a checkpoint names the checkpoint it replaces, so a runtime that lost the
//! subscription, or a rebuild that reset it, is never overwritten.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqlitePool;
use sqlx::{Connection, Postgres, Sqlite};

use super::{LogPosition, Store};
use crate::projection::Tx;
use crate::sql::Target;

const PG_LOCK: &str =
    "SELECT pg_try_advisory_lock(hashtextextended('entities.subscription:' || $1, 0))";
const PG_ENSURE: &str = "INSERT INTO entities.subscriptions (name, transaction_id, position) \
     VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING";
const PG_CHECKPOINT: &str =
    "SELECT transaction_id, position, error FROM entities.subscriptions WHERE name = $1";
const PG_ADVANCE: &str = "UPDATE entities.subscriptions \
     SET transaction_id = $4, position = $5, error = NULL, updated_at = now() \
     WHERE name = $1 AND transaction_id = $2 AND position = $3";
const PG_FAIL: &str = "UPDATE entities.subscriptions SET error = $4, updated_at = now() \
     WHERE name = $1 AND transaction_id = $2 AND position = $3";
/// Locks the checkpoint row, if it is still at (`$2`, `$3`): a projector's transaction takes it
/// first, in the order a rebuild takes it, so the two never deadlock on the read model's rows.
const PG_LOCK_CHECKPOINT: &str = "SELECT 1 FROM entities.subscriptions \
     WHERE name = $1 AND transaction_id = $2 AND position = $3 FOR UPDATE";
const PG_RESET: &str = "INSERT INTO entities.subscriptions (name, transaction_id, position) VALUES ($1, 0, 0) \
     ON CONFLICT (name) DO UPDATE SET transaction_id = 0, position = 0, error = NULL, updated_at = now()";

const SQLITE_ENSURE: &str = "INSERT INTO subscriptions (name, transaction_id, position) \
     VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING";
/// Takes or renews the lease: `$2` holds it until `$3` unless another holds one that has not
/// expired at `$4`.
const SQLITE_CLAIM: &str = "UPDATE subscriptions SET holder = $2, lease_until = $3 \
     WHERE name = $1 AND (holder IS NULL OR holder = $2 OR lease_until < $4)";
const SQLITE_RELEASE: &str =
    "UPDATE subscriptions SET holder = NULL, lease_until = 0 WHERE name = $1 AND holder = $2";
const SQLITE_CHECKPOINT: &str =
    "SELECT transaction_id, position, error FROM subscriptions WHERE name = $1";
const SQLITE_ADVANCE: &str = "UPDATE subscriptions \
     SET transaction_id = $4, position = $5, error = NULL, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
     WHERE name = $1 AND transaction_id = $2 AND position = $3 AND holder = $6";
const SQLITE_FAIL: &str = "UPDATE subscriptions SET error = $4, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
     WHERE name = $1 AND transaction_id = $2 AND position = $3 AND holder = $5";
/// Whether the checkpoint is still at (`$2`, `$3`) and the lease `$4`'s (the transaction's
/// `BEGIN IMMEDIATE` already holds the one write lock).
const SQLITE_LOCK_CHECKPOINT: &str = "SELECT 1 FROM subscriptions \
     WHERE name = $1 AND transaction_id = $2 AND position = $3 AND holder = $4";
const SQLITE_RESET: &str = "INSERT INTO subscriptions (name, transaction_id, position) VALUES ($1, 0, 0) \
     ON CONFLICT (name) DO UPDATE SET transaction_id = 0, position = 0, error = NULL, \
     updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// A subscription's stored checkpoint, and why it stopped, if it did.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Checkpoint {
    pub at: LogPosition,
    pub error: Option<String>,
}

type CheckpointRow = (i64, i64, Option<String>);

fn checkpoint(row: CheckpointRow) -> Checkpoint {
    Checkpoint {
        at: LogPosition {
            transaction: row.0 as u64,
            position: row.1,
        },
        error: row.2,
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |now| now.as_millis() as i64)
}

/// The right to run subscription `name`, held by this runtime.
pub(crate) enum Seat {
    Postgres {
        name: String,
        conn: PgConnection,
    },
    Sqlite {
        name: String,
        pool: SqlitePool,
        holder: String,
        lease: Duration,
        renewed: Instant,
    },
}

impl Seat {
    /// Takes the subscription if no other runtime runs it; its row is made first, its checkpoint
    /// at `start`, if it has none.
    pub async fn take(
        store: &Store,
        name: &str,
        holder: &str,
        lease: Duration,
        start: LogPosition,
    ) -> Result<Option<Seat>, sqlx::Error> {
        match store {
            Store::Postgres(pool) => {
                let mut pooled = pool.acquire().await?;
                let locked: bool = sqlx::query_scalar(PG_LOCK)
                    .bind(name)
                    .fetch_one(&mut *pooled)
                    .await?;
                if !locked {
                    // Back to the pool: it holds no lock.
                    return Ok(None);
                }
                // Out of the pool: the lock lives as long as this connection, which must never
                // serve anything else.
                let mut conn = pooled.detach();
                sqlx::query(PG_ENSURE)
                    .bind(name)
                    .bind(start.transaction as i64)
                    .bind(start.position)
                    .execute(&mut conn)
                    .await?;
                Ok(Some(Seat::Postgres {
                    name: name.to_owned(),
                    conn,
                }))
            }
            Store::Sqlite(pool) => {
                sqlx::query(SQLITE_ENSURE)
                    .bind(name)
                    .bind(start.transaction as i64)
                    .bind(start.position)
                    .execute(pool)
                    .await?;
                let mut seat = Seat::Sqlite {
                    name: name.to_owned(),
                    pool: pool.clone(),
                    holder: holder.to_owned(),
                    lease,
                    renewed: Instant::now(),
                };
                Ok(seat.renew().await?.then_some(seat))
            }
        }
    }

    /// Whether this runtime still holds the subscription, renewing its lease on SQLite.
    pub async fn renew(&mut self) -> Result<bool, sqlx::Error> {
        match self {
            // The lock holds while the connection does; a broken one fails the next statement.
            Seat::Postgres { .. } => Ok(true),
            Seat::Sqlite {
                name,
                pool,
                holder,
                lease,
                renewed,
            } => {
                let now = now_millis();
                let done = sqlx::query(SQLITE_CLAIM)
                    .bind(&*name)
                    .bind(&*holder)
                    .bind(now + lease.as_millis() as i64)
                    .bind(now)
                    .execute(&*pool)
                    .await?;
                *renewed = Instant::now();
                Ok(done.rows_affected() == 1)
            }
        }
    }

    /// [`renew`](Self::renew) when a third of the lease has passed since the last renewal:
    /// called between events and while waiting, so that no wait outlives the lease.
    pub async fn keep(&mut self) -> Result<bool, sqlx::Error> {
        match self {
            Seat::Sqlite { lease, renewed, .. } if renewed.elapsed() >= *lease / 3 => {
                self.renew().await
            }
            _ => Ok(true),
        }
    }

    /// The longest this runtime may go between two [`keep`](Self::keep)s.
    pub fn keep_every(&self) -> Duration {
        match self {
            Seat::Postgres { .. } => Duration::MAX,
            Seat::Sqlite { lease, .. } => *lease / 3,
        }
    }

    /// Gives the subscription up: another runtime may take it at once.
    pub async fn release(self) {
        match self {
            Seat::Postgres { conn, .. } => {
                // Closing the session releases its advisory locks.
                let _ = conn.close().await;
            }
            Seat::Sqlite {
                name, pool, holder, ..
            } => {
                if let Err(error) = sqlx::query(SQLITE_RELEASE)
                    .bind(&name)
                    .bind(&holder)
                    .execute(&pool)
                    .await
                {
                    tracing::warn!(subscription = name, %error, "cannot release a subscription's lease");
                }
            }
        }
    }

    /// What the subscription's reads run on.
    pub fn target(&mut self) -> Target<'_> {
        match self {
            Seat::Postgres { conn, .. } => Target::PostgresConnection(conn),
            Seat::Sqlite { pool, .. } => Target::SqlitePool(pool),
        }
    }

    pub async fn checkpoint(&mut self) -> Result<Checkpoint, sqlx::Error> {
        let row: CheckpointRow = match self {
            Seat::Postgres { name, conn } => {
                sqlx::query_as(PG_CHECKPOINT)
                    .bind(&*name)
                    .fetch_one(conn)
                    .await?
            }
            Seat::Sqlite { name, pool, .. } => {
                sqlx::query_as(SQLITE_CHECKPOINT)
                    .bind(&*name)
                    .fetch_one(&*pool)
                    .await?
            }
        };
        Ok(checkpoint(row))
    }

    /// Moves the checkpoint from `from` to `to`; `false` when it was not at `from` any more (a
    /// rebuild reset it) or, on SQLite, the lease was lost.
    pub async fn advance(
        &mut self,
        from: LogPosition,
        to: LogPosition,
    ) -> Result<bool, sqlx::Error> {
        let done = match self {
            Seat::Postgres { name, conn } => advance_postgres(conn, name, from, to).await?,
            Seat::Sqlite {
                name, pool, holder, ..
            } => {
                let mut conn = pool.acquire().await?;
                advance_sqlite(&mut conn, name, holder, from, to).await?
            }
        };
        Ok(done)
    }

    /// As [`advance`](Self::advance), but as a future of its own, where the checkpoint is
    /// written through a pool (SQLite): the runner lets it run while it goes on handling, since
    /// under load a write to the file can wait a long while for its lock. `None` on Postgres,
    /// where the seat's own connection writes it at once.
    pub fn advance_detached(
        &self,
        from: LogPosition,
        to: LogPosition,
    ) -> Option<impl Future<Output = Result<bool, sqlx::Error>> + Send + 'static> {
        match self {
            Seat::Postgres { .. } => None,
            Seat::Sqlite {
                name, pool, holder, ..
            } => {
                let (name, pool, holder) = (name.clone(), pool.clone(), holder.clone());
                Some(async move {
                    let mut conn = pool.acquire().await?;
                    advance_sqlite(&mut conn, &name, &holder, from, to).await
                })
            }
        }
    }

    /// Records why the subscription stopped at the event after `at`; `None` clears it (resumed).
    pub async fn record_failure(
        &mut self,
        at: LogPosition,
        error: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        match self {
            Seat::Postgres { name, conn } => {
                sqlx::query(PG_FAIL)
                    .bind(&*name)
                    .bind(at.transaction as i64)
                    .bind(at.position)
                    .bind(error)
                    .execute(conn)
                    .await?;
            }
            Seat::Sqlite {
                name, pool, holder, ..
            } => {
                sqlx::query(SQLITE_FAIL)
                    .bind(&*name)
                    .bind(at.transaction as i64)
                    .bind(at.position)
                    .bind(error)
                    .bind(&*holder)
                    .execute(&*pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// A transaction on the subscription's connection, for a projector's writes and its
    /// checkpoint.
    pub async fn begin(&mut self) -> Result<SeatTx<'_>, sqlx::Error> {
        Ok(match self {
            Seat::Postgres { name, conn } => SeatTx::Postgres {
                name,
                tx: conn.begin().await?,
            },
            Seat::Sqlite {
                name, pool, holder, ..
            } => SeatTx::Sqlite {
                name,
                holder,
                tx: pool.begin_with("BEGIN IMMEDIATE").await?,
            },
        })
    }
}

async fn advance_postgres(
    conn: &mut PgConnection,
    name: &str,
    from: LogPosition,
    to: LogPosition,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(PG_ADVANCE)
        .bind(name)
        .bind(from.transaction as i64)
        .bind(from.position)
        .bind(to.transaction as i64)
        .bind(to.position)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

async fn advance_sqlite(
    conn: &mut sqlx::SqliteConnection,
    name: &str,
    holder: &str,
    from: LogPosition,
    to: LogPosition,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(SQLITE_ADVANCE)
        .bind(name)
        .bind(from.transaction as i64)
        .bind(from.position)
        .bind(to.transaction as i64)
        .bind(to.position)
        .bind(holder)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// A projector's transaction: its read model's writes and its checkpoint commit together.
pub(crate) enum SeatTx<'s> {
    Postgres {
        name: &'s str,
        tx: sqlx::Transaction<'s, Postgres>,
    },
    Sqlite {
        name: &'s str,
        holder: &'s str,
        tx: sqlx::Transaction<'static, Sqlite>,
    },
}

impl SeatTx<'_> {
    /// The transaction as the projector writes through it.
    pub fn projection(&mut self) -> Tx<'_> {
        match self {
            SeatTx::Postgres { tx, .. } => Tx::postgres_tx(tx),
            SeatTx::Sqlite { tx, .. } => Tx::sqlite_tx(tx),
        }
    }

    /// Locks the checkpoint row first (on Postgres), in the order a rebuild locks it; `false`
    /// when the checkpoint is no longer at `from` (or, on SQLite, the lease was lost).
    pub async fn lock(&mut self, from: LogPosition) -> Result<bool, sqlx::Error> {
        let row: Option<(i32,)> = match self {
            SeatTx::Postgres { name, tx } => {
                sqlx::query_as(PG_LOCK_CHECKPOINT)
                    .bind(&**name)
                    .bind(from.transaction as i64)
                    .bind(from.position)
                    .fetch_optional(&mut **tx)
                    .await?
            }
            SeatTx::Sqlite { name, holder, tx } => {
                sqlx::query_as(SQLITE_LOCK_CHECKPOINT)
                    .bind(&**name)
                    .bind(from.transaction as i64)
                    .bind(from.position)
                    .bind(&**holder)
                    .fetch_optional(&mut **tx)
                    .await?
            }
        };
        Ok(row.is_some())
    }

    /// As [`Seat::advance`], in this transaction.
    pub async fn advance(
        &mut self,
        from: LogPosition,
        to: LogPosition,
    ) -> Result<bool, sqlx::Error> {
        match self {
            SeatTx::Postgres { name, tx } => advance_postgres(tx, name, from, to).await,
            SeatTx::Sqlite { name, holder, tx } => advance_sqlite(tx, name, holder, from, to).await,
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            SeatTx::Postgres { tx, .. } => tx.commit().await,
            SeatTx::Sqlite { tx, .. } => tx.commit().await,
        }
    }
}

impl super::StoreTx<'_> {
    /// Sets subscription `name`'s checkpoint back to the start (making its row if it has none),
    /// locking the row first: a projector's transaction that would move it from where it was
    /// waits for this one and then finds it moved.
    pub async fn reset_subscription(&mut self, name: &str) -> Result<(), sqlx::Error> {
        match self {
            super::StoreTx::Postgres(tx) => {
                sqlx::query(PG_RESET).bind(name).execute(&mut **tx).await?;
            }
            super::StoreTx::Sqlite(tx) => {
                sqlx::query(SQLITE_RESET)
                    .bind(name)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }
}

impl Store {
    /// Subscription `name`'s stored checkpoint, if it has a row.
    pub async fn subscription_checkpoint(
        &self,
        name: &str,
    ) -> Result<Option<Checkpoint>, sqlx::Error> {
        let row: Option<CheckpointRow> = match self {
            Store::Postgres(pool) => {
                sqlx::query_as(PG_CHECKPOINT)
                    .bind(name)
                    .fetch_optional(pool)
                    .await?
            }
            Store::Sqlite(pool) => {
                sqlx::query_as(SQLITE_CHECKPOINT)
                    .bind(name)
                    .fetch_optional(pool)
                    .await?
            }
        };
        Ok(row.map(checkpoint))
    }

    /// What reads of the log run on, outside any subscription.
    pub fn target(&self) -> Target<'_> {
        match self {
            Store::Postgres(pool) => Target::PostgresPool(pool),
            Store::Sqlite(pool) => Target::SqlitePool(pool),
        }
    }
}
