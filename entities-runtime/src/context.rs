//! Who asked and why: stored with every action and event row.

use std::sync::Arc;

/// The user, request and correlation of a call, stored on the action row and on every event row
/// it causes; and the call's idempotency key, if it has one.
///
/// A request id belongs to one request: set it ([`with_request_id`](Self::with_request_id)) when
/// the calls of one incoming request should share it (as a server does with its `x-request-id`).
/// Left unset, every call made with the context draws its own (a UUID v4): a context kept and
/// reused for many calls, by a job or a script, does not stamp them all with one id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    user_id: String,
    request_id: Option<String>,
    correlation_id: Option<String>,
    idempotency_key: Option<String>,
    request_fingerprint: Option<String>,
}

impl Context {
    /// The user id used when a caller names none.
    pub const ANONYMOUS: &'static str = "anonymous";

    /// A context for `user_id`, stored as `created_by`. Text rather than the seed's `bigint`, so
    /// UUIDs and e-mail addresses fit as well as numbers.
    pub fn new(user_id: impl Into<String>) -> Self {
        Self {
            user_id: user_id.into(),
            request_id: None,
            correlation_id: None,
            idempotency_key: None,
            request_fingerprint: None,
        }
    }

    /// Sets the request id that every call made with this context stores.
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// Ties the calls of one larger operation together; unset, it is each call's request id.
    pub fn with_correlation_id(mut self, correlation_id: impl Into<String>) -> Self {
        self.correlation_id = Some(correlation_id.into());
        self
    }

    /// Makes the call idempotent: a call whose key (for this user) was committed already is not
    /// decided again, and returns what the first one returned. A key names one call: the same
    /// key with another call is refused with
    /// [`Error::IdempotencyKeyReused`](crate::Error::IdempotencyKeyReused). See the crate's guide.
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// What the request behind a keyed call was (a hash of an HTTP request's body, say). When
    /// given, it is the call's fingerprint: a key sent again with another request is refused,
    /// and a retry of the same request is recognised even when the call it makes differs (ids
    /// the server draws anew for each try). Without it, the runtime fingerprints what the call
    /// sends; a transaction's closure it knows only by its type, so two requests through the
    /// same code look alike.
    pub fn with_request_fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.request_fingerprint = Some(fingerprint.into());
        self
    }

    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The request id set with [`with_request_id`](Self::with_request_id), or, inside a call
    /// (handlers, projections, `Create::create`), the one the runtime drew for it. `None` only
    /// on a context outside any call that was given none.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The correlation id, or the request id when none was set.
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref().or(self.request_id())
    }

    pub fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }

    pub fn request_fingerprint(&self) -> Option<&str> {
        self.request_fingerprint.as_deref()
    }

    /// The context one call runs with: its request id drawn now when none was set.
    pub(crate) fn for_call(&self) -> Arc<Context> {
        let mut ctx = self.clone();
        ctx.request_id
            .get_or_insert_with(|| uuid::Uuid::new_v4().to_string());
        Arc::new(ctx)
    }

    /// The ids stored on a call's rows: (user, request, correlation). Only a context made by
    /// [`for_call`](Self::for_call) reaches the store, so the request id is there.
    pub(crate) fn stored_ids(&self) -> (&str, &str, &str) {
        let request_id = self.request_id().unwrap_or_default();
        debug_assert!(!request_id.is_empty(), "a call's context has a request id");
        (
            &self.user_id,
            request_id,
            self.correlation_id().unwrap_or(request_id),
        )
    }
}

impl Default for Context {
    fn default() -> Self {
        Self::new(Self::ANONYMOUS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_call_draws_its_own_request_id_unless_one_was_set() {
        let ctx = Context::new("u");
        let (first, second) = (ctx.for_call(), ctx.for_call());
        assert_ne!(first.request_id(), second.request_id());
        assert!(uuid::Uuid::parse_str(first.request_id().unwrap()).is_ok());
        assert_eq!(first.correlation_id(), first.request_id());
        let pinned = ctx.with_request_id("r1");
        assert_eq!(pinned.for_call().stored_ids(), ("u", "r1", "r1"));
        assert_eq!(pinned.for_call().stored_ids(), ("u", "r1", "r1"));
    }

    #[test]
    fn correlation_follows_the_request_id_until_set_apart() {
        let ctx = Context::new("u").with_request_id("r1");
        assert_eq!(ctx.correlation_id(), Some("r1"));
        let ctx = ctx.with_correlation_id("c").with_request_id("r2");
        assert_eq!(
            (ctx.request_id(), ctx.correlation_id()),
            (Some("r2"), Some("c"))
        );
        let drawn = Context::new("u").with_correlation_id("c").for_call();
        assert_eq!(drawn.stored_ids().2, "c");
    }
}
