use entities_runtime::Action;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Action, Serialize, Deserialize)]
pub struct SetName<T> {
    pub name: T,
}

fn main() {}
