//! `[auth.oidc]`: the identity provider people sign in with.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use shiki_shared::config::duration;

use crate::auth::Role;

/// `[auth.oidc]` of the cloud's config file. Every key is documented in
/// `deploy/cloud.example.toml`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer URL exactly as the provider names itself (`iss`); its discovery document
    /// is `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// What a bearer token's `aud` must contain (or, for tokens without `aud` such as
    /// Cognito access tokens, what `client_id` must be).
    pub audience: String,
    /// Claim holding the caller's groups (a list or one string); dots reach into objects
    /// (`realm_access.roles`).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// IdP group → Shiki role; the strongest role among the caller's groups wins.
    #[serde(default)]
    pub role_map: BTreeMap<String, Role>,
    /// Claim naming the caller's tenant; unset, or absent from a token: staff (all devices).
    #[serde(default)]
    pub tenant_claim: Option<String>,
    /// Claim history records as the caller's name (falls back to `email`, then `sub`).
    #[serde(default = "default_name_claim")]
    pub name_claim: String,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway", with = "duration")]
    pub leeway: Duration,
    /// Least time between two fetches of the key set caused by an unknown `kid`.
    #[serde(default = "default_jwks_min_refetch", with = "duration")]
    pub jwks_min_refetch: Duration,
    /// The key set is fetched again when older than this (keys the provider retired stop
    /// being accepted).
    #[serde(default = "default_jwks_max_age", with = "duration")]
    pub jwks_max_age: Duration,
    /// The web page's client at the provider; unset: the page signs in with API tokens only.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Its secret (`SHIKI_CLOUD_AUTH__OIDC__CLIENT_SECRET`); unset: a public client (PKCE only).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Scopes the web login asks for.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Where the provider sends the browser back; default `{api.public_url}/auth/callback`.
    #[serde(default)]
    pub redirect_url: Option<String>,
    /// Where the provider sends the browser after signing out; default `{api.public_url}/`.
    #[serde(default)]
    pub post_logout_redirect_url: Option<String>,
    /// How long a web sign-in lasts.
    #[serde(default = "default_session_ttl", with = "duration")]
    pub session_ttl: Duration,
    /// Mark the session cookie `Secure` (browsers still keep it on `http://localhost`).
    #[serde(default = "default_true")]
    pub cookie_secure: bool,
}

fn default_roles_claim() -> String {
    "groups".into()
}
fn default_name_claim() -> String {
    "preferred_username".into()
}
fn default_leeway() -> Duration {
    Duration::from_secs(60)
}
fn default_jwks_min_refetch() -> Duration {
    Duration::from_secs(30)
}
fn default_jwks_max_age() -> Duration {
    Duration::from_secs(3600)
}
fn default_scopes() -> Vec<String> {
    ["openid", "profile", "email"].map(String::from).to_vec()
}
fn default_session_ttl() -> Duration {
    Duration::from_secs(8 * 3600)
}
fn default_true() -> bool {
    true
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("roles_claim", &self.roles_claim)
            .field("role_map", &self.role_map)
            .field("tenant_claim", &self.tenant_claim)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

/// A key of `[auth.oidc]` that cannot work, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} {reason}")]
pub struct OidcConfigError {
    /// The whole key, e.g. `auth.oidc.issuer`.
    pub key: &'static str,
    pub reason: String,
}

fn invalid(key: &'static str, reason: impl Into<String>) -> OidcConfigError {
    OidcConfigError {
        key,
        reason: reason.into(),
    }
}

impl OidcConfig {
    /// Checks what can be checked without the provider.
    pub fn validate(&self) -> Result<(), OidcConfigError> {
        check_url("auth.oidc.issuer", &self.issuer)?;
        if self.audience.trim().is_empty() {
            return Err(invalid(
                "auth.oidc.audience",
                "is empty: set the audience your provider puts in access tokens for Shiki",
            ));
        }
        if self.roles_claim.trim().is_empty() {
            return Err(invalid(
                "auth.oidc.roles_claim",
                "is empty (e.g. \"groups\")",
            ));
        }
        if self.role_map.is_empty() {
            return Err(invalid(
                "auth.oidc.role_map",
                "is empty: nobody could do anything; map at least one group, e.g. \
                 role_map = { \"shiki-admins\" = \"admin\" }",
            ));
        }
        if let Some(claim) = &self.tenant_claim
            && claim.trim().is_empty()
        {
            return Err(invalid(
                "auth.oidc.tenant_claim",
                "is empty: remove it or name a claim",
            ));
        }
        if self.client_id.is_some() && !self.scopes.iter().any(|s| s == "openid") {
            return Err(invalid("auth.oidc.scopes", "must include \"openid\""));
        }
        if let Some(url) = &self.redirect_url {
            check_url("auth.oidc.redirect_url", url)?;
        }
        if let Some(url) = &self.post_logout_redirect_url {
            check_url("auth.oidc.post_logout_redirect_url", url)?;
        }
        if self.session_ttl < Duration::from_secs(60) {
            return Err(invalid("auth.oidc.session_ttl", "is shorter than a minute"));
        }
        Ok(())
    }
}

/// `https://…`, or `http://` to a loopback host (a test or lab provider).
fn check_url(key: &'static str, url: &str) -> Result<(), OidcConfigError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| invalid(key, format!("is not a URL ({url:?}: {e})")))?;
    let loopback = match parsed.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(invalid(
            key,
            format!("must be an https:// URL (http:// only to localhost): {url:?}"),
        )),
    }
}
