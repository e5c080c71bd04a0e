//! A batch on one entity (`EntityRef::send_actions`): its actions decided one after the other,
//! each on the state the one before it left, and committed as one unit (one version check, one
//! transaction) or not at all. The entity's worker task runs it, between the actions queued
//! before and after it.

use std::sync::Arc;

use tracing::Instrument;

use crate::action_path::{Worker, projection};
use crate::commit::Outcome;
use crate::context::Context;
use crate::entity::Entity;
use crate::error::Error;
use crate::idempotency;
use crate::keyed_call::{Kept, KeyedCall};
use crate::persist::{self, Decision};
use crate::slot::Reply;
use crate::store::EntityWrite;

/// A queued batch and its caller. A keyed single action comes this way too (`one`): it is
/// stored with its key, as a unit, and its errors name no index.
pub(crate) struct QueuedBatch<E: Entity> {
    ctx: Arc<Context>,
    actions: Vec<E::Action>,
    key: Option<KeyedCall>,
    one: bool,
    reply: Reply<E>,
    span: tracing::Span,
}

impl<E: Entity> QueuedBatch<E> {
    pub fn new(
        ctx: Arc<Context>,
        actions: Vec<E::Action>,
        key: Option<KeyedCall>,
        one: bool,
        reply: Reply<E>,
    ) -> Self {
        let span = tracing::info_span!(
            "batch",
            entity_type = E::TYPE,
            entity_id = tracing::field::Empty,
            actions = actions.len(),
            keyed = key.is_some(),
            version = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        Self {
            ctx,
            actions,
            key,
            one,
            reply,
            span,
        }
    }
}

/// The batch's decided actions: per action that decided events, its index in the batch, its
/// decision and its rows.
struct Decided<E: Entity> {
    indexes: Vec<usize>,
    decisions: Vec<Arc<Decision<E>>>,
    rows: Vec<crate::store::ActionRows>,
}

impl<E: Entity> Worker<E> {
    /// Decides and commits `batch` until it is answered: committed whole, refused (naming the
    /// action), or given up after `max_attempts` version conflicts.
    pub async fn batch(&mut self, batch: QueuedBatch<E>) {
        let QueuedBatch {
            ctx,
            actions,
            key,
            one,
            reply,
            span,
        } = batch;
        let started = std::time::Instant::now();
        let id = self.slot.id();
        span.record("entity_id", id);
        let (mut result, panicked) = self
            .run_batch(&ctx, &actions, key.as_ref())
            .instrument(span.clone())
            .await;
        if one {
            result = result.map_err(|error| match error {
                Error::InBatch { error, .. } => *error,
                error => error,
            });
        }
        if let Ok(state) = &result {
            span.record("version", state.version());
        }
        let outcome = Error::outcome_of(&result);
        span.record("outcome", outcome);
        crate::telemetry::call_answered(E::TYPE, outcome, started);
        let _ = reply.send(result);
        self.settled(panicked).await;
    }

    /// The batch's answer, and whether user code panicked deciding it.
    async fn run_batch(
        &mut self,
        ctx: &Arc<Context>,
        actions: &[E::Action],
        key: Option<&KeyedCall>,
    ) -> (Result<Arc<E>, Error<E::Error>>, bool) {
        let id = self.slot.id();
        let mut payloads = Vec::with_capacity(actions.len());
        for (index, action) in actions.iter().enumerate() {
            match persist::encode_action::<E>(action, ctx, id) {
                Ok(payload) => payloads.push(payload),
                Err(error) => return (Err(error.in_batch(index)), false),
            }
        }
        let mut attempts = 0;
        loop {
            if self.slot.is_stale()
                && let Err(failure) = self.catch_up().await
            {
                return (Err(failure.into_error(E::TYPE, id)), false);
            }
            let decided = match self.decide_batch(ctx, actions, &payloads) {
                Ok(decided) => decided,
                Err((index, error)) => {
                    let panicked = matches!(error, Error::Panicked { .. });
                    return (Err(error.in_batch(index)), panicked);
                }
            };
            let after = decided
                .decisions
                .last()
                .map_or_else(|| self.state(), |decision| decision.after.clone());
            if decided.decisions.is_empty() && key.is_none() {
                return (Ok(after), false);
            }
            // A keyed call that decided nothing still stores its key: sent again, it answers
            // with this state rather than deciding anew.
            let writes = if decided.decisions.is_empty() {
                Vec::new()
            } else {
                vec![EntityWrite {
                    entity_type: E::TYPE,
                    entity_id: id,
                    expected_version: decided.decisions[0].before.version(),
                    creates: false,
                    actions: decided.rows,
                }]
            };
            let projections = decided.decisions.iter().filter_map(projection).collect();
            let key_row = key.map(|key| key.row(&Kept::entity(&*after)));
            let outcome = self
                .shared
                .committer
                .commit_unit(writes, projections, key_row)
                .instrument(tracing::debug_span!("commit", entity_id = id))
                .await;
            match outcome {
                Outcome::Committed if decided.decisions.is_empty() => return (Ok(after), false),
                Outcome::Committed => {
                    let between = decided.decisions.len().saturating_sub(1);
                    let watched = self.slot.publish_between(
                        decided.decisions[..between]
                            .iter()
                            .map(|decision| decision.after.clone()),
                    );
                    let replaced = self.slot.publish(after.clone());
                    // Watched, it replaced the state between, which cannot be recycled.
                    if let Some(replaced) = replaced.filter(|_| !watched) {
                        let committed = decided.decisions.len();
                        self.recycle(replaced, decided.decisions, committed);
                    }
                    return (Ok(after), false);
                }
                Outcome::Duplicate => {
                    // Another runtime committed this key first: its outcome is the answer.
                    self.slot.mark_stale();
                    let key =
                        key.unwrap_or_else(|| unreachable!("only a keyed unit is a duplicate"));
                    match idempotency::stored(&self.shared, key).await {
                        Ok(Some(stored)) => {
                            return (
                                idempotency::kept_state::<E>(&self.shared, key, stored, Some(id))
                                    .await,
                                false,
                            );
                        }
                        Ok(None) => {}
                        Err(error) => return (Err(error), false),
                    }
                    // Its key expired meanwhile: decide again.
                }
                Outcome::Conflict | Outcome::Retry | Outcome::Taken => {
                    self.slot.mark_stale();
                    attempts += 1;
                    // The newer version may be this very call, committed by another runtime
                    // since the key was looked up: then it is not decided again.
                    if let Some(key) = key {
                        match idempotency::stored(&self.shared, key).await {
                            Ok(Some(stored)) => {
                                let kept = idempotency::kept_state::<E>(
                                    &self.shared,
                                    key,
                                    stored,
                                    Some(id),
                                );
                                return (kept.await, false);
                            }
                            Ok(None) => {}
                            Err(error) => return (Err(error), false),
                        }
                    }
                    if attempts >= self.shared.config.max_attempts {
                        return (
                            Err(Error::Conflict {
                                entity_type: E::TYPE,
                                id,
                                attempts,
                            }),
                            false,
                        );
                    }
                    tracing::debug!(attempt = attempts, "version conflict; catching up");
                }
                Outcome::Refused => {
                    let (index, error) = decided
                        .indexes
                        .iter()
                        .zip(&decided.decisions)
                        .find_map(|(&index, decision)| Some((index, decision.take_refusal()?)))
                        .unwrap_or_else(|| {
                            unreachable!("a refused batch keeps why its projections refused it")
                        });
                    return (Err(error.in_batch(index)), false);
                }
                failed => return (Err(self.failed(failed, None)), false),
            }
        }
    }

    /// Decides each action on the state the one before it left; the first refusal stops it,
    /// with that action's index.
    fn decide_batch(
        &self,
        ctx: &Arc<Context>,
        actions: &[E::Action],
        payloads: &[String],
    ) -> Result<Decided<E>, (usize, Error<E::Error>)> {
        let mut state = self.state();
        let mut spare = self.slot.take_spare(state.version());
        let mut decided = Decided {
            indexes: Vec::new(),
            decisions: Vec::new(),
            rows: Vec::new(),
        };
        for (index, (action, payload)) in actions.iter().zip(payloads).enumerate() {
            match persist::decide(&state, &mut spare, ctx, action, payload) {
                Ok(Some((decision, rows))) => {
                    state = decision.after.clone();
                    decided.indexes.push(index);
                    decided.decisions.push(Arc::new(decision));
                    decided.rows.push(rows);
                }
                Ok(None) => {}
                Err(error) => {
                    // Nothing was applied to the spare unless an earlier action took it: then
                    // it is gone with that action's decision.
                    if let Some(spare) = spare {
                        self.slot.keep_spare(spare);
                    }
                    return Err((index, error));
                }
            }
        }
        if let Some(spare) = spare {
            self.slot.keep_spare(spare);
        }
        Ok(decided)
    }
}
