use entities_runtime::entity;
use serde::{Deserialize, Serialize};

#[entity(type = "list", actions(SetName), events(NameChanged))]
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct List;

fn main() {}
