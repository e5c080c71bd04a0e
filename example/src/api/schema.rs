//! The GraphQL schema: the original's queries and mutations, field for field, and the additions
//! (`shoppingLists`, `shoppingListHistory`, `removeItem`, `changeItemQuantity`).
//!
//! Every root field is nullable, as in the original: a field that fails is `null` beside its
//! error, and the other fields of the request keep their data.

use std::sync::Arc;

use async_graphql::{
    self as gql, ComplexObject, InputObject, Json, Object, Result, Schema, SimpleObject,
    Subscription,
};
use entities_runtime::{Context, EntityId, EventRecord, Runtime, Version};
use futures::{Stream, StreamExt};

use super::budget::{Budgets, ResponseBudget};
use super::error::{Code, RequestErrorCodes, api_error, coded};
use super::request_context::KeyedRequest;
use super::{BATCH_LIMIT, COMPLEXITY_LIMIT, DEPTH_LIMIT, HISTORY_LIMIT, PAGE_LIMIT, POPULAR_LIMIT};
use crate::shopping_list::{
    AddItem, ChangeQuantity, Item, RemoveItem, SetName, ShareList, move_item,
};
use crate::{ShoppingList, ShoppingListError};
use crate::{popular_items, read_model};

/// The API's schema; its data is the [`Runtime`].
pub type ApiSchema = Schema<Query, Mutation, SubscriptionRoot>;

/// The schema over `runtime`, with the depth and complexity limits and the codes of the errors
/// of the parse and validation stages.
pub fn schema(runtime: Runtime) -> ApiSchema {
    Schema::build(Query, Mutation, SubscriptionRoot)
        .data(runtime)
        .limit_depth(DEPTH_LIMIT)
        .limit_complexity(COMPLEXITY_LIMIT)
        .extension(RequestErrorCodes)
        .extension(Budgets)
        .finish()
}

/// A shopping list: the original's `ShoppingList`.
///
/// Ids and versions are `Int` as in the original, carried as 64-bit integers like the entity ids
/// they are (the original's Absinthe did the same).
#[derive(SimpleObject)]
#[graphql(name = "ShoppingList", complex)]
pub struct ShoppingListObject {
    id: EntityId,
    name: String,
    version: Version,
    #[graphql(skip)]
    list: Arc<ShoppingList>,
    /// Whether its items spend the operation's response budget: not a subscription's message,
    /// which holds one list whatever the query (a subscription's budget would run out).
    #[graphql(skip)]
    spends_budget: bool,
}

#[ComplexObject]
impl ShoppingListObject {
    /// The items, in the order they were added. (Nullable list of nullable items, as in the
    /// original.) `QUERY_TOO_COMPLEX` once the answer holds too much list data.
    async fn items(&self, ctx: &gql::Context<'_>) -> Result<Option<Vec<Option<ShoppingListItem>>>> {
        if self.spends_budget
            && let Some(budget) = ctx.data_opt::<ResponseBudget>()
        {
            budget.spend(
                self.list
                    .items
                    .iter()
                    .map(|item| item.id.len() + item.name.len() + ITEM_OVERHEAD)
                    .sum(),
            )?;
        }
        Ok(Some(
            self.list
                .items
                .iter()
                .map(|item| Some(ShoppingListItem::from(item)))
                .collect(),
        ))
    }
}

/// The bytes an item's answer takes beside its id and name: its keys, quotes and quantity.
const ITEM_OVERHEAD: usize = 40;

impl ShoppingListObject {
    /// A subscription's message: a list as a change left it.
    fn live(list: Arc<ShoppingList>) -> Self {
        Self {
            spends_budget: false,
            ..list.into()
        }
    }
}

impl From<Arc<ShoppingList>> for ShoppingListObject {
    fn from(list: Arc<ShoppingList>) -> Self {
        Self {
            id: list.id,
            name: list.name.clone(),
            version: list.version,
            list,
            spends_budget: true,
        }
    }
}

/// An item on a list: the original's `ShoppingListItem`.
#[derive(SimpleObject)]
pub struct ShoppingListItem {
    /// A UUID.
    id: String,
    name: String,
    quantity: i32,
}

impl From<&Item> for ShoppingListItem {
    fn from(item: &Item) -> Self {
        Self {
            id: item.id.clone(),
            name: item.name.clone(),
            quantity: item.quantity,
        }
    }
}

/// One stored event of a list, with who caused it, by which action, in which request. Named
/// `ShoppingListEvent` in the schema, as clients know it; not in Rust, where that is the
/// entity's event enum.
#[derive(SimpleObject)]
#[graphql(name = "ShoppingListEvent")]
pub struct HistoryEntry {
    /// The event's type tag, e.g. `ItemAdded`.
    #[graphql(name = "type")]
    event_type: String,
    /// The event as stored.
    payload: Json<serde_json::Value>,
    /// The list's version after this event (the first event gives 1).
    version: Version,
    /// The user id of the request that caused it (the `x-user-id` header).
    created_by: String,
    /// The id of the action that caused it; the events of one action share it.
    action_id: i64,
    /// The action's type tag, e.g. `AddItem`.
    action_type: String,
    /// The `x-request-id` of the request that caused it.
    request_id: String,
    correlation_id: String,
    /// When it was stored: RFC 3339, UTC.
    inserted_at: String,
}

impl HistoryEntry {
    /// About the bytes of its answer.
    fn size(&self) -> usize {
        const KEYS: usize = 160;
        self.event_type.len()
            + self.payload.0.to_string().len()
            + self.created_by.len()
            + self.action_type.len()
            + self.request_id.len()
            + self.correlation_id.len()
            + self.inserted_at.len()
            + KEYS
    }
}

impl From<EventRecord> for HistoryEntry {
    fn from(record: EventRecord) -> Self {
        Self {
            event_type: record.event_type,
            payload: Json(record.payload),
            version: record.version,
            created_by: record.created_by,
            action_id: record.action_id,
            action_type: record.action_type,
            request_id: record.request_id,
            correlation_id: record.correlation_id,
            inserted_at: record.inserted_at,
        }
    }
}

/// The runtime, and the request's context (user, request id) that every write stores.
fn parts<'a>(ctx: &gql::Context<'a>) -> Result<(&'a Runtime, &'a Context)> {
    Ok((ctx.data::<Runtime>()?, ctx.data::<Context>()?))
}

/// The runtime, and the context a mutation calls with: the request's, keyed when the request
/// has an `Idempotency-Key`. The key is scoped to the mutation's field (its alias), so that two
/// mutations of one request are two keyed calls, and the body's hash is the request's
/// fingerprint: a retry with the same key and body returns the first result, applying nothing;
/// another body is `IDEMPOTENCY_KEY_REUSED`.
fn mutation_parts<'a>(ctx: &gql::Context<'a>) -> Result<(&'a Runtime, Context)> {
    let (runtime, call) = parts(ctx)?;
    let Some(keyed) = ctx.data_opt::<KeyedRequest>() else {
        return Ok((runtime, call.clone()));
    };
    let field = ctx.item.node.response_key().node.as_str();
    let call = call
        .clone()
        .with_idempotency_key(format!("{}:{field}", keyed.key))
        .with_request_fingerprint(keyed.fingerprint.clone());
    Ok((runtime, call))
}

type Outcome = std::result::Result<Arc<ShoppingList>, entities_runtime::Error<ShoppingListError>>;

/// The list the API answers with, or the coded error.
fn list(outcome: Outcome, call: &Context) -> Result<Option<ShoppingListObject>> {
    outcome
        .map(|list| Some(list.into()))
        .map_err(|error| api_error(error, call))
}

/// List `id` as its owner, or a user it is shared with, may read it; `FORBIDDEN` for others.
async fn readable(runtime: &Runtime, call: &Context, id: EntityId) -> Result<Arc<ShoppingList>> {
    let list = runtime
        .entity::<ShoppingList>(id)
        .get()
        .await
        .map_err(|error| api_error(error, call))?;
    if list.is_open_to(call.user_id()) {
        Ok(list)
    } else {
        Err(api_error(
            entities_runtime::Error::Rejected(ShoppingListError::Forbidden(id)),
            call,
        ))
    }
}

/// An item to add, as `addItems` takes them.
#[derive(InputObject)]
pub struct NewItem {
    name: String,
    quantity: i64,
}

/// What `moveItem` answers: both lists as the move left them.
#[derive(SimpleObject)]
pub struct MovedItem {
    from: ShoppingListObject,
    to: ShoppingListObject,
}

/// A quantity argument as the domain takes it (32 bits).
///
/// The API's `Int`s are 64-bit, like its ids (async-graphql, like the original's Absinthe,
/// accepts any 64-bit integer as `Int`), so a quantity too large for the domain is refused here,
/// with the domain's own code, rather than by the GraphQL layer in its words.
fn quantity_in_range(quantity: i64) -> Result<i32> {
    i32::try_from(quantity).map_err(|_| {
        coded(
            Code::Validation,
            format!("the quantity must be at most {}, not {quantity}", i32::MAX),
        )
    })
}

/// An item name and on how many lists an item of that name is now.
#[derive(SimpleObject)]
pub struct PopularItem {
    name: String,
    lists: i64,
}

pub struct Query;

#[Object]
impl Query {
    /// The list with this id; a `NOT_FOUND` error when there is none, `FORBIDDEN` when it is
    /// not the caller's nor shared with them.
    async fn shopping_list(
        &self,
        ctx: &gql::Context<'_>,
        id: EntityId,
    ) -> Result<Option<ShoppingListObject>> {
        let (runtime, call) = parts(ctx)?;
        Ok(Some(readable(runtime, call, id).await?.into()))
    }

    /// A page of the caller's lists and of those shared with them, by id, from the read model.
    /// `limit` is 0 to 100, `offset` 0 or more.
    #[graphql(complexity = "(limit.clamp(0, PAGE_LIMIT) as usize) * child_complexity + 1")]
    async fn shopping_lists(
        &self,
        ctx: &gql::Context<'_>,
        #[graphql(default = 20)] limit: i32,
        #[graphql(default = 0)] offset: i32,
    ) -> Result<Option<Vec<ShoppingListObject>>> {
        let (runtime, call) = parts(ctx)?;
        if !(0..=PAGE_LIMIT).contains(&limit) {
            return Err(coded(
                Code::Validation,
                format!("`limit` must be between 0 and {PAGE_LIMIT}, not {limit}"),
            ));
        }
        if offset < 0 {
            return Err(coded(
                Code::Validation,
                format!("`offset` must not be negative, not {offset}"),
            ));
        }
        let rows = read_model::lists(runtime, call.user_id(), limit.into(), offset.into())
            .await
            .map_err(|error| api_error(entities_runtime::Error::Storage(Arc::new(error)), call))?;
        let lists = futures::future::try_join_all(rows.iter().map(|row| {
            let entity = runtime.entity::<ShoppingList>(row.id);
            async move { entity.get().await }
        }))
        .await
        .map_err(|error| api_error(error, call))?;
        Ok(Some(
            lists.into_iter().map(ShoppingListObject::from).collect(),
        ))
    }

    /// The item names on the most lists, most first (ties by name): from a read model kept by a
    /// projector following the event log, so a write shows here a moment after it commits.
    /// `limit` is 1 to 100.
    async fn popular_items(
        &self,
        ctx: &gql::Context<'_>,
        #[graphql(default = 10)] limit: i32,
    ) -> Result<Vec<PopularItem>> {
        let (runtime, call) = parts(ctx)?;
        if !(1..=POPULAR_LIMIT).contains(&limit) {
            return Err(coded(
                Code::Validation,
                format!("`limit` must be between 1 and {POPULAR_LIMIT}, not {limit}"),
            ));
        }
        let top = popular_items::top(runtime, limit.into())
            .await
            .map_err(|error| api_error(entities_runtime::Error::Storage(Arc::new(error)), call))?;
        Ok(top
            .into_iter()
            .map(|item| PopularItem {
                name: item.name,
                lists: item.lists,
            })
            .collect())
    }

    /// A page of the stored events of a list, oldest first, each with the action and request
    /// that caused it: at most `limit` (1 to 500) events after version `after`; the next page
    /// is after the last one's `version`, and an empty page is the end. A `NOT_FOUND` error
    /// when there is no such list.
    async fn shopping_list_history(
        &self,
        ctx: &gql::Context<'_>,
        id: EntityId,
        #[graphql(default = 0)] after: Version,
        #[graphql(default = 100)] limit: i32,
    ) -> Result<Option<Vec<HistoryEntry>>> {
        let (runtime, call) = parts(ctx)?;
        readable(runtime, call, id).await?;
        if !(1..=HISTORY_LIMIT).contains(&limit) {
            return Err(coded(
                Code::Validation,
                format!("`limit` must be between 1 and {HISTORY_LIMIT}, not {limit}"),
            ));
        }
        if after < 0 {
            return Err(coded(
                Code::Validation,
                format!("`after` must not be negative, not {after}"),
            ));
        }
        let history = runtime
            .history_page::<ShoppingList>(id, after, limit as usize)
            .await
            .map_err(|error| api_error(error, call))?;
        let entries: Vec<HistoryEntry> = history.into_iter().map(HistoryEntry::from).collect();
        if let Some(budget) = ctx.data_opt::<ResponseBudget>() {
            budget.spend(entries.iter().map(HistoryEntry::size).sum())?;
        }
        Ok(Some(entries))
    }
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// Creates a list: version 1. Names are unique across lists (`NAME_TAKEN`) and not blank.
    async fn create_shopping_list(
        &self,
        ctx: &gql::Context<'_>,
        name: String,
    ) -> Result<Option<ShoppingListObject>> {
        let (runtime, call) = mutation_parts(ctx)?;
        list(runtime.create::<ShoppingList>(&call, name).await, &call)
    }

    /// Renames a list. The same name again changes nothing (and keeps the version).
    async fn change_shopping_list_name(
        &self,
        ctx: &gql::Context<'_>,
        shopping_list_id: EntityId,
        name: String,
    ) -> Result<Option<ShoppingListObject>> {
        let (runtime, call) = mutation_parts(ctx)?;
        let entity = runtime.entity::<ShoppingList>(shopping_list_id);
        list(entity.send_action(&call, SetName { name }).await, &call)
    }

    /// Adds an item with a new UUID; the quantity must be above 0.
    async fn add_item(
        &self,
        ctx: &gql::Context<'_>,
        shopping_list_id: EntityId,
        name: String,
        quantity: i64,
    ) -> Result<Option<ShoppingListObject>> {
        let (runtime, call) = mutation_parts(ctx)?;
        let quantity = quantity_in_range(quantity)?;
        let entity = runtime.entity::<ShoppingList>(shopping_list_id);
        list(
            entity
                .send_action(&call, AddItem::new(name, quantity))
                .await,
            &call,
        )
    }

    /// Adds several items (each with a new UUID) in one transaction: all of them, or, when one
    /// is refused (`VALIDATION`, naming the item by its index), none. At most 100 items.
    #[graphql(complexity = "items.len() + child_complexity")]
    async fn add_items(
        &self,
        ctx: &gql::Context<'_>,
        shopping_list_id: EntityId,
        items: Vec<NewItem>,
    ) -> Result<Option<ShoppingListObject>> {
        let (runtime, call) = mutation_parts(ctx)?;
        if items.len() > BATCH_LIMIT {
            return Err(coded(
                Code::Validation,
                format!("at most {BATCH_LIMIT} items at once, not {}", items.len()),
            ));
        }
        let mut actions = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let quantity = quantity_in_range(item.quantity).map_err(|mut error| {
                error.message = format!("item {index}: {}", error.message);
                error
            })?;
            actions.push(AddItem::new(item.name, quantity));
        }
        let entity = runtime.entity::<ShoppingList>(shopping_list_id);
        list(entity.send_actions(&call, actions).await, &call)
    }

    /// Moves an item (its id, name and quantity) from one list to another in one transaction,
    /// read model included: it leaves the one and joins the other, or nothing changes.
    /// `NOT_FOUND` for an unknown list or an item not on `fromListId`; `VALIDATION` when both
    /// lists are one.
    async fn move_item(
        &self,
        ctx: &gql::Context<'_>,
        from_list_id: EntityId,
        to_list_id: EntityId,
        item_id: String,
    ) -> Result<Option<MovedItem>> {
        let (runtime, call) = mutation_parts(ctx)?;
        if from_list_id == to_list_id {
            return Err(coded(
                Code::Validation,
                "`fromListId` and `toListId` must be two lists",
            ));
        }
        let (from, to) = (
            runtime.entity::<ShoppingList>(from_list_id),
            runtime.entity::<ShoppingList>(to_list_id),
        );
        let (from, to) = move_item(runtime, &call, &from, &to, &item_id)
            .await
            .map_err(|error| api_error(error, &call))?;
        Ok(Some(MovedItem {
            from: from.into(),
            to: to.into(),
        }))
    }

    /// Lets user `userId` read and change the list (not share it): for its owner only
    /// (`FORBIDDEN` for others). Sharing with the owner, or again, changes nothing.
    async fn share_shopping_list(
        &self,
        ctx: &gql::Context<'_>,
        shopping_list_id: EntityId,
        user_id: String,
    ) -> Result<Option<ShoppingListObject>> {
        let (runtime, call) = mutation_parts(ctx)?;
        let entity = runtime.entity::<ShoppingList>(shopping_list_id);
        list(
            entity.send_action(&call, ShareList { user_id }).await,
            &call,
        )
    }

    /// Removes an item; `NOT_FOUND` when it is not on the list.
    async fn remove_item(
        &self,
        ctx: &gql::Context<'_>,
        shopping_list_id: EntityId,
        item_id: String,
    ) -> Result<Option<ShoppingListObject>> {
        let (runtime, call) = mutation_parts(ctx)?;
        let entity = runtime.entity::<ShoppingList>(shopping_list_id);
        list(
            entity.send_action(&call, RemoveItem { item_id }).await,
            &call,
        )
    }

    /// Sets an item's quantity (above 0); `NOT_FOUND` when the item is not on the list.
    async fn change_item_quantity(
        &self,
        ctx: &gql::Context<'_>,
        shopping_list_id: EntityId,
        item_id: String,
        quantity: i64,
    ) -> Result<Option<ShoppingListObject>> {
        let (runtime, call) = mutation_parts(ctx)?;
        let quantity = quantity_in_range(quantity)?;
        let entity = runtime.entity::<ShoppingList>(shopping_list_id);
        let action = ChangeQuantity { item_id, quantity };
        list(entity.send_action(&call, action).await, &call)
    }
}

pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// The list as each committed change leaves it, in version order, from the change after the
    /// subscription starts: this server's writes and those of other servers on the same
    /// database. A `NOT_FOUND` error when there is no such list. A client more than 64 changes
    /// behind skips to the latest.
    async fn shopping_list_changed(
        &self,
        ctx: &gql::Context<'_>,
        id: EntityId,
    ) -> Result<impl Stream<Item = ShoppingListObject> + use<>> {
        let (runtime, call) = parts(ctx)?;
        readable(runtime, call, id).await?;
        let changes = runtime
            .entity::<ShoppingList>(id)
            .changes()
            .await
            .map_err(|error| api_error(error, call))?;
        Ok(changes.into_stream().map(ShoppingListObject::live))
    }
}
