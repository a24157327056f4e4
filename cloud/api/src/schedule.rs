//! Schedule routes: `PUT /api/v1/devices/{id}/schedule[?slot=current|next]` (operator) and
//! `GET /api/v1/devices/{id}/schedule` (viewer). See `crate::schedule` for the semantics.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::devices::ensure_visible;
use super::params::device_id;
use super::{ApiError, ApiState, ops::method_not_allowed};
use crate::SlotChoice;
use crate::auth::{CanOperate, CanRead};

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/devices/{id}/schedule")
            .app_data(super::error::schedule_json_config())
            .route(web::get().to(get_schedule))
            .route(web::put().to(put_schedule))
            .default_service(web::to(method_not_allowed)),
    );
}

/// `?slot=current|next` (absent: chosen by the validity).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotQuery {
    #[serde(default)]
    slot: Option<SlotParam>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SlotParam {
    Current,
    Next,
}

async fn put_schedule(
    auth: CanOperate,
    state: web::Data<ApiState>,
    id: web::Path<String>,
    query: web::Query<SlotQuery>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let id = device_id(&id)?;
    ensure_visible(&state, &auth.caller, &id).await?;
    let slot = match query.slot {
        None => SlotChoice::Auto,
        Some(SlotParam::Current) => SlotChoice::Current,
        Some(SlotParam::Next) => SlotChoice::Next,
    };
    let response = state
        .backend
        .put_schedule(id.clone(), slot, body.into_inner(), auth.caller.author())
        .await
        .map_err(|e| ApiError::from_backend(e, || format!("device {:?}", id.as_str())))?;
    tracing::info!(
        device_id = %id,
        caller = %auth.caller.name,
        slot = ?response.slot,
        pushed = response.pushed,
        "schedule put"
    );
    Ok(HttpResponse::Ok().json(response))
}

async fn get_schedule(
    auth: CanRead,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = device_id(&id)?;
    ensure_visible(&state, &auth.caller, &id).await?;
    let view = state
        .backend
        .schedule(id.clone())
        .await
        .map_err(|e| ApiError::from_backend(e, || format!("device {:?}", id.as_str())))?;
    Ok(HttpResponse::Ok().json(view))
}
