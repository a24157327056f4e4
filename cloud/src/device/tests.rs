//! State machine tests with a test clock (plain `now` values), no actix.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};
use shiki_proto::{
    Catalog, Connectivity, DeviceId, Event, EventKind, ExpiredOverride, JsonMap, ReportedState,
    ReportedUpdate, SettingSource, SettingStatus, Severity, ShadowGet, Status,
};

use super::state::*;
use crate::notifier::AlertKind;
use crate::store::{
    Author, DeviceSnapshot, FailureReason, HistoryEntry, Side, VerificationOutcome,
    VerificationRecord, Write,
};

pub(super) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 9, 0, 0)
        .single()
        .expect("valid")
}

pub(super) fn secs(s: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(s)
}

pub(super) fn catalog() -> Catalog {
    serde_json::from_value(json!({"points": [
        {"name": "chw_setpoint", "role": "setting", "kind": "number", "writable": true,
         "min": 5.0, "max": 15.0, "resolution": 0.1, "unit": "°C"},
        {"name": "mode", "role": "setting", "kind": "enum", "writable": true,
         "options": ["cooling", "heating"]},
        {"name": "supply_temp", "role": "reading", "kind": "number", "resolution": 0.1}
    ]}))
    .expect("catalog")
}

pub(super) struct Ids(pub(super) u64);
impl Ids {
    pub(super) fn f(&mut self) -> impl FnMut() -> u64 + '_ {
        move || {
            self.0 += 1;
            self.0
        }
    }
}

pub(super) fn online(s: &mut DeviceState, at: DateTime<Utc>) {
    let st = Status {
        v: 1,
        state: Connectivity::Online,
        software_version: Some("0.1.0".into()),
        boot_time: None,
        ts: None,
    };
    s.on_status(st, at);
}

pub(super) fn device() -> DeviceState {
    let mut s = DeviceState::new(DeviceId::new("gw-1").expect("id"), DeviceConfig::default());
    s.on_catalog(catalog(), t0());
    online(&mut s, t0());
    s
}

/// Sets `settings` in desired at `at` (no expected version), which must be accepted.
pub(super) fn desire(
    s: &mut DeviceState,
    ids: &mut Ids,
    settings: Value,
    at: DateTime<Utc>,
) -> Effects {
    let (_, fx) = s
        .change_desired(change(settings, None), ops(), at, &mut ids.f())
        .expect("accepted");
    fx
}

pub(super) fn change(settings: Value, expected: Option<u64>) -> DesiredChange {
    DesiredChange {
        settings: settings.as_object().cloned().expect("object"),
        expected_version: expected,
        until: None,
        comment: Some("cold snap".into()),
    }
}

/// The author of the test changes: API key `ops`, operator.
pub(super) fn ops() -> Author {
    Author::api_key("ops", crate::auth::Role::Operator)
}

pub(super) fn reported(values: Value, applied: u64) -> ReportedUpdate {
    ReportedUpdate {
        v: 1,
        state: ReportedState {
            reported: values.as_object().cloned().expect("object"),
        },
        applied_version: Some(applied),
        settings: Default::default(),
        expired: vec![],
        schedule: None,
        timestamp: t0(),
        client_token: None,
    }
}

pub(super) fn histories(fx: &Effects) -> Vec<&HistoryEntry> {
    fx.writes
        .iter()
        .filter_map(|w| match w {
            Write::History(h) => Some(h.as_ref()),
            _ => None,
        })
        .collect()
}

pub(super) fn verifications(fx: &Effects) -> Vec<&VerificationRecord> {
    fx.writes
        .iter()
        .filter_map(|w| match w {
            Write::Verification(v) => Some(v.as_ref()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_stale_expected_version_is_a_conflict_and_changes_nothing() {
    let mut s = device();
    let mut ids = Ids(0);
    let (v, _) = s
        .change_desired(
            change(json!({"chw_setpoint": 7.0}), Some(0)),
            ops(),
            secs(1),
            &mut ids.f(),
        )
        .expect("first change");
    assert_eq!(v, 1);
    let err = s
        .change_desired(
            change(json!({"chw_setpoint": 8.0}), Some(0)),
            ops(),
            secs(2),
            &mut ids.f(),
        )
        .expect_err("stale");
    assert!(matches!(err, DesiredError::Conflict(c) if c.current == 1 && c.expected == 0));
    assert_eq!(s.shadow().desired()["chw_setpoint"], json!(7.0));
}

#[test]
fn desired_changes_are_validated_against_the_catalog_naming_the_key() {
    let mut s = device();
    let mut ids = Ids(0);
    let cases = [
        (json!({"nope": 1}), "nope"),
        (json!({"supply_temp": 7.0}), "supply_temp"),
        (json!({"chw_setpoint": 30.0}), "chw_setpoint"),
        (json!({"chw_setpoint": "warm"}), "chw_setpoint"),
        (json!({"mode": "defrost"}), "mode"),
    ];
    for (settings, key) in cases {
        let err = s
            .change_desired(change(settings, None), ops(), secs(1), &mut ids.f())
            .expect_err("refused");
        assert_eq!(err.key(), Some(key), "{err}");
        assert!(err.to_string().contains(key));
    }
    assert_eq!(s.shadow().version(), 0);
    let mut fresh = DeviceState::new(DeviceId::new("gw-2").expect("id"), DeviceConfig::default());
    let err = fresh
        .change_desired(
            change(json!({"mode": "cooling"}), None),
            ops(),
            secs(1),
            &mut ids.f(),
        )
        .expect_err("no catalog");
    assert!(matches!(err, DesiredError::NoCatalog { .. }));
}

#[test]
fn a_desired_change_records_history_publishes_a_delta_and_starts_verification() {
    let mut s = device();
    let mut ids = Ids(0);
    let fx = desire(
        &mut s,
        &mut ids,
        json!({"chw_setpoint": 7.0, "mode": "cooling"}),
        secs(1),
    );
    let h = histories(&fx);
    assert_eq!(h.len(), 2);
    assert!(
        h.iter()
            .all(|h| h.side == Side::Desired && h.version == 1 && h.verification_id.is_some())
    );
    assert_eq!(h[0].comment.as_deref(), Some("cold snap"));
    let v = verifications(&fx);
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].next_check, Some(secs(3)));
    match &fx.publish[..] {
        [Outbound::Delta(d)] => {
            assert_eq!(d.version, 1);
            assert_eq!(d.state.len(), 2);
            assert!(d.metadata.contains_key("mode"));
        }
        other => panic!("expected one delta, got {other:?}"),
    }
    assert_eq!(s.pending().count(), 2);
    assert_eq!(s.next_deadline(), Some(secs(3)));
}

#[test]
fn a_matching_report_verifies_at_the_points_resolution() {
    let mut s = device();
    let mut ids = Ids(0);
    desire(&mut s, &mut ids, json!({"chw_setpoint": 7.0}), secs(1));
    // A report for an older version does not settle it.
    let fx = s.on_reported(
        reported(json!({"chw_setpoint": 7.0}), 0),
        secs(2),
        &mut ids.f(),
    );
    assert!(verifications(&fx).is_empty());
    // The reported change itself is in history, by the device.
    let h = histories(&fx);
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].actor, Author::Device(s.id().clone()));
    let fx = s.on_reported(
        reported(json!({"chw_setpoint": 7.04}), 1),
        secs(2),
        &mut ids.f(),
    );
    let v = verifications(&fx);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].outcome, VerificationOutcome::Verified { at: secs(2) });
    assert!(fx.alerts.is_empty());
    // 7.04 equals 7.0 at resolution 0.1: no new reported history entry.
    assert!(histories(&fx).is_empty());
    assert_eq!(s.pending().count(), 0);
    assert!(s.view().delta.is_empty());
}

#[test]
fn refused_and_clamped_settings_fail_with_their_reason_and_alert() {
    let mut s = device();
    let mut ids = Ids(0);
    desire(
        &mut s,
        &mut ids,
        json!({"chw_setpoint": 14.0, "mode": "heating"}),
        secs(1),
    );
    let mut r = reported(json!({"chw_setpoint": 12.0, "mode": "cooling"}), 1);
    r.settings.insert(
        "chw_setpoint".into(),
        SettingStatus {
            source: SettingSource::Clamped,
            requested: Some(json!(14.0)),
            detail: Some("clamped to 12.0".into()),
        },
    );
    r.settings.insert(
        "mode".into(),
        SettingStatus {
            source: SettingSource::Refused,
            requested: Some(json!("heating")),
            detail: Some("exception 0x02".into()),
        },
    );
    let fx = s.on_reported(r, secs(2), &mut ids.f());
    let v = verifications(&fx);
    assert_eq!(v.len(), 2);
    let reason = |key: &str| match &v.iter().find(|v| v.key == key).expect("key").outcome {
        VerificationOutcome::Failed { reason, .. } => reason.clone(),
        o => panic!("not failed: {o:?}"),
    };
    assert_eq!(
        reason("chw_setpoint"),
        FailureReason::Clamped { value: json!(12.0) }
    );
    assert_eq!(
        reason("mode"),
        FailureReason::PlcRefused {
            detail: Some("exception 0x02".into())
        }
    );
    assert_eq!(fx.alerts.len(), 2);
    assert!(
        fx.alerts
            .iter()
            .all(|a| a.kind == AlertKind::VerificationFailed)
    );
    assert!(fx.alerts.iter().any(|a| a.text.contains("clamped to 12.0")));
}

#[test]
fn verification_rechecks_on_a_doubling_backoff_then_times_out() {
    let mut s = device();
    let mut ids = Ids(0);
    desire(&mut s, &mut ids, json!({"chw_setpoint": 7.0}), secs(0));
    // 2 s, 4 s, 8 s, 16 s, 32 s after each previous check.
    let mut at = 0;
    for (i, delay) in [2, 4, 8, 16].into_iter().enumerate() {
        at += delay;
        assert!(
            s.on_tick(secs(at - 1)).writes.is_empty(),
            "nothing due before {at}"
        );
        let fx = s.on_tick(secs(at));
        let v = verifications(&fx);
        assert_eq!(v[0].attempts, i as u32 + 1);
        assert_eq!(v[0].outcome, VerificationOutcome::Pending);
    }
    at += 32;
    assert_eq!(s.next_deadline(), Some(secs(at)));
    let fx = s.on_tick(secs(at));
    let v = verifications(&fx);
    assert_eq!(
        v[0].outcome,
        VerificationOutcome::Failed {
            at: secs(at),
            reason: FailureReason::TimedOut
        }
    );
    assert_eq!(fx.alerts.len(), 1);
    assert_eq!(s.next_deadline(), None);
}

#[test]
fn verification_of_an_offline_device_fails_as_offline_and_a_late_match_on_recheck_verifies() {
    let cfg = DeviceConfig {
        verification: crate::config::VerificationConfig {
            attempts: 1,
            first_delay: std::time::Duration::from_secs(2),
        },
        offline_after: std::time::Duration::from_secs(3600),
        ..DeviceConfig::default()
    };
    let mut s = DeviceState::new(DeviceId::new("gw-1").expect("id"), cfg);
    s.on_catalog(catalog(), t0());
    let mut ids = Ids(0);
    desire(&mut s, &mut ids, json!({"chw_setpoint": 7.0}), secs(0));
    let fx = s.on_tick(secs(2));
    assert!(matches!(
        verifications(&fx)[0].outcome,
        VerificationOutcome::Failed {
            reason: FailureReason::DeviceOffline,
            ..
        }
    ));

    let mut s = device();
    desire(&mut s, &mut ids, json!({"mode": "cooling"}), secs(0));
    // A report without applied_version carried the value; the re-check sees it.
    let mut r = reported(json!({"mode": "cooling"}), 0);
    r.applied_version = Some(0);
    s.on_reported(r, secs(1), &mut ids.f());
    let fx = s.on_tick(secs(2));
    assert!(matches!(
        verifications(&fx)[0].outcome,
        VerificationOutcome::Verified { .. }
    ));
}

#[test]
fn a_newer_change_supersedes_the_pending_verification_without_alert() {
    let mut s = device();
    let mut ids = Ids(0);
    desire(&mut s, &mut ids, json!({"chw_setpoint": 7.0}), secs(0));
    let (_, fx) = s
        .change_desired(
            change(json!({"chw_setpoint": 8.0}), Some(1)),
            ops(),
            secs(1),
            &mut ids.f(),
        )
        .expect("accepted");
    let v = verifications(&fx);
    assert!(v.iter().any(|v| v.outcome
        == VerificationOutcome::Failed {
            at: secs(1),
            reason: FailureReason::Superseded { by_version: 2 }
        }));
    assert!(fx.alerts.is_empty());
    assert_eq!(s.pending().count(), 1);
}

#[test]
fn an_expired_override_leaves_desired_with_a_schedule_history_entry() {
    let mut s = device();
    let mut ids = Ids(0);
    let mut c = change(json!({"chw_setpoint": 7.0}), None);
    c.until = Some(secs(60));
    s.change_desired(c, ops(), secs(0), &mut ids.f())
        .expect("accepted");
    s.on_reported(
        reported(json!({"chw_setpoint": 7.0}), 1),
        secs(1),
        &mut ids.f(),
    );
    let mut r = reported(json!({"chw_setpoint": 9.0}), 1);
    r.expired.push(ExpiredOverride {
        key: "chw_setpoint".into(),
        at: secs(60),
        desired_version: 1,
    });
    let fx = s.on_reported(r, secs(61), &mut ids.f());
    assert!(!s.shadow().desired().contains_key("chw_setpoint"));
    assert_eq!(s.shadow().version(), 2);
    let h = histories(&fx);
    let sched = h
        .iter()
        .find(|h| h.actor == Author::Schedule)
        .expect("schedule entry");
    assert_eq!(sched.old, json!(7.0));
    assert_eq!(sched.new, Value::Null);
    assert_eq!(sched.version, 2);
    match &fx.publish[..] {
        [Outbound::Delta(d)] => assert_eq!(d.state.get("chw_setpoint"), Some(&Value::Null)),
        other => panic!("expected a delta, got {other:?}"),
    }
    // An expiry for an older version does not remove a newer override.
    desire(&mut s, &mut ids, json!({"chw_setpoint": 8.0}), secs(70));
    let mut r = reported(json!({}), 3);
    r.expired.push(ExpiredOverride {
        key: "chw_setpoint".into(),
        at: secs(71),
        desired_version: 1,
    });
    s.on_reported(r, secs(72), &mut ids.f());
    assert_eq!(s.shadow().desired()["chw_setpoint"], json!(8.0));
}

#[test]
fn restart_restores_shadow_and_resumes_pending_verifications() {
    let mut s = device();
    let mut ids = Ids(0);
    let fx = desire(&mut s, &mut ids, json!({"chw_setpoint": 7.0}), secs(0));
    let snapshot: DeviceSnapshot = fx
        .writes
        .iter()
        .rev()
        .find_map(|w| match w {
            Write::Device { snapshot, .. } => Some((**snapshot).clone()),
            _ => None,
        })
        .expect("snapshot written");
    let pending: Vec<VerificationRecord> = verifications(&fx).into_iter().cloned().collect();
    let mut back = DeviceState::restore(
        s.id().clone(),
        DeviceConfig::default(),
        Some(snapshot),
        pending,
        None,
    );
    assert_eq!(back.shadow(), s.shadow());
    assert!(back.online());
    assert_eq!(back.next_deadline(), Some(secs(2)));
    let fx = back.on_reported(
        reported(json!({"chw_setpoint": 7.0}), 1),
        secs(1),
        &mut ids.f(),
    );
    assert!(matches!(
        verifications(&fx)[0].outcome,
        VerificationOutcome::Verified { .. }
    ));
}

#[test]
fn a_device_offline_past_the_threshold_alerts_once() {
    let mut s = device();
    let off = Status {
        v: 1,
        state: Connectivity::Offline,
        software_version: None,
        boot_time: None,
        ts: None,
    };
    s.on_status(off, secs(10));
    assert_eq!(s.next_deadline(), Some(secs(610)));
    assert!(s.on_tick(secs(609)).alerts.is_empty());
    let fx = s.on_tick(secs(610));
    assert_eq!(fx.alerts.len(), 1);
    assert_eq!(fx.alerts[0].kind, AlertKind::DeviceOffline);
    assert!(s.on_tick(secs(2000)).alerts.is_empty());
    online(&mut s, secs(2001));
    assert_eq!(s.next_deadline(), None);
}

#[test]
fn plc_alarms_alert_once_even_when_replayed() {
    let mut s = device();
    let ev = Event {
        seq: 1,
        ts: t0(),
        kind: EventKind::Alarm,
        severity: Severity::Critical,
        message: "alarm 12".into(),
        data: Value::Null,
    };
    assert_eq!(
        s.on_events(std::slice::from_ref(&ev), secs(1)).alerts.len(),
        1
    );
    assert!(s.on_events(&[ev], secs(2)).alerts.is_empty());
}

#[test]
fn shadow_get_is_answered_with_the_full_document() {
    let mut s = device();
    let mut ids = Ids(0);
    desire(&mut s, &mut ids, json!({"mode": "cooling"}), secs(0));
    let fx = s.on_shadow_get(
        ShadowGet {
            v: 1,
            client_token: Some("boot-1".into()),
        },
        secs(1),
    );
    match &fx.publish[..] {
        [Outbound::Document(d)] => {
            assert_eq!(d.version, 1);
            assert_eq!(d.client_token.as_deref(), Some("boot-1"));
            assert_eq!(d.state.desired.get("mode"), Some(&json!("cooling")));
            assert_eq!(d.state.delta.len(), 1);
            let _: &JsonMap = &d.state.reported;
        }
        other => panic!("expected a document, got {other:?}"),
    }
}

#[test]
fn an_override_ending_in_the_past_is_refused() {
    let mut s = device();
    let mut ids = Ids(0);
    let mut c = change(json!({"chw_setpoint": 7.0}), None);
    c.until = Some(secs(-1));
    let err = s
        .change_desired(c, ops(), secs(0), &mut ids.f())
        .expect_err("refused");
    assert_eq!(err.key(), Some("until"));
}
