//! The per-action path, top to bottom: decide (handler, then `apply` on a copy of the state),
//! then write (version check, action row, event rows, projections) in the caller's transaction.
//! Nothing here touches the published state: the entity task publishes only after the commit.

use std::panic::{AssertUnwindSafe, catch_unwind};

use futures::FutureExt;

use crate::context::Context;
use crate::entity::{Entity, Tagged, Version};
use crate::error::{Error, panic_message, persist_error};
use crate::projection::ProjectionError;
use crate::store::{Append, StoreTx};

/// What an action decided: its events, encoded, and the states they lead through.
pub(crate) struct Decision<E: Entity> {
    events: Vec<E::Event>,
    event_types: Vec<&'static str>,
    event_payloads: Vec<String>,
    /// The state after each event but the last, kept only when a projection needs it.
    between: Vec<E>,
    /// The state after the last event.
    pub after: E,
}

/// An action encoded for its row.
pub(crate) struct EncodedAction<'a, E: Entity> {
    pub action: &'a E::Action,
    pub payload: String,
}

impl<'a, E: Entity> EncodedAction<'a, E> {
    pub fn new(action: &'a E::Action, id: crate::EntityId) -> Result<Self, Error<E::Error>> {
        let payload = action.encode().map_err(|error| Error::Payload {
            entity_type: E::TYPE,
            id,
            type_tag: action.type_tag(),
            message: error.to_string(),
        })?;
        Ok(Self { action, payload })
    }
}

/// Runs the handler on `before` and applies its events to a copy. `None`: the action decided
/// no events, so there is nothing to store.
pub(crate) fn decide<E: Entity>(
    before: &E,
    ctx: &Context,
    action: &E::Action,
) -> Result<Option<Decision<E>>, Error<E::Error>> {
    let panicked = |during| {
        move |payload: Box<dyn std::any::Any + Send>| Error::Panicked {
            entity_type: E::TYPE,
            id: before.id(),
            during,
            message: panic_message(payload.as_ref()),
        }
    };
    let events = catch_unwind(AssertUnwindSafe(|| before.handle_action(ctx, action)))
        .map_err(panicked("handler"))?
        .map_err(Error::Rejected)?;
    if events.is_empty() {
        return Ok(None);
    }
    let mut event_payloads = Vec::with_capacity(events.len());
    for event in &events {
        event_payloads.push(event.encode().map_err(|error| Error::Payload {
            entity_type: E::TYPE,
            id: before.id(),
            type_tag: event.type_tag(),
            message: error.to_string(),
        })?);
    }
    let keep_between = events.len() > 1 && events.iter().any(E::is_projected);
    let (after, between) = catch_unwind(AssertUnwindSafe(|| {
        let mut between = Vec::new();
        let mut state = before.clone();
        for (n, event) in events.iter().enumerate() {
            if keep_between && n > 0 {
                between.push(state.clone());
            }
            state.apply_event(event);
            state.set_version(before.version() + n as Version + 1);
        }
        (state, between)
    }))
    .map_err(panicked("apply"))?;
    Ok(Some(Decision {
        event_types: events.iter().map(Tagged::type_tag).collect(),
        events,
        event_payloads,
        between,
        after,
    }))
}

/// Writes a decided action in `tx`. `Ok(false)`: the stored version moved on since `before` was
/// loaded; the caller rolls back, catches up and decides again.
pub(crate) async fn write<E: Entity>(
    tx: &mut StoreTx,
    ctx: &Context,
    before: &E,
    action: &EncodedAction<'_, E>,
    decision: &Decision<E>,
) -> Result<bool, Error<E::Error>> {
    let id = before.id();
    let appended = tx
        .append(&Append {
            entity_type: E::TYPE,
            entity_id: id,
            expected_version: before.version(),
            action_type: action.action.type_tag(),
            action_payload: &action.payload,
            event_types: &decision.event_types,
            event_payloads: &decision.event_payloads,
            ctx,
        })
        .await
        .map_err(|error| persist_error(error, E::TYPE, id))?;
    if !appended {
        return Ok(false);
    }
    let last = decision.events.len() - 1;
    for (n, event) in decision.events.iter().enumerate() {
        if !E::is_projected(event) {
            continue;
        }
        let state_before = if n == 0 {
            before
        } else {
            &decision.between[n - 1]
        };
        let state_after = if n == last {
            &decision.after
        } else {
            &decision.between[n]
        };
        let projected = AssertUnwindSafe(E::project_event(
            &mut tx.projection(),
            ctx,
            state_before,
            event,
            state_after,
        ))
        .catch_unwind()
        .await
        .map_err(|payload| Error::Panicked {
            entity_type: E::TYPE,
            id,
            during: "projection",
            message: panic_message(payload.as_ref()),
        })?;
        match projected {
            Ok(()) => {}
            Err(ProjectionError::Rejected(error)) => return Err(Error::Rejected(error)),
            Err(ProjectionError::Database(error)) => return Err(persist_error(error, E::TYPE, id)),
        }
    }
    Ok(true)
}
