//! Parsing of `#[entity(...)]` arguments and of `#[action(...)]` / `#[event(...)]` attributes.
//!
//! Parsing records an error and skips to the next key where it can, so one invocation reports
//! every malformed key at once.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Attribute, Expr, ExprLit, Lit, LitStr, Path, Token, Type};

use crate::ctxt::Errors;

pub const TYPE: &str = "type";
pub const ACTIONS: &str = "actions";
pub const EVENTS: &str = "events";
pub const PROJECT: &str = "project";
pub const ERROR: &str = "error";
pub const DERIVE: &str = "derive";
pub const SNAPSHOT_VERSION: &str = "snapshot_version";
pub const CRATE: &str = "crate";
pub const RENAME: &str = "rename";
pub const ALIAS: &str = "alias";
pub const VERSION: &str = "version";
pub const UPCAST: &str = "upcast";

/// The keys of `#[entity(...)]`, in the order the unknown-key message lists them.
pub const ENTITY_KEYS: &[&str] = &[
    TYPE,
    ACTIONS,
    EVENTS,
    ERROR,
    DERIVE,
    SNAPSHOT_VERSION,
    CRATE,
];
/// The keys of `#[action(...)]` and `#[event(...)]`.
pub const PAYLOAD_KEYS: &[&str] = &[RENAME, ALIAS, VERSION, UPCAST, CRATE];

/// A parenthesized list of paths, `actions(A, B)`.
pub struct List {
    pub paths: Vec<Path>,
}

/// What `#[entity(...)]` says, each key as written (validation happens later).
#[derive(Default)]
pub struct EntityArgs {
    pub type_tag: Option<LitStr>,
    pub actions: Option<List>,
    pub events: Option<List>,
    /// Traits the generated enums derive besides `Debug` and `Clone` (`derive(PartialEq)`).
    pub derives: Option<List>,
    /// `snapshot_version = N`: mixed into the state's fingerprint, for a change of its JSON the
    /// macro cannot see (a field's own type).
    pub snapshot_version: Option<u32>,
    pub error: Option<Type>,
    pub krate: Option<Path>,
    /// Set when a key could not be parsed: "missing key" errors would then only repeat it.
    pub malformed: bool,
    /// The arguments as written, for an error about them as a whole.
    pub tokens: TokenStream,
}

pub fn entity_args(args: TokenStream, errors: &mut Errors) -> EntityArgs {
    let mut out = EntityArgs {
        tokens: args.clone(),
        ..EntityArgs::default()
    };
    let parser = syn::meta::parser(|meta| {
        if let Err(error) = entity_key(&mut out, &meta) {
            errors.push(error);
            out.malformed = true;
            skip_value(meta.input)?;
        }
        Ok(())
    });
    if let Err(error) = parser.parse2(args) {
        errors.push(error);
        out.malformed = true;
    }
    out
}

fn entity_key(out: &mut EntityArgs, meta: &ParseNestedMeta) -> syn::Result<()> {
    let path = &meta.path;
    if path.is_ident(TYPE) {
        let lit = string_value(meta, "type = \"shopping_list\"")?;
        set_once(&mut out.type_tag, lit, path)
    } else if path.is_ident(ACTIONS) {
        let list = path_list(meta, "actions(SetName, AddItem)", false)?;
        set_once(&mut out.actions, list, path)
    } else if path.is_ident(EVENTS) {
        let list = path_list(meta, "events(NameChanged, ItemAdded)", false)?;
        set_once(&mut out.events, list, path)
    } else if path.is_ident(PROJECT) {
        Err(syn::Error::new_spanned(
            path,
            "`project(...)` is not needed: every event with an `impl Project` is projected, and \
             the others are not; remove `project(...)`",
        ))
    } else if path.is_ident(SNAPSHOT_VERSION) {
        let version = version_value(meta)?;
        set_once(&mut out.snapshot_version, version, path)
    } else if path.is_ident(DERIVE) {
        let list = path_list(meta, "derive(PartialEq)", false)?;
        set_once(&mut out.derives, list, path)
    } else if path.is_ident(ERROR) {
        let ty = type_value(meta, "error = ShoppingListError")?;
        set_once(&mut out.error, ty, path)
    } else if path.is_ident(CRATE) {
        let krate = path_value(meta, "crate = ::my_app::entities_runtime")?;
        set_once(&mut out.krate, krate, path)
    } else {
        Err(unknown_key(path, "entity", ENTITY_KEYS))
    }
}

/// What an `#[action(...)]` or `#[event(...)]` attribute says.
#[derive(Default)]
pub struct PayloadAttrs {
    pub rename: Option<LitStr>,
    pub aliases: Vec<LitStr>,
    /// `version = N`: the version of an event's payload shape.
    pub version: Option<(Path, u32)>,
    /// `upcast(N = OldShape, ...)`: the older versions an event converts from.
    pub upcasts: Vec<Upcast>,
    pub krate: Option<Path>,
}

/// `N = OldShape` in `upcast(...)`.
pub struct Upcast {
    pub version: syn::LitInt,
    pub from: Path,
}

/// Parses every `#[action(...)]` (`name` = "action") or `#[event(...)]` attribute of a derive input.
pub fn payload_attrs(attrs: &[Attribute], name: &str, errors: &mut Errors) -> PayloadAttrs {
    let mut out = PayloadAttrs::default();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident(name)) {
        let result = attr.parse_nested_meta(|meta| {
            if let Err(error) = payload_key(&mut out, &meta, name) {
                errors.push(error);
                skip_value(meta.input)?;
            }
            Ok(())
        });
        if let Err(error) = result {
            errors.push(error);
        }
    }
    out
}

fn payload_key(out: &mut PayloadAttrs, meta: &ParseNestedMeta, name: &str) -> syn::Result<()> {
    let path = &meta.path;
    if path.is_ident(RENAME) {
        let lit = string_value(meta, "rename = \"name_changed\"")?;
        set_once(&mut out.rename, lit, path)
    } else if path.is_ident(ALIAS) {
        out.aliases.push(string_value(meta, "alias = \"OldName\"")?);
        Ok(())
    } else if path.is_ident(VERSION) {
        let version = version_value(meta)?;
        set_once(&mut out.version, (path.clone(), version), path)
    } else if path.is_ident(UPCAST) {
        if !meta.input.peek(syn::token::Paren) {
            return Err(expected(path, "upcast(1 = ItemAddedV1)"));
        }
        let content;
        syn::parenthesized!(content in meta.input);
        let entries = Punctuated::<Upcast, Token![,]>::parse_terminated(&content)?;
        out.upcasts.extend(entries);
        Ok(())
    } else if path.is_ident(CRATE) {
        let krate = path_value(meta, "crate = ::my_app::entities_runtime")?;
        set_once(&mut out.krate, krate, path)
    } else {
        Err(unknown_key(path, name, PAYLOAD_KEYS))
    }
}

impl syn::parse::Parse for Upcast {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let version: syn::LitInt = input.parse().map_err(|error| {
            syn::Error::new(
                error.span(),
                "write each upcast as `version = OldShape`, e.g. `upcast(1 = ItemAddedV1)`",
            )
        })?;
        input.parse::<Token![=]>()?;
        let from = Path::parse_mod_style(input)?;
        Ok(Upcast { version, from })
    }
}

/// `version = N` or `snapshot_version = N`, N at least 1.
fn version_value(meta: &ParseNestedMeta) -> syn::Result<u32> {
    let key = path_string(&meta.path);
    let example = format!("{key} = 2");
    match value_expr(meta, &example)? {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => match lit.base10_parse::<u32>() {
            Ok(version) if (1..=i32::MAX as u32).contains(&version) => Ok(version),
            _ => Err(syn::Error::new_spanned(
                &lit,
                format!("`{key}` is a whole number from 1, e.g. `{example}`"),
            )),
        },
        other => Err(syn::Error::new_spanned(
            other,
            format!("expected a whole number for `{key}`, e.g. `{example}`"),
        )),
    }
}

fn unknown_key(path: &Path, kind: &str, keys: &[&str]) -> syn::Error {
    let expected = keys
        .iter()
        .map(|key| format!("`{key}`"))
        .collect::<Vec<_>>()
        .join(", ");
    syn::Error::new_spanned(
        path,
        format!(
            "unknown {kind} attribute `{}`; expected one of {expected}",
            path_string(path)
        ),
    )
}

fn set_once<T>(slot: &mut Option<T>, value: T, key: &Path) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new_spanned(
            key,
            format!("duplicate attribute `{}`; give it once", path_string(key)),
        ));
    }
    *slot = Some(value);
    Ok(())
}

/// The `= <expr>` after a key, or an error quoting the expected form.
fn value_expr(meta: &ParseNestedMeta, example: &str) -> syn::Result<Expr> {
    if !meta.input.peek(Token![=]) {
        return Err(expected(&meta.path, example));
    }
    meta.value()?.parse::<Expr>()
}

/// `key = "non-empty string"`.
fn string_value(meta: &ParseNestedMeta, example: &str) -> syn::Result<LitStr> {
    match value_expr(meta, example)? {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) if lit.value().is_empty() => Err(syn::Error::new_spanned(
            &lit,
            format!(
                "`{}` is empty; write a non-empty tag, e.g. `{example}`",
                path_string(&meta.path)
            ),
        )),
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(lit),
        other => Err(syn::Error::new_spanned(
            other,
            format!(
                "expected a string literal for `{}`, e.g. `{example}`",
                path_string(&meta.path)
            ),
        )),
    }
}

/// `key = Type`; a quoted type is refused with the unquoted spelling.
fn type_value(meta: &ParseNestedMeta, example: &str) -> syn::Result<Type> {
    if !meta.input.peek(Token![=]) {
        return Err(expected(&meta.path, example));
    }
    let input = meta.value()?;
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        return Err(syn::Error::new_spanned(
            &lit,
            format!(
                "write the type without quotes: `{} = {}`",
                path_string(&meta.path),
                lit.value()
            ),
        ));
    }
    input.parse()
}

/// `key = path`, or `key = "path"` as serde spells it.
fn path_value(meta: &ParseNestedMeta, example: &str) -> syn::Result<Path> {
    if !meta.input.peek(Token![=]) {
        return Err(expected(&meta.path, example));
    }
    let input = meta.value()?;
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        return lit.parse_with(Path::parse_mod_style);
    }
    Path::parse_mod_style(input)
}

/// `key(A, B, ...)`.
fn path_list(meta: &ParseNestedMeta, example: &str, allow_empty: bool) -> syn::Result<List> {
    if !meta.input.peek(syn::token::Paren) {
        return Err(expected(&meta.path, example));
    }
    let content;
    syn::parenthesized!(content in meta.input);
    let paths = Punctuated::<Path, Token![,]>::parse_terminated(&content)?;
    if paths.is_empty() && !allow_empty {
        return Err(syn::Error::new_spanned(
            &meta.path,
            format!(
                "`{}()` is empty; list at least one, e.g. `{example}`",
                path_string(&meta.path)
            ),
        ));
    }
    Ok(List {
        paths: paths.into_iter().collect(),
    })
}

fn expected(key: &Path, example: &str) -> syn::Error {
    syn::Error::new_spanned(
        key,
        format!("malformed `{}`; write it as `{example}`", path_string(key)),
    )
}

/// After an error in one key, skips its value so the next key can still be parsed.
fn skip_value(input: ParseStream) -> syn::Result<()> {
    while !input.is_empty() && !input.peek(Token![,]) {
        input.parse::<TokenTree>()?;
    }
    Ok(())
}

/// A path as the user wrote it, without the spaces `to_string` puts around `::`.
pub fn path_string(path: &Path) -> String {
    path.to_token_stream().to_string().replace(' ', "")
}

/// The default runtime path, `::entities_runtime`.
pub fn default_crate() -> Path {
    syn::parse_quote_spanned!(Span::call_site()=> ::entities_runtime)
}
