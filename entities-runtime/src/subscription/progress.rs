//! A handler's progress on its way to the stored checkpoint. Where the seat writes through a
//! pool (SQLite), a write of the checkpoint waits for the file's lock behind every writer of the
//! runtime (seconds, at worst, under load), so it runs as a task of its own while the handler
//! goes on; one at a time, each from where the row was left.

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::store::LogPosition;
use crate::store::subscriptions::Seat;

pub(crate) struct Progress {
    /// What the row holds (as far as this runtime knows): behind the handler while its
    /// progress waits to be stored.
    stored: LogPosition,
    /// When a write of the checkpoint last began.
    since: Instant,
    saving: Option<Saving>,
}

struct Saving {
    to: LogPosition,
    task: JoinHandle<Result<bool, sqlx::Error>>,
}

impl Progress {
    pub fn new(stored: LogPosition) -> Self {
        Self {
            stored,
            since: Instant::now(),
            saving: None,
        }
    }

    /// How long since a write of the checkpoint began.
    pub fn elapsed(&self) -> std::time::Duration {
        self.since.elapsed()
    }

    /// Whether the row being at `row` is this runtime's doing: what it stored or is storing.
    /// Anything else is someone else's (a rebuild's).
    pub fn is_ours(&self, row: LogPosition) -> bool {
        row == self.stored || self.saving.as_ref().is_some_and(|saving| saving.to == row)
    }

    /// The row is at `at` (read from it, or moved there by a projector's transaction).
    pub fn stored_at(&mut self, at: LogPosition) {
        self.stored = at;
    }

    /// Waits for the write in flight, if any: `Ok(false)` when the row had moved elsewhere.
    pub async fn settle(&mut self) -> Result<bool, sqlx::Error> {
        let Some(saving) = self.saving.take() else {
            return Ok(true);
        };
        let saved = saving.task.await.unwrap_or_else(|failed| {
            Err(sqlx::Error::Io(std::io::Error::other(format!(
                "the checkpoint's write failed: {failed}"
            ))))
        })?;
        if saved {
            self.stored = saving.to;
        }
        Ok(saved)
    }

    /// Stores `at` and waits for it: `Ok(false)` when the row had moved elsewhere.
    pub async fn store(&mut self, seat: &mut Seat, at: LogPosition) -> Result<bool, sqlx::Error> {
        if !self.settle().await? {
            return Ok(false);
        }
        if self.stored == at {
            return Ok(true);
        }
        self.since = Instant::now();
        let saved = seat.advance(self.stored, at).await?;
        if saved {
            self.stored = at;
        }
        Ok(saved)
    }

    /// Stores `at` without waiting where the seat allows it (else as [`store`](Self::store));
    /// a write still in flight is left to finish, and `at` is stored by a later call. Reports
    /// what the last finished write found: `Ok(false)` when the row had moved elsewhere.
    pub async fn store_soon(
        &mut self,
        seat: &mut Seat,
        at: LogPosition,
    ) -> Result<bool, sqlx::Error> {
        if self
            .saving
            .as_ref()
            .is_some_and(|saving| !saving.task.is_finished())
        {
            return Ok(true);
        }
        if !self.settle().await? {
            return Ok(false);
        }
        if self.stored == at {
            return Ok(true);
        }
        match seat.advance_detached(self.stored, at) {
            Some(write) => {
                self.since = Instant::now();
                self.saving = Some(Saving {
                    to: at,
                    task: tokio::spawn(write),
                });
                Ok(true)
            }
            None => self.store(seat, at).await,
        }
    }
}
