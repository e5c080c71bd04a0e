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
//! use entities_runtime::{entity, Action, Apply, Context, Create, EntityId, Event, Handle, Runtime, Version};
//! use serde::{Deserialize, Serialize};
//!
//! #[entity(type = "account", actions(Open, Deposit), events(Opened, Deposited), error = AccountError)]
//! #[derive(Debug, Clone, Default, Serialize, Deserialize)]
//! pub struct Account {
//!     pub id: EntityId,
//!     pub version: Version,
//!     pub owner: String,
//!     pub balance: i64,
//! }
//!
//! #[derive(Debug, thiserror::Error)]
//! pub enum AccountError {
//!     #[error("deposits must be positive")]
//!     NotPositive,
//! }
//!
//! #[derive(Action, Serialize, Deserialize)]
//! pub struct Open { pub owner: String }
//! #[derive(Action, Serialize, Deserialize)]
//! pub struct Deposit { pub amount: i64 }
//! #[derive(Event, Serialize, Deserialize)]
//! pub struct Opened { pub owner: String }
//! #[derive(Event, Serialize, Deserialize)]
//! #[event(rename = "deposited")] // the stored tag, pinned: the struct may be renamed freely
//! pub struct Deposited { pub amount: i64 }
//!
//! impl Handle<Open> for Account {
//!     fn handle(&self, _: &Context, action: &Open) -> Result<Vec<AccountEvent>, AccountError> {
//!         Ok(vec![Opened { owner: action.owner.clone() }.into()])
//!     }
//! }
//! impl Handle<Deposit> for Account {
//!     fn handle(&self, _: &Context, action: &Deposit) -> Result<Vec<AccountEvent>, AccountError> {
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
//! Read models kept in the action's own transaction implement [`Project`] for the events listed
//! in `project(...)`; see the `example` crate's ShoppingList for one on both backends.

mod commit;
mod context;
mod entity;
mod error;
mod metrics;
mod persist;
mod projection;
mod registry;
mod replay;
mod runtime;
mod store;
pub mod testing;
mod worker;

pub use context::Context;
pub use entities_derive::{Action, Event, entity};
pub use entity::{
    Action, Apply, Create, DecodeError, Entity, EntityId, Event, Handle, Project, Rejected, Tagged,
    Version,
};
pub use error::Error;
pub use metrics::Metrics;
pub use projection::{Backend, ProjectionError, Query, Tx, is_unique_violation};
pub use runtime::{EntityRef, Runtime, RuntimeBuilder, StartError};
pub use sqlx;
pub use store::{EventRecord, Migration};

/// What the macros' generated code names. Not a public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::context::Context;
    pub use crate::entity::{
        Action, Apply, DecodeError, Entity, EntityId, Event, Handle, Project, Rejected, Tagged,
        Version,
    };
    pub use crate::projection::{ProjectionError, Tx};
    pub use serde;
    pub use serde_json;
    pub use std::future::Future;

    /// `str` equality usable in constants, for the generated duplicate-tag checks.
    pub const fn str_eq(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }

    /// Whether `tag` is one of `tags`, usable in constants.
    pub const fn contains(tags: &[&str], tag: &str) -> bool {
        let mut i = 0;
        while i < tags.len() {
            if str_eq(tags[i], tag) {
                return true;
            }
            i += 1;
        }
        false
    }

    /// Whether `a` (with its aliases) and `b` (with its aliases) share a tag, for the generated
    /// duplicate-tag checks.
    pub const fn tags_overlap(a: &str, a_aliases: &[&str], b: &str, b_aliases: &[&str]) -> bool {
        if str_eq(a, b) || contains(a_aliases, b) || contains(b_aliases, a) {
            return true;
        }
        let mut i = 0;
        while i < a_aliases.len() {
            if contains(b_aliases, a_aliases[i]) {
                return true;
            }
            i += 1;
        }
        false
    }

    /// Length of `tags` joined with `", "`: the array length for [`join_tags`].
    pub const fn joined_len(tags: &[&str]) -> usize {
        let mut len = 0;
        let mut i = 0;
        while i < tags.len() {
            if i > 0 {
                len += 2;
            }
            len += tags[i].len();
            i += 1;
        }
        len
    }

    /// `tags` joined with `", "`, in a constant: the `known` list of `DecodeError::UnknownType`
    /// is built from the tag constants, so a `rename` shows up in it. `N` is [`joined_len`].
    pub const fn join_tags<const N: usize>(tags: &[&str]) -> [u8; N] {
        let mut out = [0u8; N];
        let mut at = 0;
        let mut i = 0;
        while i < tags.len() {
            if i > 0 {
                out[at] = b',';
                out[at + 1] = b' ';
                at += 2;
            }
            let tag = tags[i].as_bytes();
            let mut j = 0;
            while j < tag.len() {
                out[at] = tag[j];
                at += 1;
                j += 1;
            }
            i += 1;
        }
        out
    }

    /// The bytes of [`join_tags`] as a `str` (they are whole `str`s joined, so valid UTF-8).
    pub const fn joined_str(bytes: &[u8]) -> &str {
        match std::str::from_utf8(bytes) {
            Ok(joined) => joined,
            Err(_) => panic!("joined type tags are not UTF-8"),
        }
    }

    /// What the generated code does with one listed action or event, as plain data. Built once
    /// per listed type in a constant, so a listed type that is not an action (or has no
    /// handler) is one error, on that constant, spanned on the type in `actions(...)`.
    pub struct PayloadOps<P> {
        pub tag: &'static str,
        pub aliases: &'static [&'static str],
        pub encode: fn(&P) -> Result<String, serde_json::Error>,
        pub decode: fn(&str) -> Result<P, serde_json::Error>,
    }

    impl<P> PayloadOps<P> {
        /// `None` unless `tag` is this type's tag or one of its aliases.
        pub fn decode_tagged(&self, tag: &str, payload: &str) -> Option<Result<P, DecodeError>> {
            (str_eq(tag, self.tag) || contains(self.aliases, tag)).then(|| {
                (self.decode)(payload).map_err(|source| DecodeError::Payload {
                    type_tag: self.tag,
                    source,
                })
            })
        }
    }

    /// `<E as Handle<A>>::handle` as a pointer.
    pub type HandleFn<E, A> =
        fn(&E, &Context, &A) -> Result<Vec<<E as Entity>::Event>, <E as Entity>::Error>;

    /// A listed action: its tag and serde functions, and the entity's handler for it.
    pub struct ActionOps<E: Entity, A> {
        pub payload: PayloadOps<A>,
        pub handle: HandleFn<E, A>,
    }

    /// A listed event: its tag and serde functions, and the entity's `apply` for it.
    pub struct EventOps<E: Entity, V> {
        pub payload: PayloadOps<V>,
        pub apply: fn(&mut E, &V),
    }

    /// Bounded on `Action` rather than serde's traits: an action missing serde is reported once,
    /// on its derive, not again in every entity listing it.
    pub const fn action<E: Handle<A>, A: Action>() -> ActionOps<E, A> {
        ActionOps {
            payload: PayloadOps {
                tag: A::TYPE,
                aliases: A::ALIASES,
                encode: serde_json::to_string::<A>,
                decode: from_json::<A>,
            },
            handle: <E as Handle<A>>::handle,
        }
    }

    /// `serde_json::from_str` for owned values: its lifetime is late-bound here, so it coerces
    /// to the `for<'a> fn(&'a str)` pointer of [`PayloadOps::decode`].
    fn from_json<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// See [`action`].
    pub const fn event<E: Apply<V>, V: Event>() -> EventOps<E, V> {
        EventOps {
            payload: PayloadOps {
                tag: V::TYPE,
                aliases: V::ALIASES,
                encode: serde_json::to_string::<V>,
                decode: from_json::<V>,
            },
            apply: <E as Apply<V>>::apply,
        }
    }

    /// `E::default()` through the `Entity` bound, so an entity missing `Default` reports it
    /// once, on its `impl Entity`.
    pub fn default_state<E: Entity>() -> E {
        E::default()
    }

    /// The type of an entity's `id` and `version` fields. The generated accessors convert through
    /// it, spanned on the field's type, so a field of another type is one error on that type.
    #[diagnostic::on_unimplemented(
        message = "an entity's `id` and `version` fields must be `i64`, not `{Self}`",
        label = "write `EntityId` (for `id`) or `Version` (for `version`) here"
    )]
    pub trait I64Field: Copy {
        fn from_i64(value: i64) -> Self;
        fn to_i64(self) -> i64;
    }

    impl I64Field for i64 {
        fn from_i64(value: i64) -> Self {
            value
        }
        fn to_i64(self) -> i64 {
            self
        }
    }
}
