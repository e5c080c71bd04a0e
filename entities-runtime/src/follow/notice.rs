//! What runtimes say to each other on the `entities_log` channel: the payload of one
//! notification is the sender's id, then what it says.
//!
//! - `<id> <entity id> <entity id>...`: it committed events of these entities;
//! - `<id> hello`: it listens now (sent after its `LISTEN`, again after a reconnect);
//! - `<id> here <to>`: it listens, and notifies `<to>` of its commits from now on;
//! - `<id> bye`: it stops listening (at shutdown).
//!
//! Entity ids are numbers, so an older runtime that knows only the first form ignores the
//! others.

use std::collections::BTreeSet;

use crate::entity::EntityId;

/// Postgres's limit for a payload is 8000 bytes.
const MAX_PAYLOAD: usize = 7900;

/// What a notification says, besides who sent it.
#[derive(Debug, PartialEq)]
pub(super) enum Notice<'a> {
    Wrote(Vec<EntityId>),
    Hello,
    Here { to: &'a str },
    Bye,
}

impl Notice<'_> {
    /// The payload of this notice from runtime `instance`; not for [`Notice::Wrote`], which
    /// may need several (see [`wrote`]).
    pub fn payload(&self, instance: &str) -> String {
        match self {
            Notice::Hello => format!("{instance} hello"),
            Notice::Here { to } => format!("{instance} here {to}"),
            Notice::Bye => format!("{instance} bye"),
            Notice::Wrote(_) => unreachable!("written ids are sent with `wrote`"),
        }
    }
}

/// The payloads that announce `ids`, written by runtime `instance`: as few as fit.
pub(super) fn wrote(instance: &str, ids: &BTreeSet<EntityId>) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut payload = String::from(instance);
    for id in ids {
        let id = id.to_string();
        if payload.len() + 1 + id.len() > MAX_PAYLOAD {
            payloads.push(std::mem::replace(&mut payload, String::from(instance)));
        }
        payload.push(' ');
        payload.push_str(&id);
    }
    payloads.push(payload);
    payloads
}

/// The sender and the notice of a payload; `None` if it is not one of ours.
pub(super) fn parse(payload: &str) -> Option<(&str, Notice<'_>)> {
    let mut words = payload.split(' ');
    let instance = words.next()?;
    let mut rest = words.clone();
    let notice = match (rest.next(), rest.next(), rest.next()) {
        (Some("hello"), None, _) => Notice::Hello,
        (Some("bye"), None, _) => Notice::Bye,
        (Some("here"), Some(to), None) => Notice::Here { to },
        _ => Notice::Wrote(words.map(str::parse).collect::<Result<_, _>>().ok()?),
    };
    Some((instance, notice))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_ids_split_below_the_limit_and_parse_back() {
        let ids: BTreeSet<EntityId> = (1..2_000).map(|id| id * 1_000_003).collect();
        let payloads = wrote("runtime-1", &ids);
        assert!(payloads.len() > 1);
        let mut back = BTreeSet::new();
        for payload in &payloads {
            assert!(payload.len() <= MAX_PAYLOAD);
            let Some(("runtime-1", Notice::Wrote(ids))) = parse(payload) else {
                panic!("{payload}");
            };
            back.extend(ids);
        }
        assert_eq!(back, ids);
    }

    #[test]
    fn greetings_parse_back_and_strangers_are_ignored() {
        for notice in [Notice::Hello, Notice::Here { to: "b" }, Notice::Bye] {
            assert_eq!(parse(&notice.payload("a")), Some(("a", notice)));
        }
        assert_eq!(parse("a hello there"), None);
        assert_eq!(parse("a here"), None);
        assert_eq!(parse("something else"), None);
    }
}
