//! Durable subscriptions: a named reader of the event log with a stored checkpoint, that catches
//! up from where it stood (or from the start, or from now) and then follows the log live.
//!
//! Two kinds, one runner:
//! - a **handler** ([`Handler`]) for side effects: each event is handled, then the checkpoint
//!   moves (stored every [`SubscriptionBuilder::checkpoint_every`], and whenever it catches
//!   up). A crash between the two hands the events over again, so delivery is at least once: a handler must be idempotent (an outbox row keyed by the
//!   event's position, say).
//! - a **projector** ([`Projector`]) for an eventually consistent read model: its writes for a
//!   page of events and the move of its checkpoint commit in one transaction, so its read model
//!   never applies an event twice nor loses one. [`Subscription::rebuild`] clears it and replays
//!   the log from the start.
//!
//! A handler or projector that fails is retried after a delay that doubles each time (from
//! [`SubscriptionBuilder::retry_delays`]); after [`SubscriptionBuilder::max_failures`] failures
//! in a row on one event the subscription stops at that event, records why in its row, and
//! reports it ([`Status::Stopped`]) until [`Subscription::resume`]: it never skips an event.
//!
//! A subscription runs in one runtime at a time among all those on the database (see the
//! store's `subscriptions` module for how); the others stand by and take over when that one
//! dies (on Postgres, as soon as the server sees its connection close: at once for a process
//! that died, after TCP keepalive gives up for a network split; on SQLite, once its lease
//! expires).
//! It wakes at once for this runtime's commits and, on Postgres, for other runtimes' (their
//! notifications); it also polls, every [`SubscriptionBuilder::poll_interval`], for whatever a
//! notification cannot tell (another process's write to a SQLite file, a lost notification).

mod consume;
mod progress;
mod runner;

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::log::FromLog;
use crate::projection::Tx;
use crate::runtime::Runtime;
use crate::store::{self, LogPosition};

/// A handler's or projector's error: anything that says what went wrong.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Handles the events of a subscription, one at a time, in log order, at least once each.
///
/// Any `FnMut(R) -> impl Future<Output = Result<(), E>>` is one:
/// `runtime.subscription("emails").handle(|event: Logged<Account>| async move { ... })`.
pub trait Handler<R>: Send + 'static {
    fn handle(&mut self, event: R) -> impl Future<Output = Result<(), BoxError>> + Send;
}

impl<R, F, Fut, Er> Handler<R> for F
where
    F: FnMut(R) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), Er>> + Send,
    Er: Into<BoxError>,
{
    fn handle(&mut self, event: R) -> impl Future<Output = Result<(), BoxError>> + Send {
        let handled = self(event);
        async move { handled.await.map_err(Into::into) }
    }
}

/// Keeps a read model from the events of a subscription: each page of events is projected in a
/// transaction that also moves the subscription's checkpoint, so the two never part.
///
/// `R` is [`LoggedEvent`](crate::LoggedEvent) (every entity type) or [`Logged<E>`](crate::Logged).
/// A statement that fails on Postgres aborts the transaction: return its error (or the page is
/// retried anyway, as the transaction cannot commit).
pub trait Projector<R>: Send + 'static {
    /// Applies `events` (one or more, in log order) to the read model, in `tx`.
    fn project(
        &mut self,
        tx: &mut Tx<'_>,
        events: &[R],
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Empties the read model, for a rebuild, in `tx` (which also sets the checkpoint back).
    fn clear(&mut self, tx: &mut Tx<'_>) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// Where a subscription with no stored checkpoint starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// From the first event of the log: every event ever stored, then the new ones.
    #[default]
    Beginning,
    /// After the last event stored now: only new ones.
    Now,
}

/// What a subscription is doing.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Not running here: another runtime runs it, or the database is away. It takes over when
    /// it can.
    Standby,
    /// Running: everything up to `at` is handled.
    Running { at: LogPosition },
    /// Stopped at the event after `at` (at `event`), whose handling failed too many times in a
    /// row; `error` is the last failure. Nothing after it is handled until
    /// [`Subscription::resume`].
    Stopped {
        at: LogPosition,
        event: LogPosition,
        error: String,
    },
    /// Stopped by [`Subscription::stop`], or the runtime shut down.
    Ended,
}

/// How far behind the head of the log a subscription is.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Its stored checkpoint.
    pub checkpoint: LogPosition,
    /// The last event a reader can read now.
    pub head: LogPosition,
    /// How many events of its entity types lie between the two.
    pub behind: u64,
    /// Why it stopped, when it did.
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub start_at: StartAt,
    pub page_size: usize,
    pub poll_interval: Duration,
    pub first_retry: Duration,
    pub max_retry: Duration,
    pub max_failures: u32,
    pub takeover_interval: Duration,
    pub lease: Duration,
    pub checkpoint_every: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            start_at: StartAt::Beginning,
            page_size: 500,
            poll_interval: Duration::from_secs(1),
            first_retry: Duration::from_millis(100),
            max_retry: Duration::from_secs(30),
            max_failures: 10,
            takeover_interval: Duration::from_secs(1),
            lease: Duration::from_secs(10),
            checkpoint_every: Duration::from_millis(100),
        }
    }
}

/// Sets up a subscription: `runtime.subscription("name")...handle(handler)` or `.project(projector)`.
#[must_use = "a subscription runs once `handle` or `project` starts it"]
pub struct SubscriptionBuilder {
    runtime: Runtime,
    name: String,
    options: Options,
}

impl SubscriptionBuilder {
    /// Where it starts when it has no checkpoint yet (default: the beginning). A subscription
    /// that ran before goes on from its checkpoint.
    pub fn start_at(mut self, start_at: StartAt) -> Self {
        self.options.start_at = start_at;
        self
    }

    /// The most events read (and, for a projector, projected in one transaction) at a time
    /// (default 500).
    pub fn page_size(mut self, events: usize) -> Self {
        self.options.page_size = events.max(1);
        self
    }

    /// How often it looks at the log when nothing woke it (default 1 s).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.options.poll_interval = interval;
        self
    }

    /// The delay before the first retry of a failed event, and the most it doubles up to
    /// (defaults 100 ms and 30 s).
    pub fn retry_delays(mut self, first: Duration, max: Duration) -> Self {
        self.options.first_retry = first;
        self.options.max_retry = max.max(first);
        self
    }

    /// Failures in a row on one event after which the subscription stops there (default 10).
    pub fn max_failures(mut self, failures: u32) -> Self {
        self.options.max_failures = failures.max(1);
        self
    }

    /// How often a runtime standing by tries to take the subscription over (default 1 s).
    pub fn takeover_interval(mut self, interval: Duration) -> Self {
        self.options.takeover_interval = interval;
        self
    }

    /// SQLite: how long the runtime running it holds it without renewing (default 10 s): how
    /// long the others wait to take over from one that died.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.options.lease = lease.max(Duration::from_millis(10));
        self
    }

    /// A handler's subscription: how often its checkpoint is stored while events keep coming
    /// (default 100 ms; it is stored too whenever the subscription has caught up, fails or
    /// stops). A crash hands over again at most what was handled since the last write that
    /// landed. On SQLite a write waits for the file's lock behind the runtime's writers, under
    /// load for a long while, so it goes on beside the handler, which does not wait for it.
    /// Zero: after every page, waiting for the write before the next page is read (the
    /// tightest bound, and the slowest on a busy SQLite file). (A projector stores it with
    /// every page, in the page's transaction.)
    pub fn checkpoint_every(mut self, interval: Duration) -> Self {
        self.options.checkpoint_every = interval;
        self
    }

    /// Starts the subscription with `handler`, for side effects (at least once per event).
    pub fn handle<R: FromLog, H: Handler<R>>(self, handler: H) -> Subscription {
        self.spawn::<R, _>(consume::Handling(handler))
    }

    /// Starts the subscription with `projector`, keeping a read model (exactly once per event).
    pub fn project<R: FromLog, P: Projector<R>>(self, projector: P) -> Subscription {
        self.spawn::<R, _>(consume::Projecting(projector))
    }

    fn spawn<R: FromLog, C: consume::Consume<R>>(self, consumer: C) -> Subscription {
        let shared = self.runtime.shared();
        let (status_sender, status) = watch::channel(Status::Standby);
        let (control, controls) = mpsc::unbounded_channel();
        let stop = shared.shutdown.child_token();
        let run = runner::Runner {
            name: self.name.clone(),
            options: self.options,
            store: shared.store.clone(),
            // A holder per runner: two subscriptions of one name in one runtime are two holders.
            instance: format!("{}-{}", shared.instance, uuid::Uuid::new_v4().simple()),
            announcer: shared.announcer.clone(),
            counters: shared.counters.clone(),
            status: status_sender,
            controls,
            stop: stop.clone(),
        };
        shared.tasks.spawn(run.run::<R, C>(consumer));
        Subscription {
            name: self.name,
            runtime: self.runtime,
            entity_types: R::entity_types(),
            status,
            control,
            stop,
        }
    }
}

/// Asked of a running subscription.
pub(crate) enum Control {
    Resume,
    Rebuild(oneshot::Sender<Result<LogPosition, BoxError>>),
}

/// A running subscription. Dropping it leaves it running until the runtime shuts down.
pub struct Subscription {
    name: String,
    runtime: Runtime,
    entity_types: &'static [&'static str],
    status: watch::Receiver<Status>,
    control: mpsc::UnboundedSender<Control>,
    stop: CancellationToken,
}

/// Why a subscription could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error("the subscription has ended")]
    Ended,
    #[error("the subscription stopped at an event that keeps failing: {0}")]
    Stopped(String),
    #[error("cannot rebuild: {0}")]
    Rebuild(#[source] BoxError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl Subscription {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it is doing now.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Waits until its status passes `check`, and returns that status; `Status::Ended` if it
    /// ends first.
    pub async fn wait_for(&self, mut check: impl FnMut(&Status) -> bool) -> Status {
        let mut status = self.status.clone();
        match status
            .wait_for(|status| check(status) || *status == Status::Ended)
            .await
        {
            Ok(status) => status.clone(),
            Err(_) => Status::Ended,
        }
    }

    /// Goes on after a [`Status::Stopped`], trying the event it stopped at again.
    pub fn resume(&self) {
        let _ = self.control.send(Control::Resume);
    }

    /// Stops it in this runtime (another may take it over) and waits until it has let go.
    pub async fn stop(self) {
        self.stop.cancel();
        self.wait_for(|_| false).await;
    }

    /// Its stored checkpoint and how far behind the head of the log it is.
    pub async fn progress(&self) -> Result<Progress, sqlx::Error> {
        progress(&self.runtime, &self.name, self.entity_types).await
    }

    /// Clears the read model (a projector's [`Projector::clear`]; nothing for a handler) and sets
    /// the checkpoint back to the start, in one transaction; then waits until the subscription
    /// (in this runtime or whichever runs it) has replayed the log up to where its head was.
    /// Writes may go on meanwhile: the read model ends as if built incrementally.
    pub async fn rebuild(&self) -> Result<(), SubscriptionError> {
        let (reply, rebuilt) = oneshot::channel();
        self.control
            .send(Control::Rebuild(reply))
            .map_err(|_| SubscriptionError::Ended)?;
        let head = rebuilt
            .await
            .map_err(|_| SubscriptionError::Ended)?
            .map_err(SubscriptionError::Rebuild)?;
        self.caught_up_to(head).await
    }

    /// Waits until the stored checkpoint reaches `at` (by whichever runtime runs it).
    pub async fn caught_up_to(&self, at: LogPosition) -> Result<(), SubscriptionError> {
        let shared = self.runtime.shared();
        let mut moved = shared.announcer.watch();
        loop {
            moved.borrow_and_update();
            let checkpoint = shared.store.subscription_checkpoint(&self.name).await?;
            if let Some(checkpoint) = checkpoint {
                if checkpoint.at >= at {
                    return Ok(());
                }
                // Stopped, here or in whichever runtime runs it: it will not get there alone.
                if let Some(error) = checkpoint.error {
                    return Err(SubscriptionError::Stopped(error));
                }
            }
            if *self.status.borrow() == Status::Ended {
                return Err(SubscriptionError::Ended);
            }
            // The checkpoint moves after the commits that wake readers: look again soon too.
            let _ = tokio::time::timeout(Duration::from_millis(50), moved.changed()).await;
        }
    }
}

impl Runtime {
    /// Sets up the durable subscription `name` (see the `subscription` module's doc).
    pub fn subscription(&self, name: impl Into<String>) -> SubscriptionBuilder {
        SubscriptionBuilder {
            runtime: self.clone(),
            name: name.into(),
            options: Options::default(),
        }
    }

    /// The progress of subscription `name` reading the events of `R`, wherever it runs; `None`
    /// if it never ran.
    pub async fn subscription_progress<R: FromLog>(
        &self,
        name: &str,
    ) -> Result<Option<Progress>, sqlx::Error> {
        if self
            .shared()
            .store
            .subscription_checkpoint(name)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        progress(self, name, R::entity_types()).await.map(Some)
    }
}

async fn progress(
    runtime: &Runtime,
    name: &str,
    entity_types: &[&str],
) -> Result<Progress, sqlx::Error> {
    let store = &runtime.shared().store;
    let checkpoint =
        store
            .subscription_checkpoint(name)
            .await?
            .unwrap_or(store::subscriptions::Checkpoint {
                at: LogPosition::START,
                error: None,
            });
    let head = store::head(store.target(), entity_types).await?;
    let behind = store::count_after(store.target(), checkpoint.at, entity_types).await?;
    Ok(Progress {
        checkpoint: checkpoint.at,
        head,
        behind,
        error: checkpoint.error,
    })
}
