//! Unit tests of the shadow model; the property tests are in `properties.rs`.

mod properties;
mod versions;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};

use super::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 1, 4, 0, 0)
        .single()
        .expect("valid literal date")
}

fn map(v: Value) -> JsonMap {
    match v {
        Value::Object(m) => m,
        other => panic!("test literal is not an object: {other}"),
    }
}

#[test]
fn desired_change_bumps_version_and_lists_old_and_new_values() {
    let mut s = Shadow::default();
    let out = s
        .apply_desired(
            DesiredChange::new(map(json!({"sp": 7.0, "run": true}))),
            t0(),
        )
        .expect("accepted");
    assert_eq!(out.version, 1);
    assert_eq!(s.version(), 1);
    assert_eq!(
        out.changes,
        vec![
            KeyChange {
                key: "run".into(),
                old: None,
                new: Some(json!(true))
            },
            KeyChange {
                key: "sp".into(),
                old: None,
                new: Some(json!(7.0))
            },
        ]
    );
    let later = t0() + Duration::minutes(5);
    let out = s
        .apply_desired(
            DesiredChange::new(map(json!({"sp": 7.5, "run": null}))),
            later,
        )
        .expect("accepted");
    assert_eq!(out.version, 2);
    assert_eq!(
        out.changes,
        vec![
            KeyChange {
                key: "run".into(),
                old: Some(json!(true)),
                new: None
            },
            KeyChange {
                key: "sp".into(),
                old: Some(json!(7.0)),
                new: Some(json!(7.5))
            },
        ]
    );
    assert_eq!(s.desired(), &map(json!({"sp": 7.5})));
    assert_eq!(s.metadata().desired["sp"].timestamp, later);
    assert!(!s.metadata().desired.contains_key("run"));
}

#[test]
fn a_no_op_change_still_bumps_the_version() {
    let mut s = Shadow::default();
    s.apply_desired(DesiredChange::new(map(json!({"sp": 7.0}))), t0())
        .expect("accepted");
    let out = s
        .apply_desired(DesiredChange::new(map(json!({"sp": 7.0}))), t0())
        .expect("accepted");
    assert_eq!(out.version, 2);
    assert!(out.changes.iter().all(KeyChange::is_noop));
    let out = s
        .apply_desired(DesiredChange::new(map(json!({"absent": null}))), t0())
        .expect("accepted");
    assert_eq!(out.version, 3);
    assert!(
        out.changes.is_empty(),
        "deleting an absent key is not a change"
    );
}

#[test]
fn stale_expected_version_is_a_conflict_and_changes_nothing() {
    let mut s = Shadow::default();
    s.apply_desired(
        DesiredChange::new(map(json!({"sp": 7.0}))).expecting(0),
        t0(),
    )
    .expect("version 0 is current");
    let before = s.clone();
    let err = s
        .apply_desired(
            DesiredChange::new(map(json!({"sp": 8.0}))).expecting(0),
            t0(),
        )
        .expect_err("stale");
    assert_eq!(
        err,
        ShadowError::VersionConflict {
            expected: 0,
            current: 1
        }
    );
    assert_eq!(
        err.to_string(),
        "version conflict: the change expects desired version 0, but the shadow is at version 1"
    );
    assert_eq!(s, before);
}

#[test]
fn until_is_recorded_per_key_and_must_be_in_the_future() {
    let mut s = Shadow::default();
    let until = t0() + Duration::hours(5);
    s.apply_desired(
        DesiredChange::new(map(json!({"sp": 7.5}))).until(until),
        t0(),
    )
    .expect("accepted");
    assert_eq!(s.metadata().desired["sp"].until, Some(until));
    assert!(s.expired_overrides(until - Duration::seconds(1)).is_empty());
    assert_eq!(s.expired_overrides(until), vec!["sp".to_owned()]);

    let before = s.clone();
    let err = s
        .apply_desired(
            DesiredChange::new(map(json!({"sp": 8.0}))).until(t0()),
            t0(),
        )
        .expect_err("until == now");
    assert!(matches!(err, ShadowError::UntilNotInFuture { .. }));
    assert_eq!(s, before);

    // Setting the key again without `until` clears it.
    s.apply_desired(DesiredChange::new(map(json!({"sp": 7.5}))), t0())
        .expect("accepted");
    assert_eq!(s.metadata().desired["sp"].until, None);
}

#[test]
fn remove_desired_bumps_version_and_is_a_no_op_for_absent_keys() {
    let mut s = Shadow::default();
    s.apply_desired(DesiredChange::new(map(json!({"sp": 7.5}))), t0())
        .expect("accepted");
    let out = s.remove_desired("sp", t0()).expect("sp was desired");
    assert_eq!(out.version, 2);
    assert_eq!(out.changes[0].old, Some(json!(7.5)));
    assert!(s.desired().is_empty());
    assert!(s.metadata().desired.is_empty());
    assert!(s.remove_desired("sp", t0()).is_none());
    assert_eq!(s.version(), 2);
    assert!(s.delta_message(t0()).is_none(), "an expiry sends no null");
}

#[test]
fn reported_metadata_changes_only_with_the_value() {
    let mut s = Shadow::default();
    let out = s
        .apply_reported(map(json!({"sp": 7.0, "run": true})), t0())
        .expect("ok");
    assert_eq!(out.changes.len(), 2);
    let later = t0() + Duration::minutes(1);
    let out = s
        .apply_reported(map(json!({"sp": 7.0, "run": false})), later)
        .expect("ok");
    assert_eq!(
        out.changes,
        vec![KeyChange {
            key: "run".into(),
            old: Some(json!(true)),
            new: Some(json!(false))
        }]
    );
    assert_eq!(s.metadata().reported["sp"].timestamp, t0());
    assert_eq!(s.metadata().reported["run"].timestamp, later);
    let out = s
        .apply_reported(map(json!({"run": null})), later)
        .expect("ok");
    assert_eq!(out.changes.len(), 1);
    assert!(!s.metadata().reported.contains_key("run"));
    assert_eq!(s.version(), 0, "reports do not touch the desired version");
}

#[test]
fn nested_objects_merge_and_null_deletes_nested_fields() {
    let mut s = Shadow::default();
    s.apply_desired(
        DesiredChange::new(map(json!({"sp": {"chw": 7.0, "hw": 45.0}}))),
        t0(),
    )
    .expect("accepted");
    let out = s
        .apply_desired(
            DesiredChange::new(map(
                json!({"sp": {"chw": 7.5, "hw": null, "x": {"y": null}}}),
            )),
            t0(),
        )
        .expect("accepted");
    assert_eq!(s.desired(), &map(json!({"sp": {"chw": 7.5, "x": {}}})));
    assert_eq!(out.changes[0].old, Some(json!({"chw": 7.0, "hw": 45.0})));
    assert_eq!(out.changes[0].new, Some(json!({"chw": 7.5, "x": {}})));
}

#[test]
fn delta_uses_the_point_resolution() {
    let mut s = Shadow::default();
    s.apply_desired(
        DesiredChange::new(map(json!({"sp": 7.0, "limit": 80}))),
        t0(),
    )
    .expect("accepted");
    s.apply_reported(map(json!({"sp": 7.04, "limit": 80.4})), t0())
        .expect("ok");
    let res = |k: &str| match k {
        "sp" => Some(0.1),
        "limit" => Some(1.0),
        _ => None,
    };
    assert!(s.delta_with(&res).is_empty());
    assert!(s.is_in_sync(&res));
    assert_eq!(s.delta(), map(json!({"sp": 7.0, "limit": 80})));
    s.apply_reported(map(json!({"sp": 7.06})), t0())
        .expect("ok");
    assert_eq!(s.delta_with(&res), map(json!({"sp": 7.0})));
    assert!(!s.is_in_sync(&res));
}

#[test]
fn delta_message_carries_metadata_and_deletions_until_acknowledged() {
    let mut s = Shadow::default();
    let until = t0() + Duration::hours(5);
    s.apply_desired(
        DesiredChange::new(map(json!({"sp": 7.5, "limit": 80}))).until(until),
        t0(),
    )
    .expect("accepted");
    s.apply_reported(map(json!({"sp": 7.0, "limit": 80})), t0())
        .expect("ok");
    s.apply_desired(DesiredChange::new(map(json!({"limit": null}))), t0())
        .expect("accepted");
    assert_eq!(s.version(), 2);

    let msg = s.delta_message(t0()).expect("there is a delta");
    assert_eq!(msg.state, map(json!({"sp": 7.5, "limit": null})));
    assert_eq!(msg.version, 2);
    assert_eq!(msg.metadata["sp"].until, Some(until));
    assert!(!msg.metadata.contains_key("limit"));

    s.acknowledge(1);
    assert!(
        s.delta_message(t0())
            .expect("still a delta")
            .state
            .contains_key("limit")
    );
    s.acknowledge(2);
    assert_eq!(
        s.delta_message(t0()).expect("sp").state,
        map(json!({"sp": 7.5}))
    );
    s.apply_reported(map(json!({"sp": 7.5})), t0()).expect("ok");
    assert!(s.delta_message(t0()).is_none());
}

#[test]
fn a_reported_update_acknowledges_its_applied_version() {
    let mut s = Shadow::default();
    s.apply_desired(
        DesiredChange::new(map(json!({"sp": 7.5, "limit": 80}))),
        t0(),
    )
    .expect("accepted");
    s.apply_desired(DesiredChange::new(map(json!({"limit": null}))), t0())
        .expect("accepted");
    let update: shiki_proto::ReportedUpdate = serde_json::from_value(json!({
        "v": 1,
        "state": {"reported": {"sp": 7.5}},
        "applied_version": 2,
        "timestamp": "2026-07-01T04:00:05Z"
    }))
    .expect("valid update");
    let out = s.apply_reported_update(&update, t0()).expect("accepted");
    assert_eq!(out.changes.len(), 1);
    assert!(
        s.delta_message(t0()).is_none(),
        "deletion acknowledged, sp in sync"
    );
}

#[test]
fn setting_a_deleted_key_again_cancels_the_pending_null() {
    let mut s = Shadow::default();
    s.apply_desired(DesiredChange::new(map(json!({"sp": 7.5}))), t0())
        .expect("accepted");
    s.apply_desired(DesiredChange::new(map(json!({"sp": null}))), t0())
        .expect("accepted");
    s.apply_desired(DesiredChange::new(map(json!({"sp": 8.0}))), t0())
        .expect("accepted");
    s.apply_reported(map(json!({"sp": 8.0})), t0()).expect("ok");
    // Not acknowledged yet: the message carries the value set again, never the null.
    let msg = s.delta_message(t0()).expect("version 3 unacknowledged");
    assert_eq!(msg.state, map(json!({"sp": 8.0})));
    s.acknowledge(3);
    assert!(s.delta_message(t0()).is_none());
}

#[test]
fn document_has_state_delta_metadata_and_version() {
    let mut s = Shadow::default();
    s.apply_desired(
        DesiredChange::new(map(json!({"sp": 7.5, "saving": true}))),
        t0(),
    )
    .expect("accepted");
    s.apply_reported(map(json!({"sp": 7.0, "saving": true, "run": true})), t0())
        .expect("ok");
    let doc = s.document(t0());
    assert_eq!(doc.version, 1);
    assert_eq!(doc.state.delta, map(json!({"sp": 7.5})));
    assert_eq!(doc.metadata.reported.len(), 3);
    let back = Shadow::from_document(&doc);
    assert_eq!(back.desired(), s.desired());
    assert_eq!(back.reported(), s.reported());
    assert_eq!(back.version(), 1);
    // The document survives the wire codec.
    let bytes = shiki_proto::encode(&doc).expect("encodes");
    let decoded: ShadowDocument = shiki_proto::decode(&bytes).expect("decodes");
    assert_eq!(decoded, doc);
}

#[test]
fn too_deep_names_the_key_path() {
    let mut s = Shadow::default();
    let deep = json!({"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}});
    let err = s
        .apply_desired(DesiredChange::new(map(deep)), t0())
        .expect_err("depth 7");
    assert_eq!(
        err,
        ShadowError::TooDeep {
            key: "a.b.c.d.e.f.g".into(),
            limit: 6
        }
    );
    assert_eq!(s, Shadow::default());
    assert_eq!(s.version(), 0);
    let ok = json!({"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}});
    s.apply_desired(DesiredChange::new(map(ok)), t0())
        .expect("depth 6 is allowed");
}

#[test]
fn too_large_counts_desired_and_reported_together() {
    let mut s = Shadow::new(ShadowLimits {
        max_depth: 6,
        max_bytes: 100,
    });
    let big = "x".repeat(40);
    s.apply_desired(DesiredChange::new(map(json!({"a": big}))), t0())
        .expect("50 bytes fit");
    let before = s.clone();
    let err = s
        .apply_reported(map(json!({"b": big, "c": 1})), t0())
        .expect_err("too big");
    assert!(
        matches!(err, ShadowError::TooLarge { limit: 100, size } if size > 100),
        "{err}"
    );
    assert_eq!(s, before);
    let err = s
        .apply_desired(DesiredChange::new(map(json!({"b": big, "c": 1234}))), t0())
        .expect_err("too big");
    assert!(matches!(err, ShadowError::TooLarge { .. }));
    assert_eq!(s, before);
}

#[test]
fn an_oversized_shadow_can_still_shrink_after_limits_are_lowered() {
    let mut s = Shadow::default();
    let big = "x".repeat(100);
    s.apply_desired(DesiredChange::new(map(json!({"a": big, "b": big}))), t0())
        .expect("fits 8 KiB");
    s.apply_reported(map(json!({"a": big})), t0())
        .expect("fits 8 KiB");
    s.set_limits(ShadowLimits {
        max_depth: 1,
        max_bytes: 150,
    });
    s.apply_reported(map(json!({"a": null})), t0())
        .expect("shrinks");
    let err = s
        .apply_reported(map(json!({"c": 1})), t0())
        .expect_err("grows while over");
    assert!(matches!(err, ShadowError::TooLarge { .. }));
    s.apply_desired(DesiredChange::new(map(json!({"b": null}))), t0())
        .expect("shrinks");
    let err = s
        .apply_desired(DesiredChange::new(map(json!({"n": {"m": 1}}))), t0())
        .expect_err("depth 2");
    assert_eq!(
        err,
        ShadowError::TooDeep {
            key: "n.m".into(),
            limit: 1
        }
    );
}

#[test]
fn default_limits_are_aws_iot_limits() {
    let mut s = Shadow::default();
    assert_eq!(
        s.limits(),
        ShadowLimits {
            max_depth: 6,
            max_bytes: 8192
        }
    );
    let big = "x".repeat(8 * 1024);
    let err = s
        .apply_desired(DesiredChange::new(map(json!({"a": big}))), t0())
        .expect_err("over 8 KiB");
    assert!(matches!(err, ShadowError::TooLarge { limit: 8192, .. }));
}

#[test]
fn shadow_survives_serde_round_trip() {
    let mut s = Shadow::default();
    s.apply_desired(
        DesiredChange::new(map(json!({"sp": 7.5, "x": 1}))).until(t0() + Duration::hours(1)),
        t0(),
    )
    .expect("accepted");
    s.apply_desired(DesiredChange::new(map(json!({"x": null}))), t0())
        .expect("accepted");
    s.apply_reported(map(json!({"sp": 7.0})), t0()).expect("ok");
    let text = serde_json::to_string(&s).expect("serialises");
    let back: Shadow = serde_json::from_str(&text).expect("deserialises");
    assert_eq!(back, s);
    assert_eq!(back.delta_message(t0()), s.delta_message(t0()));
}
