use entities_runtime::Action;
use serde::{Deserialize, Serialize};

#[derive(Action, Serialize, Deserialize)]
pub struct SetName<T> {
    pub name: T,
}

fn main() {}
