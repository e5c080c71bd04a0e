use entities_runtime::entity;

#[entity(type = "list", actions(SetName), events(NameChanged))]
pub enum List {
    Empty,
    Named(String),
}

fn main() {}
