//! The context of a call is stored with its action and events, and each event names its action.

mod support;

use entities_runtime::testing::TestDatabase;
use entities_runtime::{Backend, Context};
use support::*;

on_both_backends!(
    actions_and_events_keep_who_asked_and_why,
    a_context_reused_for_several_calls_gives_each_its_own_request_id,
    handlers_see_the_request_id_their_call_stores,
    a_history_reads_in_pages_after_a_version,
);

async fn a_history_reads_in_pages_after_a_version(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let id = new_counter(&runtime, "paged").await.id;
    let counter = runtime.entity::<Counter>(id);
    for amount in 1..=4 {
        counter.send_action(&ctx(), Add { amount }).await.unwrap();
    }
    let whole = runtime.history::<Counter>(id).await.unwrap();
    assert_eq!(whole.len(), 5);
    let mut pages = Vec::new();
    let mut after = 0;
    loop {
        let page = runtime.history_page::<Counter>(id, after, 2).await.unwrap();
        let Some(last) = page.last() else { break };
        assert!(page.len() <= 2);
        after = last.version;
        pages.push(page);
    }
    assert_eq!(pages.len(), 3, "2 + 2 + 1");
    assert_eq!(pages.concat(), whole);
    assert!(
        runtime
            .history_page::<Counter>(id, 5, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        runtime
            .history_page::<Counter>(id + 1000, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn actions_and_events_keep_who_asked_and_why(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let id = new_counter(&runtime, "audited").await.id;
    let ctx = Context::new("user-7")
        .with_request_id("req-1")
        .with_correlation_id("corr-1");
    runtime
        .entity::<Counter>(id)
        .send_action(&ctx, AddTwice { amount: 2 })
        .await
        .unwrap();

    let history = runtime.history::<Counter>(id).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|event| event.version)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let (created, first, second) = (&history[0], &history[1], &history[2]);
    assert_eq!(
        (created.event_type.as_str(), created.action_type.as_str()),
        ("Opened", "Open")
    );
    assert_eq!(created.created_by, "tester");
    for event in [first, second] {
        assert_eq!(event.event_type, "Added");
        assert_eq!(event.action_type, "AddTwice");
        assert_eq!(event.payload, serde_json::json!({ "amount": 2 }));
        assert_eq!(
            (
                event.created_by.as_str(),
                event.request_id.as_str(),
                event.correlation_id.as_str()
            ),
            ("user-7", "req-1", "corr-1")
        );
        assert!(!event.inserted_at.is_empty());
    }
    assert_eq!(
        first.action_id, second.action_id,
        "both events of one action name it"
    );
    assert_ne!(created.action_id, first.action_id);
    let action_user = scalar(
        &runtime,
        &format!(
            "SELECT count(*) FROM {{entities}}entity_actions WHERE id = {} AND created_by = 'user-7' \
             AND request_id = 'req-1' AND correlation_id = 'corr-1' AND type = 'AddTwice' \
             AND entity_version = 3",
            first.action_id
        ),
    )
    .await;
    assert_eq!(action_user, Some(1));
    runtime.shutdown().await;
}

/// A context kept and reused (by a job, a script) does not stamp all its calls with one request
/// id: each call, the create's too, draws its own, and its correlation id follows it. A request
/// id set on the context is every call's.
async fn a_context_reused_for_several_calls_gives_each_its_own_request_id(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let ctx = Context::new("job");
    let id = runtime
        .create::<Counter>(&ctx, "reused".to_owned())
        .await
        .unwrap()
        .id;
    let counter = runtime.entity::<Counter>(id);
    counter.send_action(&ctx, Add { amount: 1 }).await.unwrap();
    counter
        .send_actions(&ctx, [Add { amount: 2 }, Add { amount: 3 }])
        .await
        .unwrap();
    let pinned = ctx.clone().with_request_id("one request");
    counter
        .send_action(&pinned, Add { amount: 4 })
        .await
        .unwrap();
    counter
        .send_action(&pinned, Add { amount: 5 })
        .await
        .unwrap();

    let history = runtime.history::<Counter>(id).await.unwrap();
    let ids: Vec<(&str, &str)> = history
        .iter()
        .map(|event| (event.request_id.as_str(), event.correlation_id.as_str()))
        .collect();
    assert_eq!(ids.len(), 6);
    for (request_id, correlation_id) in &ids[..4] {
        assert!(uuid::Uuid::parse_str(request_id).is_ok(), "{request_id}");
        assert_eq!(request_id, correlation_id);
    }
    // The create, the action, and the batch (one call: its two actions share one id).
    assert_ne!(ids[0].0, ids[1].0);
    assert_ne!(ids[1].0, ids[2].0);
    assert_eq!(ids[2].0, ids[3].0);
    assert_eq!(&ids[4..], [("one request", "one request"); 2]);
    assert_eq!(
        ctx.request_id(),
        None,
        "the caller's context is left as it was"
    );
}

/// The context a handler is given is the one its call stores: its request id is set (the
/// support's `Note` handler panics otherwise, which would fail the call).
async fn handlers_see_the_request_id_their_call_stores(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let id = new_counter(&runtime, "seen").await.id;
    let noted = runtime
        .entity::<Counter>(id)
        .send_action(&Context::new("u"), Note)
        .await
        .unwrap();
    assert_eq!(noted.notes, 1);
}
