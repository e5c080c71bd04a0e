//! The per-action path: a create or a chain of queued actions decided one after the other on
//! the entity's state, handed to the committers, and settled: each committed state published
//! and its caller answered, a conflict caught up and decided again, a failure answered with
//! memory left as the database is. The entity's worker task (`worker`) runs it.

use std::sync::Arc;

use tracing::Instrument;

use crate::commit::{Outcome, Projections};
use crate::context::Context;
use crate::entity::{Entity, Tagged};
use crate::error::{Error, Failure, failed_commit};
use crate::idempotency;
use crate::keyed_call::{Kept, KeyedCall};
use crate::persist::{self, Decision};
use crate::replay;
use crate::shared::Shared;
use crate::slot::{Reply, Slot};
use crate::snapshot;
use crate::store::{ActionRows, EntityWrite};

/// A queued action and its caller.
pub(crate) struct Queued<E: Entity> {
    ctx: Arc<Context>,
    action: E::Action,
    reply: Reply<E>,
    /// Its payload, encoded once however often it is decided.
    payload: String,
    conflicts: u32,
    span: tracing::Span,
    queued_at: std::time::Instant,
}

/// The span of one action (a create's too), recorded as the action goes: its entity, the
/// version it was decided on and then committed at, and its outcome.
pub(crate) fn action_span<E: Entity>() -> tracing::Span {
    tracing::info_span!(
        "action",
        entity_type = E::TYPE,
        entity_id = tracing::field::Empty,
        action = tracing::field::Empty,
        version = tracing::field::Empty,
        outcome = tracing::field::Empty,
    )
}

impl<E: Entity> Queued<E> {
    pub fn new(ctx: Arc<Context>, action: E::Action, reply: Reply<E>) -> Self {
        Self::in_span(ctx, action, reply, action_span::<E>())
    }

    pub fn in_span(
        ctx: Arc<Context>,
        action: E::Action,
        reply: Reply<E>,
        span: tracing::Span,
    ) -> Self {
        span.record("action", action.type_tag());
        Self {
            ctx,
            action,
            reply,
            payload: String::new(),
            conflicts: 0,
            span,
            queued_at: std::time::Instant::now(),
        }
    }

    fn answer(self, result: Result<Arc<E>, Error<E::Error>>) {
        if let Ok(state) = &result {
            self.span.record("version", state.version());
        }
        let outcome = Error::outcome_of(&result);
        self.span.record("outcome", outcome);
        crate::telemetry::call_answered(E::TYPE, outcome, self.queued_at);
        let _ = self.reply.send(result);
    }
}

/// How an action of a chain was decided.
enum Step<E: Entity> {
    /// Its decision's index in the chain.
    Decided(usize),
    /// It decided no events.
    NoEvents,
    /// It was refused (or its handler panicked) on a state earlier actions of the chain left:
    /// the answer stands only if they commit.
    Refused(Error<E::Error>),
}

/// Actions decided one after the other, each on the state the one before it left.
struct Chain<E: Entity> {
    /// In order, each with how it was decided.
    items: Vec<(Queued<E>, Step<E>)>,
    decisions: Vec<Arc<Decision<E>>>,
    /// The rows of each decision, for the committer.
    rows: Vec<ActionRows>,
}

pub(crate) struct Worker<E: Entity> {
    pub shared: Arc<Shared>,
    pub slot: Arc<Slot<E>>,
}

impl<E: Entity> Worker<E> {
    pub fn state(&self) -> Arc<E> {
        self.slot
            .published()
            .unwrap_or_else(|| unreachable!("the worker loads the entity before serving it"))
    }

    pub async fn load(&self) -> Result<(), Failure> {
        let loaded = replay::load::<E>(&self.shared.store, self.slot.id()).await?;
        self.slot
            .publish_loaded(Arc::new(loaded.state), loaded.snapshot_version);
        self.shared.counters.loads.incr();
        Ok(())
    }

    /// Decides a create's action on the entity's empty state and commits it with the entity's
    /// row, then publishes the first state. A conflict (a deadlock with another runtime's
    /// batch) is retried up to `max_attempts` times; an id taken already (reserved ids are taken
    /// only by rows inserted by hand) is a conflict at once.
    pub async fn create(&mut self, mut item: Queued<E>, key: Option<KeyedCall>) {
        let id = self.slot.id();
        item.span.record("entity_id", id);
        match persist::encode_action::<E>(&item.action, &item.ctx, id) {
            Ok(payload) => item.payload = payload,
            Err(error) => return item.answer(Err(error)),
        }
        let empty = Arc::new(E::new(id));
        let mut taken = false;
        loop {
            item.span.record("version", 0);
            let decided = {
                let _entered = item.span.enter();
                persist::decide(&empty, &mut None, &item.ctx, &item.action, &item.payload)
            };
            let (decision, actions) = match decided {
                Ok(Some((decision, rows))) => (Some(Arc::new(decision)), vec![rows]),
                Ok(None) => (None, Vec::new()),
                Err(error) => return item.answer(Err(error)),
            };
            let created = decision
                .as_ref()
                .map_or_else(|| empty.clone(), |decision| decision.after.clone());
            let write = EntityWrite {
                entity_type: E::TYPE,
                entity_id: id,
                expected_version: 0,
                creates: true,
                actions,
            };
            let projections = decision.as_ref().and_then(projection).into_iter().collect();
            let key_row = key.as_ref().map(|key| key.row(&Kept::entity(&*created)));
            let outcome = self
                .shared
                .committer
                .commit_unit(vec![write], projections, key_row)
                .instrument(tracing::debug_span!("commit", entity_id = id))
                .await;
            match outcome {
                Outcome::Committed => {
                    self.slot.publish_created(created.clone());
                    item.answer(Ok(created));
                    if snapshot::due(&self.shared, &self.slot) {
                        snapshot::write_in_background(&self.shared, &self.slot);
                    }
                    return;
                }
                Outcome::Duplicate => {
                    // Another runtime's create with this key won: its entity is the answer, and
                    // this id stays unused.
                    let key = key
                        .as_ref()
                        .unwrap_or_else(|| unreachable!("only a keyed create is a duplicate"));
                    match idempotency::stored(&self.shared, key).await {
                        Ok(Some(stored)) => {
                            return item.answer(
                                idempotency::kept_state::<E>(&self.shared, key, stored, None).await,
                            );
                        }
                        Ok(None) => item.conflicts += 1,
                        Err(error) => return item.answer(Err(error)),
                    }
                }
                outcome @ (Outcome::Conflict | Outcome::Retry | Outcome::Taken) => {
                    item.conflicts += 1;
                    // Deciding again cannot free a taken id.
                    taken = matches!(outcome, Outcome::Taken);
                }
                failed => return item.answer(Err(self.failed(failed, decision.as_deref()))),
            }
            if taken || item.conflicts >= self.shared.config.max_attempts {
                let attempts = item.conflicts;
                return item.answer(Err(Error::Conflict {
                    entity_type: E::TYPE,
                    id,
                    attempts,
                }));
            }
        }
    }

    /// The error of an action whose commit failed: refused by its projections, the database
    /// failed, or the committer vanished. When it may have committed all the same, the entity
    /// reads the database before its next action.
    pub fn failed(&self, outcome: Outcome, decision: Option<&Decision<E>>) -> Error<E::Error> {
        match outcome {
            Outcome::Refused => decision
                .and_then(Decision::take_refusal)
                .unwrap_or_else(|| {
                    unreachable!("a refused action keeps why its projections refused it")
                }),
            Outcome::Storage {
                error,
                maybe_committed,
            } => {
                if maybe_committed {
                    self.slot.mark_stale();
                }
                failed_commit(error, maybe_committed)
            }
            Outcome::Unanswered => {
                self.slot.mark_stale();
                Error::Unanswered {
                    entity_type: E::TYPE,
                    id: self.slot.id(),
                }
            }
            Outcome::Committed
            | Outcome::Conflict
            | Outcome::Retry
            | Outcome::Taken
            | Outcome::Duplicate => {
                unreachable!("only a failed commit has an error")
            }
        }
    }

    /// Decides `queued` as chains and commits them, until each is answered: committed, refused,
    /// or given up after `max_attempts` version conflicts.
    pub async fn act(&mut self, queued: Vec<Queued<E>>) {
        let id = self.slot.id();
        let mut encoded = Vec::with_capacity(queued.len());
        for mut item in queued {
            item.span.record("entity_id", id);
            match persist::encode_action::<E>(&item.action, &item.ctx, id) {
                Ok(payload) => {
                    item.payload = payload;
                    encoded.push(item);
                }
                Err(error) => item.answer(Err(error)),
            }
        }
        let mut queued = encoded;
        let mut panicked = false;
        while !queued.is_empty() {
            if self.slot.is_stale()
                && let Err(failure) = self.catch_up().await
            {
                for item in queued.drain(..) {
                    item.answer(Err(failure.clone().into_error(E::TYPE, id)));
                }
                break;
            }
            let mut chain = self.decide_chain(std::mem::take(&mut queued), &mut panicked);
            if chain.decisions.is_empty() {
                // Only actions that decided no events: each is answered with the state as it is.
                for (item, _) in chain.items {
                    item.answer(Ok(self.state()));
                }
                continue;
            }
            let outcomes = self
                .commit(&chain.decisions, std::mem::take(&mut chain.rows))
                .await;
            queued = self.settle(chain, outcomes);
        }
        self.settled(panicked).await;
    }

    /// After actions are answered: reloads the entity if user code panicked, catches up if a
    /// write's outcome is unknown, snapshots if one is due.
    pub async fn settled(&self, panicked: bool) {
        if panicked {
            // User code panicked: reload from the database rather than trust anything in memory.
            if self.load().await.is_err() {
                self.slot.mark_stale();
            }
            return;
        }
        // A write of unknown outcome (or conflicts past the bound): read what the database holds
        // now, so that `get` shows it too, not only the next action. Should that fail as well,
        // the next action tries again first.
        if self.slot.is_stale() {
            let _ = self.catch_up().await;
        }
        if snapshot::due(&self.shared, &self.slot) {
            snapshot::write_in_background(&self.shared, &self.slot);
        }
    }

    /// Decides each action on the state the one before it left. Refusals are answered at once;
    /// the rest form the chain.
    fn decide_chain(&self, queued: Vec<Queued<E>>, panicked: &mut bool) -> Chain<E> {
        let mut state = self.state();
        // The first decision may apply its events to the spare; the chain's later ones decide on
        // a state the first still holds, so they copy it.
        let mut spare = self.slot.take_spare(state.version());
        let mut chain = Chain {
            items: Vec::with_capacity(queued.len()),
            decisions: Vec::new(),
            rows: Vec::new(),
        };
        for item in queued {
            // The version it was decided on; a commit records the version it led to.
            item.span.record("version", state.version());
            let decided = {
                let _entered = item.span.enter();
                persist::decide(&state, &mut spare, &item.ctx, &item.action, &item.payload)
            };
            match decided {
                Ok(Some((decision, rows))) => {
                    state = decision.after.clone();
                    chain
                        .items
                        .push((item, Step::Decided(chain.decisions.len())));
                    chain.decisions.push(Arc::new(decision));
                    chain.rows.push(rows);
                }
                Ok(None) => chain.items.push((item, Step::NoEvents)),
                Err(error) => {
                    *panicked |= matches!(error, Error::Panicked { .. });
                    if chain.decisions.is_empty() {
                        // Decided on the committed state: the answer is final.
                        item.answer(Err(error));
                    } else {
                        chain.items.push((item, Step::Refused(error)));
                    }
                }
            }
        }
        // Every action refused or without events: the spare is still good for the next.
        if let Some(spare) = spare {
            self.slot.keep_spare(spare);
        }
        chain
    }

    async fn commit(&self, decisions: &[Arc<Decision<E>>], rows: Vec<ActionRows>) -> Vec<Outcome> {
        let write = EntityWrite {
            entity_type: E::TYPE,
            entity_id: self.slot.id(),
            expected_version: decisions[0].before.version(),
            creates: false,
            actions: rows,
        };
        let projections = decisions.iter().map(projection).collect();
        self.shared
            .committer
            .commit(write, projections)
            .instrument(tracing::debug_span!("commit", entity_id = self.slot.id()))
            .await
    }

    /// Publishes each committed state and answers its caller, in chain order; returns the
    /// actions to decide again.
    fn settle(&mut self, chain: Chain<E>, outcomes: Vec<Outcome>) -> Vec<Queued<E>> {
        let Chain {
            items, decisions, ..
        } = chain;
        let mut outcomes: Vec<Option<Outcome>> = outcomes.into_iter().map(Some).collect();
        let mut committed: Option<Arc<E>> = None;
        // The published state the chain was decided from, replaced at its first commit.
        let mut replaced: Option<Arc<E>> = None;
        let mut committed_decisions = 0;
        let mut again = Vec::new();
        let mut broken = false;
        for (mut item, step) in items {
            let index = match step {
                Step::Decided(index) => index,
                // Decided on the state the chain had reached: the answer stands if that does.
                Step::NoEvents | Step::Refused(_) if broken => {
                    again.push(item);
                    continue;
                }
                Step::NoEvents => {
                    let state = committed.clone().unwrap_or_else(|| self.state());
                    item.answer(Ok(state));
                    continue;
                }
                Step::Refused(error) => {
                    item.answer(Err(error));
                    continue;
                }
            };
            match outcomes[index].take() {
                Some(Outcome::Committed) => {
                    // Published before the caller hears of it: its next `get` sees its write.
                    let after = decisions[index].after.clone();
                    let previous = self.slot.publish(after.clone());
                    if replaced.is_none() {
                        replaced = previous;
                    }
                    committed_decisions = index + 1;
                    committed = Some(after.clone());
                    item.answer(Ok(after));
                }
                Some(Outcome::Conflict) => {
                    broken = true;
                    self.slot.mark_stale();
                    item.conflicts += 1;
                    if item.conflicts >= self.shared.config.max_attempts {
                        let attempts = item.conflicts;
                        item.answer(Err(Error::Conflict {
                            entity_type: E::TYPE,
                            id: self.slot.id(),
                            attempts,
                        }));
                    } else {
                        tracing::debug!(parent: &item.span, attempt = item.conflicts, "version conflict; catching up");
                        again.push(item);
                    }
                }
                Some(Outcome::Retry) => {
                    broken = true;
                    again.push(item);
                }
                Some(failed) => {
                    broken = true;
                    item.answer(Err(self.failed(failed, Some(&decisions[index]))));
                }
                None => unreachable!("each decision has one outcome"),
            }
        }
        drop(committed);
        if let Some(replaced) = replaced {
            self.recycle(replaced, decisions, committed_decisions);
        }
        again
    }

    /// Turns `replaced`, the state the chain's commit replaced, into the spare: the committed
    /// decisions' events applied to it in place leave it equal to the published state. Nothing
    /// happens when something still shares it (a `get` caller, a snapshot being written): the
    /// next action copies the state instead.
    pub fn recycle(&self, replaced: Arc<E>, decisions: Vec<Arc<Decision<E>>>, committed: usize) {
        let mut decisions = decisions;
        // The undone decisions share states too (their `before`): they go first.
        decisions.truncate(committed);
        let mut events = Vec::with_capacity(committed);
        for decision in decisions {
            match Arc::try_unwrap(decision) {
                Ok(decision) => events.push(decision.events),
                Err(_) => return,
            }
        }
        let mut spare = replaced;
        let Some(state) = Arc::get_mut(&mut spare) else {
            return;
        };
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for event in events.iter().flatten() {
                state.apply_event(event);
                state.set_version(state.version() + 1);
            }
        }));
        // Applying these events succeeded once already; should it panic now, copy instead.
        if applied.is_ok() && state.version() == self.state().version() {
            self.slot.keep_spare(spare);
        }
    }

    /// Applies the events other writers stored since the published version, and publishes them.
    pub async fn catch_up(&self) -> Result<(), Failure> {
        let mut state = (*self.state()).clone();
        replay::catch_up(&self.shared.store, self.slot.id(), &mut state, |state| {
            self.slot.publish_change(state)
        })
        .await?;
        self.slot.publish_caught_up(Arc::new(state));
        self.shared.counters.catch_ups.incr();
        Ok(())
    }
}

/// The projections of one decided action, for the committer to run in its transaction.
pub(crate) fn projection<E: Entity>(decision: &Arc<Decision<E>>) -> Option<Projections> {
    decision
        .is_projected()
        .then(|| decision.clone() as Projections)
}
