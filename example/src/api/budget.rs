//! The response budget: how much list data one operation's answer may hold.
//!
//! The complexity limit counts fields before anything runs, but not how long the lists behind
//! them are: a small query of many aliases of `shoppingList { items { name } }` could make the
//! server build hundreds of megabytes. So every field that answers with list data (a list's
//! items, a page of history) spends its size from the operation's budget as it resolves, and
//! once the budget is spent such fields fail with `QUERY_TOO_COMPLEX` (their siblings keep their
//! data). What one operation builds is thus at most [`RESPONSE_BUDGET`] and one field's data
//! (a list's items: at most `ITEM_LIMIT` names of `NAME_LIMIT` characters, about 170 KB).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest,
};
use async_graphql::{Request, ServerResult};

use super::error::{Code, coded};

/// The most list data (names, ids, event payloads and the like, in bytes) one operation's answer
/// may hold: 4 MiB. A page of 100 lists of 40 items of 30-character names takes about 300 KB.
pub const RESPONSE_BUDGET: usize = 4 * 1024 * 1024;

/// What one operation has spent of [`RESPONSE_BUDGET`]: made fresh for each (a POST, or each
/// operation sent over a WebSocket) by the [`Budgets`] extension.
#[derive(Default)]
pub(crate) struct ResponseBudget {
    spent: AtomicUsize,
}

impl ResponseBudget {
    /// Spends `bytes`, or refuses the field when that would pass the budget (nothing is spent).
    pub fn spend(&self, bytes: usize) -> async_graphql::Result<()> {
        let mut spent = self.spent.load(Ordering::Relaxed);
        loop {
            let after = spent.saturating_add(bytes);
            if after > RESPONSE_BUDGET {
                return Err(coded(
                    Code::TooComplex,
                    format!(
                        "the answer would hold more than {} MiB of list data: ask for fewer \
                         lists, items or history entries at once (history comes in pages)",
                        RESPONSE_BUDGET / (1024 * 1024)
                    ),
                ));
            }
            match self.spent.compare_exchange_weak(
                spent,
                after,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => spent = now,
            }
        }
    }
}

/// Gives every operation a [`ResponseBudget`] of its own.
pub(crate) struct Budgets;

impl ExtensionFactory for Budgets {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Budgets)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Budgets {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        next.run(ctx, request.data(ResponseBudget::default())).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_refuses_what_would_pass_it_and_keeps_the_rest() {
        let budget = ResponseBudget::default();
        budget.spend(RESPONSE_BUDGET - 10).unwrap();
        assert!(budget.spend(11).is_err());
        budget.spend(10).unwrap();
        assert!(budget.spend(1).is_err());
    }
}
