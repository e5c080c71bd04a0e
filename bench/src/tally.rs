//! W5's entity: the smallest state there is beside its id and version.

use entities_runtime::{
    Action, Apply, Context, EntityId, Event, Handle, Rejected, Version, entity,
};
use serde::{Deserialize, Serialize};

#[entity(type = "tally", actions(Bump), events(Bumped))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tally {
    pub id: EntityId,
    pub version: Version,
    pub n: i64,
}

#[derive(Action, Serialize, Deserialize)]
pub struct Bump;

#[derive(Event, Serialize, Deserialize)]
pub struct Bumped;

impl Handle<Bump> for Tally {
    fn handle(&self, _: &Context, _: &Bump) -> Result<Vec<TallyEvent>, Rejected> {
        Ok(vec![Bumped.into()])
    }
}

impl Apply<Bumped> for Tally {
    fn apply(&mut self, _: &Bumped) {
        self.n += 1;
    }
}
