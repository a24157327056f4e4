//! Bearer-token authentication for the admin API.
//!
//! - Tokens are `shiki_` followed by 64 hex digits (256 random bits, [`generate_token`]).
//!   Only their SHA-256 ([`hash_token`]) is stored; a presented token is looked up by its
//!   hash through [`Backend::token_by_hash`](crate::Backend::token_by_hash).
//! - `SHIKI_ADMIN_TOKEN`, when configured ([`AuthConfig::admin_token`]), always
//!   authenticates as admin (identity `$SHIKI_ADMIN_TOKEN`); it is compared in constant time.
//! - [`require_token`] is the middleware on `/api`: no usable token → 401 with
//!   `WWW-Authenticate: Bearer`; otherwise it stores the [`Caller`] in the request. An
//!   address with too many bad tokens in a window is locked out for a while (429 with
//!   `Retry-After`, good token or not; [`FailedAuthLimiter`]).
//! - [`Authorized<R>`] is the extractor each handler names to demand a role: [`CanRead`]
//!   (viewer), [`CanOperate`] (operator), [`CanAdminister`] (admin); too weak → 403.
//! - [`bootstrap_admin`] creates the first admin token on an empty store.
//! - [`oidc`]: bearer JWTs from the company's identity provider, and the web page's
//!   sign-in (Authorization Code + PKCE, server-side sessions behind an HttpOnly cookie).

mod authenticator;
mod bootstrap;
mod device_password;
mod limiter;
mod middleware;
pub mod oidc;
mod token;

pub use authenticator::{
    ADMIN_TOKEN_IDENTITY, AuthConfig, AuthConfigError, Authenticator, Caller, MIN_ADMIN_TOKEN_LEN,
    Via,
};
pub use bootstrap::{BOOTSTRAP_TOKEN_NAME, bootstrap_admin};
pub use device_password::{generate_device_password, hash_device_password, verify_device_password};
pub use limiter::{ClientKey, FailedAuthLimiter, FailedAuthLimits, FailureBook, LockedOut};
pub use middleware::{
    AdminAccess, Authorized, CanAdminister, CanOperate, CanRead, OperatorAccess, RequiredRole,
    ViewerAccess, require_token,
};
pub(crate) use middleware::{locked_out, note_failure};
pub use shiki_cloud_model::Role;
pub use token::{TOKEN_PREFIX, generate_token, hash_token, valid_token_name};
