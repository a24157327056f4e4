//! OTA job routes: `POST /api/v1/jobs` and `POST /api/v1/jobs/{id}/cancel` (operator),
//! `GET /api/v1/jobs` (newest first) and `GET /api/v1/jobs/{id}` (viewer).

use actix_web::{HttpResponse, web};
use serde_json::json;
use shiki_proto::{DeviceId, JobId};

use super::devices::ensure_visible;
use super::job_types::JobView;
use super::job_types::{NewJob, NewJobRequest};
use super::{ApiError, ApiState, BackendError, ops::resource};
use crate::auth::{CanOperate, CanRead};

/// Most devices one job may list.
pub const MAX_JOB_DEVICES: usize = 10_000;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/jobs", "GET, POST")
            .route(web::get().to(list_jobs))
            .route(web::post().to(create_job)),
    )
    .service(resource("/jobs/{id}", "GET").route(web::get().to(get_job)))
    .service(resource("/jobs/{id}/cancel", "POST").route(web::post().to(cancel_job)));
}

fn job_error(id: &str) -> impl FnOnce(BackendError) -> ApiError + '_ {
    move |e| ApiError::from_backend(e, || format!("job {id:?}"))
}

/// A job id from the path; one that cannot be a job id names no job (404).
fn job_id(id: &str) -> Result<JobId, ApiError> {
    JobId::new(id).map_err(|_| ApiError::NotFound(format!("job {id:?} not found")))
}

fn unprocessable(key: &str, reason: impl Into<String>) -> ApiError {
    ApiError::InvalidJob {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// Checks the body's shape: an artifact version, 1 to [`MAX_JOB_DEVICES`] valid device
/// ids, `max_in_progress` ≥ 1, `abort_failure_ratio` within 0–1.
fn check(body: NewJobRequest) -> Result<NewJob, ApiError> {
    if body.artifact_version.trim().is_empty() {
        return Err(unprocessable(
            "artifact_version",
            "name the version to install",
        ));
    }
    if body.devices.is_empty() {
        return Err(unprocessable("devices", "list at least one device"));
    }
    if body.devices.len() > MAX_JOB_DEVICES {
        return Err(unprocessable(
            "devices",
            format!(
                "{} devices; at most {MAX_JOB_DEVICES} per job",
                body.devices.len()
            ),
        ));
    }
    let devices = body
        .devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            DeviceId::new(d.as_str())
                .map_err(|e| unprocessable("devices", format!("devices[{i}]: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if body.max_in_progress == Some(0) {
        return Err(unprocessable("max_in_progress", "must be at least 1"));
    }
    if let Some(r) = body.abort_failure_ratio
        && !(0.0..=1.0).contains(&r)
    {
        return Err(unprocessable(
            "abort_failure_ratio",
            format!("must lie between 0.0 and 1.0, got {r}"),
        ));
    }
    Ok(NewJob {
        artifact_version: body.artifact_version,
        devices,
        max_in_progress: body.max_in_progress,
        abort_failure_ratio: body.abort_failure_ratio,
        allow_downgrade: body.allow_downgrade,
    })
}

async fn create_job(
    auth: CanOperate,
    state: web::Data<ApiState>,
    body: web::Json<NewJobRequest>,
) -> Result<HttpResponse, ApiError> {
    let job = check(body.into_inner())?;
    for device in &job.devices {
        ensure_visible(&state, &auth.caller, device).await?;
    }
    let (version, devices) = (job.artifact_version.clone(), job.devices.len());
    let created = state
        .backend
        .create_job(job, auth.caller.author())
        .await
        .map_err(|e| ApiError::from_backend(e, || "job".into()))?;
    tracing::info!(
        job_id = %created.id,
        caller = %auth.caller.name,
        role = %auth.caller.role,
        version,
        devices,
        "job created"
    );
    Ok(HttpResponse::Created().json(created))
}

/// Whether every device of `job` is visible to `caller` (a tenant sees only jobs of its
/// own devices).
async fn job_visible(state: &ApiState, caller: &crate::auth::Caller, job: &JobView) -> bool {
    if caller.tenant.is_none() {
        return true;
    }
    for d in &job.devices {
        let visible = match DeviceId::new(&d.device) {
            Ok(id) => ensure_visible(state, caller, &id).await.is_ok(),
            Err(_) => false,
        };
        if !visible {
            return false;
        }
    }
    true
}

/// The job `id`, or the 404 of an unknown job when it touches a device the caller may not see.
async fn visible_job(
    state: &ApiState,
    caller: &crate::auth::Caller,
    id: &JobId,
) -> Result<JobView, ApiError> {
    let job = state
        .backend
        .job(id.clone())
        .await
        .map_err(job_error(id.as_str()))?;
    if job_visible(state, caller, &job).await {
        Ok(job)
    } else {
        Err(job_error(id.as_str())(BackendError::NotFound))
    }
}

async fn list_jobs(auth: CanRead, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let all = state
        .backend
        .list_jobs()
        .await
        .map_err(|e| ApiError::from_backend(e, || "jobs".into()))?;
    let mut jobs = Vec::with_capacity(all.len());
    for job in all {
        if job_visible(&state, &auth.caller, &job).await {
            jobs.push(job);
        }
    }
    jobs.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    Ok(HttpResponse::Ok().json(json!({ "jobs": jobs })))
}

async fn get_job(
    auth: CanRead,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = job_id(&id)?;
    Ok(HttpResponse::Ok().json(visible_job(&state, &auth.caller, &id).await?))
}

async fn cancel_job(
    auth: CanOperate,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = job_id(&id)?;
    if auth.caller.tenant.is_some() {
        visible_job(&state, &auth.caller, &id).await?;
    }
    let job = state
        .backend
        .cancel_job(id.clone(), auth.caller.author())
        .await
        .map_err(job_error(id.as_str()))?;
    tracing::info!(job_id = %id, caller = %auth.caller.name, role = %auth.caller.role, "job canceled");
    Ok(HttpResponse::Ok().json(job))
}
