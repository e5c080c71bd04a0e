//! What one request may make the server do: names and lists of bounded size, history in pages,
//! and a response budget that counts the lists behind the fields, so that a small query can no
//! longer make the server build a huge answer. Each refusal has its code and changes nothing.

mod support;

use entities_runtime::{Backend, Context};
use example::ShoppingList;
use example::api::RESPONSE_BUDGET;
use example::shopping_list::{AddItem, ITEM_LIMIT, NAME_LIMIT};
use serde_json::{Value, json};
use support::{Server, on_both_backends};

on_both_backends!(
    names_are_normalised_and_bounded_and_control_characters_refused,
    a_list_holds_a_bounded_number_of_items,
    history_comes_in_pages,
    many_aliases_of_long_lists_cannot_build_a_huge_answer,
);

async fn create(server: &Server, name: &str) -> Value {
    let (_, created) = server
        .graphql(
            &format!(
                "mutation {{ createShoppingList(name: {}) {{ id name }} }}",
                json!(name)
            ),
            &[],
        )
        .await;
    created
}

async fn names_are_normalised_and_bounded_and_control_characters_refused(backend: Backend) {
    let server = Server::start(backend).await;
    // Precomposed and decomposed "Café" are one name: the second is taken.
    let first = create(&server, "Caf\u{00E9}").await;
    assert_eq!(first["data"]["createShoppingList"]["name"], "Caf\u{00E9}");
    let id = first["data"]["createShoppingList"]["id"].as_i64().unwrap();
    let events = server.events().await;
    let second = create(&server, "  Cafe\u{0301} ").await;
    assert_eq!(
        second["errors"][0]["extensions"]["code"], "NAME_TAKEN",
        "{second}"
    );
    for (name, code, message) in [
        // Refused by the runtime before the list decides: its action could not be stored.
        ("a\u{0}b", "VALIDATION", "NUL"),
        (
            "line\nbreak",
            "VALIDATION",
            "without control characters (U+000A)",
        ),
        ("\u{200B}", "VALIDATION", "the name must not be blank"),
        (
            "\u{FEFF} \u{2060}",
            "VALIDATION",
            "the name must not be blank",
        ),
    ] {
        let refused = create(&server, name).await;
        let error = &refused["errors"][0];
        assert_eq!(error["extensions"]["code"], code, "{name:?}: {refused}");
        assert!(
            error["message"].as_str().unwrap().contains(message),
            "{name:?}: {refused}"
        );
    }
    let long = "\u{1F34E}".repeat(NAME_LIMIT + 1);
    let refused = create(&server, &long).await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "VALIDATION");
    assert_eq!(
        refused["errors"][0]["message"],
        format!(
            "a name must be at most {NAME_LIMIT} characters, not {}",
            NAME_LIMIT + 1
        )
    );
    // A NUL where no name is checked (an item id) is still the caller's mistake, not INTERNAL.
    let (status, nul_item) = server
        .graphql(
            &format!(
                r#"mutation {{ removeItem(shoppingListId: {id}, itemId: "a\u0000b") {{ id }} }}"#
            ),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        nul_item["errors"][0]["extensions"]["code"], "VALIDATION",
        "{nul_item}"
    );
    assert_eq!(server.events().await, events, "nothing stored");
    // Exactly the limit is accepted.
    let at_limit = create(&server, &"\u{1F34E}".repeat(NAME_LIMIT)).await;
    assert!(at_limit["errors"].is_null(), "{at_limit}");
}

async fn a_list_holds_a_bounded_number_of_items(backend: Backend) {
    let server = Server::start(backend).await;
    let created = create(&server, "full").await;
    let id = created["data"]["createShoppingList"]["id"]
        .as_i64()
        .unwrap();
    let list = server.runtime.entity::<ShoppingList>(id);
    // The lists were created over HTTP, as `anonymous`: their owner.
    let ctx = Context::new(Context::ANONYMOUS);
    for chunk in 0..ITEM_LIMIT / 50 {
        let items = (0..50).map(|n| AddItem::new(format!("item {chunk}-{n}"), 1));
        list.send_actions(&ctx, items.collect::<Vec<_>>())
            .await
            .unwrap();
    }
    let events = server.events().await;
    let (_, refused) = server
        .graphql(
            &format!(r#"mutation {{ addItem(shoppingListId: {id}, name: "one more", quantity: 1) {{ id }} }}"#),
            &[],
        )
        .await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "VALIDATION");
    assert_eq!(
        refused["errors"][0]["message"],
        format!("a list holds at most {ITEM_LIMIT} items")
    );
    // A move onto a full list is refused too, and moves nothing.
    let other = create(&server, "other").await;
    let other_id = other["data"]["createShoppingList"]["id"].as_i64().unwrap();
    let (_, added) = server
        .graphql(
            &format!(r#"mutation {{ addItem(shoppingListId: {other_id}, name: "mover", quantity: 1) {{ items {{ id }} }} }}"#),
            &[],
        )
        .await;
    let item = added["data"]["addItem"]["items"][0]["id"].as_str().unwrap();
    let events = events + 2;
    let (_, moved) = server
        .graphql(
            &format!(r#"mutation {{ moveItem(fromListId: {other_id}, toListId: {id}, itemId: "{item}") {{ to {{ id }} }} }}"#),
            &[],
        )
        .await;
    assert_eq!(
        moved["errors"][0]["extensions"]["code"], "VALIDATION",
        "{moved}"
    );
    assert_eq!(server.events().await, events, "nothing stored");
}

async fn history_comes_in_pages(backend: Backend) {
    let server = Server::start(backend).await;
    let created = create(&server, "paged").await;
    let id = created["data"]["createShoppingList"]["id"]
        .as_i64()
        .unwrap();
    for n in 0..4 {
        server
            .graphql(
                &format!(r#"mutation {{ addItem(shoppingListId: {id}, name: "item {n}", quantity: 1) {{ id }} }}"#),
                &[],
            )
            .await;
    }
    let page = |after: i64, limit: i64| {
        let server = &server;
        async move {
            let (_, body) = server
                .graphql(
                    &format!("{{ shoppingListHistory(id: {id}, after: {after}, limit: {limit}) {{ version }} }}"),
                    &[],
                )
                .await;
            body
        }
    };
    let versions = |body: &Value| -> Vec<i64> {
        body["data"]["shoppingListHistory"]
            .as_array()
            .unwrap_or_else(|| panic!("a page: {body}"))
            .iter()
            .map(|entry| entry["version"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(versions(&page(0, 2).await), [1, 2]);
    assert_eq!(versions(&page(2, 2).await), [3, 4]);
    assert_eq!(versions(&page(4, 2).await), [5]);
    assert_eq!(versions(&page(5, 2).await), Vec::<i64>::new());
    // The default page is the first 100.
    let (_, whole) = server
        .graphql(
            &format!("{{ shoppingListHistory(id: {id}) {{ version }} }}"),
            &[],
        )
        .await;
    assert_eq!(versions(&whole), [1, 2, 3, 4, 5]);
    for (after, limit, message) in [
        (0, 0, "`limit` must be between 1 and 500, not 0"),
        (0, 501, "`limit` must be between 1 and 500, not 501"),
        (-1, 10, "`after` must not be negative, not -1"),
    ] {
        let refused = page(after, limit).await;
        assert_eq!(refused["errors"][0]["extensions"]["code"], "VALIDATION");
        assert_eq!(refused["errors"][0]["message"], message);
    }
    let unknown = page_of(&server, id + 1_000).await;
    assert_eq!(unknown["errors"][0]["extensions"]["code"], "NOT_FOUND");
}

async fn page_of(server: &Server, id: i64) -> Value {
    let (_, body) = server
        .graphql(
            &format!("{{ shoppingListHistory(id: {id}, after: 3) {{ version }} }}"),
            &[],
        )
        .await;
    body
}

/// The finding: 100 aliases of a list's items in a 4 KB query built a 300 MB answer. Now the
/// answer stops at the budget: the first aliases have their items, the rest are
/// `QUERY_TOO_COMPLEX`, and the body stays within the budget and one list.
async fn many_aliases_of_long_lists_cannot_build_a_huge_answer(backend: Backend) {
    let server = Server::start(backend).await;
    let created = create(&server, "heavy").await;
    let id = created["data"]["createShoppingList"]["id"]
        .as_i64()
        .unwrap();
    let list = server.runtime.entity::<ShoppingList>(id);
    // The lists were created over HTTP, as `anonymous`: their owner.
    let ctx = Context::new(Context::ANONYMOUS);
    // The longest names there can be: 200 four-byte characters, on as many items as fit.
    let name = "\u{1F34E}".repeat(NAME_LIMIT);
    for _ in 0..ITEM_LIMIT / 50 {
        let items: Vec<_> = (0..50).map(|_| AddItem::new(name.clone(), 1)).collect();
        list.send_actions(&ctx, items).await.unwrap();
    }
    let one_list = ITEM_LIMIT * (name.len() + 80);
    let aliases = 100;
    let query = format!(
        "{{ {} }}",
        (0..aliases)
            .map(|n| format!("a{n}: shoppingList(id: {id}) {{ items {{ id name }} }}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert!(query.len() < 8 * 1024, "a small query");
    let response = server
        .post_raw(json!({ "query": query }).to_string(), &[])
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let body = response.bytes().await.unwrap();
    assert!(
        body.len() < RESPONSE_BUDGET + one_list + 64 * 1024,
        "the answer is {} bytes: over the budget of {RESPONSE_BUDGET}",
        body.len()
    );
    let body: Value = serde_json::from_slice(&body).unwrap();
    let answered = (0..aliases)
        .filter(|n| body["data"][format!("a{n}")]["items"].is_array())
        .count();
    assert!(
        (1..aliases).contains(&answered),
        "some aliases answered, the rest refused: {answered}"
    );
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), aliases - answered);
    assert!(
        errors
            .iter()
            .all(|error| error["extensions"]["code"] == "QUERY_TOO_COMPLEX")
    );
    // Without the budget this answer would be some 100 lists' worth.
    assert!(aliases * one_list > 4 * RESPONSE_BUDGET);
    // Each page of history spends the budget too: 333 aliases of it stop there as well.
    let query = format!(
        "{{ {} }}",
        (0..333)
            .map(|n| format!("h{n}: shoppingListHistory(id: {id}) {{ payload }}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let response = server
        .post_raw(json!({ "query": query }).to_string(), &[])
        .await;
    let body = response.bytes().await.unwrap();
    assert!(
        body.len() < RESPONSE_BUDGET + one_list + 64 * 1024,
        "the history answer is {} bytes",
        body.len()
    );
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "QUERY_TOO_COMPLEX");
}
