use entities_runtime::Event;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Event, Serialize, Deserialize)]
#[event(version = 2, upcast(1 = NameChangedV1, 2 = NameChangedV2))]
pub struct NameChanged {
    pub name: String,
}

#[derive(Deserialize)]
pub struct NameChangedV1 {
    pub title: String,
}

#[derive(Deserialize)]
pub struct NameChangedV2 {
    pub label: String,
}

impl From<NameChangedV1> for NameChanged {
    fn from(old: NameChangedV1) -> Self {
        Self { name: old.title }
    }
}

impl From<NameChangedV2> for NameChanged {
    fn from(old: NameChangedV2) -> Self {
        Self { name: old.label }
    }
}

fn main() {}
