//! The ShoppingList domain on both backends: the seed's own scenario, its validations, and a
//! read model that always equals the entities.

use entities_runtime::testing::{TestDatabase, on_both_backends};
use entities_runtime::{Backend, Context, Error, Runtime};
use example::shopping_list::{AddItem, ChangeQuantity, Item, RemoveItem, SetName};
use example::{MIGRATIONS, ShoppingList, ShoppingListError, read_model};

on_both_backends!(
    the_seeds_scenario,
    a_taken_name_is_a_domain_error_and_changes_nothing,
    invalid_input_is_refused_and_changes_nothing,
    items_are_removed_and_their_quantities_changed,
    the_read_model_equals_the_entities,
    items_added_together_are_projected_in_one_statement_or_not_at_all,
);

async fn start(db: &TestDatabase) -> Runtime {
    Runtime::builder(&db.url)
        .migrations(MIGRATIONS)
        .build()
        .await
        .expect("runtime starts")
}

fn ctx() -> Context {
    Context::new("shopper")
}

/// The original's one test: create "list N" -> 1; rename -> 2; query -> 2 and the new name;
/// add item -> 3 with it.
async fn the_seeds_scenario(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = start(&db).await;
    let created = runtime
        .create::<ShoppingList>(&ctx(), "list 1".into())
        .await
        .unwrap();
    assert_eq!((created.name.as_str(), created.version), ("list 1", 1));

    let list = runtime.entity::<ShoppingList>(created.id);
    let renamed = list
        .send_action(
            &ctx(),
            SetName {
                name: "list 1 renamed".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.version, 2);

    let fetched = list.get().await.unwrap();
    assert_eq!(
        (fetched.name.as_str(), fetched.version),
        ("list 1 renamed", 2)
    );

    let with_item = list
        .send_action(&ctx(), AddItem::new("item 1", 2))
        .await
        .unwrap();
    assert_eq!(with_item.version, 3);
    assert_eq!(
        with_item
            .items
            .iter()
            .map(|item| (item.name.as_str(), item.quantity))
            .collect::<Vec<_>>(),
        vec![("item 1", 2)]
    );
    runtime.shutdown().await;
}

async fn a_taken_name_is_a_domain_error_and_changes_nothing(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = start(&db).await;
    runtime
        .create::<ShoppingList>(&ctx(), "groceries".into())
        .await
        .unwrap();
    let other = runtime
        .create::<ShoppingList>(&ctx(), "hardware".into())
        .await
        .unwrap();
    let lists_before = read_model::lists(&runtime, "shopper", 10, 0).await.unwrap();

    let duplicate = runtime
        .create::<ShoppingList>(&ctx(), "groceries".into())
        .await;
    assert!(
        matches!(&duplicate, Err(Error::Rejected(ShoppingListError::NameTaken(name))) if name == "groceries"),
        "{duplicate:?}"
    );
    let entity = runtime.entity::<ShoppingList>(other.id);
    let renamed = entity
        .send_action(
            &ctx(),
            SetName {
                name: " groceries ".into(),
            },
        )
        .await;
    assert!(
        matches!(
            renamed,
            Err(Error::Rejected(ShoppingListError::NameTaken(_)))
        ),
        "{renamed:?}"
    );

    assert_eq!(entity.get().await.unwrap(), other, "memory unchanged");
    assert_eq!(
        runtime
            .history::<ShoppingList>(other.id)
            .await
            .unwrap()
            .len(),
        1,
        "no event stored"
    );
    assert_eq!(
        read_model::lists(&runtime, "shopper", 10, 0).await.unwrap(),
        lists_before,
        "read model unchanged"
    );
    runtime.shutdown().await;
}

async fn invalid_input_is_refused_and_changes_nothing(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = start(&db).await;
    assert!(matches!(
        runtime.create::<ShoppingList>(&ctx(), "   ".into()).await,
        Err(Error::Rejected(ShoppingListError::BlankName))
    ));
    let list = runtime
        .create::<ShoppingList>(&ctx(), "errands".into())
        .await
        .unwrap();
    let entity = runtime.entity::<ShoppingList>(list.id);
    let item = AddItem::new("stamps", 1);
    let item_id = item.id.clone();
    let before = entity.send_action(&ctx(), item.clone()).await.unwrap();

    let refusals = [
        (
            entity
                .send_action(&ctx(), SetName { name: "".into() })
                .await,
            ShoppingListError::BlankName,
        ),
        (
            entity.send_action(&ctx(), AddItem::new("glue", 0)).await,
            ShoppingListError::QuantityNotPositive(0),
        ),
        (
            entity.send_action(&ctx(), AddItem::new(" ", 1)).await,
            ShoppingListError::BlankName,
        ),
        (
            entity.send_action(&ctx(), item).await,
            ShoppingListError::ItemExists(item_id.clone()),
        ),
        (
            entity
                .send_action(
                    &ctx(),
                    ChangeQuantity {
                        item_id: item_id.clone(),
                        quantity: -3,
                    },
                )
                .await,
            ShoppingListError::QuantityNotPositive(-3),
        ),
        (
            entity
                .send_action(
                    &ctx(),
                    RemoveItem {
                        item_id: "no-such-item".into(),
                    },
                )
                .await,
            ShoppingListError::ItemNotFound("no-such-item".into()),
        ),
    ];
    for (result, expected) in refusals {
        match result {
            Err(Error::Rejected(error)) => assert_eq!(error, expected),
            other => panic!("expected {expected:?}, got {other:?}"),
        }
    }
    assert_eq!(entity.get().await.unwrap(), before);
    assert_eq!(
        runtime
            .history::<ShoppingList>(list.id)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        read_model::items(&runtime, list.id).await.unwrap(),
        before.items
    );
    assert!(matches!(
        runtime.entity::<ShoppingList>(999_999).get().await,
        Err(Error::NotFound {
            entity_type: "shopping_list",
            id: 999_999
        })
    ));
    runtime.shutdown().await;
}

async fn items_are_removed_and_their_quantities_changed(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = start(&db).await;
    let list = runtime
        .create::<ShoppingList>(&ctx(), "party".into())
        .await
        .unwrap();
    let entity = runtime.entity::<ShoppingList>(list.id);
    let (cake, juice) = (AddItem::new("cake", 1), AddItem::new("juice", 6));
    let (cake_id, juice_id) = (cake.id.clone(), juice.id.clone());
    entity.send_action(&ctx(), cake).await.unwrap();
    entity.send_action(&ctx(), juice).await.unwrap();
    entity
        .send_action(
            &ctx(),
            ChangeQuantity {
                item_id: juice_id.clone(),
                quantity: 12,
            },
        )
        .await
        .unwrap();
    let after = entity
        .send_action(&ctx(), RemoveItem { item_id: cake_id })
        .await
        .unwrap();
    let expected = vec![Item {
        id: juice_id,
        name: "juice".into(),
        quantity: 12,
    }];
    assert_eq!((after.version, &after.items), (5, &expected));
    assert_eq!(
        read_model::items(&runtime, list.id).await.unwrap(),
        expected
    );
    runtime.shutdown().await;
}

async fn the_read_model_equals_the_entities(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = start(&db).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(
            runtime
                .create::<ShoppingList>(&ctx(), format!("list {n}"))
                .await
                .unwrap()
                .id,
        );
    }
    let mut writers = Vec::new();
    for (n, &id) in ids.iter().enumerate() {
        let entity = runtime.entity::<ShoppingList>(id);
        writers.push(tokio::spawn(async move {
            for i in 0..10 {
                let added = entity
                    .send_action(&ctx(), AddItem::new(format!("item {i}"), i + 1))
                    .await
                    .unwrap();
                if i % 3 == 0 {
                    let item_id = added.items[0].id.clone();
                    entity
                        .send_action(&ctx(), RemoveItem { item_id })
                        .await
                        .unwrap();
                }
            }
            entity
                .send_action(
                    &ctx(),
                    SetName {
                        name: format!("renamed {n}"),
                    },
                )
                .await
                .unwrap();
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    runtime.shutdown().await;

    // A fresh runtime replays each list from the database; the read model must match it.
    let fresh = Runtime::builder(&db.url)
        .migrate(false)
        .build()
        .await
        .unwrap();
    let lists = read_model::lists(&fresh, "shopper", 100, 0).await.unwrap();
    assert_eq!(lists.len(), ids.len());
    for row in lists {
        let replayed = fresh.entity::<ShoppingList>(row.id).get().await.unwrap();
        assert_eq!(row.name, replayed.name);
        assert_eq!(
            read_model::items(&fresh, row.id).await.unwrap(),
            replayed.items
        );
    }
    fresh.shutdown().await;
}

/// A batch of adds projects its items with one multi-row statement (`project_all`). When that
/// statement fails (here an item id another list holds), the adds run again one by one, the
/// failing one is named, and nothing of the batch is stored.
async fn items_added_together_are_projected_in_one_statement_or_not_at_all(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = start(&db).await;
    let party = runtime
        .create::<ShoppingList>(&ctx(), "party".into())
        .await
        .unwrap();
    let other = runtime
        .create::<ShoppingList>(&ctx(), "other".into())
        .await
        .unwrap();
    let taken = AddItem::new("lamp", 1);
    runtime
        .entity::<ShoppingList>(other.id)
        .send_action(&ctx(), taken.clone())
        .await
        .unwrap();
    let list = runtime.entity::<ShoppingList>(party.id);

    let redos = runtime.metrics().projection_redos;
    let clash = AddItem {
        name: "plates".into(),
        ..taken
    };
    let refused = list
        .send_actions(
            &ctx(),
            [AddItem::new("cups", 20), clash, AddItem::new("cake", 1)],
        )
        .await;
    assert!(
        matches!(&refused, Err(Error::InBatch { index: 1, error }) if matches!(**error, Error::Constraint { .. })),
        "{refused:?}"
    );
    assert_eq!(
        runtime.metrics().projection_redos,
        redos + 1,
        "the adds ran together, failed, and ran again one by one"
    );
    assert_eq!(list.get().await.unwrap(), party, "memory unchanged");
    assert_eq!(
        runtime
            .history::<ShoppingList>(party.id)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(read_model::items(&runtime, party.id).await.unwrap(), []);

    let added = list
        .send_actions(
            &ctx(),
            [
                AddItem::new("cups", 20),
                AddItem::new("plates", 10),
                AddItem::new("cake", 1),
            ],
        )
        .await
        .unwrap();
    assert_eq!(added.version, 4);
    assert_eq!(
        read_model::items(&runtime, party.id).await.unwrap(),
        added.items,
        "the read model holds the three items, in order"
    );
    assert_eq!(
        runtime.metrics().projection_redos,
        redos + 1,
        "the second batch's statement went through"
    );
    runtime.shutdown().await;
}
