//! Deciding an action, top to bottom: the handler on the current state, then `apply` of its
//! events on a copy; and the projections of a decided action. Nothing here touches the
//! published state or commits: the entity's worker publishes only after the committer's commit.

use std::any::{Any, TypeId};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::commit::{ActionProjections, Projections, Refused};
use crate::context::Context;
use crate::entity::{Change, Entity, EntityId, Tagged, Version};
use crate::error::{Error, panic_message, persist_error};
use crate::projection::{ProjectionError, Tx};
use crate::store::{ActionRows, EventRow};

/// What an action decided: its events and the states they lead through.
pub(crate) struct Decision<E: Entity> {
    pub events: Vec<E::Event>,
    pub ctx: Arc<Context>,
    pub before: Arc<E>,
    /// The state after each event but the last, kept only when a projection needs it.
    between: Vec<E>,
    pub after: Arc<E>,
    /// Why its projections refused it, when a committer ran them and they did.
    refusal: Mutex<Option<Error<E::Error>>>,
}

/// A decision and the rows that store it; `None` when the action decided no events.
pub(crate) type Decided<E> = Option<(Decision<E>, ActionRows)>;

/// Encodes an action's payload once, however many times it is decided, and checks that its
/// context can be stored with it.
pub(crate) fn encode_action<E: Entity>(
    action: &E::Action,
    ctx: &Context,
    id: EntityId,
) -> Result<String, Error<E::Error>> {
    let refused = |message: String| Error::Payload {
        entity_type: E::TYPE,
        id,
        type_tag: action.type_tag(),
        message,
    };
    let (user_id, request_id, correlation_id) = ctx.stored_ids();
    for (field, value) in [
        ("user id", user_id),
        ("request id", request_id),
        ("correlation id", correlation_id),
    ] {
        if value.contains('\0') {
            return Err(refused(format!("the context's {field} {NUL}")));
        }
    }
    encode(action).map_err(refused)
}

const NUL: &str = "holds a NUL character, which Postgres cannot store";

/// The JSON of an action or event, refused when Postgres could not store it.
fn encode(value: &impl Tagged) -> Result<String, String> {
    let json = value.encode().map_err(|error| error.to_string())?;
    if has_nul_escape(&json) {
        return Err(format!("its payload {NUL}"));
    }
    Ok(json)
}

/// Whether JSON text holds the escape `\u0000` (a NUL character in a string). An escaped
/// backslash followed by `u0000` is text, not a NUL: the escape counts only after an even number
/// of backslashes.
fn has_nul_escape(json: &str) -> bool {
    json.match_indices("u0000").any(|(at, _)| {
        let backslashes = json[..at].bytes().rev().take_while(|&b| b == b'\\').count();
        backslashes % 2 == 1
    })
}

/// Runs the handler on `before` and applies its events to a copy; returns the decision and the
/// rows that store it. `None`: the action decided no events, so there is nothing to store.
///
/// `spare`, when given, is an unshared copy of `before` (the slot's spare state): the events are
/// applied to it in place, so deciding costs what the events cost, not a copy of the whole state.
/// It is taken only when the action decides events.
pub(crate) fn decide<E: Entity>(
    before: &Arc<E>,
    spare: &mut Option<Arc<E>>,
    ctx: &Arc<Context>,
    action: &E::Action,
    payload: &str,
) -> Result<Decided<E>, Error<E::Error>> {
    let panicked = |during| {
        move |panic: Box<dyn std::any::Any + Send>| Error::Panicked {
            entity_type: E::TYPE,
            id: before.id(),
            during,
            message: panic_message(panic.as_ref()),
        }
    };
    let events = catch_unwind(AssertUnwindSafe(|| before.handle_action(ctx, action)))
        .map_err(panicked("handler"))?
        .map_err(Error::Rejected)?;
    if events.is_empty() {
        return Ok(None);
    }
    let mut event_rows = Vec::with_capacity(events.len());
    for event in &events {
        let payload = encode(event).map_err(|message| Error::Payload {
            entity_type: E::TYPE,
            id: before.id(),
            type_tag: event.type_tag(),
            message,
        })?;
        event_rows.push(EventRow {
            event_type: event.type_tag(),
            payload_version: event.payload_version(),
            payload,
        });
    }
    let keep_between = events.len() > 1 && events.iter().any(E::is_projected);
    let (after, between) = catch_unwind(AssertUnwindSafe(|| {
        let mut between = Vec::new();
        // Copies the state only when it is shared: always, but for an unshared spare.
        let mut after = spare
            .take()
            .filter(|spare| spare.version() == before.version())
            .unwrap_or_else(|| before.clone());
        let state = Arc::make_mut(&mut after);
        for (n, event) in events.iter().enumerate() {
            if keep_between && n > 0 {
                between.push(state.clone());
            }
            state.apply_event(event);
            state.set_version(before.version() + n as Version + 1);
        }
        (after, between)
    }))
    .map_err(panicked("apply"))?;
    let rows = ActionRows {
        action_type: action.type_tag(),
        payload: payload.to_owned(),
        ctx: ctx.clone(),
        events: event_rows,
    };
    let decision = Decision {
        events,
        ctx: ctx.clone(),
        before: before.clone(),
        between,
        after,
        refusal: Mutex::new(None),
    };
    Ok(Some((decision, rows)))
}

impl<E: Entity> Decision<E> {
    /// Whether any of this action's events has a projection.
    pub fn is_projected(&self) -> bool {
        self.events.iter().any(E::is_projected)
    }

    /// Runs the projections of this action's events, in order, in `tx`. A panic in one is an
    /// error like any other: the caller rolls back what they wrote.
    pub async fn project(&self, tx: &mut Tx<'_>) -> Result<(), Error<E::Error>> {
        let id = self.before.id();
        for Change {
            ctx,
            before,
            event,
            after,
        } in self.changes()
        {
            let projected = AssertUnwindSafe(E::project_event(tx, ctx, before, event, after))
                .catch_unwind()
                .await
                .map_err(|panic| Error::Panicked {
                    entity_type: E::TYPE,
                    id,
                    during: "projection",
                    message: panic_message(panic.as_ref()),
                })?;
            match projected {
                Ok(()) => {
                    if let Some(failure) = tx.aborted() {
                        return Err(Error::Projection {
                            entity_type: E::TYPE,
                            id,
                            event: event.type_tag(),
                            message: format!(
                                "it went on after its statement failed ({failure}); Postgres \
                                 aborted the transaction, so the action is not committed"
                            ),
                        });
                    }
                }
                Err(ProjectionError::Rejected(error)) => return Err(Error::Rejected(error)),
                Err(ProjectionError::Database(error)) => {
                    return Err(persist_error(error, E::TYPE, id));
                }
            }
        }
        Ok(())
    }
}

impl<E: Entity> Decision<E> {
    /// Its projected events, each with the states on either side of it.
    fn changes(&self) -> impl Iterator<Item = Change<'_, E, E::Event>> {
        let last = self.events.len() - 1;
        self.events
            .iter()
            .enumerate()
            .filter(|(_, event)| E::is_projected(event))
            .map(move |(n, event)| Change {
                ctx: &self.ctx,
                before: if n == 0 {
                    &*self.before
                } else {
                    &self.between[n - 1]
                },
                event,
                after: if n == last {
                    &*self.after
                } else {
                    &self.between[n]
                },
            })
    }

    /// Why the committer's run of its projections refused it.
    pub fn take_refusal(&self) -> Option<Error<E::Error>> {
        self.refusal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

impl<E: Entity> ActionProjections for Decision<E> {
    fn project<'a, 'c>(&'a self, tx: &'a mut Tx<'c>) -> BoxFuture<'a, Result<(), Refused>> {
        Box::pin(async move {
            Decision::project(self, tx).await.map_err(|error| {
                *self
                    .refusal
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error);
                Refused
            })
        })
    }

    fn entity_type(&self) -> TypeId {
        TypeId::of::<E>()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn project_together<'a, 'c>(
        &'a self,
        run: &'a [&'a Projections],
        tx: &'a mut Tx<'c>,
    ) -> BoxFuture<'a, Result<(), Refused>> {
        Box::pin(async move {
            let mut changes = Vec::new();
            for projections in run {
                let decision = projections
                    .as_any()
                    .downcast_ref::<Self>()
                    .expect("a run holds decisions of one entity type");
                changes.extend(decision.changes());
            }
            // Whatever went wrong, each action runs again alone and reports its own error.
            match AssertUnwindSafe(E::project_events(tx, &changes))
                .catch_unwind()
                .await
            {
                Ok(Ok(())) if tx.aborted().is_none() => Ok(()),
                _ => Err(Refused),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::has_nul_escape;

    #[test]
    fn a_nul_escape_is_found_and_an_escaped_backslash_is_not_one() {
        let json = |text: &str| serde_json::to_string(text).unwrap();
        assert!(has_nul_escape(&json("a\0b")));
        assert!(has_nul_escape(&json("\\\0")));
        assert!(!has_nul_escape(&json("a\\u0000b")));
        assert!(!has_nul_escape(&json("\\\\u0000")));
        assert!(!has_nul_escape(&json("u0000")));
    }
}
