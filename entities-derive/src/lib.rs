//! Macros of `entities`. Use them through `entities-runtime`, which re-exports them.
use proc_macro::TokenStream;

#[proc_macro_attribute]
pub fn entity(_args: TokenStream, input: TokenStream) -> TokenStream {
    input
}

#[proc_macro_derive(Action, attributes(action))]
pub fn derive_action(_input: TokenStream) -> TokenStream {
    TokenStream::new()
}

#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(_input: TokenStream) -> TokenStream {
    TokenStream::new()
}
