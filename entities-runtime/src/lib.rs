//! Event-sourced entities for Rust, kept live one task per entity, stored in Postgres or SQLite.
//!
//! (The crate guide with a complete, tested example lives in the README; see `README.md`.)

mod context;
mod entity;
mod projection;

pub use context::Context;
pub use entity::{
    Action, Apply, Create, DecodeError, Entity, EntityId, Event, Handle, Project, Rejected, Tagged,
    Version,
};
pub use entities_derive::{Action, Event, entity};
pub use projection::{Backend, ProjectionError, Query, Tx, is_unique_violation};

/// What the macros' generated code names. Not a public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::context::Context;
    pub use crate::entity::{
        Action, Apply, DecodeError, Entity, EntityId, Event, Handle, Project, Tagged, Version,
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
}
