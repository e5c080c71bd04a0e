//! The API over real HTTP: the original's own test, and every error path, each with its code
//! and with nothing changed in the database.

mod support;

use entities_runtime::Backend;
use example::api::BODY_LIMIT;
use serde_json::json;
use support::Server;

on_both_backends!(
    the_originals_test_over_http,
    unknown_ids_are_not_found,
    a_taken_name_is_name_taken_and_changes_nothing,
    invalid_input_is_a_validation_error_and_changes_nothing,
    malformed_and_oversized_bodies_are_bad_requests,
    too_deep_and_too_complex_queries_are_refused,
    user_and_request_ids_are_stored_and_echoed,
    lists_pages_and_history,
);

/// The original's one test: create "list N" -> 1; rename -> 2; query -> new name, 2;
/// addItem("item 1", 2) -> 3 with the item.
async fn the_originals_test_over_http(backend: Backend) {
    let server = Server::start(backend).await;
    let (_, created) = server
        .graphql(
            r#"mutation { createShoppingList(name: "list 1") { id name version } }"#,
            &[],
        )
        .await;
    let list = &created["data"]["createShoppingList"];
    assert_eq!(
        (list["name"].clone(), list["version"].clone()),
        (json!("list 1"), json!(1))
    );
    let id = list["id"].as_i64().unwrap();

    let (_, renamed) = server
        .graphql(&format!(r#"mutation {{ changeShoppingListName(shoppingListId: {id}, name: "list 1 renamed") {{ version }} }}"#), &[])
        .await;
    assert_eq!(
        renamed["data"]["changeShoppingListName"]["version"],
        json!(2)
    );

    let (_, read) = server
        .graphql(
            &format!("{{ shoppingList(id: {id}) {{ id name version }} }}"),
            &[],
        )
        .await;
    assert_eq!(
        read["data"]["shoppingList"],
        json!({ "id": id, "name": "list 1 renamed", "version": 2 })
    );

    let (_, added) = server
        .graphql(&format!(r#"mutation {{ addItem(shoppingListId: {id}, name: "item 1", quantity: 2) {{ version items {{ id name quantity }} }} }}"#), &[])
        .await;
    let added = &added["data"]["addItem"];
    assert_eq!(added["version"], json!(3));
    assert_eq!(
        (
            added["items"][0]["name"].clone(),
            added["items"][0]["quantity"].clone()
        ),
        (json!("item 1"), json!(2))
    );
    assert!(
        added["items"][0]["id"]
            .as_str()
            .is_some_and(|item| item.len() == 36),
        "a UUID"
    );
}

async fn unknown_ids_are_not_found(backend: Backend) {
    let server = Server::start(backend).await;
    for query in [
        "{ shoppingList(id: 4242) { id } }",
        "{ shoppingListHistory(id: 4242) { version } }",
        r#"mutation { changeShoppingListName(shoppingListId: 4242, name: "x") { id } }"#,
        r#"mutation { addItem(shoppingListId: -1, name: "x", quantity: 1) { id } }"#,
    ] {
        let (code, message) = server.error_code(query).await;
        assert_eq!(code, "NOT_FOUND", "{query}: {message}");
    }
    assert_eq!(server.events().await, 0);
}

async fn a_taken_name_is_name_taken_and_changes_nothing(backend: Backend) {
    let server = Server::start(backend).await;
    server
        .graphql(
            r#"mutation { createShoppingList(name: "groceries") { id } }"#,
            &[],
        )
        .await;
    let (_, other) = server
        .graphql(
            r#"mutation { createShoppingList(name: "tools") { id } }"#,
            &[],
        )
        .await;
    let other = other["data"]["createShoppingList"]["id"].as_i64().unwrap();
    let events = server.events().await;

    let (code, message) = server
        .error_code(r#"mutation { createShoppingList(name: "groceries") { id } }"#)
        .await;
    assert_eq!(code, "NAME_TAKEN");
    assert!(message.contains("groceries"), "{message}");
    let (code, _) = server
        .error_code(&format!(r#"mutation {{ changeShoppingListName(shoppingListId: {other}, name: "groceries") {{ id }} }}"#))
        .await;
    assert_eq!(code, "NAME_TAKEN");
    assert_eq!(server.events().await, events);
    let (_, read) = server
        .graphql(
            &format!("{{ shoppingList(id: {other}) {{ name version }} }}"),
            &[],
        )
        .await;
    assert_eq!(
        read["data"]["shoppingList"],
        json!({ "name": "tools", "version": 1 })
    );
}

async fn invalid_input_is_a_validation_error_and_changes_nothing(backend: Backend) {
    let server = Server::start(backend).await;
    let (_, list) = server
        .graphql(
            r#"mutation { createShoppingList(name: "errands") { id } }"#,
            &[],
        )
        .await;
    let id = list["data"]["createShoppingList"]["id"].as_i64().unwrap();
    let events = server.events().await;
    for query in [
        format!(
            r#"mutation {{ addItem(shoppingListId: {id}, name: "glue", quantity: 0) {{ id }} }}"#
        ),
        format!(
            r#"mutation {{ addItem(shoppingListId: {id}, name: "  ", quantity: 1) {{ id }} }}"#
        ),
        format!(
            r#"mutation {{ changeShoppingListName(shoppingListId: {id}, name: "") {{ id }} }}"#
        ),
        r#"mutation { createShoppingList(name: " ") { id } }"#.to_owned(),
        "{ shoppingLists(limit: 1000) { id } }".to_owned(),
    ] {
        let (code, message) = server.error_code(&query).await;
        assert_eq!(code, "VALIDATION", "{query}: {message}");
        assert!(!message.is_empty());
    }
    let (code, _) = server
        .error_code(&format!(
            r#"mutation {{ removeItem(shoppingListId: {id}, itemId: "nope") {{ id }} }}"#
        ))
        .await;
    assert_eq!(code, "NOT_FOUND");
    assert_eq!(server.events().await, events);
}

async fn malformed_and_oversized_bodies_are_bad_requests(backend: Backend) {
    let server = Server::start(backend).await;
    for body in [
        r#"{"query": "#.to_owned(),
        "not json".to_owned(),
        "[1, 2]".to_owned(),
    ] {
        let response = server.post_raw(body.clone(), &[]).await;
        assert_eq!(response.status().as_u16(), 400, "{body}");
        let json: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            json["errors"][0]["extensions"]["code"],
            json!("BAD_REQUEST"),
            "{body}"
        );
    }
    // JSON without a query reaches GraphQL, which finds no operation in it.
    let (code, _) = server.error_code_of_body(r#"{"variables": {}}"#).await;
    assert_eq!(code, "VALIDATION");
    let name = "x".repeat(BODY_LIMIT);
    let huge = json!({ "query": format!(r#"mutation {{ createShoppingList(name: "{name}") {{ id }} }}"#) });
    let response = server.post_raw(huge.to_string(), &[]).await;
    assert_eq!(response.status().as_u16(), 413);
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        json["errors"][0]["extensions"]["code"],
        json!("BAD_REQUEST")
    );
    assert!(
        json["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("larger than")
    );
    let response = server
        .post_raw("{}", &[("x-user-id", &"u".repeat(500))])
        .await;
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(server.events().await, 0);
}

async fn too_deep_and_too_complex_queries_are_refused(backend: Backend) {
    let server = Server::start(backend).await;
    let deep = "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { name } } } } } } } } }";
    let (code, message) = server.error_code(deep).await;
    assert_eq!(code, "VALIDATION");
    assert!(message.to_lowercase().contains("nested"), "{message}");
    let wide = format!(
        "{{ {} }}",
        (0..1100)
            .map(|n| format!("a{n}: shoppingLists(limit: 0) {{ id }}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let (code, message) = server.error_code(&wide).await;
    assert_eq!(code, "VALIDATION");
    assert!(message.to_lowercase().contains("complex"), "{message}");
}

async fn user_and_request_ids_are_stored_and_echoed(backend: Backend) {
    let server = Server::start(backend).await;
    let response = server
        .post_raw(
            json!({ "query": r#"mutation { createShoppingList(name: "audited") { id } }"# })
                .to_string(),
            &[("x-user-id", "user-7"), ("x-request-id", "req-42")],
        )
        .await;
    assert_eq!(response.headers()["x-user-id"], "user-7");
    assert_eq!(response.headers()["x-request-id"], "req-42");
    let body: serde_json::Value = response.json().await.unwrap();
    let id = body["data"]["createShoppingList"]["id"].as_i64().unwrap();
    let (_, history) = server
        .graphql(
            &format!(
                "{{ shoppingListHistory(id: {id}) {{ createdBy requestId actionType type }} }}"
            ),
            &[],
        )
        .await;
    assert_eq!(
        history["data"]["shoppingListHistory"],
        json!([{ "createdBy": "user-7", "requestId": "req-42", "actionType": "CreateShoppingList", "type": "ShoppingListCreated" }])
    );

    let anonymous = server
        .post_raw(
            json!({ "query": "{ shoppingLists { id } }" }).to_string(),
            &[],
        )
        .await;
    assert_eq!(anonymous.headers()["x-user-id"], "anonymous");
    let generated = anonymous.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
}

async fn lists_pages_and_history(backend: Backend) {
    let server = Server::start(backend).await;
    for n in 0..3 {
        server
            .graphql(
                &format!(r#"mutation {{ createShoppingList(name: "list {n}") {{ id }} }}"#),
                &[],
            )
            .await;
    }
    let (_, page) = server
        .graphql(
            "{ shoppingLists(limit: 2, offset: 1) { name version } }",
            &[],
        )
        .await;
    assert_eq!(
        page["data"]["shoppingLists"],
        json!([{ "name": "list 1", "version": 1 }, { "name": "list 2", "version": 1 }])
    );

    let (_, first) = server
        .graphql("{ shoppingLists(limit: 1) { id } }", &[])
        .await;
    let id = first["data"]["shoppingLists"][0]["id"].as_i64().unwrap();
    let (_, added) = server
        .graphql(&format!(r#"mutation {{ addItem(shoppingListId: {id}, name: "tea", quantity: 1) {{ items {{ id }} }} }}"#), &[])
        .await;
    let item = added["data"]["addItem"]["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, changed) = server
        .graphql(&format!(r#"mutation {{ changeItemQuantity(shoppingListId: {id}, itemId: "{item}", quantity: 4) {{ items {{ quantity }} }} }}"#), &[])
        .await;
    assert_eq!(
        changed["data"]["changeItemQuantity"]["items"],
        json!([{ "quantity": 4 }])
    );
    let (_, removed) = server
        .graphql(&format!(r#"mutation {{ removeItem(shoppingListId: {id}, itemId: "{item}") {{ version items {{ id }} }} }}"#), &[])
        .await;
    assert_eq!(
        removed["data"]["removeItem"],
        json!({ "version": 4, "items": [] })
    );
    let (_, history) = server
        .graphql(&format!("{{ shoppingListHistory(id: {id}) {{ version type payload actionId actionType insertedAt }} }}"), &[])
        .await;
    let history = history["data"]["shoppingListHistory"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        history
            .iter()
            .map(|e| (e["version"].as_i64().unwrap(), e["type"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        vec![
            (1, "ShoppingListCreated"),
            (2, "ItemAdded"),
            (3, "QuantityChanged"),
            (4, "ItemRemoved")
        ]
    );
    assert_eq!(
        history[2]["payload"],
        json!({ "item_id": item, "quantity": 4 })
    );
    assert!(
        history
            .iter()
            .all(|e| e["insertedAt"].as_str().is_some_and(|t| t.ends_with('Z')))
    );
}
