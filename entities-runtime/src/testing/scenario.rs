//! Given events, when an action, then events: an entity's handlers and `apply` tested as plain
//! functions, without a runtime or a database.
//!
//! ```
//! # use entities_runtime::{entity, Action, Apply, Context, Event, Events, EntityId, Handle, Rejected, Version};
//! # use serde::{Deserialize, Serialize};
//! # #[entity(type = "counter", actions(Add), events(Added), derive(PartialEq))]
//! # #[derive(Debug, Clone, Default, Serialize, Deserialize)]
//! # pub struct Counter { pub id: EntityId, pub version: Version, pub total: i64 }
//! # #[derive(Debug, Clone, PartialEq, Action, Serialize, Deserialize)]
//! # pub struct Add { pub amount: i64 }
//! # #[derive(Debug, Clone, PartialEq, Event, Serialize, Deserialize)]
//! # pub struct Added { pub amount: i64 }
//! # impl Handle<Add> for Counter {
//! #     fn handle(&self, _: &Context, add: &Add) -> Events<Self> {
//! #         if add.amount <= 0 { return Err(Rejected::new("not positive")); }
//! #         Ok(vec![Added { amount: add.amount }.into()])
//! #     }
//! # }
//! # impl Apply<Added> for Counter {
//! #     fn apply(&mut self, added: &Added) { self.total += added.amount; }
//! # }
//! use entities_runtime::testing::given;
//!
//! let after = given::<Counter>([Added { amount: 2 }.into()])
//!     .when(Add { amount: 3 })
//!     .then([Added { amount: 3 }.into()]);
//! assert_eq!((after.total, after.version), (5, 2));
//!
//! given::<Counter>([])
//!     .when(Add { amount: 0 })
//!     .then_refused(Rejected::new("not positive"));
//! ```

use crate::context::Context;
use crate::entity::{ActionOf, Create, Entity, EntityId, Events, Tagged};

/// The entity as `events` left it, ready to be sent an action: `given::<E>(events)`. The
/// entity's id is 1 unless [`Scenario::with_id`] says otherwise.
pub fn given<E: Entity>(events: impl IntoIterator<Item = E::Event>) -> Scenario<E> {
    Scenario {
        id: 1,
        history: events.into_iter().collect(),
        ctx: Context::new("test"),
    }
}

/// Past events of an entity, and the context the next action is sent with.
pub struct Scenario<E: Entity> {
    id: EntityId,
    history: Vec<E::Event>,
    ctx: Context,
}

impl<E: Entity> Scenario<E> {
    pub fn with_id(mut self, id: EntityId) -> Self {
        self.id = id;
        self
    }

    /// The context the action is sent with (default: user `test`, a fresh request id).
    pub fn with_context(mut self, ctx: Context) -> Self {
        self.ctx = ctx;
        self
    }

    /// The state the given events lead to, each applied as a load applies it.
    pub fn state(&self) -> E {
        let mut state = E::new(self.id);
        apply_all(&mut state, &self.history);
        state
    }

    /// Sends `action` to the state the given events lead to.
    pub fn when(self, action: impl ActionOf<E>) -> Then<E> {
        let before = self.state();
        let action: E::Action = action.into();
        // As the runtime does: a call's context has a request id.
        let decided = before.handle_action(&self.ctx.for_call(), &action);
        Then {
            before,
            action: action.type_tag(),
            decided,
        }
    }

    /// Creates the entity as `Runtime::create` does: `E::create` turns `args` into the first
    /// action, which is decided on the empty state (the given events, if any, are ignored).
    pub fn when_created(self, args: E::Args) -> Then<E>
    where
        E: Create,
    {
        let before = E::new(self.id);
        let ctx = self.ctx.for_call();
        match E::create(&ctx, self.id, args) {
            Ok(action) => Then {
                decided: before.handle_action(&ctx, &action),
                action: action.type_tag(),
                before,
            },
            Err(refusal) => Then {
                before,
                action: "create",
                decided: Err(refusal),
            },
        }
    }
}

/// What an action decided, to be checked.
pub struct Then<E: Entity> {
    before: E,
    action: &'static str,
    decided: Events<E>,
}

impl<E: Entity> Then<E> {
    /// Asserts that the action decided exactly `expected`, in order; returns the state after
    /// them. Needs `PartialEq` on the event enum: `#[entity(..., derive(PartialEq))]`.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = E::Event>) -> E
    where
        E::Event: PartialEq,
    {
        let expected: Vec<E::Event> = expected.into_iter().collect();
        match self.decided {
            Ok(events) => {
                assert_eq!(events, expected, "the events `{}` decided", self.action);
                let mut after = self.before;
                apply_all(&mut after, &events);
                after
            }
            Err(refusal) => panic!(
                "`{}` was refused ({refusal:?}); expected the events {expected:?}",
                self.action
            ),
        }
    }

    /// Asserts that the action was refused with `expected`.
    #[track_caller]
    pub fn then_refused(self, expected: E::Error)
    where
        E::Error: PartialEq,
    {
        match self.decided {
            Ok(events) => panic!(
                "`{}` decided {events:?}; expected it refused with {expected:?}",
                self.action
            ),
            Err(refusal) => assert_eq!(refusal, expected, "why `{}` was refused", self.action),
        }
    }

    /// The state after the events the action decided, whatever they are; panics if it was
    /// refused.
    #[track_caller]
    pub fn then_state(self) -> E {
        match self.decided {
            Ok(events) => {
                let mut after = self.before;
                apply_all(&mut after, &events);
                after
            }
            Err(refusal) => panic!("`{}` was refused: {refusal:?}", self.action),
        }
    }

    /// What the action decided, to check by hand.
    pub fn result(self) -> Events<E> {
        self.decided
    }
}

fn apply_all<E: Entity>(state: &mut E, events: &[E::Event]) {
    for event in events {
        state.apply_event(event);
        state.set_version(state.version() + 1);
    }
}
