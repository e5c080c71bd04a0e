//! The traits an entity implements: most through the macros, the handlers by hand.

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::Context;
use crate::projection::{ProjectionError, Tx};

/// Database id of an entity (`entities.id`, a `bigserial`).
pub type EntityId = i64;

/// Number of events applied to an entity: 0 before its first event, then 1, 2, ...
pub type Version = i64;

/// An event-sourced entity: its state struct, the actions it accepts and the events it records.
///
/// Implemented by `#[entity(...)]`; do not implement it by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an entity",
    note = "annotate the state struct with `#[entity(type = \"...\", actions(...), events(...))]`"
)]
pub trait Entity:
    crate::__private::SetVersion + Clone + Send + Sync + Serialize + DeserializeOwned + 'static
{
    /// Type tag stored in every row of this entity (`entities.type`).
    const TYPE: &'static str;
    /// A fingerprint of the state's stored shape: its fields' names, types and attributes, and
    /// `#[entity(snapshot_version = N)]`. Stored with each snapshot; a snapshot of another shape
    /// is ignored and the entity replayed from its events.
    const SHAPE: &'static str;
    /// The generated enum of every action this entity accepts.
    type Action: Tagged + std::fmt::Debug + Clone;
    /// The generated enum of every event this entity records.
    type Event: Tagged + std::fmt::Debug + Clone;
    /// The entity's own domain error, returned by its handlers (`error = ...`, default [`Rejected`]).
    type Error: std::error::Error + Send + Sync + 'static;

    /// The state before the first event: `Default` with the id set and version 0.
    fn new(id: EntityId) -> Self;
    fn id(&self) -> EntityId;
    fn version(&self) -> Version;

    /// Dispatches to the `Handle<A>` impl of the action's struct.
    fn handle_action(
        &self,
        ctx: &Context,
        action: &Self::Action,
    ) -> Result<Vec<Self::Event>, Self::Error>;
    /// Dispatches to the `Apply<E>` impl of the event's struct.
    fn apply_event(&mut self, event: &Self::Event);
    /// Whether `project_event` does anything for this event (it has an `impl Project`); lets
    /// the runtime skip keeping the state before each event when nothing reads it.
    fn is_projected(event: &Self::Event) -> bool;
    /// Dispatches to the `Project<E>` impl of the event, if it has one; `Ok(())` for the rest.
    fn project_event(
        tx: &mut Tx<'_>,
        ctx: &Context,
        before: &Self,
        event: &Self::Event,
        after: &Self,
    ) -> impl Future<Output = Result<(), ProjectionError<Self::Error>>> + Send;
    /// Hands each run of events of one type among `changes` to its `Project::project_all`;
    /// skips events without an `impl Project`.
    fn project_events(
        tx: &mut Tx<'_>,
        changes: &[Change<'_, Self, Self::Event>],
    ) -> impl Future<Output = Result<(), ProjectionError<Self::Error>>> + Send;
}

/// An enum of payload structs, each stored as (type tag, JSON payload). Implemented by `#[entity]`
/// for the generated action and event enums.
pub trait Tagged: Sized + Send + Sync + 'static {
    /// The stored type tag of this value's variant.
    fn type_tag(&self) -> &'static str;
    /// The version of this value's payload shape, stored beside it (`#[event(version = N)]`;
    /// always 1 for actions).
    fn payload_version(&self) -> PayloadVersion;
    /// The JSON payload of this value's variant.
    fn encode(&self) -> Result<String, serde_json::Error>;
    /// Rebuilds a value from a stored (type tag, payload version, JSON payload) triple; a
    /// payload of an older version goes through the upcast the type declares for it.
    fn decode(
        type_tag: &str,
        payload_version: PayloadVersion,
        payload: &str,
    ) -> Result<Self, DecodeError>;
}

/// The version of a stored payload's shape: 1, then whatever `#[event(version = N)]` says.
pub type PayloadVersion = i32;

/// Why a stored (type tag, payload) pair could not be turned back into a value.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown type tag `{type_tag}`; known tags: {known}")]
    UnknownType {
        type_tag: String,
        known: &'static str,
    },
    #[error("payload of `{type_tag}` (version {version}) does not decode: {source}")]
    Payload {
        type_tag: &'static str,
        version: PayloadVersion,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "`{type_tag}` has no payload version {version}: its version is {current}, and no \
         `upcast` of it converts version {version}"
    )]
    UnknownVersion {
        type_tag: &'static str,
        version: PayloadVersion,
        current: PayloadVersion,
    },
}

/// What actions and events need of serde: they are stored as JSON. Implemented for every type
/// that is `Serialize` and `Deserialize`; not by hand.
///
/// A trait of its own, not serde's as supertraits of [`Action`] and [`Event`], so that a
/// payload without serde gets this one message instead of rustc's list of serde's impls.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be stored: it needs serde's `Serialize` and `Deserialize`",
    label = "stored as JSON",
    note = "add `#[derive(Serialize, Deserialize)]` (from `serde`) to `{Self}`"
)]
pub trait Payload: Sized {
    fn to_json(&self) -> Result<String, serde_json::Error>;
    fn from_json(json: &str) -> Result<Self, serde_json::Error>;
}

#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned> Payload for T {
    fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }
}

/// A command to an entity. Implemented by `#[derive(Action)]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an action",
    label = "not an action",
    note = "add `#[derive(Action, Serialize, Deserialize)]` to `{Self}`"
)]
pub trait Action: Payload + Send + Sync + 'static {
    /// The stored type tag: the struct's name, or `#[action(rename = "...")]`.
    const TYPE: &'static str;
    /// Older tags that still decode into this struct (`#[action(alias = "...")]`).
    const ALIASES: &'static [&'static str] = &[];
}

/// A fact recorded by an entity. Implemented by `#[derive(Event)]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event",
    label = "not an event",
    note = "add `#[derive(Event, Serialize, Deserialize)]` to `{Self}`"
)]
pub trait Event: Payload + Send + Sync + 'static {
    /// The stored type tag: the struct's name, or `#[event(rename = "...")]`.
    const TYPE: &'static str;
    /// Older tags that still decode into this struct (`#[event(alias = "...")]`): how an event's
    /// schema evolves without rewriting history.
    const ALIASES: &'static [&'static str] = &[];
    /// The version of this struct's shape (`#[event(version = N)]`, default 1), stored with each
    /// event. When the shape changes, raise it and keep the old shape as a struct of its own
    /// that the new one converts from: `#[event(version = 2, upcast(1 = ItemAddedV1))]`.
    const VERSION: PayloadVersion = 1;
    /// The older versions this struct converts from, each with its conversion
    /// (`#[event(upcast(...))]`).
    #[doc(hidden)]
    const UPCASTS: &'static [crate::__private::Upcast<Self>] = &[];
}

/// What a handler returns: the events the action decides, or the entity's refusal.
/// `fn handle(&self, ctx: &Context, action: &AddItem) -> Events<Self>`.
pub type Events<E> = Result<Vec<<E as Entity>::Event>, <E as Entity>::Error>;

/// What a projection returns. `async fn project(tx: &mut Tx<'_>, change: Change<'_, Self,
/// ItemAdded>) -> Projected<Self>`.
pub type Projected<E> = Result<(), ProjectionError<<E as Entity>::Error>>;

/// Validates an action against the current state and decides its events.
///
/// `A` is left unbounded here (`#[entity]` checks that it derives `Action`), so that a missing
/// derive is one error rather than one more at every impl. Runs once per action
/// (again only if a version conflict forces a retry on fresher state); must not have side effects.
pub trait Handle<A>: Entity {
    fn handle(&self, ctx: &Context, action: &A) -> Events<Self>;
}

/// Applies an event to the state: a pure change, run on every load. It must depend on nothing but
/// the state and the event (no clock, no randomness, no `HashMap` iteration order): the runtime
/// applies the same events to more than one copy of the state (a replay, the spare copy of a
/// live entity) and relies on getting the same state each time.
pub trait Apply<E>: Entity {
    fn apply(&mut self, event: &E);
}

/// One event as a projection sees it: the event, the states on either side of it, and the call
/// that caused it.
pub struct Change<'a, S, V> {
    pub ctx: &'a Context,
    /// The state before this event.
    pub before: &'a S,
    pub event: &'a V,
    /// The state after this event (its `version` is the event's).
    pub after: &'a S,
}

impl<S, V> Clone for Change<'_, S, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S, V> Copy for Change<'_, S, V> {}

/// Writes an event to a read model inside the transaction that records it, so the read model is
/// always consistent and its constraints (a unique name, say) can reject the action. Every event
/// of the entity that has an `impl Project` is projected; the others are not.
///
/// A projection may run more than once for one commit: when another action of the same batch
/// fails, what the batch's projections wrote is rolled back and they run again. So it should
/// only write through `tx`, with no effects outside the transaction, and it must return the
/// error of a statement that failed (`?`): on Postgres a failed statement aborts the
/// transaction, which then cannot commit.
pub trait Project<E: Sync>: Entity {
    fn project(
        tx: &mut Tx<'_>,
        change: Change<'_, Self, E>,
    ) -> impl Future<Output = Projected<Self>> + Send;

    /// Projects events of this type that follow one another in a batch (neighbouring actions,
    /// of this entity or of others of its type, committed in one transaction), in their order:
    /// by default one [`project`](Self::project) after the other. Override it to write them
    /// with fewer statements, one multi-row statement say: a round trip and a statement per
    /// event is most of what an action costs the database.
    ///
    /// It must write what those calls would, in that order (one entity may appear more than
    /// once). Should it fail, the runtime rolls back what it wrote and projects each action on
    /// its own with [`project`](Self::project): a refusal still rolls back its own action only,
    /// with its own error.
    fn project_all(
        tx: &mut Tx<'_>,
        changes: &[Change<'_, Self, E>],
    ) -> impl Future<Output = Projected<Self>> + Send {
        async move {
            for change in changes {
                Self::project(tx, *change).await?;
            }
            Ok(())
        }
    }
}

/// An action of entity `E`: a struct listed in its `actions(...)`, or the generated action enum.
/// Implemented for each; not by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an action of `{E}`",
    label = "not in `actions(...)` of `{E}`",
    note = "list `{Self}` in `#[entity(actions(...))]` on `{E}`, and give `{E}` an `impl Handle<{Self}>`"
)]
pub trait ActionOf<E: Entity>: Into<E::Action> {}

#[diagnostic::do_not_recommend]
impl<E: Entity, A: Into<E::Action>> ActionOf<E> for A {}

/// The seed's `handle_create`: turns the arguments of `Runtime::create` into the entity's first
/// action, once the database has given the entity its id.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be created with `Runtime::create`",
    note = "add `impl Create for {Self} {{ type Args = ...; fn create(ctx: &Context, id: EntityId, args: Self::Args) -> Result<Self::Action, Self::Error> {{ ... }} }}`"
)]
pub trait Create: Entity {
    type Args: serde::Serialize + Send + 'static;
    fn create(ctx: &Context, id: EntityId, args: Self::Args) -> Result<Self::Action, Self::Error>;
}

/// The default domain error of an entity that declares none: a rejection with a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejected(pub String);

impl Rejected {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
