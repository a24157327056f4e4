//! Schedule routes: put and view, roles, slot parameter, and every error.

use actix_web::http::StatusCode;
use serde_json::json;
use shiki_shared::schedule::{Problem, ProblemKind, Severity as ProblemSeverity};

use super::*;
use crate::{ScheduleView, SlotChoice, SlotView};
use shiki_cloud_model::Author;
use shiki_cloud_model::schedule::SyncStatus;

/// What the fake answers for an invalid document.
pub(super) fn problems() -> Vec<Problem> {
    vec![
        Problem {
            severity: ProblemSeverity::Error,
            kind: ProblemKind::UnknownProfile,
            path: "seasons[0].weekday".into(),
            message: "unknown profile `cool-weekdya`".into(),
        },
        Problem {
            severity: ProblemSeverity::Error,
            kind: ProblemKind::DateOutsideValidity,
            path: "valid_to".into(),
            message: "validity ended on 2000-01-01".into(),
        },
    ]
}

/// The view the fake keeps after a put of `schedule_id`.
pub(super) fn view(id: &DeviceId, schedule_id: &str) -> ScheduleView {
    ScheduleView {
        device_id: id.to_string(),
        current: Some(SlotView {
            id: schedule_id.to_owned(),
            hash: "ab".repeat(32),
            timezone: "Asia/Tokyo".into(),
            valid_from: chrono::NaiveDate::from_ymd_opt(2027, 1, 1).expect("date"),
            valid_to: chrono::NaiveDate::from_ymd_opt(2027, 12, 31).expect("date"),
            set_by: "api-key:operator".into(),
            set_at: now(),
            status: SyncStatus::Pending {
                attempts: 1,
                next_retry: now() + Duration::minutes(1),
            },
            document: Some(
                serde_json::from_str(include_str!("../../../../deploy/schedule.example.json"))
                    .expect("example"),
            ),
        }),
        next: None,
    }
}

/// The fake backend's put. Fake validation: a document without a string `id` is
/// malformed; one with `"valid_to": "2000-01-01"` has two problems.
pub(super) fn fake_put(
    d: &mut Data,
    id: DeviceId,
    slot: SlotChoice,
    document: Value,
    author: Author,
) -> Result<crate::PutScheduleResponse, BackendError> {
    known(d, &id)?;
    let Some(sid) = document["id"].as_str().map(str::to_owned) else {
        return Err(BackendError::MalformedSchedule("missing field `id`".into()));
    };
    if document["valid_to"] == "2000-01-01" {
        return Err(BackendError::InvalidSchedule {
            problems: problems(),
        });
    }
    let view = view(&id, &sid);
    d.schedules.insert(id.clone(), view.clone());
    d.last_schedule_put = Some((id, slot, document, author));
    Ok(crate::PutScheduleResponse {
        slot: shiki_proto::ScheduleSlot::Current,
        pushed: true,
        schedule: view,
        warnings: Vec::new(),
    })
}

fn put(path: &str, body: Value, token: &str) -> TestRequest {
    req("PUT", path, Some(token)).set_json(body)
}

#[actix_web::test]
async fn an_operator_puts_a_schedule_and_a_viewer_sees_it_pending() {
    let backend = seeded();
    let app = app!(state(backend.clone()));
    let res = send!(
        app,
        put(
            "/api/v1/devices/plant-01/schedule?slot=next",
            json!({"id": "sapporo-2027"}),
            OPERATOR
        )
    );
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json["pushed"], true);
    assert_eq!(res.json["schedule"]["current"]["id"], "sapporo-2027");
    {
        let d = backend.data();
        let (id, slot, doc, actor) = d.last_schedule_put.clone().expect("passed on");
        assert_eq!(id, dev("plant-01"));
        assert_eq!(slot, SlotChoice::Next);
        assert_eq!(doc["id"], "sapporo-2027");
        assert_eq!(actor, Author::api_key("operator", Role::Operator));
    }
    let res = send!(
        app,
        req("GET", "/api/v1/devices/plant-01/schedule", Some(VIEWER))
    );
    assert_eq!(res.status, StatusCode::OK);
    let status = &res.json["current"]["status"];
    assert_eq!(status["state"], "pending");
    assert_eq!(status["attempts"], 1);
    assert_eq!(res.json["next"], Value::Null);
}

#[actix_web::test]
async fn without_a_slot_the_backend_chooses_and_an_empty_device_shows_null_slots() {
    let backend = seeded();
    let app = app!(state(backend.clone()));
    let res = send!(
        app,
        req("GET", "/api/v1/devices/plant-02/schedule", Some(VIEWER))
    );
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json["device_id"], "plant-02");
    assert_eq!(res.json["current"], Value::Null);
    let res = send!(
        app,
        put(
            "/api/v1/devices/plant-02/schedule",
            json!({"id": "x"}),
            ADMIN
        )
    );
    assert_eq!(res.status, StatusCode::OK);
    let slot = backend.data().last_schedule_put.clone().expect("put").1;
    assert_eq!(slot, SlotChoice::Auto);
}

#[actix_web::test]
async fn a_viewer_may_not_put_a_schedule() {
    let backend = seeded();
    let app = app!(state(backend.clone()));
    let res = send!(
        app,
        put(
            "/api/v1/devices/plant-01/schedule",
            json!({"id": "x"}),
            VIEWER
        )
    );
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.error_code(), "forbidden");
    assert!(backend.data().last_schedule_put.is_none());
    let res = send!(app, req("GET", "/api/v1/devices/plant-01/schedule", None));
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn an_invalid_schedule_is_422_with_every_problem_and_its_location() {
    let app = app!(state(seeded()));
    let res = send!(
        app,
        put(
            "/api/v1/devices/plant-01/schedule",
            json!({"id": "x", "valid_to": "2000-01-01"}),
            OPERATOR
        )
    );
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.error_code(), "invalid_schedule");
    let problems = res.json["error"]["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 2);
    assert_eq!(problems[0]["path"], "seasons[0].weekday");
    assert_eq!(problems[0]["severity"], "error");
    assert!(problems[0]["kind"].is_string());
    assert_eq!(problems[1]["path"], "valid_to");
}

#[actix_web::test]
async fn malformed_bodies_bad_slots_and_ids_are_400_and_unknown_devices_404() {
    let app = app!(state(seeded()));
    let res = send!(
        app,
        put(
            "/api/v1/devices/plant-01/schedule",
            json!(["not", "a", "document"]),
            OPERATOR
        )
    );
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.error_code(), "invalid_body");
    let res = send!(
        app,
        req("PUT", "/api/v1/devices/plant-01/schedule", Some(OPERATOR))
            .insert_header(("content-type", "application/json"))
            .set_payload("{not json")
    );
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.error_code(), "invalid_body");
    let res = send!(
        app,
        put(
            "/api/v1/devices/plant-01/schedule?slot=later",
            json!({"id": "x"}),
            OPERATOR
        )
    );
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.error_code(), "invalid_parameter");
    let res = send!(
        app,
        put(
            "/api/v1/devices/bad%20id/schedule",
            json!({"id": "x"}),
            OPERATOR
        )
    );
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    for method in ["GET", "PUT"] {
        let r = req(method, "/api/v1/devices/nope/schedule", Some(OPERATOR));
        let r = if method == "PUT" {
            r.set_json(json!({"id": "x"}))
        } else {
            r
        };
        let res = send!(app, r);
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{method}");
        assert_eq!(res.error_code(), "not_found");
    }
    let res = send!(
        app,
        req("DELETE", "/api/v1/devices/plant-01/schedule", Some(ADMIN))
    );
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[actix_web::test]
async fn a_backend_that_is_down_answers_503_on_both_schedule_routes() {
    let backend = seeded();
    backend
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let app = app!(state(backend));
    let res = send!(
        app,
        req("GET", "/api/v1/devices/plant-01/schedule", Some(VIEWER))
    );
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    let res = send!(
        app,
        put(
            "/api/v1/devices/plant-01/schedule",
            json!({"id": "x"}),
            OPERATOR
        )
    );
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[actix_web::test]
async fn the_view_says_what_is_in_force_now_what_comes_today_and_the_calendar_of_the_year() {
    let backend = seeded();
    // 2027-07-01 01:00 UTC = 10:00 in Sapporo, a Thursday within the example's validity.
    let when = chrono::TimeZone::with_ymd_and_hms(&Utc, 2027, 7, 1, 1, 0, 0)
        .single()
        .expect("time");
    let app = app!(state(backend.clone()).with_clock(Arc::new(move || when)));
    let res = send!(
        app,
        put(
            "/api/v1/devices/plant-01/schedule",
            json!({"id": "sapporo-2027"}),
            OPERATOR
        )
    );
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let res = send!(
        app,
        req("GET", "/api/v1/devices/plant-01/schedule", Some(VIEWER))
    );
    assert_eq!(res.status, StatusCode::OK);
    let v = &res.json;
    assert!(
        v["current"]["document"].is_null(),
        "documents only on request"
    );
    assert_eq!(v["in_force"]["slot"], "current");
    assert_eq!(v["in_force"]["within_validity"], true);
    assert!(
        v["in_force"]["settings"]["chw_setpoint_c"].is_object(),
        "{v}"
    );
    let today = v["today"].as_array().expect("today");
    assert!(!today.is_empty(), "a weekday in July has transitions: {v}");
    assert!(today.iter().all(|t| {
        t["local"]
            .as_str()
            .is_some_and(|l| l.starts_with("2027-07-01"))
    }));
    let ahead = v["next_transitions"].as_array().expect("ahead");
    assert!(
        ahead
            .iter()
            .all(|t| t["at"].as_str().is_some_and(|a| a > "2027-07-01T01:00:00Z"))
    );
    let res = send!(
        app,
        req(
            "GET",
            "/api/v1/devices/plant-01/schedule?documents=true",
            Some(VIEWER)
        )
    );
    assert_eq!(res.json["current"]["document"]["id"], "sapporo-2027");

    let res = send!(
        app,
        req(
            "GET",
            "/api/v1/devices/plant-01/schedule/calendar",
            Some(VIEWER)
        )
    );
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let days = res.json["days"].as_array().expect("days");
    assert_eq!(days.len(), 365);
    assert_eq!(days[0]["date"], "2027-01-01");
    assert!(
        days.iter()
            .all(|d| d["profile"].is_string() && d["kind"].is_string())
    );
    assert!(
        days.iter().any(|d| d["kind"] == "holiday"),
        "the example has holidays"
    );
    let res = send!(
        app,
        req(
            "GET",
            "/api/v1/devices/plant-01/schedule/calendar?slot=next",
            Some(VIEWER)
        )
    );
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}
