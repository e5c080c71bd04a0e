//! The test kit without a database: given events, when an action, then its events or its
//! refusal; and a failed expectation fails the test, saying what happened instead.

mod support;

use entities_runtime::Context;
use entities_runtime::testing::given;
use support::*;

fn opened() -> CounterEvent {
    Opened { name: "c".into() }.into()
}

#[test]
fn given_events_are_applied_in_order_with_versions() {
    let scenario = given::<Counter>([
        opened(),
        Added { amount: 2 }.into(),
        Added { amount: 3 }.into(),
    ])
    .with_id(7);
    let state = scenario.state();
    assert_eq!((state.id, state.version, state.total), (7, 3, 5));
    assert_eq!(state.adds, [2, 3]);
}

#[test]
fn then_returns_the_state_after_the_decided_events() {
    let after = given::<Counter>([opened()])
        .when(AddTwice { amount: 4 })
        .then([Added { amount: 4 }.into(), Added { amount: 4 }.into()]);
    assert_eq!((after.version, after.total), (3, 8));
}

#[test]
fn then_refused_checks_the_refusal() {
    given::<Counter>([opened()])
        .when(Add { amount: -1 })
        .then_refused(CounterError::NotPositive(-1));
}

#[test]
fn the_context_reaches_the_handler_and_create_makes_the_first_action() {
    let created = given::<Counter>([])
        .with_context(Context::new("someone"))
        .when_created("named".into())
        .then([Opened {
            name: "named".into(),
        }
        .into()]);
    assert_eq!((created.name.as_str(), created.version), ("named", 1));
    given::<Counter>([])
        .when_created(CREATE_NOTHING.into())
        .then([]);
}

#[test]
#[should_panic(expected = "the events `Add` decided")]
fn other_events_than_expected_fail() {
    given::<Counter>([opened()])
        .when(Add { amount: 1 })
        .then([Added { amount: 2 }.into()]);
}

#[test]
#[should_panic(expected = "`Add` was refused (NotPositive(0)); expected the events")]
fn a_refusal_where_events_were_expected_fails() {
    given::<Counter>([opened()])
        .when(Add { amount: 0 })
        .then([Added { amount: 0 }.into()]);
}

#[test]
#[should_panic(expected = "`Add` decided [Added(Added { amount: 1 })]; expected it refused")]
fn events_where_a_refusal_was_expected_fail() {
    given::<Counter>([opened()])
        .when(Add { amount: 1 })
        .then_refused(CounterError::NotPositive(1));
}

#[test]
#[should_panic(expected = "why `Rename` was refused")]
fn another_refusal_than_expected_fails() {
    given::<Counter>([opened()])
        .when(Rename { name: "c".into() })
        .then_refused(CounterError::BlankName);
}

#[test]
fn result_and_then_state_give_what_was_decided() {
    let decided = given::<Counter>([opened()]).when(Note).result().unwrap();
    assert_eq!(decided, [CounterEvent::from(Noted)]);
    let state = given::<Counter>([opened()]).when(Note).then_state();
    assert_eq!((state.notes, state.version), (1, 2));
}

#[test]
fn a_refusal_of_create_itself_is_checked_like_a_handler_s() {
    given::<Counter>([])
        .when_created(REFUSED_BY_CREATE.into())
        .then_refused(CounterError::SameName(REFUSED_BY_CREATE.into()));
}
