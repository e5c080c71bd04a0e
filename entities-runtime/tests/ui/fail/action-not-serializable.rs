use entities_runtime::Action;
use serde::Deserialize;

#[derive(Debug, Clone, Action, Deserialize)]
pub struct SetName {
    pub name: String,
}

fn main() {}
