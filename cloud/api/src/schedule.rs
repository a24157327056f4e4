//! Schedule routes: `PUT /api/v1/devices/{id}/schedule[?slot=current|next]` (operator),
//! `GET /api/v1/devices/{id}/schedule[?documents=true]` (viewer: both slots with their sync
//! status, what the schedule puts in force now, today's and the coming week's transitions)
//! and `GET /api/v1/devices/{id}/schedule/calendar?slot=current|next` (viewer: each day of
//! the validity with its profile and why). See `crate::schedule` for the semantics.

use actix_web::{HttpResponse, web};
use chrono::{Duration, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use shiki_shared::schedule::{Schedule, ScheduleDocument};

use super::devices::ensure_visible;
use super::params::device_id;
use super::{ApiError, ApiState, ops::resource};
use crate::SlotChoice;
use crate::auth::{CanOperate, CanRead};

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/devices/{id}/schedule", "GET, PUT")
            .route(web::get().to(get_schedule))
            .route(web::put().to(put_schedule)),
    )
    .service(resource("/devices/{id}/schedule/calendar", "GET").route(web::get().to(calendar)));
}

/// Most transitions listed ahead (`next_transitions`).
const MAX_AHEAD: usize = 50;
/// How far ahead `next_transitions` looks.
const AHEAD: Duration = Duration::days(7);

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewQuery {
    /// Include each slot's document.
    #[serde(default)]
    documents: bool,
}

async fn get_schedule(
    auth: CanRead,
    state: web::Data<ApiState>,
    id: web::Path<String>,
    query: web::Query<ViewQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = device_id(&id)?;
    ensure_visible(&state, &auth.caller, &id).await?;
    let mut view = state
        .backend
        .schedule(id.clone())
        .await
        .map_err(|e| ApiError::from_backend(e, || format!("device {:?}", id.as_str())))?;
    let now = state.now();
    // The slot whose validity covers now.
    let running = [("current", &view.current), ("next", &view.next)]
        .into_iter()
        .find_map(|(name, slot)| {
            let schedule = compiled(slot.as_ref()?)?;
            schedule.covers(now).then_some((name, schedule))
        });
    let (in_force, today, ahead) = match &running {
        Some((slot, schedule)) => {
            let tz = schedule.timezone();
            let local_day = now.with_timezone(&tz).date_naive();
            let midnight = |d: chrono::NaiveDate| {
                d.and_hms_opt(0, 0, 0)
                    .and_then(|t| t.and_local_timezone(tz).earliest())
                    .map(|t| t.with_timezone(&Utc))
            };
            let today = match (midnight(local_day), local_day.succ_opt().and_then(midnight)) {
                (Some(from), Some(to)) => schedule.transitions(from, to),
                _ => Vec::new(),
            };
            let mut ahead = schedule.transitions(now + Duration::seconds(1), now + AHEAD);
            ahead.truncate(MAX_AHEAD);
            let mut in_force =
                serde_json::to_value(schedule.settings_at(now)).unwrap_or(Value::Null);
            in_force["slot"] = json!(slot);
            in_force["schedule_id"] = json!(schedule.id());
            (in_force, today, ahead)
        }
        None => (Value::Null, Vec::new(), Vec::new()),
    };
    if !query.documents {
        for slot in [&mut view.current, &mut view.next].into_iter().flatten() {
            slot.document = None;
        }
    }
    let mut body = serde_json::to_value(&view).unwrap_or(Value::Null);
    body["now"] = json!(now);
    body["in_force"] = in_force;
    body["today"] = json!(today);
    body["next_transitions"] = json!(ahead);
    Ok(HttpResponse::Ok().json(body))
}

/// A slot's document as an evaluator (documents the cloud stored were validated then).
fn compiled(slot: &crate::SlotView) -> Option<Schedule> {
    let doc = ScheduleDocument::from_value(slot.document.as_ref()?).ok()?;
    Schedule::new(&doc, None).ok()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarQuery {
    #[serde(default)]
    slot: Option<SlotParam>,
}

/// Longest validity the calendar lists, in days.
const MAX_CALENDAR_DAYS: i64 = 800;

/// `GET …/schedule/calendar?slot=current|next`: every local day of the slot's validity with
/// the profile it runs and why (weekday/saturday/sunday of a season, holiday, exception).
async fn calendar(
    auth: CanRead,
    state: web::Data<ApiState>,
    id: web::Path<String>,
    query: web::Query<CalendarQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = device_id(&id)?;
    ensure_visible(&state, &auth.caller, &id).await?;
    let view = state
        .backend
        .schedule(id.clone())
        .await
        .map_err(|e| ApiError::from_backend(e, || format!("device {:?}", id.as_str())))?;
    let (name, slot) = match query.slot {
        None | Some(SlotParam::Current) => ("current", view.current.as_ref()),
        Some(SlotParam::Next) => ("next", view.next.as_ref()),
    };
    let schedule = slot.and_then(compiled).ok_or_else(|| {
        ApiError::NotFound(format!("device {:?} has no {name} schedule", id.as_str()))
    })?;
    let mut days = Vec::new();
    let mut d = schedule.valid_from();
    while d <= schedule.valid_to() && days.len() < MAX_CALENDAR_DAYS as usize {
        let mut day = serde_json::to_value(schedule.day_kind(d)).unwrap_or(Value::Null);
        if !day.is_object() {
            day = json!({});
        }
        day["date"] = json!(d);
        day["profile"] = json!(schedule.profile_on(d));
        days.push(day);
        let Some(next) = d.succ_opt() else { break };
        d = next;
    }
    Ok(HttpResponse::Ok().json(json!({
        "device_id": id,
        "slot": name,
        "id": schedule.id(),
        "timezone": schedule.timezone().name(),
        "valid_from": schedule.valid_from(),
        "valid_to": schedule.valid_to(),
        "days": days,
    })))
}
