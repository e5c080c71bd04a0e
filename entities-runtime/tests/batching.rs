//! Group commit: what is ready together commits in one transaction, and each action stays
//! isolated: one action's failure neither fails nor holds back its neighbours.

mod support;

use entities_runtime::testing::{CommitCutter, Cut, TestDatabase};
use entities_runtime::{Backend, Context, Error, Metrics, Runtime};
use futures::future::join_all;
use support::*;

on_both_backends!(
    actions_of_many_entities_commit_together_and_one_failure_spares_the_rest,
    neighbouring_events_of_one_type_are_projected_together,
    a_panic_projecting_together_runs_each_action_alone,
    actions_queued_for_one_entity_commit_as_a_chain_and_a_failure_mid_chain_spares_the_rest,
    a_refusal_decided_on_a_state_that_never_commits_is_decided_again,
    failures_amid_a_batch_spare_the_neighbours_before_between_and_after_them,
    a_batch_holds_at_most_batch_size_actions,
    actions_without_projections_commit_beside_projected_ones,
    a_chain_that_conflicts_amid_a_batch_is_decided_again_and_its_neighbours_commit,
);

/// What the committers did between `before` and `after`: (transactions, actions committed,
/// projection redos). Both backends count it; on Postgres the stored transaction ids tell it too.
fn committed_between(before: Metrics, after: Metrics) -> (u64, u64, u64) {
    (
        after.transactions - before.transactions,
        after.actions_committed - before.actions_committed,
        after.projection_redos - before.projection_redos,
    )
}

/// Holds the only committer at a gate, queues `calls` (each dispatched as it is polled once),
/// waits until `chains` of them wait for the committer, and opens the gate: what was queued
/// meanwhile goes into the next batch. Returns the calls' results and the metrics read just
/// before the gate opened.
async fn batched<T>(
    runtime: &Runtime,
    chains: u64,
    calls: impl std::future::Future<Output = T>,
) -> (T, Metrics) {
    let gate = Gate::new();
    let blocker = hold_the_committer(runtime, &gate).await;
    let mut calls = std::pin::pin!(calls);
    // One poll dispatches every call: each is in its entity's inbox when this returns.
    assert!(futures::poll!(calls.as_mut()).is_pending());
    let before = metrics_until(runtime, "the chains to wait for the committer", |m| {
        m.chains_waiting >= chains
    })
    .await;
    assert_eq!(
        before.chains_waiting, chains,
        "no more chains than expected"
    );
    gate.open();
    let results = calls.await;
    blocker.await.unwrap();
    (results, before)
}

/// How many Postgres transactions wrote the events of `ids` at `version`: Postgres records each
/// event's transaction id.
async fn transactions(runtime: &Runtime, ids: &[i64], version: i64) -> Option<i64> {
    if runtime.backend() != Backend::Postgres {
        return None;
    }
    let ids = ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    scalar(
        runtime,
        &format!(
            "SELECT count(DISTINCT transaction_id) FROM entities.entity_events \
             WHERE entity_id IN ({ids}) AND entity_version = {version}"
        ),
    )
    .await
}

async fn actions_of_many_entities_commit_together_and_one_failure_spares_the_rest(
    backend: Backend,
) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime_with(&db, |b| b.committers(1)).await;
    new_counter(&runtime, "taken").await;
    let mut ids = Vec::new();
    for n in 0..8 {
        ids.push(new_counter(&runtime, &format!("neighbour {n}")).await.id);
    }
    let unlucky = runtime.entity::<Counter>(new_counter(&runtime, "unlucky").await.id);
    let unlucky_before = stored(&runtime, unlucky.id()).await;

    let adder = Context::new(format!("neighbour {backend:?}"));
    let adds = join_all(ids.iter().map(|&id| {
        let entity = runtime.entity::<Counter>(id);
        let adder = &adder;
        async move { entity.send_action(adder, Add { amount: id }).await }
    }));
    let clash_ctx = ctx();
    let clash = unlucky.send_action(
        &clash_ctx,
        Rename {
            name: "taken".into(),
        },
    );
    let ((adds, clash), before) = batched(&runtime, 9, async { tokio::join!(adds, clash) }).await;

    assert!(matches!(clash, Err(Error::Constraint { .. })), "{clash:?}");
    assert_eq!(
        stored(&runtime, unlucky.id()).await,
        unlucky_before,
        "the failed action left nothing"
    );
    for (id, added) in ids.iter().zip(adds) {
        assert_eq!(added.expect("neighbours commit").total, *id);
        assert_eq!(read_model(&runtime, *id).await.map(|row| row.1), Some(*id));
    }
    // The clash stops the projections of the adds queued before it (which ran together, and
    // run again one by one); those queued after it run together once it is found.
    let runs = adds_projected_together(adder.user_id());
    assert!(
        runs.len() <= 2 && sorted(&runs.concat()) == sorted(&ids),
        "the adds ran together, before and after the clash: {runs:?}"
    );
    assert_eq!(
        committed_between(before, runtime.metrics()),
        (2, 9, 1),
        "the blocker's transaction, then one for the eight neighbours, whose projections ran \
         again one by one after the clash failed amid them"
    );
    if let Some(transactions) = transactions(&runtime, &ids, 2).await {
        assert_eq!(
            transactions, 1,
            "the eight neighbours committed in one transaction"
        );
    }
    runtime.shutdown().await;
}

async fn actions_queued_for_one_entity_commit_as_a_chain_and_a_failure_mid_chain_spares_the_rest(
    backend: Backend,
) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime_with(&db, |b| b.committers(1)).await;
    new_counter(&runtime, "taken").await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "chained").await.id);

    // The first waits for the committer behind the blocker; the rest queue behind it in the
    // inbox (or join it, if the worker took them together) and are decided as one chain.
    let actions: [CounterAction; 5] = [
        Add { amount: 1 }.into(),
        Add { amount: 2 }.into(),
        Rename {
            name: "taken".into(),
        }
        .into(),
        Add { amount: 3 }.into(),
        Add { amount: 4 }.into(),
    ];
    let ctx = ctx();
    // Polled in order, so queued in order.
    let calls = join_all(actions.map(|action| counter.send_action(&ctx, action)));
    let (results, before) = batched(&runtime, 1, calls).await;

    let versions: Vec<_> = results
        .iter()
        .map(|result| result.as_ref().map(|state| state.version))
        .collect();
    assert!(
        matches!(results[2], Err(Error::Constraint { .. })),
        "{:?}",
        results[2]
    );
    assert_eq!(
        [&versions[0], &versions[1], &versions[3], &versions[4]].map(|v| *v.as_ref().unwrap()),
        [2, 3, 4, 5],
        "the actions after the failure were decided again and committed"
    );
    let state = counter.get().await.unwrap();
    assert_eq!(
        (state.total, state.adds.clone(), state.name.clone()),
        (10, vec![1, 2, 3, 4], "chained".into())
    );
    let stored = stored(&runtime, counter.id()).await;
    assert_eq!(stored.event_versions, vec![1, 2, 3, 4, 5]);
    assert_eq!(stored.read_model, Some(("chained".into(), 10, 5)));
    assert_eq!(cold_load(&db, counter.id()).await, *state);
    let (_, committed, redos) = committed_between(before, runtime.metrics());
    assert_eq!(committed, 1 + 4, "the blocker's rename and the four adds");
    assert!(
        redos >= 1,
        "the rename's failure was found in a redo: {redos}"
    );
    if backend == Backend::Postgres {
        let chain = scalar(
            &runtime,
            &format!(
                "SELECT count(DISTINCT transaction_id) FROM entities.entity_events \
                 WHERE entity_id = {} AND entity_version IN (4, 5)",
                counter.id()
            ),
        )
        .await;
        assert_eq!(
            chain,
            Some(1),
            "the two actions decided again after the failure committed as one chain"
        );
    }
    runtime.shutdown().await;
}

async fn a_refusal_decided_on_a_state_that_never_commits_is_decided_again(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime_with(&db, |b| b.committers(1)).await;
    new_counter(&runtime, "taken").await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "mine").await.id);

    let actions: [CounterAction; 3] = [
        Add { amount: 1 }.into(),
        Rename {
            name: "taken".into(),
        }
        .into(),
        // Decided after the rename above (both queue while the add waits for the committer, so
        // they are decided as one chain), it is refused: "named `taken` already". But that
        // rename never commits (the name is taken), so this one must be decided again, on the
        // state that did commit, where it is a rename like the first, failing like it.
        Rename {
            name: "taken".into(),
        }
        .into(),
    ];
    let ctx = ctx();
    let calls = join_all(actions.map(|action| counter.send_action(&ctx, action)));
    let (results, _) = batched(&runtime, 1, calls).await;

    assert!(results[0].is_ok(), "{:?}", results[0]);
    for result in &results[1..] {
        assert!(
            matches!(result, Err(Error::Constraint { .. })),
            "{result:?}"
        );
    }
    assert_eq!(counter.get().await.unwrap().name, "mine");
    runtime.shutdown().await;
}

/// Each run of adds `Project::project_all` got for calls of `user` (the record is shared by
/// every test of this process), its counters sorted.
fn adds_projected_together(user: &str) -> Vec<Vec<i64>> {
    let runs = ADDS_PROJECTED_TOGETHER.lock().unwrap().clone();
    runs.iter()
        .filter(|(by, _)| by == user)
        .map(|(_, run)| sorted(run))
        .collect()
}

fn sorted(ids: &[i64]) -> Vec<i64> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids
}

/// The events of one type of neighbouring actions reach their `Project::project_all` in one
/// call (the support's counter writes them with one statement), and it writes what each action
/// alone would.
async fn neighbouring_events_of_one_type_are_projected_together(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime_with(&db, |b| b.committers(1)).await;
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(new_counter(&runtime, &format!("together {n}")).await.id);
    }
    let adder = Context::new(format!("together {backend:?}"));
    let adds = join_all(ids.iter().map(|&id| {
        let entity = runtime.entity::<Counter>(id);
        let adder = &adder;
        async move { entity.send_action(adder, Add { amount: id }).await }
    }));
    let (adds, before) = batched(&runtime, 6, adds).await;

    for (n, (&id, added)) in ids.iter().zip(adds).enumerate() {
        assert_eq!(added.expect("the add commits").total, id);
        assert_eq!(
            read_model(&runtime, id).await,
            Some((format!("together {n}"), id, 2))
        );
    }
    assert_eq!(
        adds_projected_together(adder.user_id()),
        vec![sorted(&ids)],
        "the six adds were projected in one call"
    );
    assert_eq!(
        committed_between(before, runtime.metrics()),
        (2, 7, 0),
        "the blocker's transaction, then one for the six adds"
    );
    if backend == Backend::Postgres {
        // No savepoint before them: the read-model rows were written by the transaction
        // itself, not by a subtransaction (a savepoint's writes carry an id of their own).
        let in_the_transaction_itself = scalar(
            &runtime,
            &format!(
                "SELECT count(*) FROM counters c JOIN entities.entity_events e \
                   ON e.entity_id = c.id AND e.entity_version = 2 \
                 WHERE c.id IN ({}) \
                   AND c.xmin::text::bigint = e.transaction_id::text::bigint % 4294967296",
                ids.iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .await;
        assert_eq!(in_the_transaction_itself, Some(6));
    }
    runtime.shutdown().await;
}

/// `project_all` panics on the six adds together: the committer catches it, rolls back, and
/// runs each add alone, where none panics; all six commit.
async fn a_panic_projecting_together_runs_each_action_alone(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime_with(&db, |b| b.committers(1)).await;
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(new_counter(&runtime, &format!("panicky {n}")).await.id);
    }
    let amount = |n: usize, id: i64| if n == 3 { PANIC_WHEN_TOGETHER } else { id };
    let adder = Context::new(format!("panicky {backend:?}"));
    let adds = join_all(ids.iter().enumerate().map(|(n, &id)| {
        let entity = runtime.entity::<Counter>(id);
        let adder = &adder;
        async move {
            let amount = amount(n, id);
            entity.send_action(adder, Add { amount }).await
        }
    }));
    let (adds, before) = batched(&runtime, 6, adds).await;

    for (n, (&id, added)) in ids.iter().zip(adds).enumerate() {
        assert_eq!(added.expect("the add commits").total, amount(n, id));
        assert_eq!(
            read_model(&runtime, id).await.map(|row| row.1),
            Some(amount(n, id))
        );
    }
    assert_eq!(
        adds_projected_together(adder.user_id()),
        vec![sorted(&ids)],
        "the six adds were projected together once, and panicked"
    );
    assert_eq!(
        committed_between(before, runtime.metrics()),
        (2, 7, 1),
        "the blocker's transaction, then one for the six adds, projected again one by one"
    );
    runtime.shutdown().await;
}

/// Projections run optimistically, together; a failure rolls the transaction back, and the
/// batch is written again with its actions run one by one until the failing one is found, then
/// the rest together again. Two failures amid neighbours: every neighbour commits, in the one
/// transaction, with its read-model row, and the failures leave nothing.
async fn failures_amid_a_batch_spare_the_neighbours_before_between_and_after_them(
    backend: Backend,
) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime_with(&db, |b| b.committers(1)).await;
    new_counter(&runtime, "taken").await;
    let mut ids = Vec::new();
    for n in 0..9 {
        ids.push(new_counter(&runtime, &format!("neighbour {n}")).await.id);
    }
    let unlucky = [
        new_counter(&runtime, "unlucky 1").await.id,
        new_counter(&runtime, "unlucky 2").await.id,
    ];
    let before = [
        stored(&runtime, unlucky[0]).await,
        stored(&runtime, unlucky[1]).await,
    ];

    // Queued in this order: three neighbours, a clash, three, a clash, three.
    let context = ctx();
    let mut calls = Vec::new();
    for (n, &id) in ids.iter().enumerate() {
        calls.push((id, Add { amount: id }.into()));
        if n % 3 == 2 && n < 8 {
            let rename = Rename {
                name: "taken".into(),
            };
            calls.push((unlucky[n / 3], rename.into()));
        }
    }
    let calls = join_all(calls.into_iter().map(|(id, action): (i64, CounterAction)| {
        let entity = runtime.entity::<Counter>(id);
        let context = &context;
        async move { (id, entity.send_action(context, action).await) }
    }));
    let (results, metrics_before) = batched(&runtime, 11, calls).await;

    for (id, result) in results {
        if unlucky.contains(&id) {
            assert!(
                matches!(result, Err(Error::Constraint { .. })),
                "{result:?}"
            );
        } else {
            assert_eq!(result.expect("neighbours commit").total, id);
            assert_eq!(read_model(&runtime, id).await.map(|row| row.1), Some(id));
        }
    }
    for (id, before) in unlucky.iter().zip(before) {
        assert_eq!(
            stored(&runtime, *id).await,
            before,
            "a failure left nothing"
        );
    }
    assert_eq!(
        committed_between(metrics_before, runtime.metrics()),
        (2, 1 + 9, 2),
        "the blocker's transaction, then one for the nine neighbours; each clash rolled back \
         the projections run together and the steps since ran again one by one"
    );
    if let Some(transactions) = transactions(&runtime, &ids, 2).await {
        assert_eq!(transactions, 1, "the nine neighbours committed together");
    }
    runtime.shutdown().await;
}

/// Five one-action chains wait while the only committer is held; with `batch_size(2)` they
/// commit in three transactions (2 + 2 + 1), none in a larger one.
async fn a_batch_holds_at_most_batch_size_actions(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime_with(&db, |b| b.committers(1).batch_size(2)).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(new_counter(&runtime, &format!("capped {n}")).await.id);
    }
    let adds = join_all(ids.iter().map(|&id| {
        let entity = runtime.entity::<Counter>(id);
        async move { entity.send_action(&ctx(), Add { amount: 1 }).await }
    }));
    let (results, before) = batched(&runtime, 5, adds).await;
    for result in results {
        assert_eq!(result.expect("committed").version, 2);
    }
    assert_eq!(
        committed_between(before, runtime.metrics()),
        (1 + 3, 1 + 5, 0),
        "the blocker's transaction, then batches of 2, 2 and 1"
    );
    if let Some(transactions) = transactions(&runtime, &ids, 2).await {
        assert_eq!(transactions, 3);
    }
}

/// A batch of actions of which some decide events no projection writes: those have no step in
/// the projections' savepoint, and commit with the rest.
async fn actions_without_projections_commit_beside_projected_ones(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime_with(&db, |b| b.committers(1)).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(new_counter(&runtime, &format!("mixed {n}")).await.id);
    }
    let calls = join_all(ids.iter().enumerate().map(|(n, &id)| {
        let entity = runtime.entity::<Counter>(id);
        async move {
            if n % 2 == 0 {
                entity.send_action(&ctx(), Note).await
            } else {
                entity.send_action(&ctx(), Add { amount: 5 }).await
            }
        }
    }));
    let (results, before) = batched(&runtime, 4, calls).await;
    for (n, result) in results.into_iter().enumerate() {
        let state = result.expect("committed");
        assert_eq!(state.version, 2);
        assert_eq!(
            (state.notes, state.total),
            if n % 2 == 0 { (1, 0) } else { (0, 5) }
        );
        let stored = stored(&runtime, ids[n]).await;
        assert_eq!(stored.event_versions, vec![1, 2]);
        // The read model follows the projected events only.
        let expected_row = if n % 2 == 0 { 1 } else { 2 };
        assert_eq!(stored.read_model.map(|row| row.2), Some(expected_row));
    }
    assert_eq!(committed_between(before, runtime.metrics()), (2, 1 + 4, 0));
    runtime.shutdown().await;
}

/// Another runtime wrote one of the entities behind this one's back: that entity's chain, decided
/// on the state this runtime still holds, fails its version check inside a batch, writes
/// nothing and is decided again; its neighbour in the batch commits all the same, and a third
/// action's refusal in the batch (which has the batch written again) counts no second conflict.
async fn a_chain_that_conflicts_amid_a_batch_is_decided_again_and_its_neighbours_commit(
    backend: Backend,
) {
    let db = TestDatabase::new(backend).await;
    // Not following the other's writes: the conflict is what this stages.
    let runtime = runtime_with(&db, |b| b.committers(1).follow_other_writers(false)).await;
    let other = runtime_with(&db, |b| b.migrate(false)).await;
    let contested = runtime.entity::<Counter>(new_counter(&runtime, "contested").await.id);
    let neighbour = runtime.entity::<Counter>(new_counter(&runtime, "neighbour").await.id);
    let written_behind = other
        .entity::<Counter>(contested.id())
        .send_action(&ctx(), Add { amount: 10 })
        .await
        .unwrap();
    assert_eq!(written_behind.version, 2);
    assert_eq!(contested.get().await.unwrap().version, 1, "still held at 1");

    // A refusal in the same batch has it written twice (see the next assertions): the conflict
    // is still counted once.
    new_counter(&runtime, "taken").await;
    let refused = runtime.entity::<Counter>(new_counter(&runtime, "refused").await.id);

    let context = ctx();
    let adds = futures::future::join3(
        contested.send_action(&context, Add { amount: 1 }),
        neighbour.send_action(&context, Add { amount: 2 }),
        refused.send_action(
            &context,
            Rename {
                name: "taken".into(),
            },
        ),
    );
    let ((contested_after, neighbour_after, refused_after), before) =
        batched(&runtime, 3, adds).await;
    assert!(
        matches!(refused_after, Err(Error::Constraint { .. })),
        "{refused_after:?}"
    );
    let contested_after = contested_after.expect("decided again and committed");
    assert_eq!(
        (contested_after.version, contested_after.total),
        (3, 11),
        "decided again after the other runtime's write"
    );
    assert_eq!(neighbour_after.expect("committed").version, 2);
    let metrics = runtime.metrics();
    assert_eq!(metrics.conflicts - before.conflicts, 1, "{metrics:?}");
    assert_eq!(
        metrics.projection_redos - before.projection_redos,
        1,
        "{metrics:?}"
    );
    assert_eq!(
        stored(&runtime, contested.id()).await.event_versions,
        vec![1, 2, 3]
    );
    runtime.shutdown().await;
    other.shutdown().await;
}

/// Postgres: the connection is lost as a batch is written again after a refusal amid it (at its
/// `ROLLBACK; BEGIN`). Nothing of the batch committed: each caller hears a storage error, not an
/// unknown outcome, nothing is stored, and the same actions sent again are decided as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_as_a_batch_is_written_again_fails_the_batch_and_writes_nothing() {
    let db = TestDatabase::postgres().await;
    let proxy = CommitCutter::start(&db.url).await;
    let runtime = runtime_at(&proxy.url, |builder| builder.committers(1)).await;
    new_counter(&runtime, "taken").await;
    let mut ids = Vec::new();
    for n in 0..2 {
        ids.push(new_counter(&runtime, &format!("neighbour {n}")).await.id);
    }
    let unlucky = runtime.entity::<Counter>(new_counter(&runtime, "unlucky").await.id);
    ids.push(unlucky.id());
    let mut stored_before = Vec::new();
    for &id in &ids {
        stored_before.push(stored(&runtime, id).await);
    }

    proxy.arm_at(Cut::RollbackAndBegin, None);
    let add_ctx = ctx();
    let adds = || {
        join_all(ids[..2].iter().map(|&id| {
            let entity = runtime.entity::<Counter>(id);
            let add_ctx = &add_ctx;
            async move { entity.send_action(add_ctx, Add { amount: id }).await }
        }))
    };
    let clash_ctx = ctx();
    let clash = || {
        unlucky.send_action(
            &clash_ctx,
            Rename {
                name: "taken".into(),
            },
        )
    };
    let ((added, clashed), before) =
        batched(&runtime, 3, async { tokio::join!(adds(), clash()) }).await;

    assert_eq!(
        proxy.cuts(),
        1,
        "the batch's connection was lost at its redo"
    );
    for result in &added {
        assert!(matches!(result, Err(Error::Storage(_))), "{result:?}");
    }
    assert!(matches!(clashed, Err(Error::Storage(_))), "{clashed:?}");
    let after = runtime.metrics();
    assert_eq!(
        (
            after.transactions - before.transactions,
            after.actions_committed - before.actions_committed
        ),
        (1, 1),
        "only the blocker's transaction committed"
    );
    for (&id, before) in ids.iter().zip(&stored_before) {
        assert_eq!(
            &stored(&runtime, id).await,
            before,
            "nothing of the batch stored"
        );
    }

    let (added, clashed) = tokio::join!(adds(), clash());
    for (result, id) in added.into_iter().zip(&ids) {
        assert_eq!(result.expect("the neighbour commits").total, *id);
    }
    assert!(
        matches!(clashed, Err(Error::Constraint { .. })),
        "{clashed:?}"
    );
    runtime.shutdown().await;
}
