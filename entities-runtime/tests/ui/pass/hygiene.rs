//! The generated code names everything by absolute path: it compiles, without a warning, in a
//! module that shadows the prelude's names.

#![deny(warnings)]

mod shadowed {
    #![allow(dead_code, reason = "these only shadow the prelude's names")]

    use entities_runtime::{
        Action, Apply, Change, Context, Entity, EntityId, Event, Handle, Project, Projected,
        Rejected, Tagged, Tx, Version, entity,
    };
    use serde::{Deserialize, Serialize};

    pub struct Result;
    pub struct Ok;
    pub struct Err;
    pub struct Option;
    pub struct Some;
    pub struct None;
    pub struct String;
    pub struct Vec;
    pub struct Box;
    pub struct ToOwned;
    pub trait From {}
    pub trait Default {}
    pub trait Send {}
    pub trait Future {}
    // Not `str`, `bool` or `usize`: serde's derives name those primitives unqualified (ours use
    // `::core::primitive::...`).
    pub mod core {}
    pub mod std {}
    pub mod serde_json {}

    #[entity(
        type = "list",
        actions(SetName, Clear),
        events(NameChanged, Cleared),
    )]
    #[derive(Clone, Default, Serialize, Deserialize)]
    pub struct List {
        pub id: EntityId,
        pub version: Version,
        pub name: ::std::string::String,
    }

    #[derive(Debug, Clone, Action, Serialize, Deserialize)]
    #[action(rename = "set_name", alias = "SetName")]
    pub struct SetName {
        pub name: ::std::string::String,
    }

    #[derive(Debug, Clone, Action, Serialize, Deserialize)]
    pub enum Clear {
        Now,
    }

    #[derive(Debug, Clone, Event, Serialize, Deserialize)]
    #[event(alias = "NameSet")]
    pub struct NameChanged {
        pub name: ::std::string::String,
    }

    #[derive(Debug, Clone, Event, Serialize, Deserialize)]
    pub struct Cleared;

    impl Handle<SetName> for List {
        fn handle(
            &self,
            _: &Context,
            action: &SetName,
        ) -> ::core::result::Result<::std::vec::Vec<ListEvent>, Rejected> {
            ::core::result::Result::Ok(::std::vec![
                NameChanged {
                    name: action.name.clone()
                }
                .into()
            ])
        }
    }

    impl Handle<Clear> for List {
        fn handle(
            &self,
            _: &Context,
            _: &Clear,
        ) -> ::core::result::Result<::std::vec::Vec<ListEvent>, Rejected> {
            ::core::result::Result::Ok(::std::vec![Cleared.into()])
        }
    }

    impl Apply<NameChanged> for List {
        fn apply(&mut self, event: &NameChanged) {
            self.name = event.name.clone();
        }
    }

    impl Apply<Cleared> for List {
        fn apply(&mut self, _: &Cleared) {
            self.name.clear();
        }
    }

    impl Project<NameChanged> for List {
        async fn project(_: &mut Tx<'_>, _: Change<'_, Self, NameChanged>) -> Projected<Self> {
            ::core::result::Result::Ok(())
        }
    }

    pub fn exercise() {
        let ctx = Context::new("hygiene");
        let mut list = <List as Entity>::new(1);
        let action = ListAction::from(SetName { name: "x".into() });
        let payload = action.encode().expect("encodes");
        let action = ListAction::decode(action.type_tag(), 1, &payload).expect("decodes");
        for event in <List as Entity>::handle_action(&list, &ctx, &action).expect("handled") {
            assert!(<List as Entity>::is_projected(&event));
            <List as Entity>::apply_event(&mut list, &event);
        }
        let _ = ListAction::Clear(Clear::Now);
        let _ = ListEvent::decode("Cleared", 1, "null").expect("decodes");
        let version = <List as Entity>::version(&list) + <List as Entity>::id(&list);
        ::entities_runtime::__private::SetVersion::set_version(&mut list, version);
        assert_eq!(list.name, "x");
    }
}

fn main() {
    shadowed::exercise();
}
