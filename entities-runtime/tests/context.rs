//! The context of a call is stored with its action and events, and each event names its action.

mod support;

use entities_runtime::testing::TestDatabase;
use entities_runtime::{Backend, Context};
use support::*;

on_both_backends!(actions_and_events_keep_who_asked_and_why);

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
    assert_eq!(history.len(), 3);
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
             AND request_id = 'req-1' AND correlation_id = 'corr-1' AND type = 'AddTwice'",
            first.action_id
        ),
    )
    .await;
    assert_eq!(action_user, Some(1));
    runtime.shutdown().await;
}
