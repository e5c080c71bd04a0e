//! Over real HTTP: `addItems` (one batch, all or nothing), `moveItem` (two lists in one
//! transaction), and the `Idempotency-Key` header on mutations.

mod support;

use entities_runtime::Backend;
use serde_json::{Value, json};
use support::{Server, on_both_backends};

on_both_backends!(
    add_items_adds_every_item_or_none,
    move_item_moves_the_item_between_lists_in_one_transaction,
    a_move_that_cannot_happen_changes_nothing,
    a_retried_mutation_with_its_key_returns_the_first_result_and_applies_nothing,
    a_key_sent_with_another_body_is_reused_and_applies_nothing,
    a_key_is_scoped_to_its_user_and_to_each_mutation_of_a_request,
    a_bad_idempotency_key_header_is_a_bad_request,
);

async fn create(server: &Server, name: &str, headers: &[(&str, &str)]) -> Value {
    let (status, body) = server
        .graphql(
            &format!(r#"mutation {{ createShoppingList(name: "{name}") {{ id version }} }}"#),
            headers,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["createShoppingList"].clone()
}

async fn list_id(server: &Server, name: &str) -> i64 {
    create(server, name, &[]).await["id"].as_i64().unwrap()
}

/// The read model's items of list `id`: (id, name, quantity), by id.
async fn read_model_items(server: &Server, id: i64) -> Vec<(String, String, i32)> {
    server
        .runtime
        .database()
        .query(
            "SELECT id, name, quantity FROM shopping_list_items WHERE shopping_list_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all()
        .await
        .unwrap()
}

async fn add_item(server: &Server, id: i64, name: &str, quantity: i64) -> String {
    let (_, added) = server
        .graphql(&format!(r#"mutation {{ addItem(shoppingListId: {id}, name: "{name}", quantity: {quantity}) {{ items {{ id name }} }} }}"#), &[])
        .await;
    let items = added["data"]["addItem"]["items"].as_array().unwrap();
    items.iter().find(|item| item["name"] == name).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn add_items_adds_every_item_or_none(backend: Backend) {
    let server = Server::start(backend).await;
    let id = list_id(&server, "party").await;
    let (status, added) = server
        .graphql(&format!(r#"mutation {{ addItems(shoppingListId: {id}, items: [{{name: "cups", quantity: 20}}, {{name: "plates", quantity: 10}}, {{name: "cake", quantity: 1}}]) {{ version items {{ name quantity }} }} }}"#), &[])
        .await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(
        added["data"]["addItems"],
        json!({ "version": 4, "items": [
            { "name": "cups", "quantity": 20 },
            { "name": "plates", "quantity": 10 },
            { "name": "cake", "quantity": 1 },
        ]})
    );
    assert_eq!(read_model_items(&server, id).await.len(), 3);

    let events = server.events().await;
    for (items, code, message) in [
        (
            r#"[{name: "forks", quantity: 5}, {name: "knives", quantity: 0}]"#.to_owned(),
            "VALIDATION",
            "item 1: the quantity must be greater than 0, not 0",
        ),
        (
            r#"[{name: "forks", quantity: 5}, {name: " ", quantity: 1}]"#.to_owned(),
            "VALIDATION",
            "item 1: the name must not be blank",
        ),
        (
            r#"[{name: "forks", quantity: 5}, {name: "lots", quantity: 3000000000}]"#.to_owned(),
            "VALIDATION",
            "item 1: the quantity must be at most 2147483647, not 3000000000",
        ),
        (
            format!("[{}]", vec![r#"{name: "x", quantity: 1}"#; 101].join(", ")),
            "VALIDATION",
            "at most 100 items at once, not 101",
        ),
    ] {
        let (status, body) = server
            .graphql(
                &format!(
                    r#"mutation {{ addItems(shoppingListId: {id}, items: {items}) {{ version }} }}"#
                ),
                &[],
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["data"]["addItems"], Value::Null);
        assert_eq!(body["errors"][0]["extensions"]["code"], code, "{body}");
        assert_eq!(body["errors"][0]["message"], message);
    }
    let (_, body) = server
        .graphql(r#"mutation { addItems(shoppingListId: 999999, items: [{name: "x", quantity: 1}]) { version } }"#, &[])
        .await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "NOT_FOUND");
    assert_eq!(server.events().await, events, "nothing stored");
    assert_eq!(read_model_items(&server, id).await.len(), 3);
}

async fn move_item_moves_the_item_between_lists_in_one_transaction(backend: Backend) {
    let server = Server::start(backend).await;
    let from = list_id(&server, "from").await;
    let to = list_id(&server, "to").await;
    let item = add_item(&server, from, "lamp", 2).await;
    let (status, moved) = server
        .graphql(&format!(r#"mutation {{ moveItem(fromListId: {from}, toListId: {to}, itemId: "{item}") {{ from {{ id version items {{ id }} }} to {{ id version items {{ id name quantity }} }} }} }}"#), &[])
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(
        moved["data"]["moveItem"],
        json!({
            "from": { "id": from, "version": 3, "items": [] },
            "to": { "id": to, "version": 2, "items": [{ "id": item, "name": "lamp", "quantity": 2 }] },
        })
    );
    assert_eq!(read_model_items(&server, from).await, []);
    assert_eq!(
        read_model_items(&server, to).await,
        [(item.clone(), "lamp".to_owned(), 2)]
    );
    if backend == Backend::Postgres {
        let (transactions,): (i64,) = server
            .runtime
            .database()
            .query(
                "SELECT count(DISTINCT transaction_id) FROM entities.entity_events \
                 WHERE type IN ('ItemRemoved', 'ItemAdded') AND (entity_id, entity_version) IN (($1, 3), ($2, 2))",
            )
            .bind(from)
            .bind(to)
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(transactions, 1);
    }
}

async fn a_move_that_cannot_happen_changes_nothing(backend: Backend) {
    let server = Server::start(backend).await;
    let from = list_id(&server, "from").await;
    let to = list_id(&server, "to").await;
    let item = add_item(&server, from, "lamp", 2).await;
    let events = server.events().await;
    for (from_id, to_id, item_id, code) in [
        (from, 999_999, item.as_str(), "NOT_FOUND"),
        (999_999, to, item.as_str(), "NOT_FOUND"),
        (from, to, "no such item", "NOT_FOUND"),
        (to, from, item.as_str(), "NOT_FOUND"),
        (from, from, item.as_str(), "VALIDATION"),
    ] {
        let (status, body) = server
            .graphql(&format!(r#"mutation {{ moveItem(fromListId: {from_id}, toListId: {to_id}, itemId: "{item_id}") {{ from {{ id }} }} }}"#), &[])
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["data"]["moveItem"], Value::Null);
        assert_eq!(body["errors"][0]["extensions"]["code"], code, "{body}");
    }
    assert_eq!(server.events().await, events);
    assert_eq!(read_model_items(&server, from).await.len(), 1);
    assert_eq!(read_model_items(&server, to).await, []);
}

async fn a_retried_mutation_with_its_key_returns_the_first_result_and_applies_nothing(
    backend: Backend,
) {
    let server = Server::start(backend).await;
    let key = [("idempotency-key", "create-1")];
    let first = create(&server, "once", &key).await;
    assert_eq!(create(&server, "once", &key).await, first);
    let id = first["id"].as_i64().unwrap();

    let add = format!(
        r#"mutation {{ addItem(shoppingListId: {id}, name: "soap", quantity: 1) {{ version items {{ id }} }} }}"#
    );
    let quoted = [("idempotency-key", "\"add-1\"")];
    let (_, added) = server.graphql(&add, &quoted).await;
    let events = server.events().await;
    // The item's UUID is drawn anew for each try: the retry is still recognised, by its body.
    let (_, again) = server.graphql(&add, &quoted).await;
    assert_eq!(again, added);
    assert_eq!(added["data"]["addItem"]["version"], json!(2));

    let other = list_id(&server, "other").await;
    let item = added["data"]["addItem"]["items"][0]["id"].as_str().unwrap();
    let moving = format!(
        r#"mutation {{ moveItem(fromListId: {id}, toListId: {other}, itemId: "{item}") {{ from {{ version }} to {{ version items {{ id }} }} }} }}"#
    );
    let move_key = [("idempotency-key", "move-1")];
    let (_, moved) = server.graphql(&moving, &move_key).await;
    assert_eq!(moved["data"]["moveItem"]["to"]["items"][0]["id"], item);
    let after_move = server.events().await;
    assert_eq!(after_move, events + 1 /* the other list */ + 2);
    let (_, again) = server.graphql(&moving, &move_key).await;
    assert_eq!(again, moved);
    assert_eq!(server.events().await, after_move);
    let (_, lists) = server.graphql("{ shoppingLists { name } }", &[]).await;
    assert_eq!(lists["data"]["shoppingLists"].as_array().unwrap().len(), 2);
}

async fn a_key_sent_with_another_body_is_reused_and_applies_nothing(backend: Backend) {
    let server = Server::start(backend).await;
    let key = [("idempotency-key", "k")];
    create(&server, "first", &key).await;
    let events = server.events().await;
    let (status, body) = server
        .graphql(
            r#"mutation { createShoppingList(name: "second") { id } }"#,
            &key,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["createShoppingList"], Value::Null);
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "IDEMPOTENCY_KEY_REUSED",
        "{body}"
    );
    assert_eq!(
        body["errors"][0]["message"],
        "the idempotency key `k` was used before for another request: send a new key for a new request"
    );
    assert_eq!(server.events().await, events);
}

async fn a_key_is_scoped_to_its_user_and_to_each_mutation_of_a_request(backend: Backend) {
    let server = Server::start(backend).await;
    let alice = [("idempotency-key", "same"), ("x-user-id", "alice")];
    let bob = [("idempotency-key", "same"), ("x-user-id", "bob")];
    let a = create(&server, "list", &alice).await;
    // Bob's request with Alice's key and body is his own: it runs (and finds the name taken).
    let (_, body) = server
        .graphql(
            r#"mutation { createShoppingList(name: "list") { id version } }"#,
            &bob,
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "NAME_TAKEN",
        "{body}"
    );
    assert_eq!(create(&server, "list", &alice).await, a);

    // Two mutations of one keyed request are two calls; retried, both answer as before.
    let two = r#"mutation { one: createShoppingList(name: "one") { id } two: createShoppingList(name: "two") { id } }"#;
    let key = [("idempotency-key", "two-of-them")];
    let (_, first) = server.graphql(two, &key).await;
    assert_ne!(first["data"]["one"]["id"], first["data"]["two"]["id"]);
    assert!(first["data"]["two"]["id"].is_i64(), "{first}");
    let (_, again) = server.graphql(two, &key).await;
    assert_eq!(again, first);
}

async fn a_bad_idempotency_key_header_is_a_bad_request(backend: Backend) {
    let server = Server::start(backend).await;
    let events = server.events().await;
    let long = "k".repeat(201);
    // (A blank header counts as none, as with the other headers.)
    for value in ["\"\"", "\" \"", long.as_str()] {
        let response = server
            .post_raw(
                json!({ "query": r#"mutation { createShoppingList(name: "x") { id } }"# })
                    .to_string(),
                &[("idempotency-key", value)],
            )
            .await;
        let (status, code, _) = support::first_error(response).await;
        assert_eq!((status, code.as_str()), (400, "BAD_REQUEST"), "{value:?}");
    }
    assert_eq!(server.events().await, events);
}
