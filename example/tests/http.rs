//! The API over real HTTP: the original's own test, its schema field for field, and every error
//! path, each with its code and status and with nothing changed in the database.

mod support;

use entities_runtime::Backend;
use example::api::{BODY_LIMIT, DEPTH_LIMIT, MAX_ID_LEN};
use serde_json::{Value, json};
use support::{Server, first_error, on_both_backends};

on_both_backends!(
    the_originals_test_over_http,
    unknown_ids_are_not_found_and_change_nothing,
    a_taken_name_is_name_taken_and_changes_nothing,
    invalid_input_is_a_validation_error_and_changes_nothing,
    bodies_that_are_not_graphql_requests_are_bad_requests,
    queries_that_do_not_fit_the_schema_are_refused_before_running,
    too_deep_and_too_complex_queries_are_refused,
    user_and_request_ids_are_stored_and_echoed,
    lists_pages_items_and_history,
);

/// The original's one test: create "list N" -> 1; rename -> 2; query -> new name, 2;
/// addItem("item 1", 2) -> 3 with the item.
async fn the_originals_test_over_http(backend: Backend) {
    let server = Server::start(backend).await;
    let (status, created) = server
        .graphql(
            r#"mutation { createShoppingList(name: "list 1") { id name version } }"#,
            &[],
        )
        .await;
    assert_eq!(status, 200);
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
            .is_some_and(|item| uuid::Uuid::parse_str(item).is_ok()),
        "a UUID: {added}"
    );
}

async fn unknown_ids_are_not_found_and_change_nothing(backend: Backend) {
    let server = Server::start(backend).await;
    for query in [
        "{ shoppingList(id: 4242) { id } }",
        "{ shoppingList(id: 0) { id } }",
        "{ shoppingList(id: 9223372036854775807) { id } }",
        "{ shoppingListHistory(id: 4242) { version } }",
        r#"mutation { changeShoppingListName(shoppingListId: 4242, name: "x") { id } }"#,
        r#"mutation { addItem(shoppingListId: -1, name: "x", quantity: 1) { id } }"#,
        r#"mutation { removeItem(shoppingListId: 4242, itemId: "x") { id } }"#,
        r#"mutation { changeItemQuantity(shoppingListId: 4242, itemId: "x", quantity: 2) { id } }"#,
    ] {
        let (status, code, message) = server.error(query).await;
        assert_eq!(
            (status, code.as_str()),
            (200, "NOT_FOUND"),
            "{query}: {message}"
        );
        assert!(message.starts_with("no shopping list with id"), "{message}");
    }
    // The field is null beside the error, as GraphQL has it.
    let (_, body) = server
        .graphql("{ shoppingList(id: 4242) { id } }", &[])
        .await;
    assert_eq!(body["data"], json!({ "shoppingList": null }));
    assert_eq!(body["errors"][0]["path"], json!(["shoppingList"]));
    // The other fields of the request keep their data.
    let (status, body) = server
        .graphql(
            "{ a: shoppingList(id: 4242) { id } b: shoppingLists { id } }",
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"], json!({ "a": null, "b": [] }));
    assert_eq!(body["errors"][0]["path"], json!(["a"]));
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

    let (status, code, message) = server
        .error(r#"mutation { createShoppingList(name: "groceries") { id } }"#)
        .await;
    assert_eq!((status, code.as_str()), (200, "NAME_TAKEN"));
    assert_eq!(message, "a shopping list named `groceries` already exists");
    let (_, code, _) = server
        .error(&format!(r#"mutation {{ changeShoppingListName(shoppingListId: {other}, name: "groceries") {{ id }} }}"#))
        .await;
    assert_eq!(code, "NAME_TAKEN");
    assert_eq!(server.events().await, events);
    let (_, read) = server
        .graphql("{ shoppingLists { name version } }", &[])
        .await;
    assert_eq!(
        read["data"]["shoppingLists"],
        json!([{ "name": "groceries", "version": 1 }, { "name": "tools", "version": 1 }])
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
    let (_, added) = server
        .graphql(&format!(r#"mutation {{ addItem(shoppingListId: {id}, name: "tape", quantity: 1) {{ items {{ id }} }} }}"#), &[])
        .await;
    let item = added["data"]["addItem"]["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let events = server.events().await;
    for (query, expected) in [
        (
            format!(
                r#"mutation {{ addItem(shoppingListId: {id}, name: "glue", quantity: 0) {{ id }} }}"#
            ),
            "the quantity must be greater than 0, not 0",
        ),
        (
            format!(
                r#"mutation {{ addItem(shoppingListId: {id}, name: "  ", quantity: 1) {{ id }} }}"#
            ),
            "the name must not be blank",
        ),
        (
            format!(
                r#"mutation {{ changeItemQuantity(shoppingListId: {id}, itemId: "{item}", quantity: -3) {{ id }} }}"#
            ),
            "the quantity must be greater than 0, not -3",
        ),
        (
            format!(
                r#"mutation {{ changeShoppingListName(shoppingListId: {id}, name: "") {{ id }} }}"#
            ),
            "the name must not be blank",
        ),
        (
            r#"mutation { createShoppingList(name: " ") { id } }"#.to_owned(),
            "the name must not be blank",
        ),
        (
            format!(
                r#"mutation {{ addItem(shoppingListId: {id}, name: "glue", quantity: 2147483648) {{ id }} }}"#
            ),
            "the quantity must be at most 2147483647, not 2147483648",
        ),
        (
            "{ shoppingLists(limit: 101) { id } }".to_owned(),
            "`limit` must be between 0 and 100, not 101",
        ),
        (
            "{ shoppingLists(offset: -1) { id } }".to_owned(),
            "`offset` must not be negative, not -1",
        ),
    ] {
        let (status, code, message) = server.error(&query).await;
        assert_eq!(
            (status, code.as_str(), message.as_str()),
            (200, "VALIDATION", expected),
            "{query}"
        );
    }
    // An item that is not on the list is not found, like a list that does not exist.
    for query in [
        format!(r#"mutation {{ removeItem(shoppingListId: {id}, itemId: "nope") {{ id }} }}"#),
        format!(
            r#"mutation {{ changeItemQuantity(shoppingListId: {id}, itemId: "nope", quantity: 2) {{ id }} }}"#
        ),
    ] {
        let (status, code, message) = server.error(&query).await;
        assert_eq!((status, code.as_str()), (200, "NOT_FOUND"), "{query}");
        assert_eq!(message, "no item `nope` on this list");
    }
    assert_eq!(server.events().await, events);
}

async fn bodies_that_are_not_graphql_requests_are_bad_requests(backend: Backend) {
    let server = Server::start(backend).await;
    for (body, expected) in [
        (r#"{"query": "#, "not valid JSON"),
        ("not json", "not valid JSON"),
        ("", "not valid JSON"),
        (
            r#"[{"query": "{ shoppingLists { id } }"}]"#,
            "batched requests are not supported",
        ),
        ("42", "must be a JSON object"),
        (r#"{"variables": {}}"#, "no `query`"),
        (
            r#"{"query": "{ shoppingLists { id } }", "variables": [1]}"#,
            "not a GraphQL request",
        ),
    ] {
        let (status, code, message) = server.error_of_body(body).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "BAD_REQUEST"),
            "{body}: {message}"
        );
        assert!(message.contains(expected), "{body}: {message}");
    }

    // Over the limit: 413, and the list is not created.
    let name = "x".repeat(BODY_LIMIT);
    let huge = json!({ "query": format!(r#"mutation {{ createShoppingList(name: "{name}") {{ id }} }}"#) });
    let (status, code, message) = server.error_of_body(&huge.to_string()).await;
    assert_eq!((status, code.as_str()), (413, "BAD_REQUEST"));
    assert_eq!(message, "the request body is larger than 64 KiB");

    // Not sent as JSON: 415 (a cross-site form cannot send JSON).
    let form = server
        .client
        .post(format!("{}/api", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"query": "mutation { createShoppingList(name: \"csrf\") { id } }"}"#)
        .send()
        .await
        .unwrap();
    let (status, code, message) = first_error(form).await;
    assert_eq!((status, code.as_str()), (415, "BAD_REQUEST"));
    assert!(message.contains("application/json"), "{message}");

    // Queries are POSTed.
    let get = server
        .client
        .get(format!("{}/api", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(get.headers()["allow"], "POST");
    let (status, code, _) = first_error(get).await;
    assert_eq!((status, code.as_str()), (405, "BAD_REQUEST"));

    // Headers that cannot be stored.
    let created =
        json!({ "query": r#"mutation { createShoppingList(name: "by a bad header") { id } }"# })
            .to_string();
    for (name, value) in [
        ("x-user-id", "u".repeat(MAX_ID_LEN + 1)),
        ("x-request-id", "r".repeat(MAX_ID_LEN + 1)),
    ] {
        let response = server
            .post_raw(created.clone(), &[(name, value.as_str())])
            .await;
        assert!(response.headers().contains_key("x-request-id"));
        let (status, code, message) = first_error(response).await;
        assert_eq!((status, code.as_str()), (400, "BAD_REQUEST"), "{name}");
        assert!(message.contains(name), "{message}");
    }
    assert_eq!(server.events().await, 0);
}

async fn queries_that_do_not_fit_the_schema_are_refused_before_running(backend: Backend) {
    let server = Server::start(backend).await;
    for (query, expected) in [
        (
            r#"mutation { createShoppingList(name: "x") { id "#,
            "GRAPHQL_PARSE_FAILED",
        ),
        (
            r#"mutation { createShoppingList(name: "x") { id colour } }"#,
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            r#"mutation { createShoppingList { id } }"#,
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            r#"mutation { createShoppingList(name: 7) { id } }"#,
            "GRAPHQL_VALIDATION_FAILED",
        ),
        // Beyond the 64-bit entity ids (the API's `Int`s are 64-bit, like the original's).
        (
            "{ shoppingList(id: 9223372036854775808) { id } }",
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            "query A { shoppingLists { id } } query B { shoppingLists { id } }",
            "BAD_REQUEST",
        ),
    ] {
        let response = server
            .post_raw(json!({ "query": query }).to_string(), &[])
            .await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            (status, body["errors"][0]["extensions"]["code"].as_str()),
            (400, Some(expected)),
            "{query}: {body}"
        );
        assert!(body.get("data").is_none(), "nothing ran: {body}");
    }
    let (status, code, message) = server
        .error_of_body(r#"{"query": "query($id: Int!) { shoppingList(id: $id) { id } }", "variables": {"id": "one"}}"#)
        .await;
    assert_eq!(
        (status, code.as_str()),
        (400, "GRAPHQL_VALIDATION_FAILED"),
        "{message}"
    );
    // A required variable not given, or null, and a nullable variable left null where the
    // argument is not: nothing runs, not even a mutation before the field that uses it.
    for (query, variables) in [
        (
            "query($id: Int!) { shoppingList(id: $id) { id } }",
            json!({}),
        ),
        (
            "query($id: Int!) { shoppingList(id: $id) { id } }",
            json!({ "id": null }),
        ),
        (
            "query($id: Int) { shoppingList(id: $id) { id } }",
            json!({}),
        ),
        (
            r#"mutation($q: Int!) { a: createShoppingList(name: "first") { id } b: addItem(shoppingListId: 1, name: "x", quantity: $q) { id } }"#,
            json!({}),
        ),
    ] {
        let response = server
            .post_raw(
                json!({ "query": query, "variables": variables }).to_string(),
                &[],
            )
            .await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            (status, body["errors"][0]["extensions"]["code"].as_str()),
            (400, Some("GRAPHQL_VALIDATION_FAILED")),
            "{query} {variables}: {body}"
        );
        assert!(body.get("data").is_none(), "nothing ran: {body}");
    }
    assert_eq!(server.events().await, 0);
}

async fn too_deep_and_too_complex_queries_are_refused(backend: Backend) {
    let server = Server::start(backend).await;
    // GraphiQL's own introspection query (captured from the page) is within both limits.
    let (status, introspection) = server
        .graphql(include_str!("fixtures/graphiql-introspection.graphql"), &[])
        .await;
    assert_eq!(status, 200, "{introspection}");
    assert!(introspection.get("errors").is_none(), "{introspection}");

    let nested = |levels: usize| {
        // __schema > types > fields > type, then `ofType`s, then `name`: `levels` fields deep.
        let of_types = levels - 5;
        format!(
            "{{ __schema {{ types {{ fields {{ type {{ {} name {} }} }} }} }} }}",
            "ofType { ".repeat(of_types),
            "} ".repeat(of_types)
        )
    };
    let (status, body) = server.graphql(&nested(DEPTH_LIMIT), &[]).await;
    assert_eq!(status, 200, "{body}");
    let (status, code, message) = server.error(&nested(DEPTH_LIMIT + 1)).await;
    assert_eq!((status, code.as_str()), (400, "QUERY_TOO_DEEP"));
    assert_eq!(
        message,
        format!("the query is nested too deep: at most {DEPTH_LIMIT} levels of fields")
    );

    // A page counts its fields once per list: two pages of 100 lists of 7 fields are too many.
    let page = "shoppingLists(limit: 100) { id name version items { id name quantity } }";
    let (status, _) = server.graphql(&format!("{{ a: {page} }}"), &[]).await;
    assert_eq!(status, 200);
    let (status, code, message) = server.error(&format!("{{ a: {page} b: {page} }}")).await;
    assert_eq!((status, code.as_str()), (400, "QUERY_TOO_COMPLEX"));
    assert!(message.starts_with("the query is too complex"), "{message}");
    assert_eq!(server.events().await, 0);
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
    let body: Value = response.json().await.unwrap();
    let id = body["data"]["createShoppingList"]["id"].as_i64().unwrap();
    // user-7 owns the list and lets user-8 in.
    server
        .graphql(
            &format!(r#"mutation {{ shareShoppingList(shoppingListId: {id}, userId: "user-8") {{ id }} }}"#),
            &[("x-user-id", "user-7")],
        )
        .await;
    server
        .post_raw(
            json!({ "query": format!(r#"mutation {{ addItem(shoppingListId: {id}, name: "ink", quantity: 1) {{ id }} }}"#) })
                .to_string(),
            &[("x-user-id", "user-8")],
        )
        .await;
    let (_, history) = server
        .graphql(
            &format!(
                "{{ shoppingListHistory(id: {id}) {{ createdBy requestId correlationId actionType type }} }}"
            ),
            &[("x-user-id", "user-7")],
        )
        .await;
    let history = &history["data"]["shoppingListHistory"];
    assert_eq!(
        history[0],
        json!({ "createdBy": "user-7", "requestId": "req-42", "correlationId": "req-42", "actionType": "CreateShoppingList", "type": "ShoppingListCreated" })
    );
    assert_eq!(history[1]["type"], json!("ListShared"));
    assert_eq!(history[2]["createdBy"], json!("user-8"));
    assert!(
        uuid::Uuid::parse_str(history[2]["requestId"].as_str().unwrap()).is_ok(),
        "a generated request id: {history}"
    );

    // Without the headers: `anonymous`, and a new UUID, echoed on errors as on answers.
    let anonymous = server
        .post_raw(
            json!({ "query": "{ shoppingList(id: 999) { id } }" }).to_string(),
            &[],
        )
        .await;
    assert_eq!(anonymous.headers()["x-user-id"], "anonymous");
    let generated = anonymous.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");
    let bad = server
        .post_raw("not json", &[("x-request-id", "req-43")])
        .await;
    assert_eq!(bad.status().as_u16(), 400);
    assert_eq!(bad.headers()["x-request-id"], "req-43");
}

async fn lists_pages_items_and_history(backend: Backend) {
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
    let (_, empty) = server
        .graphql("{ shoppingLists(limit: 0) { id } }", &[])
        .await;
    assert_eq!(empty["data"]["shoppingLists"], json!([]));

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
            .map(|e| (
                e["version"].as_i64().unwrap(),
                e["type"].as_str().unwrap(),
                e["actionType"].as_str().unwrap()
            ))
            .collect::<Vec<_>>(),
        vec![
            (1, "ShoppingListCreated", "CreateShoppingList"),
            (2, "ItemAdded", "AddItem"),
            (3, "QuantityChanged", "ChangeQuantity"),
            (4, "ItemRemoved", "RemoveItem")
        ]
    );
    assert_eq!(
        history[2]["payload"],
        json!({ "item_id": item, "quantity": 4 })
    );
    let action_ids: std::collections::HashSet<_> = history
        .iter()
        .map(|e| e["actionId"].as_i64().unwrap())
        .collect();
    assert_eq!(
        action_ids.len(),
        4,
        "one action per event here: {history:?}"
    );
    assert!(
        history
            .iter()
            .all(|e| e["insertedAt"].as_str().is_some_and(|t| t.ends_with('Z')))
    );
}

/// The original's types, fields, arguments and nullability, read back by introspection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_is_the_originals_field_for_field() {
    let server = Server::start(Backend::Sqlite).await;
    let type_ref = "kind name ofType { kind name ofType { kind name ofType { kind name } } }";
    let (_, body) = server
        .graphql(
            &format!(
                "{{ __schema {{ types {{ name fields {{ name type {{ {type_ref} }} args {{ name type {{ {type_ref} }} }} }} }} }} }}"
            ),
            &[],
        )
        .await;
    let types = body["data"]["__schema"]["types"].as_array().unwrap();
    let field = |type_name: &str, field: &str| -> String {
        let owner = types
            .iter()
            .find(|t| t["name"] == type_name)
            .unwrap_or_else(|| panic!("type {type_name}"));
        let f = owner["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == field)
            .unwrap_or_else(|| panic!("field {type_name}.{field}"));
        let args: Vec<String> = f["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| format!("{}: {}", a["name"].as_str().unwrap(), render(&a["type"])))
            .collect();
        let args = if args.is_empty() {
            String::new()
        } else {
            format!("({})", args.join(", "))
        };
        format!("{field}{args}: {}", render(&f["type"]))
    };
    let original = [
        (
            "Query",
            "shoppingList",
            "shoppingList(id: Int!): ShoppingList",
        ),
        (
            "Mutation",
            "createShoppingList",
            "createShoppingList(name: String!): ShoppingList",
        ),
        (
            "Mutation",
            "changeShoppingListName",
            "changeShoppingListName(shoppingListId: Int!, name: String!): ShoppingList",
        ),
        (
            "Mutation",
            "addItem",
            "addItem(shoppingListId: Int!, name: String!, quantity: Int!): ShoppingList",
        ),
        ("ShoppingList", "id", "id: Int!"),
        ("ShoppingList", "name", "name: String!"),
        ("ShoppingList", "version", "version: Int!"),
        ("ShoppingList", "items", "items: [ShoppingListItem]"),
        ("ShoppingListItem", "id", "id: String!"),
        ("ShoppingListItem", "name", "name: String!"),
        ("ShoppingListItem", "quantity", "quantity: Int!"),
    ];
    for (owner, name, expected) in original {
        assert_eq!(field(owner, name), expected);
    }
    let field_names = |type_name: &str| -> Vec<String> {
        types.iter().find(|t| t["name"] == type_name).unwrap()["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        field_names("ShoppingList"),
        ["id", "name", "version", "items"]
    );
    assert_eq!(field_names("ShoppingListItem"), ["id", "name", "quantity"]);
    // The additions.
    assert_eq!(
        field("Query", "shoppingLists"),
        "shoppingLists(limit: Int!, offset: Int!): [ShoppingList!]"
    );
    assert_eq!(
        field("Query", "shoppingListHistory"),
        "shoppingListHistory(id: Int!, after: Int!, limit: Int!): [ShoppingListEvent!]"
    );
    assert_eq!(
        field("Mutation", "removeItem"),
        "removeItem(shoppingListId: Int!, itemId: String!): ShoppingList"
    );
    assert_eq!(
        field("Mutation", "changeItemQuantity"),
        "changeItemQuantity(shoppingListId: Int!, itemId: String!, quantity: Int!): ShoppingList"
    );
    assert_eq!(field("ShoppingListEvent", "payload"), "payload: JSON!");
}

/// A type reference as SDL writes it: `Int!`, `[ShoppingListItem]`.
fn render(type_ref: &Value) -> String {
    match type_ref["kind"].as_str().unwrap() {
        "NON_NULL" => format!("{}!", render(&type_ref["ofType"])),
        "LIST" => format!("[{}]", render(&type_ref["ofType"])),
        _ => type_ref["name"].as_str().unwrap().to_owned(),
    }
}

/// The GraphiQL page and its files come from the binary, with their content types; the page
/// loads nothing from elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_is_served_from_the_binary() {
    let server = Server::start(Backend::Sqlite).await;
    let get = |path: &str| server.client.get(format!("{}{path}", server.base)).send();
    let page = get("/graphiql").await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    let html = page.text().await.unwrap();
    assert!(!html.contains("//"), "no address elsewhere: {html}");
    for (file, content_type, at_least) in [
        ("graphiql.min.js", "text/javascript; charset=utf-8", 500_000),
        ("graphiql.min.css", "text/css; charset=utf-8", 100_000),
        (
            "react.production.min.js",
            "text/javascript; charset=utf-8",
            5_000,
        ),
        (
            "react-dom.production.min.js",
            "text/javascript; charset=utf-8",
            100_000,
        ),
        ("init.js", "text/javascript; charset=utf-8", 100),
    ] {
        assert!(
            html.contains(&format!("/graphiql/{file}")),
            "{file} in the page"
        );
        let response = get(&format!("/graphiql/{file}")).await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{file}");
        assert_eq!(response.headers()["content-type"], content_type, "{file}");
        assert!(response.bytes().await.unwrap().len() >= at_least, "{file}");
    }
    assert!(
        get("/graphiql/init.js")
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("url: '/api'")
    );
    // Sent raw: an HTTP client would resolve the dot segments before sending. The control shows
    // that a raw request reaches the files; `example/Cargo.toml` is where `..` would lead from
    // the test's directory.
    assert_eq!(raw_get(&server.base, "/graphiql/init.js").await.0, 200);
    for target in [
        "/graphiql/../Cargo.toml",
        "/graphiql/..%2FCargo.toml",
        "/graphiql/%2e%2e/Cargo.toml",
        "/graphiql/%2E%2E%2FCargo.toml",
        "/graphiql/..%5CCargo.toml",
        "/graphiql/%2e%2e%2f%2e%2e%2fCargo.toml",
    ] {
        let (status, body) = raw_get(&server.base, target).await;
        assert_eq!(status, 404, "{target}");
        assert!(
            !body.contains("[package]"),
            "{target} served a file: {body}"
        );
    }
    assert_eq!(
        get("/graphiql/nope.js").await.unwrap().status().as_u16(),
        404
    );

    let root = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(root.status().as_u16(), 303);
    assert_eq!(root.headers()["location"], "/graphiql");
}

/// `GET target` written as it is over a socket, with no URL parsing on the way: the status and
/// the body.
async fn raw_get(base: &str, target: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    socket
        .write_all(
            format!("GET {target} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = Vec::new();
    socket.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    (status, body)
}
