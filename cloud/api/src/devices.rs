//! Device routes: list, view, desired change, history (JSON/CSV), telemetry, events; and
//! the registry (admin): register with a new MQTT password, rotate it, retire.

use actix_web::{
    HttpResponse,
    http::header::{self, ContentDisposition, DispositionParam, DispositionType},
    web,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shiki_proto::DeviceId;

use super::params::{DEFAULT_LIMIT, Format, MAX_EXPORT_ROWS, MAX_LIMIT, RangeQuery, device_id};
use super::{
    ApiError, ApiState, Backend, BackendFuture, DesiredChange, EventRow, NewRegistration,
    Registration, TelemetryRow, TimeRange, csv, ops::resource,
};
use crate::auth::{
    CanAdminister, CanOperate, CanRead, generate_device_password, hash_device_password,
};

/// Most keys one desired change may set.
pub const MAX_PATCH_KEYS: usize = 256;
/// Longest comment accepted, in characters.
pub const MAX_COMMENT_CHARS: usize = 1000;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/devices", "GET, POST")
            .route(web::get().to(list_devices))
            .route(web::post().to(register_device)),
    )
    .service(
        resource("/devices/{id}", "GET, PATCH, DELETE")
            .route(web::get().to(get_device))
            .route(web::patch().to(patch_device))
            .route(web::delete().to(retire_device)),
    )
    .service(
        resource("/devices/{id}/credentials", "POST").route(web::post().to(rotate_credentials)),
    )
    .service(resource("/devices/{id}/desired", "PATCH").route(web::patch().to(patch_desired)))
    .service(resource("/devices/{id}/history", "GET").route(web::get().to(history)))
    .service(resource("/devices/{id}/telemetry", "GET").route(web::get().to(telemetry)))
    .service(
        resource("/devices/{id}/telemetry/series", "GET")
            .route(web::get().to(crate::series::series)),
    )
    .service(resource("/devices/{id}/events", "GET").route(web::get().to(events)));
}

/// A device outside the caller's tenant is, to the caller, a device that does not exist.
pub(crate) async fn ensure_visible(
    state: &ApiState,
    caller: &crate::auth::Caller,
    id: &DeviceId,
) -> Result<(), ApiError> {
    let Some(tenant) = &caller.tenant else {
        return Ok(());
    };
    let owner = state
        .backend
        .device_tenant(id.clone())
        .await
        .map_err(device_error(id))?;
    if owner.as_ref() == Some(tenant) {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!(
            "device {:?} not found",
            id.as_str()
        )))
    }
}

fn device_error(id: &DeviceId) -> impl FnOnce(super::BackendError) -> ApiError + '_ {
    move |e| ApiError::from_backend(e, || format!("device {:?}", id.as_str()))
}

/// `GET /api/v1/devices` query: filter, order and page (all optional; without `limit`
/// every matching device is listed).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Text the device id or tenant contains (case-insensitive).
    q: Option<String>,
    /// `online` or `offline`.
    state: Option<String>,
    /// `id` (default), `last_seen` (newest first) or `pending` (most pending first).
    sort: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
}

/// Most devices one page lists.
pub const MAX_PAGE: usize = 1000;

async fn list_devices(
    auth: CanRead,
    state: web::Data<ApiState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let online = match query.state.as_deref() {
        None | Some("") => None,
        Some("online") => Some(true),
        Some("offline") => Some(false),
        Some(other) => {
            return Err(ApiError::InvalidParameter {
                parameter: "state",
                reason: format!("{other:?}: use online or offline"),
            });
        }
    };
    if query.limit.is_some_and(|l| l == 0 || l > MAX_PAGE) {
        return Err(ApiError::InvalidParameter {
            parameter: "limit",
            reason: format!("must be 1 to {MAX_PAGE}"),
        });
    }
    let mut devices = state
        .backend
        .list_devices()
        .await
        .map_err(|e| ApiError::from_backend(e, || "devices".into()))?;
    if let Some(online) = online {
        devices.retain(|d| d.online == online);
    }
    let needle = query
        .q
        .as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(str::to_lowercase);
    // Tenants are looked up per device, once, and only where needed: for a tenant
    // caller (it sees its own devices only), for a search (which matches tenants too), and
    // for the page shown.
    let looked_up = auth.caller.tenant.is_some() || needle.is_some();
    if looked_up {
        let mut kept = Vec::with_capacity(devices.len());
        for mut d in devices {
            d.tenant = tenant_of(&state, &d.id).await;
            if auth.caller.tenant.is_some() && d.tenant != auth.caller.tenant {
                continue;
            }
            let matches = |text: &str| {
                needle
                    .as_deref()
                    .is_none_or(|n| text.to_lowercase().contains(n))
            };
            if !matches(d.id.as_str()) && !d.tenant.as_deref().is_some_and(matches) {
                continue;
            }
            kept.push(d);
        }
        devices = kept;
    }
    match query.sort.as_deref() {
        None | Some("") | Some("id") => devices.sort_by(|a, b| a.id.cmp(&b.id)),
        Some("last_seen") => {
            devices.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.id.cmp(&b.id)))
        }
        Some("pending") => devices.sort_by(|a, b| {
            b.pending_verifications
                .cmp(&a.pending_verifications)
                .then(a.id.cmp(&b.id))
        }),
        Some(other) => {
            return Err(ApiError::InvalidParameter {
                parameter: "sort",
                reason: format!("{other:?}: use id, last_seen or pending"),
            });
        }
    }
    let total = devices.len();
    let offset = query.offset.unwrap_or(0).min(total);
    let limit = query.limit.unwrap_or(total.max(1));
    let mut page: Vec<_> = devices.into_iter().skip(offset).take(limit).collect();
    // The page's tenants and newest samples (the list itself carries only what sorting
    // and filtering need, so a fleet of thousands stays cheap to list).
    for d in page.iter_mut() {
        if !looked_up {
            d.tenant = tenant_of(&state, &d.id).await;
        }
        if let Ok(Some(view)) = state.backend.device(d.id.clone()).await
            && let Some(sample) = view.last_telemetry
        {
            d.last_sample_at = Some(sample.ts);
            d.last_values = sample.values;
        }
    }
    Ok(HttpResponse::Ok().json(json!({
        "devices": page,
        "total": total,
        "offset": offset,
        "limit": query.limit,
    })))
}

/// The device's tenant for listing (a lookup that fails lists it without one).
async fn tenant_of(state: &ApiState, id: &DeviceId) -> Option<String> {
    state.backend.device_tenant(id.clone()).await.ok().flatten()
}

/// Body of `POST /api/v1/devices`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterDevice {
    id: String,
    #[serde(default)]
    tenant: Option<String>,
}

/// A tenant name: 1 to 64 characters of `A-Z a-z 0-9 _ . @ -`.
pub(crate) fn valid_tenant(t: &str) -> bool {
    (1..=64).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'))
}

/// A 400 naming the rule when a given tenant name breaks it.
pub(crate) fn check_tenant(tenant: Option<&str>) -> Result<(), ApiError> {
    match tenant.filter(|t| !valid_tenant(t)) {
        Some(t) => Err(ApiError::InvalidBody(format!(
            "tenant {t:?} must be 1 to 64 characters of A-Z, a-z, 0-9, '_', '.', '@' or '-'"
        ))),
        None => Ok(()),
    }
}

/// The answer that carries a new password (shown once, never cached).
fn with_password(
    status: actix_web::http::StatusCode,
    r: &Registration,
    password: &str,
) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "id": r.id,
            "tenant": r.tenant,
            "mqtt_password": password,
            "created_at": r.created_at,
            "credentials_at": r.credentials_at,
        }))
}

async fn register_device(
    auth: CanAdminister,
    state: web::Data<ApiState>,
    body: web::Json<RegisterDevice>,
) -> Result<HttpResponse, ApiError> {
    let RegisterDevice { id, mut tenant } = body.into_inner();
    if let Some(own) = &auth.caller.tenant {
        match &tenant {
            None => tenant = Some(own.clone()),
            Some(t) if t == own => {}
            Some(_) => {
                return Err(ApiError::InvalidBody(format!(
                    "tenant: this token may register devices of tenant {own:?} only"
                )));
            }
        }
    }
    let id = DeviceId::new(&id).map_err(|e| ApiError::InvalidBody(format!("id: {e}")))?;
    check_tenant(tenant.as_deref())?;
    let password = generate_device_password();
    let password_hash = hash_in_pool(password.clone()).await?;
    let registration = state
        .backend
        .register_device(NewRegistration {
            id: id.clone(),
            tenant,
            password_hash,
            at: state.now(),
            by: auth.caller.name.clone(),
        })
        .await
        .map_err(device_error(&id))?;
    tracing::info!(device = %id, tenant = ?registration.tenant, by = %auth.caller.name, "device registered");
    Ok(with_password(
        actix_web::http::StatusCode::CREATED,
        &registration,
        &password,
    ))
}

async fn rotate_credentials(
    auth: CanAdminister,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = device_id(&id)?;
    ensure_visible(&state, &auth.caller, &id).await?;
    let password = generate_device_password();
    let hash = hash_in_pool(password.clone()).await?;
    let registration = state
        .backend
        .set_device_password(id.clone(), hash, state.now())
        .await
        .map_err(device_error(&id))?;
    tracing::info!(device = %id, by = %auth.caller.name, "device password rotated");
    Ok(with_password(
        actix_web::http::StatusCode::OK,
        &registration,
        &password,
    ))
}

/// Body of `PATCH /api/v1/devices/{id}`: `tenant` set to a name, or `null` to clear it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchDevice {
    /// Required; `null` clears it (a plain `Option` field would default to `None`).
    #[serde(deserialize_with = "Option::deserialize")]
    tenant: Option<String>,
}

async fn patch_device(
    auth: CanAdminister,
    state: web::Data<ApiState>,
    id: web::Path<String>,
    body: web::Json<PatchDevice>,
) -> Result<HttpResponse, ApiError> {
    let id = device_id(&id)?;
    ensure_visible(&state, &auth.caller, &id).await?;
    let PatchDevice { tenant } = body.into_inner();
    if auth.caller.tenant.is_some() && tenant != auth.caller.tenant {
        return Err(ApiError::InvalidBody(
            "tenant: a tenant's token cannot move a device to another tenant".into(),
        ));
    }
    check_tenant(tenant.as_deref())?;
    let registration = state
        .backend
        .set_device_tenant(id.clone(), tenant)
        .await
        .map_err(device_error(&id))?;
    tracing::info!(device = %id, tenant = ?registration.tenant, by = %auth.caller.name, "device tenant set");
    Ok(HttpResponse::Ok().json(&registration))
}

async fn retire_device(
    auth: CanAdminister,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = device_id(&id)?;
    ensure_visible(&state, &auth.caller, &id).await?;
    state
        .backend
        .retire_device(id.clone(), state.now())
        .await
        .map_err(device_error(&id))?;
    tracing::info!(device = %id, by = %auth.caller.name, "device retired");
    Ok(HttpResponse::NoContent().finish())
}

/// Argon2 takes tens of milliseconds: off the server's thread.
async fn hash_in_pool(password: String) -> Result<String, ApiError> {
    web::block(move || hash_device_password(&password))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "password hashing failed");
            ApiError::Internal
        })
}

async fn get_device(
    auth: CanRead,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = device_id(&id)?;
    ensure_visible(&state, &auth.caller, &id).await?;
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
    ensure_visible(&state, &auth.caller, &id).await?;
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
    auth: CanRead,
    state: web::Data<ApiState>,
    id: web::Path<String>,
    query: web::Query<RangeQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = device_id(&id)?;
    ensure_visible(&state, &auth.caller, &id).await?;
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
        Format::Csv => Ok(csv_download(
            &format!("{id}-history.csv"),
            csv::history(&entries),
        )),
    }
}

async fn telemetry(
    auth: CanRead,
    state: web::Data<ApiState>,
    id: web::Path<String>,
    query: web::Query<RangeQuery>,
) -> Result<HttpResponse, ApiError> {
    ensure_visible(&state, &auth.caller, &device_id(&id)?).await?;
    in_seq_order(
        &state,
        &id,
        &query,
        "samples",
        |b, id, range, limit| b.telemetry(id, range, limit),
        csv::telemetry,
    )
    .await
}

async fn events(
    auth: CanRead,
    state: web::Data<ApiState>,
    id: web::Path<String>,
    query: web::Query<RangeQuery>,
) -> Result<HttpResponse, ApiError> {
    ensure_visible(&state, &auth.caller, &device_id(&id)?).await?;
    in_seq_order(
        &state,
        &id,
        &query,
        "events",
        |b, id, range, limit| b.events(id, range, limit),
        csv::events,
    )
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
    to_csv: fn(&[T]) -> String,
) -> Result<HttpResponse, ApiError> {
    let id = device_id(id)?;
    let range = query.range()?;
    let format = query.format()?;
    let limit = match format {
        Format::Json => query.limit(DEFAULT_LIMIT, MAX_LIMIT)?,
        Format::Csv => query.limit(MAX_EXPORT_ROWS, MAX_EXPORT_ROWS)?,
    };
    let mut rows = fetch(state.backend.as_ref(), id.clone(), range, limit)
        .await
        .map_err(device_error(&id))?;
    if range.newest_first {
        rows.sort_by_key(|r| std::cmp::Reverse(r.seq()));
    } else {
        rows.sort_by_key(HasSeq::seq);
    }
    rows.truncate(limit);
    match format {
        Format::Json => {
            Ok(HttpResponse::Ok().json(json!({ "device": id, "limit": limit, field: rows })))
        }
        Format::Csv => Ok(csv_download(&format!("{id}-{field}.csv"), to_csv(&rows))),
    }
}

/// A CSV file to download, never cached.
fn csv_download(filename: &str, body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(filename.to_owned())],
        })
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
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
