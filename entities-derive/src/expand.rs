//! Code generation. Every generated path is absolute (`::core::...`, `#krate::__private::...`),
//! impls sit inside `const _: () = { ... };`, and generated locals start with `__entities_`.
//! Code that can fail because of something the user listed is spanned on what they listed, so
//! rustc's error (often a trait's `on_unimplemented` message) points there.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Item};

use crate::ast::{Entity, Member, Payload, PayloadKind};
use crate::ctxt::Errors;
use crate::{attr, valid};

/// `#[entity(...)]`: the struct unchanged, then the enums and impls. On a user error: the
/// struct, the errors, and stubs of the enums and impls so the user's own code that names them
/// (`impl Handle<...>`, `ShoppingListEvent`) does not add errors of its own.
pub fn entity(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = attr::entity_args(args, &mut errors);
    let item = match syn::parse2::<Item>(input.clone()) {
        Ok(Item::Struct(item)) => item,
        Ok(other) => {
            not_a_struct(&other, &mut errors);
            let errors = errors.to_compile_errors();
            return quote!(#input #errors);
        }
        Err(error) => {
            errors.push(error);
            let errors = errors.to_compile_errors();
            return quote!(#input #errors);
        }
    };
    let mut model = Entity::from_syn(&args, &item, &mut errors);
    valid::entity(&mut model, &mut errors);
    if errors.is_empty() {
        let generated = entity_code(&model, Mode::Full);
        return quote!(#item #generated);
    }
    let errors = errors.to_compile_errors();
    let stubs = if item.generics.params.is_empty() {
        entity_code(&model, Mode::Stub)
    } else {
        TokenStream::new()
    };
    quote!(#item #errors #stubs)
}

fn not_a_struct(item: &Item, errors: &mut Errors) {
    const FIX: &str = "put it on the entity's state struct, \
        `struct Name { pub id: EntityId, pub version: Version, ... }`, and list the actions and \
        events (structs or enums of their own) in `actions(...)` and `events(...)`";
    match item {
        Item::Enum(item) => errors.spanned(
            item.enum_token,
            format!("`#[entity]` does not go on an enum; {FIX}"),
        ),
        Item::Union(item) => errors.spanned(
            item.union_token,
            format!("`#[entity]` does not go on a union; {FIX}"),
        ),
        _ => errors.push(syn::Error::new(
            Span::call_site(),
            format!("`#[entity]` goes on a struct; {FIX}"),
        )),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Everything, for a valid input.
    Full,
    /// The enums and trait impls with placeholder bodies, next to the errors of an invalid input.
    Stub,
}

fn entity_code(entity: &Entity, mode: Mode) -> TokenStream {
    let enums = [PayloadKind::Action, PayloadKind::Event].map(|kind| enum_def(entity, kind));
    let froms = [PayloadKind::Action, PayloadKind::Event].map(|kind| from_impls(entity, kind));
    let tagged =
        [PayloadKind::Action, PayloadKind::Event].map(|kind| tagged_impl(entity, kind, mode));
    let entity_impl = match mode {
        Mode::Full => entity_impl(entity),
        Mode::Stub => entity_stub(entity),
    };
    let (ops, checks) = match mode {
        Mode::Full => (
            [PayloadKind::Action, PayloadKind::Event].map(|kind| ops_consts(entity, kind)),
            checks(entity),
        ),
        Mode::Stub => Default::default(),
    };
    quote! {
        #(#enums)*
        const _: () = {
            #(#froms)*
            #(#ops)*
            #(#tagged)*
            #entity_impl
            #checks
        };
    }
}

fn enum_def(entity: &Entity, kind: PayloadKind) -> TokenStream {
    let vis = &entity.item.vis;
    let name = entity.enum_ident(kind);
    let doc = format!(
        " The {}s of [`{}`]: one variant per struct listed in `#[entity({}(...))]`.",
        kind.word(),
        entity.item.ident,
        kind.key(),
    );
    let variants = entity.members(kind).iter().map(|Member { path, variant }| {
        let doc = format!(" `{}`", attr::path_string(path));
        quote!(#[doc = #doc] #variant(#path),)
    });
    let derives = entity.derives;
    quote! {
        #[doc = #doc]
        #[derive(::core::fmt::Debug, ::core::clone::Clone, #(#derives),*)]
        #[allow(
            clippy::large_enum_variant,
            reason = "the variants are the user's own structs; boxing them is the user's call"
        )]
        #vis enum #name {
            #(#variants)*
        }
    }
}

fn from_impls(entity: &Entity, kind: PayloadKind) -> TokenStream {
    let name = entity.enum_ident(kind);
    let impls = entity.members(kind).iter().map(|Member { path, variant }| {
        quote! {
            #[automatically_derived]
            impl ::core::convert::From<#path> for #name {
                fn from(__entities_value: #path) -> Self {
                    Self::#variant(__entities_value)
                }
            }
        }
    });
    quote!(#(#impls)*)
}

/// The constant holding what the generated code uses of the `i`th listed action or event.
fn ops_ident(kind: PayloadKind, i: usize) -> syn::Ident {
    format_ident!("__ENTITIES_{}_{}", kind.word().to_uppercase(), i)
}

/// One constant per listed action (`__private::action::<Entity, A>()`) and event, spanned on
/// the listed path. Every other use of the type goes through its constant, so a type that is
/// not an action, or that the entity has no handler for, is one error there.
fn ops_consts(entity: &Entity, kind: PayloadKind) -> TokenStream {
    let krate = &entity.krate;
    let ident = &entity.item.ident;
    let (ops_type, ops_fn) = match kind {
        PayloadKind::Action => (quote!(ActionOps), quote!(action)),
        PayloadKind::Event => (quote!(EventOps), quote!(event)),
    };
    let consts = entity.members(kind).iter().enumerate().map(|(i, member)| {
        let path = member.path;
        let name = ops_ident(kind, i);
        // The entity's name too is spanned on the listed path: rustc points an unmet
        // `Entity: Handle<A>` bound at the type argument, which should be the `A` the user wrote.
        let mut ident = ident.clone();
        ident.set_span(path.span());
        quote_spanned! {path.span()=>
            const #name: #krate::__private::#ops_type<#ident, #path> =
                #krate::__private::#ops_fn::<#ident, #path>();
        }
    });
    quote!(#(#consts)*)
}

fn tagged_impl(entity: &Entity, kind: PayloadKind, mode: Mode) -> TokenStream {
    let krate = &entity.krate;
    let name = entity.enum_ident(kind);
    let str_ = quote!(::core::primitive::str);
    let result = quote!(::core::result::Result);
    if mode == Mode::Stub {
        return quote! {
            #[automatically_derived]
            impl #krate::__private::Tagged for #name {
                fn type_tag(&self) -> &'static #str_ {
                    ::core::unimplemented!()
                }
                fn encode(&self) -> #result<::std::string::String, #krate::__private::serde_json::Error> {
                    ::core::unimplemented!()
                }
                fn payload_version(&self) -> #krate::__private::PayloadVersion {
                    ::core::unimplemented!()
                }
                fn decode(
                    _: &#str_,
                    _: #krate::__private::PayloadVersion,
                    _: &#str_,
                ) -> #result<Self, #krate::__private::DecodeError> {
                    ::core::unimplemented!()
                }
            }
        };
    }
    let members = entity.members(kind);
    let variants: Vec<_> = members.iter().map(|member| member.variant).collect();
    let ops: Vec<_> = (0..members.len()).map(|i| ops_ident(kind, i)).collect();
    let tags = format_ident!("__ENTITIES_{}_TAGS", kind.word().to_uppercase());
    let len = format_ident!("__ENTITIES_{}_KNOWN_LEN", kind.word().to_uppercase());
    let bytes = format_ident!("__ENTITIES_{}_KNOWN_BYTES", kind.word().to_uppercase());
    let known = format_ident!("__ENTITIES_{}_KNOWN", kind.word().to_uppercase());
    // `known` of `DecodeError::UnknownType` is a `&'static str`: the tags joined in constants,
    // so it shows the stored tags (renames included) without allocating.
    quote! {
        const #tags: &[&#str_] = &[#(#ops.payload.tag),*];
        const #len: ::core::primitive::usize = #krate::__private::joined_len(#tags);
        const #bytes: [::core::primitive::u8; #len] = #krate::__private::join_tags(#tags);
        const #known: &#str_ = #krate::__private::joined_str(&#bytes);

        #[automatically_derived]
        impl #krate::__private::Tagged for #name {
            fn type_tag(&self) -> &'static #str_ {
                match self {
                    #(Self::#variants(_) => #ops.payload.tag,)*
                }
            }

            fn payload_version(&self) -> #krate::__private::PayloadVersion {
                match self {
                    #(Self::#variants(_) => #ops.payload.version,)*
                }
            }

            fn encode(&self) -> #result<::std::string::String, #krate::__private::serde_json::Error> {
                match self {
                    #(Self::#variants(__entities_value) => (#ops.payload.encode)(__entities_value),)*
                }
            }

            fn decode(
                __entities_tag: &#str_,
                __entities_version: #krate::__private::PayloadVersion,
                __entities_payload: &#str_,
            ) -> #result<Self, #krate::__private::DecodeError> {
                #(
                    if let ::core::option::Option::Some(__entities_decoded) =
                        #ops.payload.decode_tagged(
                            __entities_tag,
                            __entities_version,
                            __entities_payload,
                        )
                    {
                        return #result::map(__entities_decoded, Self::#variants);
                    }
                )*
                #result::Err(#krate::__private::DecodeError::UnknownType {
                    type_tag: ::std::borrow::ToOwned::to_owned(__entities_tag),
                    known: #known,
                })
            }
        }
    }
}

fn entity_impl(entity: &Entity) -> TokenStream {
    let krate = &entity.krate;
    let p = quote!(#krate::__private);
    let ident = &entity.item.ident;
    let action_enum = entity.enum_ident(PayloadKind::Action);
    let event_enum = entity.enum_ident(PayloadKind::Event);
    let type_tag = entity.type_tag;
    let error = error_type(entity);
    let result = quote!(::core::result::Result);
    let (Some(id), Some(version)) = (entity.id, entity.version) else {
        unreachable!("a missing `id` or `version` is an error, and errors get stubs");
    };
    // The accessors convert through `I64Field` spanned on the field's type: a field of another
    // type is one error there (rustc merges the identical ones), not a mismatch per accessor.
    let id_ty = &id.ty;
    let version_ty = &version.ty;
    let id_conv = quote_spanned!(id.ty.span()=> <#id_ty as #p::I64Field>);
    let version_conv = quote_spanned!(version.ty.span()=> <#version_ty as #p::I64Field>);
    // Spanned on the struct's name: a state without `Default` is this one error, there.
    let rest = entity.has_other_fields.then(|| {
        let default = quote_spanned!(ident.span()=> <Self as #p::DefaultState>::default_state());
        quote!(..#default)
    });

    let handle_arms = entity.actions.iter().enumerate().map(|(i, member)| {
        let (variant, ops) = (member.variant, ops_ident(PayloadKind::Action, i));
        quote! {
            #action_enum::#variant(__entities_action) =>
                (#ops.handle)(self, __entities_ctx, __entities_action),
        }
    });
    let apply_arms = entity.events.iter().enumerate().map(|(i, member)| {
        let (variant, ops) = (member.variant, ops_ident(PayloadKind::Event, i));
        quote! {
            #event_enum::#variant(__entities_event) => (#ops.apply)(self, __entities_event),
        }
    });
    // Each event is projected when the entity has an `impl Project` for it: found by
    // `ProjectProbe` (see its doc), for every listed event.
    let probes: Vec<_> = entity
        .events
        .iter()
        .map(|Member { path, .. }| quote!((&&#p::ProjectProbe::<Self, #path>::NEW)))
        .collect();
    let variants: Vec<_> = entity.events.iter().map(|member| member.variant).collect();
    let is_projected = quote! {
        fn is_projected(__entities_event: &#event_enum) -> ::core::primitive::bool {
            use #p::{ProjectsEvent as _, SkipsEvent as _};
            match __entities_event {
                #(#event_enum::#variants(_) => #probes.is_projected(),)*
            }
        }
    };
    let project = quote! {
        fn project_event(
            __entities_tx: &mut #p::Tx<'_>,
            __entities_ctx: &#p::Context,
            __entities_before: &Self,
            __entities_event: &#event_enum,
            __entities_after: &Self,
        ) -> impl #p::Future<Output = #result<(), #p::ProjectionError<#error>>>
               + ::core::marker::Send {
            use #p::{ProjectsEvent as _, SkipsEvent as _};
            async move {
                match __entities_event {
                    #(
                        #event_enum::#variants(__entities_event) => {
                            #probes
                                .project(
                                    __entities_tx,
                                    #p::Change {
                                        ctx: __entities_ctx,
                                        before: __entities_before,
                                        event: __entities_event,
                                        after: __entities_after,
                                    },
                                )
                                .await
                        }
                    )*
                }
            }
        }
    };

    // Each run of one event type goes to its `Project::project_all` (found as above).
    let project_events = quote! {
        fn project_events(
            __entities_tx: &mut #p::Tx<'_>,
            __entities_changes: &[#p::Change<'_, Self, #event_enum>],
        ) -> impl #p::Future<Output = #result<(), #p::ProjectionError<#error>>>
               + ::core::marker::Send {
            use #p::{ProjectsEvent as _, SkipsEvent as _};
            async move {
                let mut __entities_rest = __entities_changes;
                while let ::core::option::Option::Some(__entities_first) = __entities_rest.first() {
                    let __entities_taken = match __entities_first.event {
                        #(
                            #event_enum::#variants(_) => {
                                let __entities_run: ::std::vec::Vec<_> = __entities_rest
                                    .iter()
                                    .map_while(|__entities_change| match __entities_change.event {
                                        #event_enum::#variants(__entities_event) => {
                                            ::core::option::Option::Some(#p::Change {
                                                ctx: __entities_change.ctx,
                                                before: __entities_change.before,
                                                event: __entities_event,
                                                after: __entities_change.after,
                                            })
                                        }
                                        #[allow(unreachable_patterns)]
                                        _ => ::core::option::Option::None,
                                    })
                                    .collect();
                                #probes.project_all(__entities_tx, &__entities_run).await?;
                                __entities_run.len()
                            }
                        )*
                    };
                    __entities_rest = &__entities_rest[__entities_taken..];
                }
                #result::Ok(())
            }
        }
    };

    let shape = shape(entity);
    quote! {
        #[automatically_derived]
        impl #p::Entity for #ident {
            const TYPE: &'static ::core::primitive::str = #type_tag;
            const SHAPE: &'static ::core::primitive::str = #shape;
            type Action = #action_enum;
            type Event = #event_enum;
            type Error = #error;

            fn new(__entities_id: #p::EntityId) -> Self {
                Self {
                    id: #id_conv::from_i64(__entities_id),
                    version: #version_conv::from_i64(0),
                    #rest
                }
            }

            fn id(&self) -> #p::EntityId {
                #id_conv::to_i64(self.id)
            }

            fn version(&self) -> #p::Version {
                #version_conv::to_i64(self.version)
            }

            fn handle_action(
                &self,
                __entities_ctx: &#p::Context,
                __entities_action: &#action_enum,
            ) -> #result<::std::vec::Vec<#event_enum>, #error> {
                match __entities_action {
                    #(#handle_arms)*
                }
            }

            fn apply_event(&mut self, __entities_event: &#event_enum) {
                match __entities_event {
                    #(#apply_arms)*
                }
            }

            #is_projected

            #project

            #project_events
        }

        #[automatically_derived]
        impl #p::SetVersion for #ident {
            fn set_version(&mut self, __entities_version: #p::Version) {
                self.version = #version_conv::from_i64(__entities_version);
            }
        }
    }
}

/// The fingerprint of the state's stored shape (see `Entity::SHAPE`): FNV-1a of its serde
/// attributes, each field's attributes, name and type, and `snapshot_version`, in hex. Doc
/// comments are left out: they change no JSON.
fn shape(entity: &Entity) -> String {
    use quote::ToTokens;
    let stored = |attr: &&syn::Attribute| !attr.path().is_ident("doc");
    let mut text = format!("v{};", entity.snapshot_version);
    for attr in entity
        .item
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("serde"))
    {
        text += &attr.to_token_stream().to_string();
    }
    for field in &entity.item.fields {
        for attr in field.attrs.iter().filter(stored) {
            text += &attr.to_token_stream().to_string();
        }
        let name = field
            .ident
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        text += &format!("{name}:{};", field.ty.to_token_stream());
    }
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// `error = ...`, or the runtime's `Rejected`.
fn error_type(entity: &Entity) -> TokenStream {
    let krate = &entity.krate;
    match entity.error {
        Some(error) => quote!(#error),
        None => quote!(#krate::__private::Rejected),
    }
}

/// `impl Entity` with placeholder bodies: only there so that the user's code naming the entity
/// compiles while the real errors are fixed.
fn entity_stub(entity: &Entity) -> TokenStream {
    let krate = &entity.krate;
    let p = quote!(#krate::__private);
    let ident = &entity.item.ident;
    let action_enum = entity.enum_ident(PayloadKind::Action);
    let event_enum = entity.enum_ident(PayloadKind::Event);
    let error = error_type(entity);
    let result = quote!(::core::result::Result);
    quote! {
        #[automatically_derived]
        impl #p::Entity for #ident {
            const TYPE: &'static ::core::primitive::str = "";
            const SHAPE: &'static ::core::primitive::str = "";
            type Action = #action_enum;
            type Event = #event_enum;
            type Error = #error;

            fn new(_: #p::EntityId) -> Self {
                ::core::unimplemented!()
            }
            fn id(&self) -> #p::EntityId {
                ::core::unimplemented!()
            }
            fn version(&self) -> #p::Version {
                ::core::unimplemented!()
            }
            fn handle_action(
                &self,
                _: &#p::Context,
                _: &#action_enum,
            ) -> #result<::std::vec::Vec<#event_enum>, #error> {
                ::core::unimplemented!()
            }
            fn apply_event(&mut self, _: &#event_enum) {}
            fn is_projected(_: &#event_enum) -> ::core::primitive::bool {
                false
            }
            fn project_event(
                _: &mut #p::Tx<'_>,
                _: &#p::Context,
                _: &Self,
                _: &#event_enum,
                _: &Self,
            ) -> impl #p::Future<Output = #result<(), #p::ProjectionError<#error>>>
                   + ::core::marker::Send {
                ::core::future::ready(#result::Ok(()))
            }
            fn project_events(
                _: &mut #p::Tx<'_>,
                _: &[#p::Change<'_, Self, #event_enum>],
            ) -> impl #p::Future<Output = #result<(), #p::ProjectionError<#error>>>
                   + ::core::marker::Send {
                ::core::future::ready(#result::Ok(()))
            }
        }

        #[automatically_derived]
        impl #p::SetVersion for #ident {
            fn set_version(&mut self, _: #p::Version) {}
        }
    }
}

/// Compile-time checks that no two listed actions (or events) share a type tag or alias, each
/// spanned on the later of the two in the list.
fn checks(entity: &Entity) -> TokenStream {
    let krate = &entity.krate;
    let mut out = TokenStream::new();
    for kind in [PayloadKind::Action, PayloadKind::Event] {
        let members = entity.members(kind);
        for (i, later) in members.iter().enumerate() {
            let path = later.path;
            let later_ops = ops_ident(kind, i);
            for (j, earlier) in members[..i].iter().enumerate() {
                let earlier_ops = ops_ident(kind, j);
                let message = format!(
                    "duplicate {word} type tag: `{a}` and `{b}` are stored under the same tag; \
                     give one of them `#[{word}(rename = \"...\")]`, or remove the `alias` they share",
                    word = kind.word(),
                    a = attr::path_string(earlier.path),
                    b = attr::path_string(path),
                )
                .replace('{', "{{")
                .replace('}', "}}");
                out.extend(quote_spanned! {path.span()=>
                    const _: () = ::core::assert!(
                        !#krate::__private::tags_overlap(
                            #earlier_ops.payload.tag,
                            #earlier_ops.payload.aliases,
                            #later_ops.payload.tag,
                            #later_ops.payload.aliases,
                        ),
                        #message,
                    );
                });
            }
        }
    }
    out
}

/// `#[derive(Action)]` / `#[derive(Event)]`. On a user error: the errors, plus the impl (with
/// the struct's name as its tag) where one can be written, so entities listing the type do not
/// add errors of their own.
pub fn payload(kind: PayloadKind, input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(error) => return error.to_compile_error(),
    };
    let mut errors = Errors::default();
    let payload = Payload::from_syn(kind, &input, &mut errors);
    valid::payload(&payload, &mut errors);
    let stubbable = input.generics.params.is_empty() && !matches!(input.data, syn::Data::Union(_));
    let errors = errors.to_compile_errors();
    let imp = stubbable.then(|| payload_impl(&payload));
    quote!(#errors #imp)
}

fn payload_impl(payload: &Payload) -> TokenStream {
    let krate = &payload.krate;
    let trait_ = format_ident!("{}", payload.kind.trait_name());
    // The impl's self type keeps the user's span: a type without `Serialize`/`Deserialize`
    // gets rustc's unmet-supertrait error once, on its name.
    let ident = &payload.input.ident;
    let tag = payload.tag();
    let aliases = (!payload.attrs.aliases.is_empty()).then(|| {
        let aliases = &payload.attrs.aliases;
        quote!(const ALIASES: &'static [&'static ::core::primitive::str] = &[#(#aliases),*];)
    });
    let version = payload.attrs.version.as_ref().map(|(_, version)| {
        let version = *version as i32;
        quote!(const VERSION: #krate::__private::PayloadVersion = #version;)
    });
    let upcasts = (!payload.attrs.upcasts.is_empty()).then(|| {
        let entries = payload.attrs.upcasts.iter().map(|upcast| {
            let (version, from) = (&upcast.version, &upcast.from);
            // Spanned on the old shape: one without `Deserialize`, or that the event does not
            // convert from, is an error there.
            quote_spanned! {from.span()=>
                (#version, #krate::__private::upcast::<#from, Self>)
            }
        });
        quote! {
            const UPCASTS: &'static [#krate::__private::Upcast<Self>] = &[#(#entries),*];
        }
    });
    quote! {
        const _: () = {
            #[automatically_derived]
            impl #krate::__private::#trait_ for #ident {
                const TYPE: &'static ::core::primitive::str = #tag;
                #aliases
                #version
                #upcasts
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity_str(args: TokenStream, input: TokenStream) -> String {
        entity(args, input).to_string()
    }

    #[test]
    fn valid_entity_expands_without_errors() {
        let out = entity_str(
            quote!(type = "list", actions(SetName), events(NameChanged), derive(PartialEq)),
            quote!(
                pub struct List {
                    pub id: EntityId,
                    pub version: Version,
                    pub name: String,
                }
            ),
        );
        assert!(!out.contains("compile_error"), "{out}");
        assert!(out.contains("pub enum ListAction"), "{out}");
        assert!(out.contains("pub enum ListEvent"), "{out}");
        assert!(out.contains("action :: < List , SetName >"), "{out}");
        assert!(out.contains("Clone , PartialEq"), "{out}");
    }

    #[test]
    fn unknown_key_names_the_valid_ones() {
        let out = entity_str(
            quote!(typ = "list", actions(A), events(E)),
            quote!(
                struct List {
                    id: EntityId,
                    version: Version,
                }
            ),
        );
        assert!(
            out.contains(
                "unknown entity attribute `typ`; expected one of `type`, `actions`, `events`, \
                 `error`, `derive`, `snapshot_version`, `crate`"
            ),
            "{out}"
        );
        // The struct is kept, and the stubs name the enums the user's code refers to.
        assert!(out.contains("struct List"), "{out}");
        assert!(out.contains("enum ListAction"), "{out}");
    }

    #[test]
    fn every_error_is_reported() {
        let out = entity_str(
            quote!(type = 5, actions(A, A), events(E), project(F)),
            quote!(
                struct List {
                    version: u32,
                }
            ),
        );
        for needle in [
            "expected a string literal for `type`",
            "`A` is listed twice",
            "`project(...)` is not needed",
            "needs a field `id: EntityId`",
            "the `version` field of an entity must be `Version`",
        ] {
            assert!(out.contains(needle), "missing {needle:?} in {out}");
        }
    }

    #[test]
    fn missing_keys_are_one_error() {
        let out = entity_str(
            quote!(),
            quote!(
                struct List {
                    id: i64,
                    version: i64,
                }
            ),
        );
        assert_eq!(out.matches("compile_error").count(), 1, "{out}");
        assert!(
            out.contains("`type = \\\"...\\\"`, `actions(...)` and `events(...)`"),
            "{out}"
        );
    }

    #[test]
    fn action_rename_and_aliases() {
        let out = payload(
            PayloadKind::Action,
            quote!(
                #[action(rename = "add_item", alias = "AddItem")]
                struct AddItem;
            ),
        )
        .to_string();
        assert!(
            out.contains("const TYPE : & 'static :: core :: primitive :: str = \"add_item\""),
            "{out}"
        );
        assert!(out.contains("\"AddItem\""), "{out}");
    }

    #[test]
    fn generic_action_is_refused_without_stub() {
        let out = payload(
            PayloadKind::Action,
            quote!(
                struct A<T>(T);
            ),
        )
        .to_string();
        assert!(out.contains("generic actions are not supported"), "{out}");
        assert!(!out.contains("impl"), "{out}");
    }
}
