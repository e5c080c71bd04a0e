//! For tests of your own entities.
//!
//! - Without a database: [`given`] past events, `when` an action, `then` the events it decides
//!   (or `then_refused`): your handlers and `apply` as unit tests.
//! - With real databases: a [`TestDatabase`] of its own per test, and [`on_both_backends!`] to
//!   run one test on SQLite and on Postgres, projections and all.
//! - Faults: a [`CommitCutter`] between a runtime and Postgres loses the answer to a `COMMIT`
//!   (or, as [`Cut`] says, to another statement that ends a transaction).

mod commit_cutter;
mod database;
mod scenario;

pub use commit_cutter::{CommitCutter, Cut};
pub use database::TestDatabase;
pub use scenario::{Scenario, Then, given};

/// Runs each named `async fn(Backend)` once on SQLite and once on Postgres, as the tests
/// `name::sqlite` and `name::postgres` (on a multi-threaded tokio runtime: your crate needs
/// `tokio` with its `macros` and `rt-multi-thread` features). The Postgres run needs
/// `DATABASE_URL`; see [`TestDatabase::postgres`].
///
/// ```no_run
/// use entities_runtime::Backend;
/// use entities_runtime::testing::{TestDatabase, on_both_backends};
///
/// on_both_backends!(a_list_is_created);
///
/// async fn a_list_is_created(backend: Backend) {
///     let db = TestDatabase::new(backend).await;
///     // ...
/// }
/// ```
#[doc(inline)]
pub use crate::__on_both_backends as on_both_backends;

#[doc(hidden)]
#[macro_export]
macro_rules! __on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::Backend::Sqlite).await
            }
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::Backend::Postgres).await
            }
        }
    )*};
}
