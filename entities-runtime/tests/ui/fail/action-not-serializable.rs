use entities_runtime::Action;
use serde::Deserialize;

#[derive(Action, Deserialize)]
pub struct SetName {
    pub name: String,
}

fn main() {}
