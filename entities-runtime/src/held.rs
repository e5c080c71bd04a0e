//! One entity inside a transaction: the worker turn it holds, the committed state it started
//! from, and the actions the transaction decided on it so far. Typed per entity; the
//! transaction, which holds entities of many types, sees each through [`Held`].

use std::any::Any;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::action_path::projection;
use crate::commit::Projections;
use crate::context::Context;
use crate::entity::{Entity, EntityId};
use crate::error::Error;
use crate::persist::{self, Decision};
use crate::replay;
use crate::slot::Turn;
use crate::store::{ActionRows, EntityWrite, Store};

/// An entity a transaction holds, of whatever type; `D` is the transaction's domain error.
pub(crate) trait Held<D>: Send {
    fn as_any(&mut self) -> &mut dyn Any;
    /// The rows of what was decided on it, for the commit; `None` when nothing was.
    fn write(&mut self) -> Option<EntityWrite>;
    /// Why its projections refused one of its actions, when the commit's projections did.
    fn refusal(&self) -> Option<Error<D>>;
    /// After the commit: publishes the state its actions led to.
    fn publish(&mut self);
    /// Forgets what the attempt decided, for the next attempt.
    fn reset(&mut self);
    /// Reads the events other writers stored since the state it holds; `true` when there were.
    fn catch_up<'a>(&'a mut self, store: &'a Store) -> BoxFuture<'a, Result<bool, Error<D>>>;
    /// The commit's outcome is unknown: the entity reads the database before its next action.
    fn mark_stale(&self);
    /// Gives the worker its turn back; `reload` when user code panicked deciding on it.
    fn give_back(self: Box<Self>, reload: bool);
    /// The transaction creates it: it has no worker, and a new attempt creates it anew.
    fn is_created(&self) -> bool;
    fn entity(&self) -> (&'static str, EntityId);
}

/// The state an action led to, and its projections if any.
pub(crate) type Decided<E> = (Arc<E>, Option<Projections>);

pub(crate) struct HeldEntity<E: Entity> {
    /// `None` for an entity the transaction creates.
    turn: Option<Turn<E>>,
    /// The committed state the attempt decides from.
    committed: Arc<E>,
    /// The state the attempt's decisions so far lead to.
    current: Arc<E>,
    decisions: Vec<Arc<Decision<E>>>,
    rows: Vec<ActionRows>,
}

impl<E: Entity> HeldEntity<E> {
    /// An existing entity, whose worker lent its turn.
    pub fn lent(turn: Turn<E>) -> Self {
        let committed = turn
            .slot
            .published()
            .unwrap_or_else(|| unreachable!("a worker lends its turn once its entity is loaded"));
        Self::starting_from(Some(turn), committed)
    }

    /// An entity the transaction creates, at its empty state.
    pub fn created(id: EntityId) -> Self {
        Self::starting_from(None, Arc::new(E::new(id)))
    }

    fn starting_from(turn: Option<Turn<E>>, committed: Arc<E>) -> Self {
        Self {
            turn,
            current: committed.clone(),
            committed,
            decisions: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// The state as the attempt's decisions so far left it.
    pub fn state(&self) -> Arc<E> {
        self.current.clone()
    }

    /// Decides `action` on the state the attempt's earlier actions left; returns the state it
    /// leads to and its projections, if any. A refusal records nothing.
    pub fn decide(
        &mut self,
        ctx: &Arc<Context>,
        action: &E::Action,
    ) -> Result<Decided<E>, Error<E::Error>> {
        let payload = persist::encode_action::<E>(action, ctx, self.committed.id())?;
        let Some((decision, rows)) =
            persist::decide(&self.current, &mut None, ctx, action, &payload)?
        else {
            return Ok((self.current.clone(), None));
        };
        let decision = Arc::new(decision);
        self.current = decision.after.clone();
        let projections = projection(&decision);
        self.decisions.push(decision);
        self.rows.push(rows);
        Ok((self.current.clone(), projections))
    }
}

impl<E: Entity, D: From<E::Error> + 'static> Held<D> for HeldEntity<E> {
    fn as_any(&mut self) -> &mut dyn Any {
        self
    }

    fn write(&mut self) -> Option<EntityWrite> {
        let creates = self.turn.is_none();
        (creates || !self.rows.is_empty()).then(|| EntityWrite {
            entity_type: E::TYPE,
            entity_id: self.committed.id(),
            expected_version: self.committed.version(),
            creates,
            actions: std::mem::take(&mut self.rows),
        })
    }

    fn refusal(&self) -> Option<Error<D>> {
        self.decisions
            .iter()
            .find_map(|decision| decision.take_refusal())
            .map(|error| error.map_rejection(D::from))
    }

    fn publish(&mut self) {
        if let Some(turn) = &self.turn
            && !self.decisions.is_empty()
        {
            let between = self.decisions.len() - 1;
            turn.slot.publish_between(
                self.decisions[..between]
                    .iter()
                    .map(|decision| decision.after.clone()),
            );
            turn.slot.publish_caught_up(self.current.clone());
        }
    }

    fn reset(&mut self) {
        self.current = self.committed.clone();
        self.decisions.clear();
        self.rows.clear();
    }

    fn catch_up<'a>(&'a mut self, store: &'a Store) -> BoxFuture<'a, Result<bool, Error<D>>> {
        Box::pin(async move {
            let Some(turn) = &self.turn else {
                return Ok(false);
            };
            let mut state = (*self.committed).clone();
            replay::catch_up(store, state.id(), &mut state, |state| {
                turn.slot.publish_change(state)
            })
            .await
            .map_err(|failure| failure.into_error(E::TYPE, state.id()))?;
            let changed = state.version() != self.committed.version();
            if changed {
                let state = Arc::new(state);
                turn.slot.publish_caught_up(state.clone());
                self.committed = state;
            }
            Held::<D>::reset(self);
            Ok(changed)
        })
    }

    fn mark_stale(&self) {
        if let Some(turn) = &self.turn {
            turn.slot.mark_stale();
        }
    }

    fn give_back(self: Box<Self>, reload: bool) {
        // Otherwise dropped: the turn goes back.
        if let Some(turn) = self.turn
            && reload
        {
            turn.give_back_reloading();
        }
    }

    fn is_created(&self) -> bool {
        self.turn.is_none()
    }

    fn entity(&self) -> (&'static str, EntityId) {
        (E::TYPE, self.committed.id())
    }
}
