//! Checks across the parts of one macro input. A failed check also drops the offending member
//! from the model, so the code still generated for the stubs cannot repeat the error.

use std::collections::HashSet;

use quote::ToTokens;
use syn::{Field, Type};

use crate::ast::{Entity, Member, Payload, PayloadKind};
use crate::attr::{self, path_string};
use crate::ctxt::Errors;

pub fn entity(entity: &mut Entity, errors: &mut Errors) {
    dedup(&mut entity.actions, attr::ACTIONS, errors);
    dedup(&mut entity.events, attr::EVENTS, errors);
    if let Some(id) = entity.id {
        field_type(id, "id", "EntityId", errors);
    }
    if let Some(version) = entity.version {
        field_type(version, "version", "Version", errors);
    }
}

/// Drops a member whose variant name repeats an earlier one, with an error on the repeat.
fn dedup(members: &mut Vec<Member>, key: &str, errors: &mut Errors) {
    let mut seen: Vec<&Member> = Vec::new();
    let mut keep = Vec::with_capacity(members.len());
    for member in members.iter() {
        match seen.iter().find(|earlier| earlier.variant == member.variant) {
            Some(earlier) if path_string(earlier.path) == path_string(member.path) => errors.spanned(
                member.path,
                format!(
                    "`{}` is listed twice in `{key}(...)`; remove the second one",
                    path_string(member.path)
                ),
            ),
            Some(earlier) => errors.spanned(
                member.path,
                format!(
                    "`{}` and `{}` in `{key}(...)` would both be the variant `{}` of the generated \
                     enum; import one under another name (`use path::{} as Other{};`) and list that",
                    path_string(earlier.path),
                    path_string(member.path),
                    member.variant,
                    member.variant,
                    member.variant,
                ),
            ),
            None => {
                seen.push(member);
                keep.push(true);
                continue;
            }
        }
        keep.push(false);
    }
    let mut keep = keep.into_iter();
    members.retain(|_| keep.next().unwrap_or(false));
}

/// `id` must be an `EntityId` and `version` a `Version` (both `i64`). Checked by name here for
/// a clear message; the generated code checks the real type too.
fn field_type(field: &Field, name: &str, alias: &str, errors: &mut Errors) {
    let ok = match &field.ty {
        Type::Path(ty) if ty.qself.is_none() => ty.path.segments.last().is_some_and(|last| {
            last.arguments.is_none() && (last.ident == alias || last.ident == "i64")
        }),
        _ => false,
    };
    if !ok {
        errors.spanned(
            &field.ty,
            format!(
                "the `{name}` field of an entity must be `{alias}` (an `i64`), not `{}`; \
                 write `pub {name}: {alias}`",
                field.ty.to_token_stream().to_string().replace(' ', "")
            ),
        );
    }
}

pub fn payload(payload: &Payload, errors: &mut Errors) {
    versions(payload, errors);
    let tag = payload.tag();
    let mut seen = HashSet::new();
    for alias in &payload.attrs.aliases {
        let value = alias.value();
        if value == tag {
            errors.spanned(
                alias,
                format!(
                    "alias `{value}` is already the {}'s type tag; remove `alias = \"{value}\"`",
                    payload.kind.word()
                ),
            );
        } else if !seen.insert(value.clone()) {
            errors.spanned(
                alias,
                format!("alias `{value}` is given twice; remove the second `alias = \"{value}\"`"),
            );
        }
    }
}

/// `version` and `upcast` are for events, and each upcast converts a version older than the
/// current one, once.
fn versions(payload: &Payload, errors: &mut Errors) {
    let attrs = &payload.attrs;
    if payload.kind == PayloadKind::Action {
        if let Some((key, _)) = &attrs.version {
            errors.spanned(
                key,
                "`version` is for events: a stored action is a record, never decoded into state; \
                 change its struct freely, or give it a new tag with `rename`",
            );
        }
        if let Some(upcast) = attrs.upcasts.first() {
            errors.spanned(&upcast.version, "`upcast` is for events, not actions");
        }
        return;
    }
    let current = attrs.version.as_ref().map_or(1, |(_, version)| *version);
    let mut seen = HashSet::new();
    for upcast in &attrs.upcasts {
        match upcast.version.base10_parse::<u32>() {
            Ok(version) if version >= 1 && version < current => {
                if !seen.insert(version) {
                    errors.spanned(
                        &upcast.version,
                        format!("version {version} is upcast twice; keep one `{version} = ...`"),
                    );
                }
            }
            _ => {
                let older = match current {
                    1 => "none: raise it with `version = N` first".to_owned(),
                    2 => "version 1".to_owned(),
                    _ => format!("versions 1 to {}", current - 1),
                };
                errors.spanned(
                    &upcast.version,
                    format!(
                        "an upcast converts an older payload version; this event is at version \
                         {current}, so it converts {older}"
                    ),
                )
            }
        }
    }
}
