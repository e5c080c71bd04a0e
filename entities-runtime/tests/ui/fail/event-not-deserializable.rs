use entities_runtime::Event;
use serde::Serialize;

#[derive(Debug, Clone, Event, Serialize)]
pub enum NameChanged {
    Cleared,
    To(String),
}

fn main() {}
