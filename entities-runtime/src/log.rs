//! The event log: every stored event, of every entity, in one order that a reader can follow
//! from a checkpoint without ever passing an event still in flight.
//!
//! Postgres numbers events (`position`) as they are inserted, not as they commit: a transaction
//! that took position 9 may commit after one that took 10. A reader in position order would pass
//! 9 while it is in flight, and never see it. So on Postgres the log is read in (transaction id,
//! position) order, and only below `pg_snapshot_xmin(pg_current_snapshot())`, the oldest
//! transaction still running: every transaction below it has ended, committed or not, so no
//! event can later appear behind a reader's checkpoint. (A transaction that runs long holds the
//! log back for every reader until it ends; the runtime's own are short.) On SQLite, writes are
//! serialised and row ids never go back, so position order is commit order.
//!
//! Events are read raw ([`LoggedEvent`], any entity type, payload as JSON) or typed
//! ([`Logged<E>`], one entity type, decoded into its event enum with upcasting, as a replay
//! decodes them).

use crate::entity::{DecodeError, Entity, EntityId, Tagged, Version};
use crate::runtime::Runtime;
use crate::store::{self, LogPosition, LoggedEvent, RawEvent};

/// An event of entity type `E` from the log, decoded.
#[derive(Debug, Clone)]
pub struct Logged<E: Entity> {
    pub at: LogPosition,
    pub entity_id: EntityId,
    /// The entity's version after this event.
    pub version: Version,
    pub event: E::Event,
    /// The id of the action that recorded it.
    pub action_id: i64,
    pub action_type: String,
    pub created_by: String,
    pub request_id: String,
    pub correlation_id: String,
    /// When it was stored: RFC 3339, UTC.
    pub inserted_at: String,
}

/// Why an event of the log could not be read as the reader asked.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("event {at:?} of {entity_type} {entity_id} does not decode: {source}")]
    Decode {
        at: LogPosition,
        entity_type: String,
        entity_id: EntityId,
        #[source]
        source: DecodeError,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// What a reader of the log reads an event as: [`LoggedEvent`] (every entity type) or
/// [`Logged<E>`] (the events of `E` only). Implemented by those two; not by hand.
pub trait FromLog: sealed::FromRaw + Sized + Clone + Send + Sync + 'static {
    /// The entity types read (all when empty).
    fn entity_types() -> &'static [&'static str];
    /// Where the event stands in the log.
    fn at(&self) -> LogPosition;
}

pub(crate) mod sealed {
    use super::LogError;
    use crate::store::RawEvent;

    /// How a stored row becomes what a reader reads; out of users' reach.
    pub trait FromRaw: Sized {
        fn from_raw(raw: RawEvent) -> Result<Self, LogError>;
    }
}

use sealed::FromRaw;

impl FromLog for LoggedEvent {
    fn entity_types() -> &'static [&'static str] {
        &[]
    }

    fn at(&self) -> LogPosition {
        self.at
    }
}

/// The one-element list of an entity type's tag, as `FromLog::entity_types` returns it.
struct TypeOf<E>(std::marker::PhantomData<E>);

impl<E: Entity> TypeOf<E> {
    const TYPES: &'static [&'static str] = &[E::TYPE];
}

impl LoggedEvent {
    /// This event as entity `E`'s event enum (upcast as a replay would); `None` when it is
    /// another entity type's. For a reader of several types: `if let Some(event) =
    /// logged.decode::<Account>() { ... }`.
    pub fn decode<E: Entity>(&self) -> Option<Result<E::Event, DecodeError>> {
        (self.entity_type == E::TYPE).then(|| {
            E::Event::decode(
                &self.record.event_type,
                self.record.payload_version,
                &self.record.payload.to_string(),
            )
        })
    }
}

impl FromRaw for LoggedEvent {
    fn from_raw(raw: RawEvent) -> Result<Self, LogError> {
        Ok(raw.into_logged()?)
    }
}

impl<E: Entity> FromLog for Logged<E> {
    fn entity_types() -> &'static [&'static str] {
        TypeOf::<E>::TYPES
    }

    fn at(&self) -> LogPosition {
        self.at
    }
}

impl<E: Entity> FromRaw for Logged<E> {
    fn from_raw(raw: RawEvent) -> Result<Self, LogError> {
        let event = E::Event::decode(raw.event_type(), raw.payload_version(), raw.payload())
            .map_err(|source| LogError::Decode {
                at: raw.at,
                entity_type: raw.entity_type.clone(),
                entity_id: raw.entity_id,
                source,
            })?;
        let version = raw.version();
        let (
            _,
            _,
            _,
            _,
            action_id,
            action_type,
            created_by,
            request_id,
            correlation_id,
            inserted_at,
        ) = raw.row;
        Ok(Logged {
            at: raw.at,
            entity_id: raw.entity_id,
            version,
            event,
            action_id,
            action_type,
            created_by,
            request_id,
            correlation_id,
            inserted_at,
        })
    }
}

impl Runtime {
    /// Up to `limit` events of the log after `after`, in log order: committed ones only, and
    /// never one past an event still in flight (see the module's doc). Read again from the last
    /// one's [`at`](FromLog::at) for the next. `R` is [`LoggedEvent`] for every entity type, or
    /// [`Logged<E>`] for the events of `E`, decoded:
    /// `runtime.read_log::<Logged<Account>>(LogPosition::START, 100)`.
    pub async fn read_log<R: FromLog>(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<R>, LogError> {
        let store = &self.shared().store;
        store::read_log(store.target(), after, limit, R::entity_types())
            .await?
            .into_iter()
            .map(R::from_raw)
            .collect()
    }

    /// The last event a reader can read now ([`LogPosition::START`] when there is none).
    pub async fn log_head(&self) -> Result<LogPosition, sqlx::Error> {
        store::head(self.shared().store.target(), &[]).await
    }
}
