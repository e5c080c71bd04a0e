//! The model the macros generate from, borrowing the user's syntax so errors keep their spans.
//! Checks that need only one node happen here; checks across nodes live in `valid`.

use proc_macro2::Span;
use syn::{DeriveInput, Field, Fields, Ident, ItemStruct, LitStr, Path, Type};

use crate::attr::{self, EntityArgs, List, PayloadAttrs};
use crate::ctxt::Errors;

/// Which derive: `Action` or `Event`. Also names the two lists of `#[entity]`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    Action,
    Event,
}

impl PayloadKind {
    /// `action` / `event`: the helper attribute and the word in messages.
    pub fn word(self) -> &'static str {
        match self {
            PayloadKind::Action => "action",
            PayloadKind::Event => "event",
        }
    }

    /// `Action` / `Event`: the trait and the suffix of the generated enum.
    pub fn trait_name(self) -> &'static str {
        match self {
            PayloadKind::Action => "Action",
            PayloadKind::Event => "Event",
        }
    }

    /// `actions` / `events`: the key of `#[entity(...)]` that lists them.
    pub fn key(self) -> &'static str {
        match self {
            PayloadKind::Action => attr::ACTIONS,
            PayloadKind::Event => attr::EVENTS,
        }
    }
}

/// A struct listed in `actions(...)` or `events(...)`.
pub struct Member<'a> {
    /// The path as written: every check about this member is spanned on it.
    pub path: &'a Path,
    /// The generated enum's variant: the path's last segment.
    pub variant: &'a Ident,
}

/// An `#[entity(...)] struct`.
pub struct Entity<'a> {
    pub item: &'a ItemStruct,
    pub type_tag: Option<&'a LitStr>,
    pub actions: Vec<Member<'a>>,
    pub events: Vec<Member<'a>>,
    /// What the generated enums derive besides `Debug` and `Clone`.
    pub derives: &'a [Path],
    pub snapshot_version: u32,
    pub error: Option<&'a Type>,
    pub krate: Path,
    pub id: Option<&'a Field>,
    pub version: Option<&'a Field>,
    /// Whether the struct has fields besides `id` and `version` (so `new` fills them from `Default`).
    pub has_other_fields: bool,
}

impl<'a> Entity<'a> {
    pub fn from_syn(args: &'a EntityArgs, item: &'a ItemStruct, errors: &mut Errors) -> Self {
        if !args.malformed {
            missing_keys(args, errors);
        }
        if let Some(params) = (!item.generics.params.is_empty()).then_some(&item.generics) {
            errors.spanned(
                params,
                "generic entities are not supported: an entity is stored and loaded as one \
                 concrete type; remove the generic parameters",
            );
        }
        let field = |name: &str| -> Option<&'a Field> {
            item.fields
                .iter()
                .find(|field| field.ident.as_ref().is_some_and(|ident| ident == name))
        };
        let (id, version) = (field("id"), field("version"));
        match &item.fields {
            Fields::Named(_) => {
                if id.is_none() {
                    errors.spanned(
                        &item.ident,
                        "`#[entity]` needs a field `id: EntityId`; add `pub id: EntityId`",
                    );
                }
                if version.is_none() {
                    errors.spanned(
                        &item.ident,
                        "`#[entity]` needs a field `version: Version`; add `pub version: Version`",
                    );
                }
            }
            Fields::Unnamed(fields) => errors.spanned(
                fields,
                "`#[entity]` needs a struct with named fields: write \
                 `struct Name { pub id: EntityId, pub version: Version, ... }`",
            ),
            Fields::Unit => errors.spanned(
                &item.ident,
                "`#[entity]` needs a struct with named fields: write \
                 `struct Name { pub id: EntityId, pub version: Version, ... }`",
            ),
        }
        Entity {
            item,
            type_tag: args.type_tag.as_ref(),
            actions: members(args.actions.as_ref()),
            events: members(args.events.as_ref()),
            derives: args.derives.as_ref().map_or(&[], |list| &list.paths),
            snapshot_version: args.snapshot_version.unwrap_or(1),
            error: args.error.as_ref(),
            krate: args.krate.clone().unwrap_or_else(attr::default_crate),
            id,
            version,
            has_other_fields: item.fields.len()
                > usize::from(id.is_some()) + usize::from(version.is_some()),
        }
    }

    pub fn members(&self, kind: PayloadKind) -> &[Member<'a>] {
        match kind {
            PayloadKind::Action => &self.actions,
            PayloadKind::Event => &self.events,
        }
    }

    /// `ShoppingListAction` / `ShoppingListEvent`, spanned on the struct's name.
    pub fn enum_ident(&self, kind: PayloadKind) -> Ident {
        Ident::new(
            &format!("{}{}", self.item.ident, kind.trait_name()),
            self.item.ident.span(),
        )
    }
}

/// One error naming every required key that is missing, with a complete example.
fn missing_keys(args: &EntityArgs, errors: &mut Errors) {
    let mut missing = Vec::new();
    if args.type_tag.is_none() {
        missing.push("`type = \"...\"`");
    }
    if args.actions.is_none() {
        missing.push("`actions(...)`");
    }
    if args.events.is_none() {
        missing.push("`events(...)`");
    }
    if missing.is_empty() {
        return;
    }
    let (noun, list) = match missing.as_slice() {
        [one] => ("key", (*one).to_owned()),
        [init @ .., last] => ("keys", format!("{} and {last}", init.join(", "))),
        [] => unreachable!("checked above"),
    };
    let message = format!(
        "`#[entity]` is missing the {noun} {list}; e.g. \
         `#[entity(type = \"shopping_list\", actions(SetName), events(NameChanged))]`"
    );
    // On the arguments the user wrote: an error at the macro's call site would come with
    // rustc's note on where it originates.
    errors.push(if args.tokens.is_empty() {
        syn::Error::new(Span::call_site(), message)
    } else {
        syn::Error::new_spanned(&args.tokens, message)
    });
}

fn members(list: Option<&List>) -> Vec<Member<'_>> {
    list.into_iter()
        .flat_map(|list| &list.paths)
        .filter_map(|path| {
            let variant = &path.segments.last()?.ident;
            Some(Member { path, variant })
        })
        .collect()
}

/// A `#[derive(Action)]` or `#[derive(Event)]` input.
pub struct Payload<'a> {
    pub kind: PayloadKind,
    pub input: &'a DeriveInput,
    pub attrs: PayloadAttrs,
    pub krate: Path,
}

impl<'a> Payload<'a> {
    pub fn from_syn(kind: PayloadKind, input: &'a DeriveInput, errors: &mut Errors) -> Self {
        let attrs = attr::payload_attrs(&input.attrs, kind.word(), errors);
        if let syn::Data::Union(data) = &input.data {
            errors.spanned(
                data.union_token,
                format!(
                    "`#[derive({})]` does not support unions, which serde cannot store; \
                     use a struct or an enum",
                    kind.trait_name()
                ),
            );
        }
        if !input.generics.params.is_empty() {
            errors.spanned(
                &input.generics,
                format!(
                    "generic {}s are not supported: stored payloads need one concrete type; \
                     remove the generic parameters, or wrap each concrete use in a struct of its own",
                    kind.word()
                ),
            );
        }
        let krate = attrs.krate.clone().unwrap_or_else(attr::default_crate);
        Payload {
            kind,
            input,
            attrs,
            krate,
        }
    }

    /// The stored type tag: `rename = "..."`, else the type's name.
    pub fn tag(&self) -> String {
        match &self.attrs.rename {
            Some(rename) => rename.value(),
            None => self.input.ident.to_string(),
        }
    }
}
