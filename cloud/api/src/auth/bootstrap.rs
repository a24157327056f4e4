//! The first admin token.

use chrono::{DateTime, Utc};

use super::{Authenticator, Role, generate_token, hash_token};
use crate::{Backend, BackendError, NewToken};

/// Name of the token [`bootstrap_admin`] creates.
pub const BOOTSTRAP_TOKEN_NAME: &str = "admin";

/// On first start: when no token exists and `SHIKI_ADMIN_TOKEN` is not configured, creates
/// an admin token named `admin` and returns its secret, which the caller prints once (it
/// cannot be recovered later; revoke it and create another if lost). Returns `None` when
/// tokens exist already or the configured admin token makes a stored one unnecessary.
pub async fn bootstrap_admin(
    backend: &dyn Backend,
    auth: &Authenticator,
    now: DateTime<Utc>,
) -> Result<Option<String>, BackendError> {
    if auth.has_admin_token() || !backend.list_tokens().await?.is_empty() {
        return Ok(None);
    }
    let token = generate_token();
    backend
        .create_token(NewToken {
            tenant: None,
            name: BOOTSTRAP_TOKEN_NAME.to_owned(),
            role: Role::Admin,
            hash: hash_token(&token),
            created_at: now,
            created_by: "bootstrap".to_owned(),
        })
        .await?;
    tracing::warn!(
        name = BOOTSTRAP_TOKEN_NAME,
        "created the first admin token; it is shown once"
    );
    Ok(Some(token))
}
