//! W5's entity: the smallest state there is beside its id and version.

use entities_runtime::{Action, Apply, Context, EntityId, Event, Events, Handle, Version, entity};
use serde::{Deserialize, Serialize};

#[entity(type = "tally", actions(Bump), events(Bumped))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tally {
    pub id: EntityId,
    pub version: Version,
    pub n: i64,
}

#[derive(Debug, Clone, Action, Serialize, Deserialize)]
pub struct Bump;

#[derive(Debug, Clone, Event, Serialize, Deserialize)]
pub struct Bumped;

impl Handle<Bump> for Tally {
    fn handle(&self, _: &Context, _: &Bump) -> Events<Self> {
        Ok(vec![Bumped.into()])
    }
}

impl Apply<Bumped> for Tally {
    fn apply(&mut self, _: &Bumped) {
        self.n += 1;
    }
}
