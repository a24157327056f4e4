//! Table tests of Control's state machine (no actix).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use shiki_proto::{ActiveSchedule, EventKind, PointValue, SettingSource};

use super::*;
use crate::messages::{Override, ScheduleSettings, ScheduledValue, SetOverrides, WriteError};
use crate::plc_sim::default_map;

fn t(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 1, h, m, 0)
        .single()
        .expect("valid time")
}

fn config() -> ControlConfig {
    ControlConfig::from_config_toml(include_str!("../../../deploy/edge.example.toml"))
        .expect("example [control] parses")
}

/// A state that has seen one poll with nothing read.
fn state() -> ControlState {
    let mut s = ControlState::new(default_map(), &config()).expect("example [control] is valid");
    s.observe(&BTreeMap::new());
    s
}

fn ov(value: Value, until: Option<DateTime<Utc>>, set_at: DateTime<Utc>) -> Override {
    Override {
        value,
        until,
        set_at,
    }
}

fn overrides(version: u64, list: Vec<(&str, Override)>) -> SetOverrides {
    SetOverrides {
        desired_version: version,
        overrides: list.into_iter().map(|(k, o)| (k.to_owned(), o)).collect(),
    }
}

/// (key, value, since, next_change)
type Slot<'a> = (&'a str, Value, DateTime<Utc>, Option<DateTime<Utc>>);

fn schedule(list: Vec<Slot<'_>>) -> ScheduleSettings {
    ScheduleSettings {
        schedule: Some(ActiveSchedule {
            id: "2026".into(),
            hash: "abc".into(),
        }),
        settings: list
            .into_iter()
            .map(|(k, value, since, next_change)| {
                (
                    k.to_owned(),
                    ScheduledValue {
                        value,
                        since,
                        next_change,
                    },
                )
            })
            .collect(),
        held: false,
    }
}

fn write_of(s: &ControlState, key: &str) -> Option<PointValue> {
    s.writes()
        .into_iter()
        .find(|w| w.name == key)
        .map(|w| w.value)
}

#[test]
fn precedence_is_override_then_schedule_then_default() {
    // (override, scheduled, expected source, expected value)
    let cases: Vec<(Option<f64>, Option<f64>, SettingSource, f64)> = vec![
        (None, None, SettingSource::Default, 7.0),
        (None, Some(8.0), SettingSource::Schedule, 8.0),
        (Some(9.0), Some(8.0), SettingSource::Override, 9.0),
        (Some(9.5), None, SettingSource::Override, 9.5),
        (Some(14.0), Some(8.0), SettingSource::Clamped, 12.0),
        (None, Some(3.0), SettingSource::Clamped, 5.0),
    ];
    for (o, sch, source, value) in cases {
        let mut s = state();
        if let Some(v) = sch {
            s.set_schedule(schedule(vec![("chw_setpoint_c", json!(v), t(6, 0), None)]));
        }
        if let Some(v) = o {
            s.set_overrides(overrides(
                3,
                vec![("chw_setpoint_c", ov(json!(v), None, t(9, 0)))],
            ));
        }
        let target = s.target("chw_setpoint_c").expect("has a target");
        assert_eq!(
            target.value(),
            Some(&PointValue::Number(value)),
            "{o:?} {sch:?}"
        );
        assert_eq!(
            write_of(&s, "chw_setpoint_c"),
            Some(PointValue::Number(value))
        );
        let status = s.status("chw_setpoint_c").expect("status");
        assert_eq!(status.source, source, "{o:?} {sch:?}");
    }
}

#[test]
fn out_of_range_values_are_clamped_or_refused_per_point() {
    let mut s = state();
    s.set_overrides(overrides(
        4,
        vec![
            ("chw_setpoint_c", ov(json!(14.0), None, t(9, 0))),
            ("demand_limit_pct", ov(json!(30), None, t(9, 0))),
            ("mode", ov(json!("auto"), None, t(9, 0))),
            ("no_such_key", ov(json!(1), None, t(9, 0))),
        ],
    ));
    let report = s.report(t(9, 1));
    let chw = &report.settings["chw_setpoint_c"];
    assert_eq!(chw.source, SettingSource::Clamped);
    assert_eq!(chw.detail.as_deref(), Some("clamped to 12.0"));
    assert_eq!(chw.requested, Some(json!(14.0)));
    let demand = &report.settings["demand_limit_pct"];
    assert_eq!(demand.source, SettingSource::Refused);
    assert_eq!(
        demand.detail.as_deref(),
        Some("refused: 30.0 is below the minimum 50.0")
    );
    assert_eq!(report.settings["mode"].source, SettingSource::Refused);
    assert_eq!(
        report.settings["no_such_key"].source,
        SettingSource::Refused
    );
    let writes: BTreeMap<String, PointValue> =
        s.writes().into_iter().map(|w| (w.name, w.value)).collect();
    assert_eq!(
        writes.get("chw_setpoint_c"),
        Some(&PointValue::Number(12.0))
    );
    assert!(
        !writes.contains_key("demand_limit_pct"),
        "refused values are not written"
    );
    assert!(!writes.contains_key("mode"));
    assert_eq!(report.applied_version, Some(4));
    // Each edge-side refusal is announced once.
    let events = s.refusal_events(t(9, 1));
    let keys: Vec<&str> = events
        .iter()
        .map(|e| e.data["key"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(keys, vec!["demand_limit_pct", "mode"]);
    assert_eq!(
        events[0].message,
        "demand_limit_pct = 30 (override) not written: refused: 30.0 is below the minimum 50.0"
    );
    assert!(events.iter().all(|e| e.kind == EventKind::ControlError));
    assert!(s.refusal_events(t(9, 2)).is_empty());
}

#[test]
fn overrides_expire_by_until_and_by_the_next_schedule_change() {
    // (until, schedule since, next_change, checked at, expired?)
    type Case = (
        Option<DateTime<Utc>>,
        Option<(DateTime<Utc>, Option<DateTime<Utc>>)>,
        DateTime<Utc>,
        bool,
    );
    let cases: Vec<Case> = vec![
        (Some(t(12, 0)), None, t(11, 59), false),
        (Some(t(12, 0)), None, t(12, 0), true),
        (None, Some((t(6, 0), Some(t(18, 0)))), t(17, 59), false),
        (None, Some((t(6, 0), Some(t(18, 0)))), t(18, 0), true),
        // The schedule moved on after the override was set (e.g. reboot): ended.
        (None, Some((t(10, 0), Some(t(18, 0)))), t(10, 0), true),
        // No schedule entry for the key: lasts.
        (None, None, t(23, 59), false),
        // `until` wins over the schedule's next change.
        (
            Some(t(20, 0)),
            Some((t(6, 0), Some(t(18, 0)))),
            t(19, 0),
            false,
        ),
    ];
    for (until, sched, now, expired) in cases {
        let mut s = state();
        if let Some((since, next)) = sched {
            s.set_schedule(schedule(vec![("chw_setpoint_c", json!(8.0), since, next)]));
        }
        s.set_overrides(overrides(
            5,
            vec![("chw_setpoint_c", ov(json!(9.0), until, t(9, 0)))],
        ));
        let events = s.expire(now);
        assert_eq!(
            events.len(),
            usize::from(expired),
            "{until:?} {sched:?} {now}"
        );
        let source = s.target("chw_setpoint_c").map(|t| t.source);
        let report = s.report(now);
        if expired {
            assert_eq!(events[0].kind, EventKind::OverrideExpired);
            assert_eq!(report.expired.len(), 1);
            assert_eq!(report.expired[0].key, "chw_setpoint_c");
            assert_eq!(report.expired[0].desired_version, 5);
            assert_ne!(source, Some(SettingSource::Override));
        } else {
            assert!(report.expired.is_empty());
            assert_eq!(source, Some(SettingSource::Override));
        }
    }
}

#[test]
fn an_ended_override_stays_ended_when_desired_still_carries_it() {
    let mut s = state();
    let o = ov(json!(9.0), Some(t(12, 0)), t(9, 0));
    s.set_overrides(overrides(5, vec![("chw_setpoint_c", o.clone())]));
    assert_eq!(s.expire(t(12, 0)).len(), 1);
    assert_eq!(s.report(t(12, 0)).expired.len(), 1);
    assert!(s.report(t(12, 0)).expired.is_empty(), "drained");
    // The cloud has not removed it yet: still ended, reported again.
    s.set_overrides(overrides(5, vec![("chw_setpoint_c", o)]));
    assert_eq!(
        s.target("chw_setpoint_c").map(|t| t.source),
        Some(SettingSource::Default)
    );
    assert_eq!(s.report(t(12, 1)).expired.len(), 1);
    // A new override of the same key applies.
    s.set_overrides(overrides(
        6,
        vec![("chw_setpoint_c", ov(json!(10.0), None, t(12, 5)))],
    ));
    assert_eq!(
        s.target("chw_setpoint_c").map(|t| t.source),
        Some(SettingSource::Override)
    );
}

#[test]
fn values_are_compared_at_the_point_resolution() {
    // (PLC holds, target, write needed?) — chw_setpoint_c has scale 0.1.
    let cases: [(f64, f64, bool); 5] = [
        (7.0, 7.0, false),
        (7.04, 7.0, false),
        (6.96, 7.0, false),
        (7.1, 7.0, true),
        (7.0 + 0.1 + 0.2, 7.3, false),
    ];
    for (held, target, needed) in cases {
        let mut s = state();
        s.set_overrides(overrides(
            1,
            vec![("chw_setpoint_c", ov(json!(target), None, t(9, 0)))],
        ));
        s.observe(&BTreeMap::from([(
            "chw_setpoint_c".to_owned(),
            PointValue::Number(held),
        )]));
        assert_eq!(
            write_of(&s, "chw_setpoint_c").is_some(),
            needed,
            "{held} vs {target}"
        );
    }
}

#[test]
fn a_plc_refusal_is_reported_and_not_retried_until_the_target_changes() {
    let mut s = state();
    s.set_overrides(overrides(
        2,
        vec![("chw_setpoint_c", ov(json!(11.0), None, t(9, 0)))],
    ));
    let w = s
        .writes()
        .into_iter()
        .find(|w| w.name == "chw_setpoint_c")
        .expect("write");
    let ev = s.on_write(
        &w,
        Err(WriteError::Refused(
            "exception 0x03 (illegal data value)".into(),
        )),
        t(9, 0),
    );
    assert_eq!(ev.map(|e| e.kind), Some(EventKind::ControlError));
    assert_eq!(write_of(&s, "chw_setpoint_c"), None, "not hammered");
    let status = s.status("chw_setpoint_c").expect("status");
    assert_eq!(status.source, SettingSource::Refused);
    assert_eq!(
        status.detail.as_deref(),
        Some("PLC refused: exception 0x03 (illegal data value)")
    );
    s.set_overrides(overrides(
        3,
        vec![("chw_setpoint_c", ov(json!(9.0), None, t(9, 5)))],
    ));
    assert_eq!(
        write_of(&s, "chw_setpoint_c"),
        Some(PointValue::Number(9.0))
    );
}

#[test]
fn a_plc_busy_or_failing_is_retried_at_the_next_input_not_taken_as_a_refusal() {
    let mut s = state();
    s.set_overrides(overrides(
        2,
        vec![("chw_setpoint_c", ov(json!(11.0), None, t(9, 0)))],
    ));
    let w = s
        .writes()
        .into_iter()
        .find(|w| w.name == "chw_setpoint_c")
        .expect("write");
    let ev = s.on_write(
        &w,
        Err(WriteError::Busy(
            "exception 0x04 (server device failure)".into(),
        )),
        t(9, 0),
    );
    assert_eq!(ev.map(|e| e.kind), Some(EventKind::ControlError));
    assert_eq!(
        write_of(&s, "chw_setpoint_c"),
        Some(PointValue::Number(11.0)),
        "written again once the PLC recovers"
    );
    let status = s.status("chw_setpoint_c").expect("status");
    assert_ne!(status.source, SettingSource::Refused, "{status:?}");
    assert_eq!(
        status.detail.as_deref(),
        Some("not applied: PLC busy or failing: exception 0x04 (server device failure)")
    );
    // A second busy answer records no second event.
    let again = s.on_write(
        &w,
        Err(WriteError::Busy(
            "exception 0x04 (server device failure)".into(),
        )),
        t(9, 1),
    );
    assert_eq!(again, None);
}

#[test]
fn link_failures_are_retried_with_one_event_and_success_is_applied() {
    let mut s = state();
    s.set_overrides(overrides(2, vec![("run", ov(json!(true), None, t(9, 0)))]));
    let w = s
        .writes()
        .into_iter()
        .find(|w| w.name == "run")
        .expect("write");
    let down = || Err(WriteError::Link("timed out".into()));
    assert!(s.on_write(&w, down(), t(9, 0)).is_some());
    assert!(
        s.on_write(&w, down(), t(9, 1)).is_none(),
        "one event per failure"
    );
    assert_eq!(write_of(&s, "run"), Some(PointValue::Bool(true)), "retried");
    let ev = s
        .on_write(&w, Ok(PointValue::Bool(true)), t(9, 2))
        .expect("applied event");
    assert_eq!(ev.kind, EventKind::SettingApplied);
    assert_eq!(ev.message, "run set to true (override)");
    assert_eq!(write_of(&s, "run"), None);
    let report = s.report(t(9, 2));
    assert_eq!(report.reported.get("run"), Some(&json!(true)));
    let status = &report.settings["run"];
    assert_eq!(
        (
            status.source,
            status.requested.clone(),
            status.detail.clone()
        ),
        (SettingSource::Override, None, None)
    );
}

#[test]
fn nothing_is_written_before_the_first_poll() {
    let mut s = ControlState::new(default_map(), &config()).expect("valid");
    s.set_overrides(overrides(1, vec![("run", ov(json!(true), None, t(9, 0)))]));
    assert!(s.writes().is_empty());
    s.observe(&BTreeMap::from([(
        "run".to_owned(),
        PointValue::Bool(false),
    )]));
    assert_eq!(write_of(&s, "run"), Some(PointValue::Bool(true)));
}

#[test]
fn defaults_are_checked_against_the_map() {
    let bad = [
        (
            json!({"supply_c": 1.0}),
            "[control.defaults] supply_c: not a writable point",
        ),
        (
            json!({"nope": 1}),
            "[control.defaults] nope: not a writable point",
        ),
        (json!({"mode": "auto"}), "[control.defaults] mode:"),
        (
            json!({"demand_limit_pct": 10}),
            "[control.defaults] demand_limit_pct: refused",
        ),
    ];
    for (defaults, expected) in bad {
        let config = ControlConfig {
            defaults: serde_json::from_value(defaults).expect("map"),
            ..ControlConfig::default()
        };
        let err = ControlState::new(default_map(), &config)
            .expect_err(expected)
            .to_string();
        assert!(
            err.starts_with(expected),
            "{err:?} should start with {expected:?}"
        );
    }
}

#[test]
fn a_held_schedule_writes_no_defaults_and_keeps_the_plc_as_it_is() {
    // A start-up while the clock reads 1970: the schedule is held with nothing in force.
    let mut s = state();
    s.observe(&BTreeMap::from([
        ("run".to_owned(), PointValue::Bool(true)),
        ("chw_setpoint_c".to_owned(), PointValue::Number(9.0)),
    ]));
    s.set_schedule(ScheduleSettings {
        held: true,
        ..ScheduleSettings::default()
    });
    assert_eq!(s.writes(), Vec::new(), "no [control.defaults] written");
    assert_eq!(s.target("run"), None);
    // Held schedule values (the ones in force before the clock went wrong) still count, and
    // an operator's override still wins.
    s.set_schedule(ScheduleSettings {
        held: true,
        ..schedule(vec![("chw_setpoint_c", json!(8.0), t(6, 0), None)])
    });
    assert_eq!(
        write_of(&s, "chw_setpoint_c"),
        Some(PointValue::Number(8.0))
    );
    assert_eq!(write_of(&s, "run"), None);
    s.set_overrides(overrides(5, vec![("run", ov(json!(false), None, t(9, 0)))]));
    assert_eq!(write_of(&s, "run"), Some(PointValue::Bool(false)));
    // Once the clock is set and no schedule is in force, the defaults apply as documented.
    s.set_overrides(overrides(6, vec![]));
    s.set_schedule(ScheduleSettings::default());
    assert_eq!(write_of(&s, "run"), Some(PointValue::Bool(false)));
    assert_eq!(
        write_of(&s, "chw_setpoint_c"),
        Some(PointValue::Number(7.0))
    );
}
