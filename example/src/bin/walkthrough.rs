//! A scripted walkthrough of the ShoppingList on the embedded SQLite default: create, rename,
//! add and change items, meet the domain's refusals, then print the entity, its events and the
//! read model. `DATABASE_URL` points it elsewhere (`postgres://...` or `sqlite:...`).
//!
//! `cargo run -p example --bin walkthrough`; the crate's default binary is the GraphQL server.

use std::process::ExitCode;

use entities_runtime::{Context, Error, Runtime};
use example::shopping_list::{AddItem, ChangeQuantity, SetName};
use example::{MIGRATIONS, ShoppingList, read_model};

const DEFAULT_DATABASE: &str = "sqlite://shopping_list.db";

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match walkthrough().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn walkthrough() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE.to_owned());
    println!("database: {url}");
    let runtime = Runtime::builder(&url)
        .migrations(MIGRATIONS)
        .build()
        .await?;
    let ctx = Context::new("walkthrough");

    // Names are unique across lists, so each run picks its own.
    let name = format!(
        "Groceries {}",
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let list = runtime.create::<ShoppingList>(&ctx, name.clone()).await?;
    println!(
        "created `{}` as list {} at version {}",
        list.name, list.id, list.version
    );

    let entity = runtime.entity::<ShoppingList>(list.id);
    let renamed = entity
        .send_action(
            &ctx,
            SetName {
                name: format!("{name} (weekly)"),
            },
        )
        .await?;
    println!("renamed to `{}`: version {}", renamed.name, renamed.version);

    let milk = AddItem::new("milk", 2);
    let milk_id = milk.id.clone();
    entity.send_action(&ctx, milk).await?;
    entity.send_action(&ctx, AddItem::new("bread", 1)).await?;
    let changed = entity
        .send_action(
            &ctx,
            ChangeQuantity {
                item_id: milk_id,
                quantity: 3,
            },
        )
        .await?;
    println!(
        "added milk and bread, then 3 milk: version {}",
        changed.version
    );

    println!("\nwhat the domain refuses (nothing is stored):");
    let taken = runtime
        .create::<ShoppingList>(&ctx, renamed.name.clone())
        .await;
    println!(
        "  a second list named `{}`: {}",
        renamed.name,
        describe(taken)
    );
    let zero = entity.send_action(&ctx, AddItem::new("eggs", 0)).await;
    println!("  0 eggs: {}", describe(zero));
    let missing = runtime.entity::<ShoppingList>(i64::MAX).get().await;
    println!("  list {}: {}", i64::MAX, describe(missing));

    let state = entity.get().await?;
    println!(
        "\nthe entity, from memory:\n{}",
        serde_json::to_string_pretty(&*state)?
    );

    println!("\nits events:");
    for event in runtime.history::<ShoppingList>(list.id).await? {
        println!(
            "  v{} {} {} (action {} #{}, by {})",
            event.version,
            event.event_type,
            event.payload,
            event.action_type,
            event.action_id,
            event.created_by
        );
    }

    println!("\nthe read model:");
    for row in read_model::lists(&runtime, ctx.user_id(), 5, 0).await? {
        println!("  list {} `{}`", row.id, row.name);
    }
    for item in read_model::items(&runtime, list.id).await? {
        println!("  item {} x{} ({})", item.name, item.quantity, item.id);
    }
    runtime.shutdown().await;
    Ok(())
}

fn describe<T>(result: Result<T, Error<example::ShoppingListError>>) -> String {
    match result {
        Ok(_) => "accepted?!".to_owned(),
        Err(error) => format!("refused: {error}"),
    }
}
