use entities_runtime::{Action, Apply, Context, EntityId, Event, Events, Handle, Runtime, Version, entity};
use serde::{Deserialize, Serialize};

#[entity(type = "list", actions(SetName), events(NameChanged))]
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct List {
    pub id: EntityId,
    pub version: Version,
    pub name: String,
}

#[derive(Debug, Clone, Action, Serialize, Deserialize)]
pub struct SetName {
    pub name: String,
}

/// An action, but not one of `List`'s.
#[derive(Debug, Clone, Action, Serialize, Deserialize)]
pub struct Archive;

#[derive(Debug, Clone, Event, Serialize, Deserialize)]
pub struct NameChanged {
    pub name: String,
}

impl Handle<SetName> for List {
    fn handle(&self, _: &Context, action: &SetName) -> Events<Self> {
        Ok(vec![NameChanged { name: action.name.clone() }.into()])
    }
}

impl Apply<NameChanged> for List {
    fn apply(&mut self, event: &NameChanged) {
        self.name = event.name.clone();
    }
}

async fn archive(runtime: &Runtime, ctx: &Context) {
    let list = runtime.entity::<List>(1);
    let _ = list.send_action(ctx, Archive).await;
}

fn main() {
    let _ = archive;
}
