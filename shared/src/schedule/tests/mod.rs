//! Table tests with real calendar cases, validation, hashing and property tests.

mod calendar;
mod properties;
mod validation;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};
use shiki_proto::{PointInfo, PointRole, ValueKind};

use super::*;

const EXAMPLE: &str = include_str!("../../../../deploy/schedule.example.json");

/// The default register map's settings, exactly.
fn catalog() -> Vec<PointInfo> {
    let point = |name: &str, kind, min, max, options: &[&str]| PointInfo {
        name: name.to_owned(),
        role: PointRole::Setting,
        kind,
        unit: None,
        writable: true,
        min,
        max,
        resolution: None,
        options: options.iter().map(|o| (*o).to_owned()).collect(),
    };
    vec![
        point("run", ValueKind::Bool, None, None, &[]),
        point("mode", ValueKind::Enum, None, None, &["cooling", "heating"]),
        point(
            "chw_setpoint_c",
            ValueKind::Number,
            Some(5.0),
            Some(12.0),
            &[],
        ),
        point(
            "hw_setpoint_c",
            ValueKind::Number,
            Some(40.0),
            Some(60.0),
            &[],
        ),
        point("saving", ValueKind::Bool, None, None, &[]),
        point(
            "demand_limit_pct",
            ValueKind::Number,
            Some(50.0),
            Some(100.0),
            &[],
        ),
    ]
}

fn example_doc() -> ScheduleDocument {
    ScheduleDocument::from_json_str(EXAMPLE).expect("example parses")
}

fn example() -> Schedule {
    let cat = catalog();
    Schedule::new(&example_doc(), Some(&cat)).expect("example is valid")
}

/// A local wall-clock time `YYYY-MM-DD HH:MM[:SS]` in `tz` (must exist exactly once).
fn at(tz: Tz, local: &str) -> DateTime<Utc> {
    let fmt = if local.len() == 16 {
        "%Y-%m-%d %H:%M"
    } else {
        "%Y-%m-%d %H:%M:%S"
    };
    let naive = NaiveDateTime::parse_from_str(local, fmt).expect("test time");
    tz.from_local_datetime(&naive)
        .single()
        .expect("unambiguous test time")
        .with_timezone(&Utc)
}

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().expect("test instant")
}

fn tokyo(local: &str) -> DateTime<Utc> {
    at(chrono_tz::Asia::Tokyo, local)
}

/// Minimal document builder for the calendar tests.
fn doc(
    tz: &str,
    from: &str,
    to: &str,
    profiles: Value,
    seasons: Value,
    extra: Value,
) -> ScheduleDocument {
    let mut v = json!({
        "id": "t",
        "timezone": tz,
        "valid_from": from,
        "valid_to": to,
        "defaults": {"run": false},
        "profiles": profiles,
        "seasons": seasons,
    });
    if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), extra) {
        obj.extend(extra);
    }
    ScheduleDocument::from_value(&v).expect("test document parses")
}

fn one_season(weekday: &str, saturday: &str, sunday: &str) -> Value {
    json!([{"name": "all", "from": "01-01", "to": "12-31",
            "weekday": weekday, "saturday": saturday, "sunday": sunday}])
}

/// A whole year with one profile: 00:00 chw 7.0, `time` run=true, 04:00 run=false.
fn dst_doc(tz: &str, time: &str) -> ScheduleDocument {
    let mut d = doc(
        tz,
        "2027-01-01",
        "2027-12-31",
        json!({"day": [{"time": "00:00", "settings": {"chw_setpoint_c": 7.0}},
                       {"time": time, "settings": {"run": true}},
                       {"time": "04:00", "settings": {"run": false}}]}),
        one_season("day", "day", "day"),
        json!({}),
    );
    d.defaults.insert("chw_setpoint_c".into(), json!(7.0));
    d
}
