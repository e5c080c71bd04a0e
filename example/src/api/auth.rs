//! Who the caller is. Open (the zero-set-up default): the `x-user-id` header says so, trusted as
//! is, and the start-up log says that. With JWT: a valid `Authorization: Bearer` token, its
//! `sub` the user id; `x-user-id` is then refused, since it could only contradict the token.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;

/// How requests are authenticated.
#[derive(Clone)]
pub enum Auth {
    /// `x-user-id` is trusted: for development, or behind a gateway that sets it.
    Open,
    Jwt(Arc<JwtVerifier>),
}

/// Checks tokens signed with one key: HS256 with a shared secret, or RS256/ES256 with the
/// public key of the issuer's key pair.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// Who a valid token says the caller is, and until when.
pub struct TokenCaller {
    pub user: String,
    /// When the token stops being taken: its `exp`, with the leeway given for clocks (`None`:
    /// past what the clock can tell, as for an `exp` meant as "never"). A WebSocket opened
    /// with it is closed then.
    pub expires_at: Option<SystemTime>,
}

/// The longest user id a token may carry, as for `x-user-id`.
const MAX_SUBJECT: usize = super::MAX_ID_LEN;

impl JwtVerifier {
    /// HS256 with `secret` (at least 32 bytes: a shorter HMAC key is guessable).
    pub fn hs256(secret: &[u8]) -> Result<Self, String> {
        if secret.len() < 32 {
            return Err(format!(
                "the JWT secret must be at least 32 bytes, not {}",
                secret.len()
            ));
        }
        let key = DecodingKey::from_secret(secret).map_err(|error| error.to_string())?;
        Ok(Self::new(key, Algorithm::HS256))
    }

    /// RS256 or ES256 (P-256), by the kind of the PEM public key.
    pub fn public_key(pem: &[u8]) -> Result<Self, String> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Self::new(key, Algorithm::RS256));
        }
        DecodingKey::from_ec_pem(pem)
            .map(|key| Self::new(key, Algorithm::ES256))
            .map_err(|error| {
                format!("the JWT public key is neither an RSA nor a P-256 key in PEM: {error}")
            })
    }

    fn new(key: DecodingKey, algorithm: Algorithm) -> Self {
        // `exp` is required and checked, `nbf` checked when present (a minute's leeway for
        // clocks); only this algorithm is taken, so a token cannot pick a weaker one (nor
        // `none`). `aud` is checked only when an audience is set (`expect_audience`).
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_nbf = true;
        validation.validate_aud = false;
        Self { key, validation }
    }

    /// Takes only tokens whose `aud` names `audience` (this API), so that tokens the same issuer
    /// signed for other services are refused.
    pub fn expect_audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self.validation.validate_aud = true;
        self.validation
            .set_required_spec_claims(&["exp", "sub", "aud"]);
        self
    }

    /// Takes only tokens whose `iss` is `issuer`.
    pub fn expect_issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        let mut required = vec!["exp", "sub", "iss"];
        if self.validation.validate_aud {
            required.push("aud");
        }
        self.validation.set_required_spec_claims(&required);
        self
    }

    pub fn algorithm(&self) -> Algorithm {
        self.validation.algorithms[0]
    }

    /// The caller of a valid token, or why it is not one.
    pub fn verify(&self, token: &str) -> Result<TokenCaller, String> {
        let claims = decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|error| format!("the token is not valid: {error}"))?
            .claims;
        let sub = claims.sub.trim();
        if sub.is_empty()
            || sub.len() > MAX_SUBJECT
            || !sub.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        {
            return Err(format!(
                "the token's `sub` must be 1 to {MAX_SUBJECT} printable ASCII characters"
            ));
        }
        Ok(TokenCaller {
            user: sub.to_owned(),
            expires_at: SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(
                claims.exp.saturating_add(self.validation.leeway),
            )),
        })
    }
}

/// The token of an `Authorization` header's value: `Bearer <token>` (the scheme in any case).
pub(crate) fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_that_never_expires_is_taken_without_an_end() {
        use jsonwebtoken::{EncodingKey, Header, encode};
        let secret = b"a test secret of at least 32 bytes, for HS256";
        let verifier = JwtVerifier::hs256(secret).unwrap();
        let token = encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({ "sub": "eve", "exp": u64::MAX }),
            &EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap();
        let caller = verifier.verify(&token).unwrap();
        assert_eq!((caller.user.as_str(), caller.expires_at), ("eve", None));
    }

    #[test]
    fn a_bearer_token_is_read_in_any_case_of_its_scheme() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert!(JwtVerifier::hs256(b"short").is_err());
        assert!(JwtVerifier::hs256(&[7; 32]).is_ok());
    }
}
