//! Macros of `entities`. Use them through `entities-runtime`, which re-exports them.
//!
//! Each entry point is a thin wrapper around an `expand` function on `proc_macro2` tokens, so the
//! logic can be unit-tested. The pipeline is `attr` (parse attributes) -> `ast` (the model, borrowing
//! the user's syntax for spans) -> `valid` (checks across items) -> `expand` (code generation).

mod ast;
mod attr;
mod ctxt;
mod expand;
mod valid;

use proc_macro::TokenStream;

/// Turns a state struct into an event-sourced entity; see `entities_runtime::Entity`.
#[proc_macro_attribute]
pub fn entity(args: TokenStream, input: TokenStream) -> TokenStream {
    expand::entity(args.into(), input.into()).into()
}

/// Implements `entities_runtime::Action` for a serde-serializable struct or enum.
#[proc_macro_derive(Action, attributes(action))]
pub fn derive_action(input: TokenStream) -> TokenStream {
    expand::payload(ast::PayloadKind::Action, input.into()).into()
}

/// Implements `entities_runtime::Event` for a serde-serializable struct or enum.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    expand::payload(ast::PayloadKind::Event, input.into()).into()
}
