use entities_runtime::{Action, Apply, Context, Event, Handle, Rejected, Version, entity};
use serde::{Deserialize, Serialize};

/// Not `entities_runtime::EntityId`: the generated code checks the real type.
type EntityId = u32;

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

#[derive(Debug, Clone, Event, Serialize, Deserialize)]
pub struct NameChanged {
    pub name: String,
}

impl Handle<SetName> for List {
    fn handle(&self, _: &Context, action: &SetName) -> Result<Vec<ListEvent>, Rejected> {
        Ok(vec![NameChanged { name: action.name.clone() }.into()])
    }
}

impl Apply<NameChanged> for List {
    fn apply(&mut self, event: &NameChanged) {
        self.name = event.name.clone();
    }
}

fn main() {}
