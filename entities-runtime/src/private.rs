//! What the macros' generated code names, reached as `entities_runtime::__private`. Not a
//! public API: it may change in any release.

pub use crate::context::Context;
pub use crate::entity::{
    Action, Apply, Change, DecodeError, Entity, EntityId, Event, Handle, Payload, PayloadVersion,
    Project, Projected, Rejected, Tagged, Version,
};
pub use crate::projection::{ProjectionError, Tx};
pub use serde;
pub use serde_json;
pub use std::future::Future;

/// `str` equality usable in constants, for the generated duplicate-tag checks.
pub const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether `tag` is one of `tags`, usable in constants.
pub const fn contains(tags: &[&str], tag: &str) -> bool {
    let mut i = 0;
    while i < tags.len() {
        if str_eq(tags[i], tag) {
            return true;
        }
        i += 1;
    }
    false
}

/// Whether `a` (with its aliases) and `b` (with its aliases) share a tag, for the generated
/// duplicate-tag checks.
pub const fn tags_overlap(a: &str, a_aliases: &[&str], b: &str, b_aliases: &[&str]) -> bool {
    if str_eq(a, b) || contains(a_aliases, b) || contains(b_aliases, a) {
        return true;
    }
    let mut i = 0;
    while i < a_aliases.len() {
        if contains(b_aliases, a_aliases[i]) {
            return true;
        }
        i += 1;
    }
    false
}

/// Length of `tags` joined with `", "`: the array length for [`join_tags`].
pub const fn joined_len(tags: &[&str]) -> usize {
    let mut len = 0;
    let mut i = 0;
    while i < tags.len() {
        if i > 0 {
            len += 2;
        }
        len += tags[i].len();
        i += 1;
    }
    len
}

/// `tags` joined with `", "`, in a constant: the `known` list of `DecodeError::UnknownType`
/// is built from the tag constants, so a `rename` shows up in it. `N` is [`joined_len`].
pub const fn join_tags<const N: usize>(tags: &[&str]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut at = 0;
    let mut i = 0;
    while i < tags.len() {
        if i > 0 {
            out[at] = b',';
            out[at + 1] = b' ';
            at += 2;
        }
        let tag = tags[i].as_bytes();
        let mut j = 0;
        while j < tag.len() {
            out[at] = tag[j];
            at += 1;
            j += 1;
        }
        i += 1;
    }
    out
}

/// The bytes of [`join_tags`] as a `str` (they are whole `str`s joined, so valid UTF-8).
pub const fn joined_str(bytes: &[u8]) -> &str {
    match std::str::from_utf8(bytes) {
        Ok(joined) => joined,
        Err(_) => panic!("joined type tags are not UTF-8"),
    }
}

/// What the generated code does with one listed action or event, as plain data. Built once
/// per listed type in a constant, so a listed type that is not an action (or has no
/// handler) is one error, on that constant, spanned on the type in `actions(...)`.
pub struct PayloadOps<P> {
    pub tag: &'static str,
    pub aliases: &'static [&'static str],
    pub version: PayloadVersion,
    /// The conversion of an older version's JSON, if the type declares one for it.
    pub upcast: fn(PayloadVersion) -> Option<UpcastFn<P>>,
    pub encode: fn(&P) -> Result<String, serde_json::Error>,
    pub decode: fn(&str) -> Result<P, serde_json::Error>,
}

/// How the JSON of an older payload version becomes the current struct.
pub type UpcastFn<P> = fn(&str) -> Result<P, serde_json::Error>;

/// An older payload version of an event, and its conversion.
pub type Upcast<P> = (PayloadVersion, UpcastFn<P>);

/// The upcast `V` declares for `version`.
pub fn upcast_of<V: Event>(version: PayloadVersion) -> Option<UpcastFn<V>> {
    V::UPCASTS
        .iter()
        .find(|(from, _)| *from == version)
        .map(|(_, upcast)| *upcast)
}

/// Actions have one payload version.
pub fn no_upcast<A>(_: PayloadVersion) -> Option<UpcastFn<A>> {
    None
}

/// Decodes the JSON of `Old` and converts it: what `#[event(upcast(N = Old))]` stores.
pub fn upcast<Old: serde::de::DeserializeOwned, New: UpcastFrom<Old>>(
    json: &str,
) -> Result<New, serde_json::Error> {
    serde_json::from_str::<Old>(json).map(New::upcast_from)
}

/// `From<Old>`, as `upcast(...)` requires it: a missing conversion is this message.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not convert from its older shape `{Old}`",
    label = "listed in `upcast(...)` here",
    note = "add `impl From<{Old}> for {Self} {{ fn from(old: {Old}) -> Self {{ ... }} }}`"
)]
pub trait UpcastFrom<Old>: Sized {
    fn upcast_from(old: Old) -> Self;
}

#[diagnostic::do_not_recommend]
impl<Old, New: From<Old>> UpcastFrom<Old> for New {
    fn upcast_from(old: Old) -> Self {
        New::from(old)
    }
}

impl<P> PayloadOps<P> {
    /// `None` unless `tag` is this type's tag or one of its aliases.
    pub fn decode_tagged(
        &self,
        tag: &str,
        version: PayloadVersion,
        payload: &str,
    ) -> Option<Result<P, DecodeError>> {
        if !(str_eq(tag, self.tag) || contains(self.aliases, tag)) {
            return None;
        }
        let decode = if version == self.version {
            self.decode
        } else {
            match (self.upcast)(version) {
                Some(upcast) => upcast,
                None => {
                    return Some(Err(DecodeError::UnknownVersion {
                        type_tag: self.tag,
                        version,
                        current: self.version,
                    }));
                }
            }
        };
        Some(decode(payload).map_err(|source| DecodeError::Payload {
            type_tag: self.tag,
            version,
            source,
        }))
    }
}

/// The entity's `Handle<A>`, as the generated code requires it: through this trait, whose one
/// impl rustc is told not to recommend, a missing handler is this one message, not rustc's
/// list of the entity's other handlers.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no handler for action `{A}`",
    label = "action `{A}` is listed here",
    note = "add `impl Handle<{A}> for {Self} {{ fn handle(&self, ctx: &Context, action: &{A}) -> Result<Vec<Self::Event>, Self::Error> {{ ... }} }}`"
)]
pub trait HandlesListedAction<A>: Entity {
    fn handle_listed(&self, ctx: &Context, action: &A) -> Result<Vec<Self::Event>, Self::Error>;
}

#[diagnostic::do_not_recommend]
impl<E: Handle<A>, A> HandlesListedAction<A> for E {
    fn handle_listed(&self, ctx: &Context, action: &A) -> Result<Vec<Self::Event>, Self::Error> {
        <E as Handle<A>>::handle(self, ctx, action)
    }
}

/// The entity's `Apply<V>`, as the generated code requires it; see [`HandlesListedAction`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not apply event `{V}`",
    label = "event `{V}` is listed here",
    note = "add `impl Apply<{V}> for {Self} {{ fn apply(&mut self, event: &{V}) {{ ... }} }}`"
)]
pub trait AppliesListedEvent<V>: Entity {
    fn apply_listed(&mut self, event: &V);
}

#[diagnostic::do_not_recommend]
impl<E: Apply<V>, V> AppliesListedEvent<V> for E {
    fn apply_listed(&mut self, event: &V) {
        <E as Apply<V>>::apply(self, event);
    }
}

/// `<E as Handle<A>>::handle` as a pointer.
pub type HandleFn<E, A> =
    fn(&E, &Context, &A) -> Result<Vec<<E as Entity>::Event>, <E as Entity>::Error>;

/// A listed action: its tag and serde functions, and the entity's handler for it.
pub struct ActionOps<E: Entity, A> {
    pub payload: PayloadOps<A>,
    pub handle: HandleFn<E, A>,
}

/// A listed event: its tag and serde functions, and the entity's `apply` for it.
pub struct EventOps<E: Entity, V> {
    pub payload: PayloadOps<V>,
    pub apply: fn(&mut E, &V),
}

/// Bounded on `Action` rather than serde's traits: an action missing serde is reported once,
/// on its derive, not again in every entity listing it.
pub const fn action<E: HandlesListedAction<A>, A: Action>() -> ActionOps<E, A> {
    ActionOps {
        payload: PayloadOps {
            tag: A::TYPE,
            aliases: A::ALIASES,
            version: 1,
            upcast: no_upcast::<A>,
            encode: <A as Payload>::to_json,
            decode: <A as Payload>::from_json,
        },
        handle: <E as HandlesListedAction<A>>::handle_listed,
    }
}

/// See [`action`].
pub const fn event<E: AppliesListedEvent<V>, V: Event>() -> EventOps<E, V> {
    EventOps {
        payload: PayloadOps {
            tag: V::TYPE,
            aliases: V::ALIASES,
            version: V::VERSION,
            upcast: upcast_of::<V>,
            encode: <V as Payload>::to_json,
            decode: <V as Payload>::from_json,
        },
        apply: <E as AppliesListedEvent<V>>::apply_listed,
    }
}

/// Sets an entity's `version` field: the runtime's alone to call (the version is the count of
/// applied events), so out of [`Entity`]'s public methods. Implemented by `#[entity]`.
pub trait SetVersion {
    fn set_version(&mut self, version: Version);
}

/// The state's `Default`, which `Entity::new` fills the fields besides `id` and `version` from.
/// Asked for through this trait, in `new` alone, rather than as a supertrait of `Entity`: a
/// state without `Default` is then this one error, not one more at every impl of the entity.
#[diagnostic::on_unimplemented(
    message = "the entity state `{Self}` needs `Default`: its fields start from it",
    label = "`{Self}` does not implement `Default`",
    note = "add `#[derive(Default)]` to `{Self}`, or `impl Default for {Self}`"
)]
pub trait DefaultState: Sized {
    fn default_state() -> Self;
}

#[diagnostic::do_not_recommend]
impl<T: Default> DefaultState for T {
    fn default_state() -> Self {
        T::default()
    }
}

/// Finds an entity's `Project<V>` impl for event `V`, if it has one, by method resolution:
/// `(&&ProjectProbe::<E, V>::NEW).is_projected()` reaches [`ProjectsEvent`] (implemented for
/// `&ProjectProbe` where `E: Project<V>`) before [`SkipsEvent`] (for every `ProjectProbe`). The
/// macro's code names concrete types, where this resolves at compile time; so an event is
/// projected exactly when its `impl Project` exists, and there is no list to forget it in.
pub struct ProjectProbe<E, V>(core::marker::PhantomData<fn() -> (E, V)>);

impl<E, V> ProjectProbe<E, V> {
    pub const NEW: Self = Self(core::marker::PhantomData);
}

pub trait ProjectsEvent<E: Entity, V> {
    fn is_projected(&self) -> bool;
    fn project<'a>(
        &self,
        tx: &'a mut Tx<'_>,
        change: Change<'a, E, V>,
    ) -> impl Future<Output = Projected<E>> + Send + 'a;
    fn project_all<'a>(
        &self,
        tx: &'a mut Tx<'_>,
        changes: &'a [Change<'a, E, V>],
    ) -> impl Future<Output = Projected<E>> + Send + 'a;
}

impl<E: Project<V>, V: Sync> ProjectsEvent<E, V> for &ProjectProbe<E, V> {
    fn is_projected(&self) -> bool {
        true
    }

    fn project<'a>(
        &self,
        tx: &'a mut Tx<'_>,
        change: Change<'a, E, V>,
    ) -> impl Future<Output = Projected<E>> + Send + 'a {
        E::project(tx, change)
    }

    fn project_all<'a>(
        &self,
        tx: &'a mut Tx<'_>,
        changes: &'a [Change<'a, E, V>],
    ) -> impl Future<Output = Projected<E>> + Send + 'a {
        E::project_all(tx, changes)
    }
}

pub trait SkipsEvent<E: Entity, V> {
    fn is_projected(&self) -> bool;
    fn project<'a>(
        &self,
        tx: &'a mut Tx<'_>,
        change: Change<'a, E, V>,
    ) -> impl Future<Output = Projected<E>> + Send + 'a;
    fn project_all<'a>(
        &self,
        tx: &'a mut Tx<'_>,
        changes: &'a [Change<'a, E, V>],
    ) -> impl Future<Output = Projected<E>> + Send + 'a;
}

impl<E: Entity, V> SkipsEvent<E, V> for ProjectProbe<E, V> {
    fn is_projected(&self) -> bool {
        false
    }

    fn project<'a>(
        &self,
        _: &'a mut Tx<'_>,
        _: Change<'a, E, V>,
    ) -> impl Future<Output = Projected<E>> + Send + 'a {
        core::future::ready(Ok(()))
    }

    fn project_all<'a>(
        &self,
        _: &'a mut Tx<'_>,
        _: &'a [Change<'a, E, V>],
    ) -> impl Future<Output = Projected<E>> + Send + 'a {
        core::future::ready(Ok(()))
    }
}

/// The type of an entity's `id` and `version` fields. The generated accessors convert through
/// it, spanned on the field's type, so a field of another type is one error on that type.
#[diagnostic::on_unimplemented(
    message = "an entity's `id` and `version` fields must be `i64`, not `{Self}`",
    label = "write `EntityId` (for `id`) or `Version` (for `version`) here"
)]
pub trait I64Field: Copy {
    fn from_i64(value: i64) -> Self;
    fn to_i64(self) -> i64;
}

// Not recommended: rustc would otherwise quote this impl under the message above.
#[diagnostic::do_not_recommend]
impl I64Field for i64 {
    fn from_i64(value: i64) -> Self {
        value
    }
    fn to_i64(self) -> i64 {
        self
    }
}
