//! Who asked and why: stored with every action and event row.

/// The user, request and correlation of a call, stored on the action row and on every event row
/// it causes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// Stored as `created_by`. Text rather than the seed's `bigint`, so UUIDs and e-mail
    /// addresses fit as well as numbers.
    pub user_id: String,
    /// One per incoming request; generated (a UUID v4) when the caller has none.
    pub request_id: String,
    /// Ties together the requests of one larger operation; defaults to the request id.
    pub correlation_id: String,
}

impl Context {
    /// The user id used when a caller names none.
    pub const ANONYMOUS: &'static str = "anonymous";

    /// A context for `user_id` with a fresh request id, which is also the correlation id.
    pub fn new(user_id: impl Into<String>) -> Self {
        let request_id = uuid::Uuid::new_v4().to_string();
        Self {
            user_id: user_id.into(),
            correlation_id: request_id.clone(),
            request_id,
        }
    }

    /// Sets the request id; the correlation id follows it unless it was set apart.
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        let request_id = request_id.into();
        if self.correlation_id == self.request_id {
            self.correlation_id = request_id.clone();
        }
        self.request_id = request_id;
        self
    }

    pub fn with_correlation_id(mut self, correlation_id: impl Into<String>) -> Self {
        self.correlation_id = correlation_id.into();
        self
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
    fn correlation_follows_request_id_until_set_apart() {
        let ctx = Context::new("u").with_request_id("r1");
        assert_eq!(ctx.correlation_id, "r1");
        let ctx = ctx.with_correlation_id("c").with_request_id("r2");
        assert_eq!(
            (ctx.request_id.as_str(), ctx.correlation_id.as_str()),
            ("r2", "c")
        );
    }
}
