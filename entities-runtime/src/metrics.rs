//! Counts of what a runtime did: read by dashboards, and by tests that must show that the race
//! or fault they stage really happened.

use std::sync::atomic::{AtomicU64, Ordering};

/// What a runtime has done since it started, as counts (and two gauges, `chains_waiting` and `leaving`). Read
/// with [`Runtime::metrics`](crate::Runtime::metrics); each field is read on its own, so two
/// fields of one reading may be a few events apart while the runtime is busy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Database transactions that committed actions (creates too): one per batch of the
    /// committers.
    pub transactions: u64,
    /// Actions committed (created entities included).
    pub actions_committed: u64,
    /// Transactions whose `COMMIT` failed, so that whether they committed is unknown: their
    /// callers got `Error::Storage` and their entities catch up before their next action.
    pub commits_failed: u64,
    /// Chains of actions whose version check found that another writer had moved the entity on
    /// (or a create whose id was taken), deadlocks and serialization failures included: they
    /// wrote nothing and were decided again after a catch-up, up to `max_attempts`.
    pub conflicts: u64,
    /// Batches the database broke out of a deadlock (Postgres): counted as conflicts too.
    pub deadlocks: u64,
    /// Batches whose projections failed under the batch's one savepoint, so that its actions
    /// were run again one at a time, each in a savepoint of its own.
    pub projection_redos: u64,
    /// Entities loaded from the database and published: at first use, after leaving memory, and
    /// again after a panic in user code.
    pub loads: u64,
    /// Live entities that read (and published) the events written since their version, after a
    /// conflict or a write of unknown outcome.
    pub catch_ups: u64,
    /// Entities that left memory (idle, or at shutdown).
    pub passivations: u64,
    /// Rounds of the idle sweep (one per `idle_timeout`).
    pub idle_sweeps: u64,
    /// Entities that were leaving memory when a call reached their inbox, and stayed to serve it.
    pub passivations_interrupted: u64,
    /// Snapshots stored.
    pub snapshots_saved: u64,
    /// Snapshots not stored because the database held a newer one (another runtime's).
    pub snapshots_superseded: u64,
    /// Chains of decided actions waiting for a committer, now.
    pub chains_waiting: u64,
    /// Entities leaving memory now: writing their last snapshot, still reachable by calls.
    pub leaving: u64,
    /// Keyed calls that found their key stored by an earlier call: answered with its outcome,
    /// or refused when the key was another call's.
    pub idempotent_replays: u64,
    /// Idempotency keys deleted by the sweep, past their retention.
    pub idempotency_keys_expired: u64,
    /// Times every live entity caught up in case a notification of another runtime's commit
    /// was missed (Postgres): the listening connection was lost and is back, or another runtime
    /// greeted this one (it may have committed before it knew this one listens).
    pub follow_resyncs: u64,
    /// Notifications sent to tell other runtimes of this runtime's commits (Postgres). A
    /// runtime that listens sends none while no other runtime listens.
    pub notifications_sent: u64,
    /// Other runtimes on the database known to listen for commits now (Postgres; 0 when this
    /// runtime does not listen itself, as it cannot know).
    pub runtimes_listening: u64,
    /// Reads of the log by this runtime's subscriptions, empty ones included: each wake-up
    /// (a commit, a notification, a poll) is one.
    pub subscription_reads: u64,
    /// Events handled by this runtime's subscriptions and projectors (a redelivered one again).
    pub subscription_events: u64,
    /// Failed attempts of a subscription's handler or projector, each retried after a delay (or
    /// the last one, stopping the subscription).
    pub subscription_failures: u64,
}

/// The live counters behind [`Metrics`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub transactions: Counter,
    pub actions_committed: Counter,
    pub commits_failed: Counter,
    pub conflicts: Counter,
    pub deadlocks: Counter,
    pub projection_redos: Counter,
    pub loads: Counter,
    pub catch_ups: Counter,
    pub passivations: Counter,
    pub idle_sweeps: Counter,
    pub passivations_interrupted: Counter,
    pub snapshots_saved: Counter,
    pub snapshots_superseded: Counter,
    pub chains_waiting: Counter,
    pub leaving: Counter,
    pub idempotent_replays: Counter,
    pub idempotency_keys_expired: Counter,
    pub follow_resyncs: Counter,
    pub notifications_sent: Counter,
    pub runtimes_listening: Counter,
    pub subscription_reads: Counter,
    pub subscription_events: Counter,
    pub subscription_failures: Counter,
}

impl Counters {
    pub fn read(&self) -> Metrics {
        Metrics {
            transactions: self.transactions.get(),
            actions_committed: self.actions_committed.get(),
            commits_failed: self.commits_failed.get(),
            conflicts: self.conflicts.get(),
            deadlocks: self.deadlocks.get(),
            projection_redos: self.projection_redos.get(),
            loads: self.loads.get(),
            catch_ups: self.catch_ups.get(),
            passivations: self.passivations.get(),
            idle_sweeps: self.idle_sweeps.get(),
            passivations_interrupted: self.passivations_interrupted.get(),
            snapshots_saved: self.snapshots_saved.get(),
            snapshots_superseded: self.snapshots_superseded.get(),
            chains_waiting: self.chains_waiting.get(),
            leaving: self.leaving.get(),
            idempotent_replays: self.idempotent_replays.get(),
            idempotency_keys_expired: self.idempotency_keys_expired.get(),
            follow_resyncs: self.follow_resyncs.get(),
            notifications_sent: self.notifications_sent.get(),
            runtimes_listening: self.runtimes_listening.get(),
            subscription_reads: self.subscription_reads.get(),
            subscription_events: self.subscription_events.get(),
            subscription_failures: self.subscription_failures.get(),
        }
    }
}

/// One count. Relaxed: a count orders nothing, it is only read.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn incr(&self) {
        self.add(1);
    }

    pub fn decr(&self) {
        self.sub(1);
    }

    pub fn sub(&self, n: u64) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
