//! How a page of events is consumed: by a handler, then the checkpoint moved; or by a projector,
//! in one transaction with the checkpoint's move.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;

use super::{BoxError, Handler, Projector};
use crate::error::panic_message;
use crate::log::FromLog;
use crate::projection::Tx;
use crate::store::LogPosition;
use crate::store::subscriptions::Seat;

/// What became of a page.
pub(crate) enum Consumed {
    /// Every event was handled (a projector: and the checkpoint moved past the last).
    All,
    /// The checkpoint was not where this runtime left it (a rebuild reset it, or the lease was
    /// lost): nothing of the page counts.
    Moved,
    /// The first `handled` events were handled; the next one failed.
    Failed { handled: usize, error: BoxError },
    /// The lease ran out (SQLite) while handling: another runtime may run the subscription now.
    Lost,
}

pub(crate) trait Consume<R>: Send + 'static {
    /// Whether consuming moves the stored checkpoint itself (a projector, in its transaction);
    /// otherwise the runner stores it, every so often (a handler).
    const SAVES_CHECKPOINT: bool;

    /// Consumes `events` (at least one), read after the checkpoint `from`. An `Err` is the
    /// subscription's own connection failing: whatever the page did is rolled back, or will be
    /// handed over again.
    fn consume(
        &mut self,
        seat: &mut Seat,
        from: LogPosition,
        events: &[R],
    ) -> impl Future<Output = Result<Consumed, sqlx::Error>> + Send;

    /// Empties the read model, for a rebuild.
    fn clear(&mut self, tx: &mut Tx<'_>) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// A panic of user code, as a failure of the event.
fn panicked(payload: Box<dyn std::any::Any + Send>) -> BoxError {
    format!("panicked: {}", panic_message(payload.as_ref())).into()
}

pub(crate) struct Handling<H>(pub H);

impl<R: FromLog, H: Handler<R>> Consume<R> for Handling<H> {
    const SAVES_CHECKPOINT: bool = false;

    async fn consume(
        &mut self,
        seat: &mut Seat,
        _from: LogPosition,
        events: &[R],
    ) -> Result<Consumed, sqlx::Error> {
        for (handled, event) in events.iter().enumerate() {
            // Slow handlers must not outlive the lease: another runtime would take over (and
            // hand over again what this one handled since its checkpoint: at least once).
            if !seat.keep().await? {
                return Ok(Consumed::Lost);
            }
            let outcome = AssertUnwindSafe(self.0.handle(event.clone()))
                .catch_unwind()
                .await
                .unwrap_or_else(|payload| Err(panicked(payload)));
            if let Err(error) = outcome {
                return Ok(Consumed::Failed { handled, error });
            }
        }
        Ok(Consumed::All)
    }

    async fn clear(&mut self, _: &mut Tx<'_>) -> Result<(), BoxError> {
        Ok(())
    }
}

pub(crate) struct Projecting<P>(pub P);

impl<R: FromLog, P: Projector<R>> Consume<R> for Projecting<P> {
    const SAVES_CHECKPOINT: bool = true;

    async fn consume(
        &mut self,
        seat: &mut Seat,
        from: LogPosition,
        events: &[R],
    ) -> Result<Consumed, sqlx::Error> {
        let mut tx = seat.begin().await?;
        if !tx.lock(from).await? {
            return Ok(Consumed::Moved);
        }
        let projected = {
            let mut projection = tx.projection();
            let outcome = AssertUnwindSafe(self.0.project(&mut projection, events))
                .catch_unwind()
                .await
                .unwrap_or_else(|payload| Err(panicked(payload)));
            match (outcome, projection.aborted()) {
                (Ok(()), Some(failed)) => Err(format!(
                    "a statement of the projector failed, aborting its transaction: {failed}"
                )
                .into()),
                (outcome, _) => outcome,
            }
        };
        if let Err(error) = projected {
            // Dropped: rolled back.
            drop(tx);
            return Ok(Consumed::Failed { handled: 0, error });
        }
        let last = events.last().map_or(from, FromLog::at);
        if !tx.advance(from, last).await? {
            return Ok(Consumed::Moved);
        }
        tx.commit().await?;
        Ok(Consumed::All)
    }

    async fn clear(&mut self, tx: &mut Tx<'_>) -> Result<(), BoxError> {
        AssertUnwindSafe(self.0.clear(tx))
            .catch_unwind()
            .await
            .unwrap_or_else(|payload| Err(panicked(payload)))
    }
}
