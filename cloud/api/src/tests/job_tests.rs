//! Job routes: create, view, list, cancel; each status code and role.

use actix_web::http::StatusCode;
use serde_json::json;

use super::*;
use crate::{JobDeviceView, JobExecutionStatus};

/// A job as the fake keeps it: every device queued, created by the operator token.
pub(super) fn fake_job(d: &mut Data, id: &str, devices: &[&str]) -> JobView {
    JobView {
        id: id.to_owned(),
        artifact_version: "0.2.0".into(),
        created_at: now() - Duration::minutes(d.jobs.len() as i64 + 1),
        created_by: AuthorView::from(&Author::api_key("operator", Role::Operator)),
        max_in_progress: 10,
        abort_failure_ratio: 0.5,
        allow_downgrade: false,
        canceled_by: None,
        devices: devices
            .iter()
            .map(|dev| JobDeviceView {
                device: (*dev).to_owned(),
                status: JobExecutionStatus::Queued,
                progress: 0,
                reason: None,
                step: None,
                started_at: None,
                finished_at: None,
            })
            .collect(),
    }
}

/// What the real backend checks: the artifact version and every device exist.
pub(super) fn fake_create(
    d: &mut Data,
    job: NewJob,
    author: Author,
) -> Result<JobCreated, BackendError> {
    if !d.artifact_versions.contains(&job.artifact_version) {
        return Err(BackendError::InvalidJob {
            key: "artifact_version".into(),
            reason: format!("no artifact with version {:?}", job.artifact_version),
        });
    }
    if let Some(unknown) = job.devices.iter().find(|id| !d.devices.contains_key(*id)) {
        return Err(BackendError::InvalidJob {
            key: "devices".into(),
            reason: format!("device {:?} is unknown to the cloud", unknown.as_str()),
        });
    }
    let id = format!("ota-{}", d.jobs.len() + 1);
    let devices: Vec<&str> = job.devices.iter().map(DeviceId::as_str).collect();
    let mut view = fake_job(d, &id, &devices);
    view.created_at = now();
    view.created_by = AuthorView::from(&author);
    view.max_in_progress = job.max_in_progress.unwrap_or(10);
    view.abort_failure_ratio = job.abort_failure_ratio.unwrap_or(0.5);
    view.allow_downgrade = job.allow_downgrade;
    d.jobs.insert(id.clone(), view);
    Ok(JobCreated { id })
}

pub(super) fn fake_cancel(
    d: &mut Data,
    id: &str,
    author: &Author,
) -> Result<JobView, BackendError> {
    let job = d.jobs.get_mut(id).ok_or(BackendError::NotFound)?;
    for e in &mut job.devices {
        if matches!(
            e.status,
            JobExecutionStatus::Queued | JobExecutionStatus::InProgress
        ) {
            e.status = JobExecutionStatus::Canceled;
            e.reason = Some("canceled".into());
        }
    }
    job.canceled_by = Some(AuthorView::from(author));
    Ok(job.clone())
}

fn create(body: Value) -> actix_web::test::TestRequest {
    req("POST", "/api/v1/jobs", Some(OPERATOR)).set_json(body)
}

#[actix_web::test]
async fn an_operator_creates_a_job_and_a_viewer_sees_each_device_queued() {
    let backend = seeded();
    let app = app!(state(backend.clone()));
    let res = send!(
        app,
        create(
            json!({"artifact_version": "0.2.0", "devices": ["plant-01", "plant-02"],
                      "max_in_progress": 1, "abort_failure_ratio": 0.25, "allow_downgrade": true})
        )
    );
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    let id = res.json["id"].as_str().expect("id").to_owned();
    let res = send!(app, req("GET", &format!("/api/v1/jobs/{id}"), Some(VIEWER)));
    assert_eq!(res.status, StatusCode::OK);
    let job = &res.json;
    assert_eq!(job["artifact_version"], "0.2.0");
    assert_eq!(job["created_at"], json!(now()));
    assert_eq!(
        job["created_by"],
        json!({"kind": "api_key", "name": "operator", "role": "operator"})
    );
    assert_eq!(
        (
            job["max_in_progress"].as_u64(),
            job["abort_failure_ratio"].as_f64()
        ),
        (Some(1), Some(0.25))
    );
    assert_eq!(
        job["devices"][1],
        json!({"device": "plant-02", "status": "queued", "progress": 0, "reason": null})
    );
}

#[actix_web::test]
async fn a_job_needs_a_known_version_and_known_devices_and_says_which_is_wrong() {
    let app = app!(state(seeded()));
    for (body, key, says) in [
        (
            json!({"artifact_version": "9.9.9", "devices": ["plant-01"]}),
            "artifact_version",
            "9.9.9",
        ),
        (
            json!({"artifact_version": "0.2.0", "devices": ["plant-01", "plant-99"]}),
            "devices",
            "plant-99",
        ),
        (
            json!({"artifact_version": "0.2.0", "devices": []}),
            "devices",
            "at least one device",
        ),
        (
            json!({"artifact_version": "0.2.0", "devices": ["plant 01"]}),
            "devices",
            "devices[0]",
        ),
        (
            json!({"artifact_version": " ", "devices": ["plant-01"]}),
            "artifact_version",
            "version",
        ),
        (
            json!({"artifact_version": "0.2.0", "devices": ["plant-01"], "max_in_progress": 0}),
            "max_in_progress",
            "at least 1",
        ),
        (
            json!({"artifact_version": "0.2.0", "devices": ["plant-01"], "abort_failure_ratio": 1.5}),
            "abort_failure_ratio",
            "got 1.5",
        ),
    ] {
        let res = send!(app, create(body.clone()));
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(res.error_code(), "invalid_job", "{body}");
        assert_eq!(res.json["error"]["key"], key, "{body}");
        let message = res.json["error"]["message"].as_str().expect("message");
        assert!(message.contains(says), "{body}: {message}");
    }
}

#[actix_web::test]
async fn a_malformed_job_body_is_a_400() {
    let app = app!(state(seeded()));
    for body in [
        json!({"devices": ["plant-01"]}),
        json!({"artifact_version": "0.2.0", "devices": ["plant-01"], "max_inprogress": 2}),
        json!({"artifact_version": "0.2.0", "devices": "plant-01"}),
    ] {
        let res = send!(app, create(body.clone()));
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(res.error_code(), "invalid_body");
    }
}

#[actix_web::test]
async fn jobs_are_listed_newest_first() {
    let app = app!(state(seeded()));
    let res = send!(
        app,
        create(json!({"artifact_version": "0.2.0", "devices": ["plant-01"]}))
    );
    let newest = res.json["id"].clone();
    let res = send!(app, req("GET", "/api/v1/jobs", Some(VIEWER)));
    assert_eq!(res.status, StatusCode::OK);
    let ids: Vec<_> = res.json["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].clone())
        .collect();
    assert_eq!(ids, vec![newest, json!("ota-1")]);
}

#[actix_web::test]
async fn cancel_answers_the_job_with_what_it_canceled() {
    let backend = seeded();
    let app = app!(state(backend.clone()));
    let res = send!(
        app,
        req("POST", "/api/v1/jobs/ota-1/cancel", Some(OPERATOR))
    );
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json["devices"][0]["status"], "canceled");
    assert_eq!(res.json["canceled_by"]["name"], "operator");
    let res = send!(app, req("POST", "/api/v1/jobs/ota-1/cancel", Some(VIEWER)));
    assert_eq!(res.status, StatusCode::FORBIDDEN);
}

#[actix_web::test]
async fn an_unknown_job_is_a_404_on_view_and_cancel() {
    let app = app!(state(seeded()));
    for (method, path) in [
        ("GET", "/api/v1/jobs/ota-404"),
        ("POST", "/api/v1/jobs/ota-404/cancel"),
        ("GET", "/api/v1/jobs/not%20an%20id"),
    ] {
        let res = send!(app, req(method, path, Some(OPERATOR)));
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(res.error_code(), "not_found");
    }
    let res = send!(app, req("DELETE", "/api/v1/jobs/ota-1", Some(OPERATOR)));
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[actix_web::test]
async fn a_backend_that_is_down_is_a_503_for_jobs() {
    let backend = seeded();
    backend.down.store(true, Ordering::SeqCst);
    let app = app!(state(backend));
    let res = send!(app, req("GET", "/api/v1/jobs", Some(VIEWER)));
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
}
