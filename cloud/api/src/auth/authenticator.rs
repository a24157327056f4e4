//! Turning an `Authorization` header into a [`Caller`].

use std::sync::Arc;

use actix_web::http::header::HeaderValue;

use super::Role;
use super::oidc::{Oidc, OidcConfigError, OidcSettings, verify::looks_like_jwt};
use super::token::{TOKEN_PREFIX, digest, digest_eq, hash_token};
use shiki_cloud_model::Author;

use crate::{ApiError, Backend};

/// Identity recorded for requests made with `SHIKI_ADMIN_TOKEN` (not a valid token name, so
/// no stored token can impersonate it).
pub const ADMIN_TOKEN_IDENTITY: &str = "$SHIKI_ADMIN_TOKEN";

/// Shortest `SHIKI_ADMIN_TOKEN` accepted.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// Longest `Authorization` header value considered (a JWT with many groups runs to a few
/// kilobytes).
const MAX_HEADER_LEN: usize = 16 * 1024;

/// Authentication settings, filled in by the composition root from config/environment.
#[derive(Clone, Default)]
pub struct AuthConfig {
    /// `SHIKI_ADMIN_TOKEN`: always accepted as an admin token when set. An empty string
    /// counts as unset.
    pub admin_token: Option<String>,
    /// `[auth.oidc]`: bearer JWTs from the identity provider, and the web sign-in.
    pub oidc: Option<OidcSettings>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("oidc", &self.oidc)
            .finish()
    }
}

/// Why an [`AuthConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    #[error(
        "SHIKI_ADMIN_TOKEN is too short ({len} characters); use at least {MIN_ADMIN_TOKEN_LEN}"
    )]
    AdminTokenTooShort { len: usize },
    #[error("SHIKI_ADMIN_TOKEN must be printable ASCII without spaces")]
    AdminTokenCharacters,
    #[error(transparent)]
    Oidc(#[from] OidcConfigError),
}

/// How a [`Caller`] authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A stored API token.
    ApiToken,
    /// `SHIKI_ADMIN_TOKEN`.
    AdminToken,
    /// A bearer JWT from the identity provider.
    Oidc,
    /// The web page's session cookie (signed in at the identity provider).
    Session,
}

/// Who is calling, as established by [`Authenticator::authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Token name, or [`ADMIN_TOKEN_IDENTITY`].
    pub name: String,
    pub role: Role,
    /// The customer whose devices alone it sees; `None`: staff, every device.
    pub tenant: Option<String>,
    pub via: Via,
}

impl Caller {
    /// Who history names for this caller's changes: its token, or the person signed in at
    /// the identity provider, with the role it held.
    pub fn author(&self) -> Author {
        match self.via {
            Via::ApiToken | Via::AdminToken => Author::api_key(self.name.clone(), self.role),
            Via::Oidc | Via::Session => Author::user(self.name.clone(), self.role),
        }
    }
}

/// Checks bearer tokens: against `SHIKI_ADMIN_TOKEN` first, then the stored tokens, then
/// (JWTs) the identity provider; without a bearer token, the web session cookie.
#[derive(Clone, Default)]
pub struct Authenticator {
    admin_digest: Option<[u8; 32]>,
    oidc: Option<Arc<Oidc>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("admin_token_set", &self.admin_digest.is_some())
            .field("oidc", &self.oidc.as_ref().map(|o| &o.config.issuer))
            .finish()
    }
}

impl Authenticator {
    /// Validates the configuration.
    pub fn new(config: &AuthConfig) -> Result<Self, AuthConfigError> {
        let admin_digest = match config.admin_token.as_deref() {
            None | Some("") => None,
            Some(t) if !t.bytes().all(|b| b.is_ascii_graphic()) => {
                return Err(AuthConfigError::AdminTokenCharacters);
            }
            Some(t) if t.len() < MIN_ADMIN_TOKEN_LEN => {
                return Err(AuthConfigError::AdminTokenTooShort { len: t.len() });
            }
            Some(t) => Some(digest(t)),
        };
        let oidc = config.oidc.clone().map(Oidc::new).transpose()?;
        Ok(Authenticator { admin_digest, oidc })
    }

    /// The OIDC verifier and web sign-in, when `[auth.oidc]` is configured.
    pub fn oidc(&self) -> Option<&Oidc> {
        self.oidc.as_deref()
    }

    /// True when `SHIKI_ADMIN_TOKEN` is configured.
    pub fn has_admin_token(&self) -> bool {
        self.admin_digest.is_some()
    }

    /// Authenticates an `Authorization` header value.
    pub async fn authenticate(
        &self,
        backend: &dyn Backend,
        header: Option<&HeaderValue>,
    ) -> Result<Caller, ApiError> {
        let token = bearer_token(header)?;
        if let Some(admin) = &self.admin_digest
            && digest_eq(admin, &digest(token))
        {
            return Ok(Caller {
                name: ADMIN_TOKEN_IDENTITY.to_owned(),
                role: Role::Admin,
                tenant: None,
                via: Via::AdminToken,
            });
        }
        if !token.starts_with(TOKEN_PREFIX) {
            return match &self.oidc {
                Some(oidc) if looks_like_jwt(token) => oidc.bearer(token).await,
                _ => Err(ApiError::InvalidToken),
            };
        }
        match backend.token_by_hash(hash_token(token)).await {
            Ok(Some(record)) => Ok(Caller {
                name: record.name,
                role: record.role,
                tenant: record.tenant,
                via: Via::ApiToken,
            }),
            Ok(None) => Err(ApiError::InvalidToken),
            Err(e) => Err(ApiError::from_backend(e, || "token".to_owned())),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer_token(header: Option<&HeaderValue>) -> Result<&str, ApiError> {
    let value = header.ok_or(ApiError::MissingToken)?;
    if value.len() > MAX_HEADER_LEN {
        return Err(ApiError::InvalidToken);
    }
    let value = value.to_str().map_err(|_| ApiError::InvalidToken)?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::MissingToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::MissingToken);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(ApiError::MissingToken);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).expect("test header")
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token(Some(&hv("bearer abc"))), Ok("abc"));
        assert_eq!(bearer_token(Some(&hv("Bearer  abc "))), Ok("abc"));
    }

    #[test]
    fn other_schemes_and_empty_tokens_are_missing_tokens() {
        assert_eq!(bearer_token(None), Err(ApiError::MissingToken));
        assert_eq!(
            bearer_token(Some(&hv("Basic abc"))),
            Err(ApiError::MissingToken)
        );
        assert_eq!(
            bearer_token(Some(&hv("Bearer "))),
            Err(ApiError::MissingToken)
        );
        assert_eq!(bearer_token(Some(&hv("abc"))), Err(ApiError::MissingToken));
    }

    #[test]
    fn admin_token_config_is_validated() {
        let cfg = |t: &str| AuthConfig {
            admin_token: Some(t.to_owned()),
            oidc: None,
        };
        assert!(
            !Authenticator::new(&cfg(""))
                .expect("empty is unset")
                .has_admin_token()
        );
        assert_eq!(
            Authenticator::new(&cfg("short")).err(),
            Some(AuthConfigError::AdminTokenTooShort { len: 5 })
        );
        assert_eq!(
            Authenticator::new(&cfg("has a space in it!!")).err(),
            Some(AuthConfigError::AdminTokenCharacters)
        );
        assert!(
            Authenticator::new(&cfg("0123456789abcdef"))
                .expect("long enough")
                .has_admin_token()
        );
    }

    #[test]
    fn debug_output_never_shows_the_admin_token() {
        let cfg = AuthConfig {
            admin_token: Some("super-secret-token-123".into()),
            oidc: None,
        };
        assert!(!format!("{cfg:?}").contains("super-secret"));
        let auth = Authenticator::new(&cfg).expect("valid");
        assert!(!format!("{auth:?}").contains("super-secret"));
    }
}
