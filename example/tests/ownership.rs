//! A list belongs to the user who created it: others get `FORBIDDEN` for reads and writes until
//! its owner shares it with them (`shareShoppingList`), and `shoppingLists` shows each user their
//! own lists and those shared with them. (Users here by `x-user-id`, the open default; with
//! `--auth jwt` the user is the token's, see `auth.rs`.)

mod support;

use entities_runtime::Backend;
use serde_json::{Value, json};
use support::{Server, on_both_backends};

on_both_backends!(lists_are_their_owners_until_shared);

async fn as_user(server: &Server, user: &str, query: &str) -> Value {
    let (status, body) = server.graphql(query, &[("x-user-id", user)]).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
}

async fn names(server: &Server, user: &str) -> Vec<String> {
    let body = as_user(server, user, "{ shoppingLists { name } }").await;
    body["data"]["shoppingLists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|list| list["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn lists_are_their_owners_until_shared(backend: Backend) {
    let server = Server::start(backend).await;
    let create = |user: &'static str, name: &'static str| {
        let server = &server;
        async move {
            let body = as_user(
                server,
                user,
                &format!(
                    r#"mutation {{ createShoppingList(name: "{name}") {{ id items {{ id }} }} }}"#
                ),
            )
            .await;
            body["data"]["createShoppingList"]["id"].as_i64().unwrap()
        }
    };
    let alices = create("alice", "alice's").await;
    let bobs = create("bob", "bob's").await;
    let added = as_user(
        &server,
        "bob",
        &format!(r#"mutation {{ addItem(shoppingListId: {bobs}, name: "pen", quantity: 1) {{ items {{ id }} }} }}"#),
    )
    .await;
    let pen = added["data"]["addItem"]["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(names(&server, "alice").await, ["alice's"]);
    assert_eq!(names(&server, "bob").await, ["bob's"]);

    // Bob may do nothing with Alice's list.
    let events = server.events().await;
    for query in [
        format!("{{ shoppingList(id: {alices}) {{ name }} }}"),
        format!("{{ shoppingListHistory(id: {alices}) {{ version }} }}"),
        format!(
            r#"mutation {{ changeShoppingListName(shoppingListId: {alices}, name: "bob's now") {{ id }} }}"#
        ),
        format!(
            r#"mutation {{ addItem(shoppingListId: {alices}, name: "x", quantity: 1) {{ id }} }}"#
        ),
        format!(
            r#"mutation {{ shareShoppingList(shoppingListId: {alices}, userId: "bob") {{ id }} }}"#
        ),
        format!(
            r#"mutation {{ moveItem(fromListId: {bobs}, toListId: {alices}, itemId: "{pen}") {{ to {{ id }} }} }}"#
        ),
        // Not even whether an item is on it.
        format!(
            r#"mutation {{ moveItem(fromListId: {alices}, toListId: {bobs}, itemId: "no such item") {{ to {{ id }} }} }}"#
        ),
    ] {
        let body = as_user(&server, "bob", &query).await;
        assert_eq!(code(&body), "FORBIDDEN", "{query}: {body}");
    }
    assert_eq!(server.events().await, events, "nothing stored");

    // Shared: Bob reads, changes and moves into it, but may not share it on.
    let shared = as_user(
        &server,
        "alice",
        &format!(r#"mutation {{ shareShoppingList(shoppingListId: {alices}, userId: "bob") {{ version }} }}"#),
    )
    .await;
    assert_eq!(shared["data"]["shareShoppingList"]["version"], 2);
    let again = as_user(
        &server,
        "alice",
        &format!(r#"mutation {{ shareShoppingList(shoppingListId: {alices}, userId: "bob") {{ version }} }}"#),
    )
    .await;
    assert_eq!(
        again["data"]["shareShoppingList"]["version"], 2,
        "shared once"
    );
    let moved = as_user(
        &server,
        "bob",
        &format!(r#"mutation {{ moveItem(fromListId: {bobs}, toListId: {alices}, itemId: "{pen}") {{ to {{ items {{ name }} }} }} }}"#),
    )
    .await;
    assert_eq!(
        moved["data"]["moveItem"]["to"]["items"],
        json!([{ "name": "pen" }])
    );
    let read = as_user(
        &server,
        "bob",
        &format!("{{ shoppingList(id: {alices}) {{ name }} }}"),
    )
    .await;
    assert_eq!(read["data"]["shoppingList"]["name"], "alice's");
    let reshare = as_user(
        &server,
        "bob",
        &format!(r#"mutation {{ shareShoppingList(shoppingListId: {alices}, userId: "carol") {{ id }} }}"#),
    )
    .await;
    assert_eq!(code(&reshare), "FORBIDDEN", "{reshare}");
    assert_eq!(names(&server, "bob").await, ["alice's", "bob's"]);
    assert_eq!(names(&server, "alice").await, ["alice's"]);
    assert!(names(&server, "carol").await.is_empty());
}
