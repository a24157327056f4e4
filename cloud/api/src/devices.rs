//! Device routes: list, view, desired change, history (JSON/CSV), telemetry, events.

use actix_web::{
    HttpResponse,
    http::header::{self, ContentDisposition, DispositionParam, DispositionType},
    web,
};
use serde::Serialize;
use serde_json::json;
use shiki_proto::DeviceId;

use super::params::{DEFAULT_LIMIT, Format, MAX_EXPORT_ROWS, MAX_LIMIT, RangeQuery, device_id};
use super::{
    ApiError, ApiState, Backend, BackendFuture, DesiredChange, EventRow, TelemetryRow, TimeRange,
    csv, ops::method_not_allowed,
};
use crate::auth::{CanOperate, CanRead};

/// Most keys one desired change may set.
pub const MAX_PATCH_KEYS: usize = 256;
/// Longest comment accepted, in characters.
pub const MAX_COMMENT_CHARS: usize = 1000;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    let resource = |path: &str| web::resource(path).default_service(web::to(method_not_allowed));
    cfg.service(resource("/devices").route(web::get().to(list_devices)))
        .service(resource("/devices/{id}").route(web::get().to(get_device)))
        .service(resource("/devices/{id}/desired").route(web::patch().to(patch_desired)))
        .service(resource("/devices/{id}/history").route(web::get().to(history)))
        .service(resource("/devices/{id}/telemetry").route(web::get().to(telemetry)))
        .service(resource("/devices/{id}/events").route(web::get().to(events)));
}

fn device_error(id: &DeviceId) -> impl FnOnce(super::BackendError) -> ApiError + '_ {
    move |e| ApiError::from_backend(e, || format!("device {:?}", id.as_str()))
}

async fn list_devices(
    _auth: CanRead,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let mut devices = state
        .backend
        .list_devices()
        .await
        .map_err(|e| ApiError::from_backend(e, || "devices".into()))?;
    devices.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(HttpResponse::Ok().json(json!({ "devices": devices })))
}

async fn get_device(
    _auth: CanRead,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = device_id(&id)?;
    match state
        .backend
        .device(id.clone())
        .await
        .map_err(device_error(&id))?
    {
        Some(view) => Ok(HttpResponse::Ok().json(view)),
        None => Err(ApiError::NotFound(format!(
            "device {:?} not found",
            id.as_str()
        ))),
    }
}

async fn patch_desired(
    auth: CanOperate,
    state: web::Data<ApiState>,
    id: web::Path<String>,
    body: web::Json<DesiredChange>,
) -> Result<HttpResponse, ApiError> {
    let id = device_id(&id)?;
    let patch = body.into_inner();
    check_patch(&patch, &state)?;
    let keys: Vec<String> = patch.settings.keys().cloned().collect();
    let author = auth.caller.author();
    let outcome = state
        .backend
        .patch_desired(id.clone(), patch, author)
        .await
        .map_err(device_error(&id))?;
    tracing::info!(
        device_id = %id,
        caller = %auth.caller.name,
        role = %auth.caller.role,
        version = outcome.version,
        ?keys,
        "desired state changed"
    );
    Ok(HttpResponse::Ok().json(outcome))
}

/// Checks the shape of a desired change; the backend checks it against the catalog.
fn check_patch(patch: &DesiredChange, state: &ApiState) -> Result<(), ApiError> {
    if patch.settings.is_empty() {
        return Err(ApiError::InvalidBody(
            "settings must name at least one key".into(),
        ));
    }
    if patch.settings.len() > MAX_PATCH_KEYS {
        return Err(ApiError::InvalidBody(format!(
            "settings has {} keys; at most {MAX_PATCH_KEYS} per change",
            patch.settings.len()
        )));
    }
    if let Some(until) = patch.until
        && until <= state.now()
    {
        return Err(ApiError::InvalidBody(format!(
            "until ({}) must lie in the future",
            until.to_rfc3339()
        )));
    }
    if let Some(comment) = &patch.comment
        && comment.chars().count() > MAX_COMMENT_CHARS
    {
        return Err(ApiError::InvalidBody(format!(
            "comment is longer than {MAX_COMMENT_CHARS} characters"
        )));
    }
    Ok(())
}

async fn history(
    _auth: CanRead,
    state: web::Data<ApiState>,
    id: web::Path<String>,
    query: web::Query<RangeQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = device_id(&id)?;
    let range = query.range()?;
    let format = query.format()?;
    let limit = match format {
        Format::Json => query.limit(DEFAULT_LIMIT, MAX_LIMIT)?,
        Format::Csv => query.limit(MAX_EXPORT_ROWS, MAX_EXPORT_ROWS)?,
    };
    let mut entries = state
        .backend
        .history(id.clone(), range, limit)
        .await
        .map_err(device_error(&id))?;
    // The contract is newest first; a stable sort keeps the backend's order within a tick.
    entries.sort_by_key(|e| std::cmp::Reverse(e.ts));
    entries.truncate(limit);
    match format {
        Format::Json => Ok(HttpResponse::Ok().json(json!({
            "device": id,
            "limit": limit,
            "history": entries,
        }))),
        Format::Csv => Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header(ContentDisposition {
                disposition: DispositionType::Attachment,
                parameters: vec![DispositionParam::Filename(format!("{id}-history.csv"))],
            })
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(csv::history(&entries))),
    }
}

async fn telemetry(
    _auth: CanRead,
    state: web::Data<ApiState>,
    id: web::Path<String>,
    query: web::Query<RangeQuery>,
) -> Result<HttpResponse, ApiError> {
    in_seq_order(&state, &id, &query, "samples", |b, id, range, limit| {
        b.telemetry(id, range, limit)
    })
    .await
}

async fn events(
    _auth: CanRead,
    state: web::Data<ApiState>,
    id: web::Path<String>,
    query: web::Query<RangeQuery>,
) -> Result<HttpResponse, ApiError> {
    in_seq_order(&state, &id, &query, "events", |b, id, range, limit| {
        b.events(id, range, limit)
    })
    .await
}

/// A device's records in the query's range, oldest first (by seq), at most `limit`:
/// `{"device", "limit", <field>: [...]}`.
async fn in_seq_order<T: Serialize + HasSeq>(
    state: &ApiState,
    id: &str,
    query: &RangeQuery,
    field: &str,
    fetch: fn(&dyn Backend, DeviceId, TimeRange, usize) -> BackendFuture<'_, Vec<T>>,
) -> Result<HttpResponse, ApiError> {
    let id = device_id(id)?;
    let range = query.range()?;
    let limit = query.limit(DEFAULT_LIMIT, MAX_LIMIT)?;
    let mut rows = fetch(state.backend.as_ref(), id.clone(), range, limit)
        .await
        .map_err(device_error(&id))?;
    rows.sort_by_key(HasSeq::seq);
    rows.truncate(limit);
    Ok(HttpResponse::Ok().json(json!({ "device": id, "limit": limit, field: rows })))
}

/// A record with a per-device sequence number.
trait HasSeq {
    fn seq(&self) -> u64;
}

impl HasSeq for TelemetryRow {
    fn seq(&self) -> u64 {
        self.seq
    }
}

impl HasSeq for EventRow {
    fn seq(&self) -> u64 {
        self.seq
    }
}
