//! What follows the event log beside the server: the `popular_items` projector and the
//! `renamed_lists_outbox` subscriber. Each runs in one server at a time among those on the
//! database; the others stand by and take over when it stops.

use entities_runtime::{Logged, Runtime, Subscription, SubscriptionError};

use crate::ShoppingList;
use crate::{outbox, popular_items};

/// The running subscriptions; they stop when the runtime shuts down.
pub struct Streams {
    pub popular_items: Subscription,
    pub outbox: Subscription,
}

/// Starts the projector and the subscriber.
pub fn start(runtime: &Runtime) -> Streams {
    let database = runtime.database().clone();
    Streams {
        popular_items: runtime
            .subscription(popular_items::NAME)
            .project::<Logged<ShoppingList>, _>(popular_items::PopularItems),
        outbox: runtime
            .subscription(outbox::NAME)
            .handle(move |event: Logged<ShoppingList>| {
                let database = database.clone();
                async move { outbox::handle(&database, event).await }
            }),
    }
}

/// The read models `rebuild` rebuilds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadModel {
    PopularItems,
}

/// Clears `model` and replays the log into it: here, or in the server that runs its projector
/// (this waits until it has caught up with where the log stood at the reset).
pub async fn rebuild(runtime: &Runtime, model: ReadModel) -> Result<(), SubscriptionError> {
    match model {
        ReadModel::PopularItems => {
            let projector = runtime
                .subscription(popular_items::NAME)
                .project::<Logged<ShoppingList>, _>(popular_items::PopularItems);
            let rebuilt = projector.rebuild().await;
            projector.stop().await;
            rebuilt
        }
    }
}
