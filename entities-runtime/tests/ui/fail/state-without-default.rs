use entities_runtime::{Action, Apply, Context, EntityId, Event, Events, Handle, Version, entity};
use serde::{Deserialize, Serialize};

#[entity(type = "list", actions(SetName, Clear), events(NameChanged, Cleared))]
#[derive(Clone, Serialize, Deserialize)]
pub struct List {
    pub id: EntityId,
    pub version: Version,
    pub name: String,
}

#[derive(Debug, Clone, Action, Serialize, Deserialize)]
pub struct SetName {
    pub name: String,
}

#[derive(Debug, Clone, Action, Serialize, Deserialize)]
pub struct Clear;

#[derive(Debug, Clone, Event, Serialize, Deserialize)]
pub struct NameChanged {
    pub name: String,
}

#[derive(Debug, Clone, Event, Serialize, Deserialize)]
pub struct Cleared;

impl Handle<SetName> for List {
    fn handle(&self, _: &Context, action: &SetName) -> Events<Self> {
        Ok(vec![NameChanged { name: action.name.clone() }.into()])
    }
}

impl Handle<Clear> for List {
    fn handle(&self, _: &Context, _: &Clear) -> Events<Self> {
        Ok(vec![Cleared.into()])
    }
}

impl Apply<NameChanged> for List {
    fn apply(&mut self, event: &NameChanged) {
        self.name = event.name.clone();
    }
}

impl Apply<Cleared> for List {
    fn apply(&mut self, _: &Cleared) {
        self.name.clear();
    }
}

fn main() {}
