//! Event-sourced entities for Rust, kept live one task per entity, stored in Postgres or SQLite.
//!
//! You write plain structs: the entity's state, one struct per action, one per event. The
//! macros generate the action and event enums, their stored type tags and JSON payloads, and
//! the dispatch to your handlers. The [`Runtime`] keeps one task per live entity, loads it from
//! its snapshot and the events after it, serves reads from memory, and persists each action
//! with its events and read-model projections in one transaction, with an optimistic version
//! check.
//!
//! ```
//! use entities_runtime::{entity, Action, Apply, Context, Create, EntityId, Event, Events, Handle, Runtime, Version};
//! use serde::{Deserialize, Serialize};
//!
//! #[entity(type = "account", actions(Open, Deposit), events(Opened, Deposited), error = AccountError, derive(PartialEq))]
//! #[derive(Debug, Clone, Default, Serialize, Deserialize)]
//! pub struct Account {
//!     pub id: EntityId,
//!     pub version: Version,
//!     pub owner: String,
//!     pub balance: i64,
//! }
//!
//! #[derive(Debug, Clone, PartialEq, thiserror::Error)]
//! pub enum AccountError {
//!     #[error("deposits must be positive")]
//!     NotPositive,
//! }
//!
//! #[derive(Debug, Clone, PartialEq, Action, Serialize, Deserialize)]
//! pub struct Open { pub owner: String }
//! #[derive(Debug, Clone, PartialEq, Action, Serialize, Deserialize)]
//! pub struct Deposit { pub amount: i64 }
//! #[derive(Debug, Clone, PartialEq, Event, Serialize, Deserialize)]
//! pub struct Opened { pub owner: String }
//! #[derive(Debug, Clone, PartialEq, Event, Serialize, Deserialize)]
//! #[event(rename = "deposited")] // the stored tag, pinned: the struct may be renamed freely
//! pub struct Deposited { pub amount: i64 }
//!
//! impl Handle<Open> for Account {
//!     fn handle(&self, _: &Context, action: &Open) -> Events<Self> {
//!         Ok(vec![Opened { owner: action.owner.clone() }.into()])
//!     }
//! }
//! impl Handle<Deposit> for Account {
//!     fn handle(&self, _: &Context, action: &Deposit) -> Events<Self> {
//!         if action.amount <= 0 {
//!             return Err(AccountError::NotPositive);
//!         }
//!         Ok(vec![Deposited { amount: action.amount }.into()])
//!     }
//! }
//! impl Apply<Opened> for Account {
//!     fn apply(&mut self, event: &Opened) { self.owner = event.owner.clone(); }
//! }
//! impl Apply<Deposited> for Account {
//!     fn apply(&mut self, event: &Deposited) { self.balance += event.amount; }
//! }
//! impl Create for Account {
//!     type Args = String;
//!     fn create(_: &Context, _id: EntityId, owner: String) -> Result<AccountAction, AccountError> {
//!         Ok(Open { owner }.into())
//!     }
//! }
//!
//! // A handler's logic, as a unit test: no runtime, no database.
//! use entities_runtime::testing::given;
//! given::<Account>([Opened { owner: "ada".into() }.into()])
//!     .when(Deposit { amount: 0 })
//!     .then_refused(AccountError::NotPositive);
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::connect("sqlite::memory:").await?;
//! let ctx = Context::new("user-1");
//! let account = runtime.create::<Account>(&ctx, "ada".into()).await?;
//! assert_eq!(account.version, 1);
//!
//! let handle = runtime.entity::<Account>(account.id);
//! let after = handle.send_action(&ctx, Deposit { amount: 50 }).await?;
//! assert_eq!((after.balance, after.version), (50, 2));
//! assert!(handle.send_action(&ctx, Deposit { amount: -5 }).await.is_err()); // nothing stored
//! assert_eq!(handle.get().await?.balance, 50); // from memory
//! runtime.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Read models kept in the action's own transaction implement [`Project`] for the events they
//! need (every event with an `impl Project` is projected); read them through
//! [`Runtime::database`]. See the `example` crate's ShoppingList for one on both backends.
//!
//! Beyond one action: [`EntityRef::send_actions`] stores a batch on one entity in one
//! transaction, or nothing; [`Runtime::transaction`] does the same for actions on any entities,
//! through a [`Unit`]; and a call made with [`Context::with_idempotency_key`] is applied once,
//! however often it is sent (a repeat returns what the first returned).

mod action_path;
mod announce;
mod batch;
mod changes;
mod commit;
mod context;
mod database;
mod entity;
mod error;
mod follow;
mod held;
mod idempotency;
mod ids;
mod key_locks;
mod keyed_call;
mod log;
mod metrics;
mod persist;
mod projection;
mod registry;
mod replay;
mod runtime;
mod shared;
mod slot;
mod snapshot;
mod sql;
mod store;
mod subscription;
mod telemetry;
pub mod testing;
mod transaction;
mod turn;
mod worker;

pub use changes::Changes;
pub use context::Context;
pub use database::{Connection, Database, PoolConnections, Transaction};
pub use entities_derive::{Action, Event, entity};
pub use entity::{
    Action, ActionOf, Apply, Change, Create, DecodeError, Entity, EntityId, Event, Events, Handle,
    PayloadVersion, Project, Projected, Rejected, Tagged, Version,
};
pub use error::Error;
pub use log::{FromLog, LogError, Logged};
pub use metrics::Metrics;
pub use projection::{ProjectionError, Tx, is_unique_violation};
pub use runtime::{EntityRef, Runtime, RuntimeBuilder, StartError};
pub use sql::{Backend, Query, Row};
pub use sqlx;
pub use store::{EventRecord, LogPosition, LoggedEvent, Migration};
pub use subscription::{
    BoxError, Handler, Progress, Projector, StartAt, Status, Subscription, SubscriptionBuilder,
    SubscriptionError,
};
pub use transaction::Unit;

/// What the macros' generated code names. Not a public API: it may change in any release.
#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
