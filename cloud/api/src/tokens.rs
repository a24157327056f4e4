//! Token routes (admin only): create (the secret is returned once), list, revoke.

use actix_web::{HttpResponse, http::header, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ApiError, ApiState, NewToken, ops::resource};
use crate::auth::{CanAdminister, Role, generate_token, hash_token, valid_token_name};

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/tokens", "GET, POST")
            .route(web::get().to(list_tokens))
            .route(web::post().to(create_token)),
    )
    .service(resource("/tokens/{name}", "DELETE").route(web::delete().to(revoke_token)));
}

/// Body of `POST /api/v1/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    name: String,
    role: Role,
    /// The customer whose devices alone the token sees (none: staff).
    #[serde(default)]
    tenant: Option<String>,
}

async fn create_token(
    auth: CanAdminister,
    state: web::Data<ApiState>,
    body: web::Json<CreateToken>,
) -> Result<HttpResponse, ApiError> {
    let CreateToken { name, role, tenant } = body.into_inner();
    crate::devices::check_tenant(tenant.as_deref())?;
    // A tenant's admin makes tokens of its own tenant only.
    if auth.caller.tenant.is_some() && tenant != auth.caller.tenant {
        return Err(ApiError::InvalidBody(format!(
            "tenant: this token may create tokens of tenant {:?} only",
            auth.caller.tenant.as_deref().unwrap_or_default()
        )));
    }
    if !valid_token_name(&name) {
        return Err(ApiError::InvalidBody(format!(
            "token name {name:?} must be 1 to 64 characters of A-Z, a-z, 0-9, '_', '.', '@' or '-'"
        )));
    }
    let secret = generate_token();
    let info = state
        .backend
        .create_token(NewToken {
            name: name.clone(),
            role,
            hash: hash_token(&secret),
            created_at: state.now(),
            created_by: auth.caller.name.clone(),
            tenant: tenant.clone(),
        })
        .await
        .map_err(|e| ApiError::from_backend(e, || format!("token {name:?}")))?;
    tracing::info!(token = %info.name, role = %info.role, by = %auth.caller.name, "token created");
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(CreatedToken {
            info,
            token: secret,
        }))
}

/// The answer of `POST /api/v1/tokens`: the token as the list shows it (a staff token
/// without `tenant`, as documented), and its secret, this once.
#[derive(Debug, Serialize)]
struct CreatedToken {
    #[serde(flatten)]
    info: crate::TokenInfo,
    token: String,
}

async fn list_tokens(
    auth: CanAdminister,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let mut tokens = state
        .backend
        .list_tokens()
        .await
        .map_err(|e| ApiError::from_backend(e, || "tokens".into()))?;
    // A tenant's admin sees its tenant's tokens only.
    if let Some(own) = &auth.caller.tenant {
        tokens.retain(|t| t.tenant.as_ref() == Some(own));
    }
    tokens.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(HttpResponse::Ok().json(json!({ "tokens": tokens })))
}

async fn revoke_token(
    auth: CanAdminister,
    state: web::Data<ApiState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    let not_found = || ApiError::NotFound(format!("token {name:?} not found"));
    if !valid_token_name(&name) {
        return Err(not_found());
    }
    let tokens = state
        .backend
        .list_tokens()
        .await
        .map_err(|e| ApiError::from_backend(e, || "tokens".into()))?;
    let target = tokens
        .iter()
        .find(|t| t.name == name)
        .filter(|t| auth.caller.tenant.is_none() || t.tenant == auth.caller.tenant)
        .ok_or_else(not_found)?;
    // The last staff admin token stays (tenants' admins cannot run the fleet).
    let staff_admins = tokens
        .iter()
        .filter(|t| t.role == Role::Admin && t.tenant.is_none())
        .count();
    if target.role == Role::Admin
        && target.tenant.is_none()
        && staff_admins == 1
        && !state.auth.has_admin_token()
    {
        return Err(ApiError::Conflict(format!(
            "token {name:?} is the last admin token; create another admin token (or set SHIKI_ADMIN_TOKEN) first"
        )));
    }
    state
        .backend
        .revoke_token(name.clone())
        .await
        .map_err(|e| ApiError::from_backend(e, || format!("token {name:?}")))?;
    tracing::info!(token = %name, by = %auth.caller.name, "token revoked");
    Ok(HttpResponse::NoContent().finish())
}
