//! The errors of the runtime's API: every failure is a value, never a panic.

use std::sync::Arc;

use crate::entity::{EntityId, Version};

/// Why a call to an entity failed. `D` is the entity's own domain error.
///
/// A failed call changed nothing, not the database and not the state in memory, with one
/// exception that no client of a database escapes: a [`Storage`](Error::Storage) error from a
/// `COMMIT` whose answer was lost, when the commit may have gone through (and
/// [`Unanswered`](Error::Unanswered), its like inside the runtime).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error<D> {
    /// The entity's handler (or a projection) refused the action.
    #[error("rejected: {0}")]
    Rejected(D),
    /// No entity of this type has this id.
    #[error("{entity_type} {id} not found")]
    NotFound {
        entity_type: &'static str,
        id: EntityId,
    },
    /// Other writers kept changing the entity: every retry met a newer version.
    #[error("{entity_type} {id}: version conflict; gave up after {attempts} attempts")]
    Conflict {
        entity_type: &'static str,
        id: EntityId,
        attempts: u32,
    },
    /// A read-model constraint rejected a projection's write.
    #[error("{entity_type} {id}: constraint `{constraint}` violated: {message}")]
    Constraint {
        entity_type: &'static str,
        id: EntityId,
        /// The constraint's name on Postgres; on SQLite, the `table.column` list it names.
        constraint: String,
        message: String,
    },
    /// Stored data that does not decode: an event payload, an unknown type tag, a gap in versions.
    #[error("{entity_type} {id}: stored data at version {version} is corrupt: {reason}")]
    Corrupt {
        entity_type: &'static str,
        id: EntityId,
        version: Version,
        reason: String,
    },
    /// An action or event the store cannot keep, refused before anything is written: serde
    /// cannot turn it into JSON (a map with non-string keys, say), or it or the call's context
    /// holds a NUL character, which Postgres text and `jsonb` refuse (refused on SQLite too, so
    /// both backends accept the same data).
    #[error("{entity_type} {id}: `{type_tag}` cannot be stored: {message}")]
    Payload {
        entity_type: &'static str,
        id: EntityId,
        type_tag: &'static str,
        message: String,
    },
    /// The database could not be reached or failed, and nothing of the call was stored.
    /// [`is_unavailable`](Error::is_unavailable) tells an outage (worth a retry soon) from a
    /// failure of the statement itself.
    #[error("storage unavailable: {0}")]
    Storage(#[source] Arc<sqlx::Error>),
    /// `COMMIT` was sent and no answer came (the connection was lost on the way): the action
    /// may have been stored or not. The entity reads what the database holds before its next
    /// action, so `get` soon shows the truth; sent again with the same idempotency key, the
    /// action is applied at most once.
    #[error("the commit's outcome is unknown: {0}")]
    OutcomeUnknown(#[source] Arc<sqlx::Error>),
    /// A projection of `event` misbehaved: it went on after one of its statements failed
    /// (ignoring the error rather than returning it), and on Postgres that statement aborted
    /// the transaction. Nothing of the action was stored.
    #[error("{entity_type} {id}: the projection of `{event}` failed: {message}")]
    Projection {
        entity_type: &'static str,
        id: EntityId,
        event: &'static str,
        message: String,
    },
    /// The runtime's committer ended before it told whether the action committed: a bug of the
    /// runtime's made it panic, or the tokio runtime under it is shutting down. As with a
    /// `Storage` error at `COMMIT`, the action may have been stored: the entity reads the
    /// database before its next action.
    #[error(
        "{entity_type} {id}: the committer ended before answering; the action may have been committed"
    )]
    Unanswered {
        entity_type: &'static str,
        id: EntityId,
    },
    /// User code (a handler, `apply` or a projection) panicked; the entity reloads from the database.
    #[error("{entity_type} {id}: {during} panicked: {message}")]
    Panicked {
        entity_type: &'static str,
        id: EntityId,
        during: &'static str,
        message: String,
    },
    /// The runtime is shutting down and takes no more calls.
    #[error("the runtime is shutting down")]
    ShuttingDown,
    /// Action `index` (from 0) of a batch ([`EntityRef::send_actions`](crate::EntityRef::send_actions))
    /// failed with `error`; no action of the batch was stored.
    #[error("action {index} of the batch: {}", InBatch(error))]
    InBatch { index: usize, error: Box<Error<D>> },
    /// A transaction's [`Unit`](crate::Unit) was used after the run of the closure it was given
    /// to (kept, or sent to another task): it is good only during that run.
    #[error("this transaction's unit was used after its closure's run ended")]
    UnitEnded,
    /// The call's idempotency key was stored by another call (another action, entity or
    /// request): nothing was decided or stored.
    #[error("the idempotency key `{key}` was used already, for another call")]
    IdempotencyKeyReused { key: String },
}

impl<D> Error<D> {
    /// The short name of this kind of failure, as the action's span records it (`outcome`).
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            Error::Rejected(_) => "rejected",
            Error::NotFound { .. } => "not_found",
            Error::Conflict { .. } => "conflict",
            Error::Constraint { .. } => "constraint",
            Error::Corrupt { .. } => "corrupt",
            Error::Payload { .. } => "payload",
            Error::Storage(_) => "storage",
            Error::OutcomeUnknown(_) => "outcome_unknown",
            Error::Projection { .. } => "projection",
            Error::Unanswered { .. } => "unanswered",
            Error::Panicked { .. } => "panicked",
            Error::ShuttingDown => "shutting_down",
            Error::InBatch { error, .. } => error.outcome(),
            Error::UnitEnded => "unit_ended",
            Error::IdempotencyKeyReused { .. } => "idempotency_key_reused",
        }
    }

    /// The domain error, when the entity's handler or a projection refused: [`Rejected`]'s,
    /// looked for inside [`InBatch`] too.
    ///
    /// [`Rejected`]: Error::Rejected
    /// [`InBatch`]: Error::InBatch
    pub fn rejection(&self) -> Option<&D> {
        match self {
            Error::Rejected(domain) => Some(domain),
            Error::InBatch { error, .. } => error.rejection(),
            _ => None,
        }
    }

    /// Whether the database was away (unreachable, restarting, out of connections, or no
    /// pooled connection within the pool's acquire timeout): a call sent again a moment later
    /// may succeed. A failed commit whose outcome is unknown is [`Error::OutcomeUnknown`].
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Storage(error) => is_outage(error),
            Error::InBatch { error, .. } => error.is_unavailable(),
            _ => false,
        }
    }

    /// The same failure with its domain error turned by `f`: how a transaction over entities
    /// of several types reports each one's refusal in its own error type.
    pub fn map_rejection<D2>(self, f: impl FnOnce(D) -> D2) -> Error<D2> {
        match self {
            Error::Rejected(domain) => Error::Rejected(f(domain)),
            Error::NotFound { entity_type, id } => Error::NotFound { entity_type, id },
            Error::Conflict {
                entity_type,
                id,
                attempts,
            } => Error::Conflict {
                entity_type,
                id,
                attempts,
            },
            Error::Constraint {
                entity_type,
                id,
                constraint,
                message,
            } => Error::Constraint {
                entity_type,
                id,
                constraint,
                message,
            },
            Error::Corrupt {
                entity_type,
                id,
                version,
                reason,
            } => Error::Corrupt {
                entity_type,
                id,
                version,
                reason,
            },
            Error::Payload {
                entity_type,
                id,
                type_tag,
                message,
            } => Error::Payload {
                entity_type,
                id,
                type_tag,
                message,
            },
            Error::Storage(error) => Error::Storage(error),
            Error::OutcomeUnknown(error) => Error::OutcomeUnknown(error),
            Error::Projection {
                entity_type,
                id,
                event,
                message,
            } => Error::Projection {
                entity_type,
                id,
                event,
                message,
            },
            Error::Unanswered { entity_type, id } => Error::Unanswered { entity_type, id },
            Error::Panicked {
                entity_type,
                id,
                during,
                message,
            } => Error::Panicked {
                entity_type,
                id,
                during,
                message,
            },
            Error::ShuttingDown => Error::ShuttingDown,
            Error::UnitEnded => Error::UnitEnded,
            Error::IdempotencyKeyReused { key } => Error::IdempotencyKeyReused { key },
            Error::InBatch { index, error } => Error::InBatch {
                index,
                error: Box::new(error.map_rejection(f)),
            },
        }
    }

    /// Names action `index` of a batch as the one that failed.
    pub(crate) fn in_batch(self, index: usize) -> Self {
        Error::InBatch {
            index,
            error: Box::new(self),
        }
    }

    /// The `outcome` of a call's result: `ok`, or its error's.
    pub(crate) fn outcome_of<T>(result: &Result<T, Self>) -> &'static str {
        result.as_ref().map_or_else(Error::outcome, |_| "ok")
    }
}

/// A failure that is not the entity's domain error: what a load can fail with, shared by every
/// caller waiting on that load.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    NotFound,
    Corrupt {
        version: Version,
        reason: String,
    },
    Storage(Arc<sqlx::Error>),
    Panicked {
        during: &'static str,
        message: String,
    },
}

impl Failure {
    pub fn into_error<D>(self, entity_type: &'static str, id: EntityId) -> Error<D> {
        match self {
            Failure::NotFound => Error::NotFound { entity_type, id },
            Failure::Corrupt { version, reason } => Error::Corrupt {
                entity_type,
                id,
                version,
                reason,
            },
            Failure::Storage(error) => Error::Storage(error),
            Failure::Panicked { during, message } => Error::Panicked {
                entity_type,
                id,
                during,
                message,
            },
        }
    }
}

impl From<sqlx::Error> for Failure {
    fn from(error: sqlx::Error) -> Self {
        Failure::Storage(Arc::new(error))
    }
}

/// A database error met while persisting an action: a constraint violation is the caller's to
/// handle, anything else is storage trouble.
pub(crate) fn persist_error<D>(
    error: sqlx::Error,
    entity_type: &'static str,
    id: EntityId,
) -> Error<D> {
    if let Some(db) = error.as_database_error() {
        use sqlx::error::ErrorKind::*;
        if matches!(
            db.kind(),
            UniqueViolation | ForeignKeyViolation | NotNullViolation | CheckViolation
        ) {
            return Error::Constraint {
                entity_type,
                id,
                constraint: crate::store::constraint_name(db).unwrap_or_default(),
                message: db.message().to_owned(),
            };
        }
    }
    Error::Storage(Arc::new(error))
}

/// The message of a caught panic.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Whether `error` says the database is away rather than that a statement failed: no
/// connection (refused, reset, timed out waiting for the pool), or the server's connection
/// exceptions (SQLSTATE class 08), shutdown (57P01-57P03) and too many connections (53300).
pub(crate) fn is_outage(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// Whether a failed `COMMIT` leaves its outcome unknown: the server's answer never came (or
/// came as the connection's end). An error the server answered with is a rollback: known.
pub(crate) fn commit_outcome_unknown(error: &sqlx::Error) -> bool {
    is_outage(error) && !matches!(error, sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed)
}

/// The error of a call whose batch failed; `at_commit` when it was `COMMIT` that failed.
pub(crate) fn failed_commit<D>(error: Arc<sqlx::Error>, at_commit: bool) -> Error<D> {
    if at_commit && commit_outcome_unknown(&error) {
        Error::OutcomeUnknown(error)
    } else {
        Error::Storage(error)
    }
}

pub(crate) fn storage<D>(error: sqlx::Error) -> Error<D> {
    Error::Storage(Arc::new(error))
}

/// Shows the error of a batch's action. A field of `Error`'s own type in its `#[error]` would make
/// thiserror require `Box<Error<D>>: Display` of itself, a bound that never resolves.
struct InBatch<'a, D>(&'a Error<D>);

impl<D: std::fmt::Display> std::fmt::Display for InBatch<'_, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self.0, f)
    }
}
