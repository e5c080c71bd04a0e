//! The task that runs a subscription in this runtime: take it (or stand by), read a page after
//! the checkpoint, consume it, and again; wait for the log to move when there is nothing to read.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::consume::{Consume, Consumed};
use super::progress::Progress;
use super::{BoxError, Control, Options, StartAt, Status};
use crate::announce::Announcer;
use crate::log::FromLog;
use crate::metrics::Counters;
use crate::store::subscriptions::Seat;
use crate::store::{self, LogPosition, Store};

pub(crate) struct Runner {
    pub name: String,
    pub options: Options,
    pub store: Store,
    pub instance: String,
    pub announcer: Arc<Announcer>,
    pub counters: Arc<Counters>,
    pub status: watch::Sender<Status>,
    pub controls: mpsc::UnboundedReceiver<Control>,
    pub stop: CancellationToken,
}

/// How soon a subscription woken by a commit, yet held back, looks again first.
const HELD_BACK_FIRST: Duration = Duration::from_millis(1);

/// Why the running stopped.
enum Left {
    /// Stopped, or the runtime shut down.
    Stop,
    /// The seat's connection failed, or the seat was lost: stand by again.
    Lost,
}

impl Runner {
    pub async fn run<R: FromLog, C: Consume<R>>(mut self, mut consumer: C) {
        let mut delay = self.options.first_retry;
        loop {
            self.status.send_replace(Status::Standby);
            let Some(seat) = self.take_seat(&mut consumer).await else {
                break;
            };
            let seated = tokio::time::Instant::now();
            let left = self.run_seated::<R, C>(seat, &mut consumer).await;
            if seated.elapsed() >= self.options.max_retry {
                // It ran a good while: this loss is not one of a series.
                delay = self.options.first_retry;
            }
            match left {
                Left::Stop => break,
                Left::Lost => {
                    // The database may be away: do not hammer it.
                    if self.sleep(delay).await {
                        break;
                    }
                    delay = (delay * 2).min(self.options.max_retry);
                }
            }
        }
        self.status.send_replace(Status::Ended);
    }

    /// Takes the subscription when no other runtime runs it; `None` when stopped first.
    async fn take_seat<R: FromLog, C: Consume<R>>(&mut self, consumer: &mut C) -> Option<Seat> {
        loop {
            match self.try_take().await {
                Ok(Some(seat)) => return Some(seat),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(subscription = self.name, %error, "cannot take the subscription");
                }
            }
            let wait = tokio::time::sleep(self.options.takeover_interval);
            tokio::select! {
                () = wait => {}
                () = self.stop.cancelled() => return None,
                Some(control) = self.controls.recv() => {
                    // A rebuild while standing by: whichever runtime runs it replays.
                    self.control(control, consumer).await;
                }
            }
        }
    }

    async fn try_take(&self) -> Result<Option<Seat>, sqlx::Error> {
        let start = match self.options.start_at {
            StartAt::Beginning => LogPosition::START,
            StartAt::Now => store::head(self.store.target(), &[]).await?,
        };
        Seat::take(
            &self.store,
            &self.name,
            &self.instance,
            self.options.lease,
            start,
        )
        .await
    }

    /// Runs the subscription while this runtime holds it.
    async fn run_seated<R: FromLog, C: Consume<R>>(
        &mut self,
        mut seat: Seat,
        consumer: &mut C,
    ) -> Left {
        let left = self.consume_log::<R, C>(&mut seat, consumer).await;
        seat.release().await;
        left
    }

    async fn consume_log<R: FromLog, C: Consume<R>>(
        &mut self,
        seat: &mut Seat,
        consumer: &mut C,
    ) -> Left {
        let mut moved = self.announcer.watch();
        let mut at = match seat.checkpoint().await {
            Ok(checkpoint) => checkpoint.at,
            Err(error) => return self.lost(error),
        };
        let mut progress = Progress::new(at);
        // The event that failed last, and how many times in a row.
        let mut failing: Option<(LogPosition, u32)> = None;
        tracing::info!(subscription = self.name, ?at, "subscription running");
        // Checkpoints every page, the tightest bound on what a crash hands over again, wait for
        // each write; otherwise a write goes on beside the handler where the seat allows it.
        let wait_for_writes = self.options.checkpoint_every.is_zero();
        // Stores `at` as the checkpoint (`wait`: before going on); `false` when the row moved
        // elsewhere (a rebuild).
        macro_rules! store_checkpoint {
            (wait: $wait:expr) => {
                match if $wait {
                    progress.store(seat, at).await
                } else {
                    progress.store_soon(seat, at).await
                } {
                    Ok(saved) => saved,
                    Err(error) => return self.lost(error),
                }
            };
        }
        // The row moved elsewhere: go on from where it says.
        macro_rules! reread {
            () => {{
                // A write in flight finishes first: it must not land after the read below.
                // Whatever it found, the row is read again.
                let _ = progress.settle().await;
                at = match seat.checkpoint().await {
                    Ok(checkpoint) => checkpoint.at,
                    Err(error) => return self.lost(error),
                };
                progress.stored_at(at);
                failing = None;
                tracing::info!(
                    subscription = self.name,
                    ?at,
                    "checkpoint moved elsewhere; going on from it"
                );
            }};
        }
        // After a wake-up that found nothing: how soon to look again.
        let mut held_back: Option<Duration> = None;
        loop {
            self.status.send_replace(Status::Running { at });
            if self.stop.is_cancelled() {
                // A handler's progress stored on the way out (a moved row keeps its own).
                if let Err(error) = progress.store(seat, at).await {
                    return self.lost(error);
                }
                return Left::Stop;
            }
            // Between pages too: a rebuild asked for during a long catch-up is not kept waiting.
            while let Ok(control) = self.controls.try_recv() {
                // A write of this runtime's progress lands before a rebuild's reset, never
                // after it (it would move the reset row on, skipping the replay's start).
                let _ = progress.settle().await;
                if self.control(control, consumer).await {
                    reread!();
                }
            }
            match seat.keep().await {
                Ok(true) => {}
                Ok(false) => return self.lease_lost(),
                Err(error) => return self.lost(error),
            }
            // Seen before reading: a commit during the read wakes the wait below.
            moved.borrow_and_update();
            // Until the failing event is passed, one event at a time: the subscription stops at
            // the very event, and the retries are of that event alone.
            let page = if failing.is_some() {
                1
            } else {
                self.options.page_size
            };
            let raw = match store::read_log(seat.target(), at, page, R::entity_types()).await {
                Ok(raw) => raw,
                Err(error) => return self.lost(error),
            };
            self.counters.subscription_reads.incr();
            if raw.is_empty() {
                // Caught up: the checkpoint is stored while waiting.
                if !store_checkpoint!(wait: wait_for_writes) {
                    reread!();
                    continue;
                }
                // Woken by a commit yet nothing to read: on Postgres a transaction still running
                // somewhere in the server holds the log back (see the `log` module). Look again
                // soon, then less and less often, rather than wait for the next poll.
                let wait = held_back
                    .unwrap_or(self.options.poll_interval)
                    .min(seat.keep_every());
                held_back = None;
                let poll = tokio::time::sleep(wait);
                tokio::select! {
                    _ = moved.changed() => held_back = Some(HELD_BACK_FIRST),
                    () = poll => {
                        held_back = (wait < self.options.poll_interval / 2).then_some(wait * 2);
                        if held_back.is_none() {
                            // A rebuild elsewhere (another process) may have reset the checkpoint:
                            // nothing else would tell this runtime while the log is quiet.
                            match seat.checkpoint().await {
                                Ok(checkpoint) if !progress.is_ours(checkpoint.at) => reread!(),
                                Ok(_) => {}
                                Err(error) => return self.lost(error),
                            }
                        }
                    }
                    // The top of the loop stores the progress and leaves.
                    () = self.stop.cancelled() => {}
                    Some(control) = self.controls.recv() => {
                        let _ = progress.settle().await;
                        if self.control(control, consumer).await {
                            reread!();
                        }
                    }
                }
                continue;
            }
            held_back = None;
            // An event that does not decode fails like a handler: retried, then stopped at.
            let mut events = Vec::with_capacity(raw.len());
            let mut undecodable = None;
            for raw in raw {
                let event_at = raw.at;
                match R::from_raw(raw) {
                    Ok(event) => events.push(event),
                    Err(error) => {
                        undecodable = Some((event_at, BoxError::from(error)));
                        break;
                    }
                }
            }
            // The events before it are consumed first; it fails when it heads a page.
            let undecodable_at = undecodable.as_ref().map(|(event_at, _)| *event_at);
            let consumed = if events.is_empty() {
                let (_, error) = undecodable.take().unwrap_or_else(|| {
                    unreachable!("a page read is not empty: an event decoded or one did not")
                });
                Consumed::Failed { handled: 0, error }
            } else {
                match consumer.consume(seat, at, &events).await {
                    Ok(consumed) => consumed,
                    Err(error) => return self.lost(error),
                }
            };
            let (handled, error) = match consumed {
                Consumed::All => (events.len(), None),
                Consumed::Failed { handled, error } => (handled, Some(error)),
                Consumed::Lost => return self.lease_lost(),
                Consumed::Moved => {
                    reread!();
                    continue;
                }
            };
            if handled > 0 {
                self.counters.subscription_events.add(handled as u64);
                at = events[handled - 1].at();
                if C::SAVES_CHECKPOINT {
                    progress.stored_at(at);
                }
                if failing.is_some_and(|(event, _)| at >= event) {
                    failing = None;
                }
            }
            // A handler's progress is stored every so often, and before a failure is counted.
            let saved = if error.is_some() {
                store_checkpoint!(wait: true)
            } else if progress.elapsed() >= self.options.checkpoint_every {
                store_checkpoint!(wait: wait_for_writes)
            } else {
                true
            };
            if !saved {
                reread!();
                continue;
            }
            let Some(error) = error else {
                continue;
            };
            self.counters.subscription_failures.incr();
            if handled == 0 && events.len() > 1 {
                // A page failed as a whole (a projector's): which event is unknown. Go one at a
                // time to its end; the event that fails alone is the one counted and stopped at.
                tracing::warn!(subscription = self.name, %error, "a page failed; trying its events one at a time");
                let last = events.last().map_or(at, FromLog::at);
                failing = Some((last, 0));
                continue;
            }
            let event = events
                .get(handled)
                .map_or_else(|| undecodable_at.unwrap_or(at), FromLog::at);
            let failures = match failing {
                Some((failed, failures)) if failed == event => failures + 1,
                _ => 1,
            };
            failing = Some((event, failures));
            tracing::warn!(
                subscription = self.name,
                ?event,
                failures,
                %error,
                "a subscription's event failed"
            );
            if failures >= self.options.max_failures {
                let error = error.to_string();
                if let Err(error) = seat.record_failure(at, Some(&error)).await {
                    return self.lost(error);
                }
                tracing::error!(
                    subscription = self.name,
                    ?event,
                    error,
                    "subscription stopped at an event that keeps failing"
                );
                self.status
                    .send_replace(Status::Stopped { at, event, error });
                match self.wait_stopped(seat, at, consumer).await {
                    Ok(Some(moved_to)) => {
                        at = moved_to;
                        progress.stored_at(at);
                    }
                    Ok(None) => {}
                    Err(left) => return left,
                }
                // Resumed (or rebuilt): the event gets its retries again.
                failing = failing.map(|(event, _)| (event, 0));
            } else {
                let delay = self.options.first_retry * 2u32.saturating_pow(failures - 1);
                if let Err(left) = self
                    .sleep_seated(seat, delay.min(self.options.max_retry))
                    .await
                {
                    return left;
                }
            }
        }
    }

    /// Stopped at a failing event: waits for a resume, keeping the subscription (renewing its
    /// lease), so no other runtime retries the event meanwhile. `Ok(Some(at))` when the
    /// checkpoint was reset meanwhile (a rebuild, here or in another runtime).
    async fn wait_stopped<R: FromLog, C: Consume<R>>(
        &mut self,
        seat: &mut Seat,
        at: LogPosition,
        consumer: &mut C,
    ) -> Result<Option<LogPosition>, Left> {
        loop {
            let look = tokio::time::sleep(self.options.poll_interval.min(seat.keep_every()));
            tokio::select! {
                () = look => {
                    match seat.keep().await {
                        Ok(true) => {}
                        Ok(false) => return Err(self.lease_lost()),
                        Err(error) => return Err(self.lost(error)),
                    }
                    match seat.checkpoint().await {
                        Ok(checkpoint) if checkpoint.at != at => return Ok(Some(checkpoint.at)),
                        Ok(_) => {}
                        Err(error) => return Err(self.lost(error)),
                    }
                }
                () = self.stop.cancelled() => return Err(Left::Stop),
                Some(control) = self.controls.recv() => {
                    let resumed = matches!(control, Control::Resume);
                    if self.control(control, consumer).await {
                        return match seat.checkpoint().await {
                            Ok(checkpoint) => Ok(Some(checkpoint.at)),
                            Err(error) => Err(self.lost(error)),
                        };
                    }
                    if resumed {
                        // No longer stopped, for every reader of the row (`caught_up_to`, a
                        // progress report), not only once a checkpoint moves past the event.
                        if let Err(error) = seat.record_failure(at, None).await {
                            return Err(self.lost(error));
                        }
                        self.status.send_replace(Status::Running { at });
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Sleeps `delay` while holding the subscription, renewing its lease as it goes.
    async fn sleep_seated(&self, seat: &mut Seat, delay: Duration) -> Result<(), Left> {
        let until = tokio::time::Instant::now() + delay;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            if self.sleep(left.min(seat.keep_every())).await {
                return Err(Left::Stop);
            }
            match seat.keep().await {
                Ok(true) => {}
                Ok(false) => return Err(self.lease_lost()),
                Err(error) => return Err(self.lost(error)),
            }
        }
    }

    fn lease_lost(&self) -> Left {
        tracing::warn!(
            subscription = self.name,
            "lost the subscription's lease; standing by"
        );
        Left::Lost
    }

    /// Serves a control; `true` when it reset the checkpoint (a rebuild).
    async fn control<R: FromLog, C: Consume<R>>(
        &mut self,
        control: Control,
        consumer: &mut C,
    ) -> bool {
        match control {
            Control::Resume => false,
            Control::Rebuild(reply) => {
                let rebuilt = self.rebuild(consumer).await;
                let done = rebuilt.is_ok();
                let _ = reply.send(rebuilt);
                done
            }
        }
    }

    /// Clears the read model and resets the checkpoint in one transaction (from the pool: a
    /// rebuild runs wherever the subscription does); returns the log's head just after.
    async fn rebuild<R: FromLog, C: Consume<R>>(
        &mut self,
        consumer: &mut C,
    ) -> Result<LogPosition, BoxError> {
        let mut tx = self.store.begin().await?;
        // The row first: its lock orders this against a projector's transaction in flight.
        tx.reset_subscription(&self.name).await?;
        consumer.clear(&mut tx.projection()).await?;
        tx.commit().await?;
        tracing::info!(subscription = self.name, "subscription reset for a rebuild");
        self.announcer.moved();
        Ok(store::head(self.store.target(), R::entity_types()).await?)
    }

    fn lost(&self, error: sqlx::Error) -> Left {
        tracing::warn!(subscription = self.name, %error, "subscription lost its connection; standing by");
        Left::Lost
    }

    /// Sleeps `delay`; `true` if stopped meanwhile.
    async fn sleep(&self, delay: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(delay) => false,
            () = self.stop.cancelled() => true,
        }
    }
}
