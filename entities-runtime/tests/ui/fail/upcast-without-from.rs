use entities_runtime::Event;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Event, Serialize, Deserialize)]
#[event(version = 2, upcast(1 = NameChangedV1))]
pub struct NameChanged {
    pub name: String,
}

/// The old shape, with no `From` into the new one.
#[derive(Deserialize)]
pub struct NameChangedV1 {
    pub title: String,
}

fn main() {}
