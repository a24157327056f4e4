//! OpenID Connect: people sign in at the company's identity provider.
//!
//! - **Bearer JWTs** ([`Oidc::bearer`]): access tokens from the provider, verified against
//!   its JWKS ([`keys`]): asymmetric algorithms only, `iss`, audience (`aud`, or `client_id`
//!   for tokens without one), `exp`/`nbf` with `leeway`. Refusals are 401 with a `reason`.
//! - **Web sign-in** ([`web`]): Authorization Code with PKCE; the ID token is verified
//!   (audience = the web client, `nonce`), and the browser gets an HttpOnly, SameSite=Strict
//!   cookie naming a server-side session ([`sessions`]). Tokens never reach the page.
//! - **Identity** ([`identity`]): name, role (`roles_claim` through `role_map`, strongest
//!   wins; none → 403) and tenant (`tenant_claim`).

mod config;
mod identity;
pub mod keys;
pub mod sessions;
pub mod verify;
pub(crate) mod web;

use std::sync::Arc;

pub use config::{OidcConfig, OidcConfigError};
pub use identity::IdentityError;
pub use verify::{Refusal, VerifyError};

use crate::ApiError;
use crate::auth::{Caller, Via};
use keys::ProviderKeys;
use sessions::{PendingLogins, Sessions};

/// `[auth.oidc]` with what the composition root adds: where the API is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    pub config: OidcConfig,
    /// `api.public_url`: the default redirect and post-logout URLs hang off it.
    pub public_url: String,
}

/// The web client, when `client_id` is set.
#[derive(Debug)]
pub(crate) struct WebClient {
    pub client_id: String,
    pub client_secret: Option<String>,
    pub redirect_url: String,
    pub post_logout_url: String,
}

/// The OIDC verifier and the web sign-in state; one per API (shared by its workers).
#[derive(Debug)]
pub struct Oidc {
    pub(crate) config: OidcConfig,
    pub(crate) keys: ProviderKeys,
    pub(crate) web: Option<WebClient>,
    pub(crate) sessions: Sessions,
    pub(crate) pending: PendingLogins,
}

impl Oidc {
    /// Validates the settings; nothing is fetched until the first token arrives.
    pub fn new(settings: OidcSettings) -> Result<Arc<Self>, OidcConfigError> {
        let OidcSettings { config, public_url } = settings;
        config.validate()?;
        let base = public_url.trim_end_matches('/');
        let web = config.client_id.clone().map(|client_id| WebClient {
            client_id,
            client_secret: config.client_secret.clone().filter(|s| !s.is_empty()),
            redirect_url: config
                .redirect_url
                .clone()
                .unwrap_or_else(|| format!("{base}/auth/callback")),
            post_logout_url: config
                .post_logout_redirect_url
                .clone()
                .unwrap_or_else(|| format!("{base}/")),
        });
        Ok(Arc::new(Oidc {
            keys: ProviderKeys::new(&config.issuer, config.jwks_min_refetch, config.jwks_max_age),
            config,
            web,
            sessions: Sessions::default(),
            pending: PendingLogins::default(),
        }))
    }

    /// The provider's keys (tests read how often they were fetched).
    pub fn keys(&self) -> &ProviderKeys {
        &self.keys
    }

    /// Authenticates a bearer JWT.
    pub async fn bearer(&self, token: &str) -> Result<Caller, ApiError> {
        let claims = verify::verify(
            &self.keys,
            token,
            &self.config.issuer,
            &self.config.audience,
            self.config.leeway,
        )
        .await
        .map_err(|e| match e {
            VerifyError::Refused(r) => ApiError::TokenRefused(r),
            VerifyError::Unavailable(reason) => ApiError::Unavailable(format!(
                "cannot check the token: the identity provider's keys are unavailable ({reason})"
            )),
        })?;
        identity::caller(&self.config, &claims, Via::Oidc).map_err(ApiError::from)
    }

    /// The caller of a live web session.
    pub fn session(&self, id: &str) -> Option<Caller> {
        self.sessions.get(id).map(|s| s.caller)
    }
}
