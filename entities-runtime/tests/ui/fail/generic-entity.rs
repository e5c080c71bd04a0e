use entities_runtime::{Action, EntityId, Event, Version, entity};
use serde::{Deserialize, Serialize};

#[entity(type = "list", actions(SetName), events(NameChanged))]
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct List<T> {
    pub id: EntityId,
    pub version: Version,
    pub name: String,
    pub tag: T,
}

#[derive(Debug, Clone, Action, Serialize, Deserialize)]
pub struct SetName {
    pub name: String,
}

#[derive(Debug, Clone, Event, Serialize, Deserialize)]
pub struct NameChanged {
    pub name: String,
}

fn main() {}
