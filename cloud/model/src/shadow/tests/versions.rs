//! Per-key desired versions, expired overrides, and reported changes at a resolution.

use chrono::Duration;
use serde_json::json;

use super::super::*;
use super::{map, t0};

#[test]
fn every_desired_change_stamps_the_keys_it_names_with_its_version() {
    let mut s = Shadow::default();
    s.apply_desired(
        DesiredChange::new(map(json!({"sp": 7.0, "run": true}))),
        t0(),
    )
    .expect("accepted");
    s.apply_desired(DesiredChange::new(map(json!({"sp": 7.5}))), t0())
        .expect("accepted");
    assert_eq!(s.metadata().desired["sp"].version, Some(2));
    assert_eq!(s.metadata().desired["run"].version, Some(1));
    // Setting the same value again is a change of the key too (its metadata is refreshed).
    s.apply_desired(DesiredChange::new(map(json!({"run": true}))), t0())
        .expect("accepted");
    assert_eq!(s.metadata().desired["run"].version, Some(3));
    assert_eq!(s.set_in_version("run"), Some(3));
    assert_eq!(s.set_in_version("absent"), None);
    // Reported metadata carries no version.
    s.apply_reported(map(json!({"sp": 7.5})), t0()).expect("ok");
    assert_eq!(s.metadata().reported["sp"].version, None);
    // The version reaches the wire.
    let msg = s.delta_message(t0()).expect("run is not reported");
    assert_eq!(msg.metadata["run"].version, Some(3));
    assert_eq!(s.document(t0()).metadata.desired["sp"].version, Some(2));
}

#[test]
fn an_expired_override_is_removed_only_if_not_set_again_since() {
    let mut s = Shadow::default();
    let until = t0() + Duration::hours(1);
    s.apply_desired(
        DesiredChange::new(map(json!({"sp": 7.0}))).until(until),
        t0(),
    )
    .expect("version 1");
    s.apply_desired(DesiredChange::new(map(json!({"run": true}))), t0())
        .expect("version 2");

    // The edge ends the override it got in version 1 (or later): removed, version bumped.
    let out = s.remove_expired("sp", 2, until).expect("removed");
    assert_eq!(out.version, 3);
    assert_eq!(
        out.changes,
        vec![KeyChange {
            key: "sp".into(),
            old: Some(json!(7.0)),
            new: None
        }]
    );
    assert!(!s.desired().contains_key("sp"));
    assert!(!s.metadata().desired.contains_key("sp"));
    assert!(
        s.delta_message(until)
            .is_some_and(|d| !d.state.contains_key("sp"))
    );

    // Set again in version 4: an expiry of the version-1 override leaves it alone.
    s.apply_desired(DesiredChange::new(map(json!({"sp": 8.0}))), until)
        .expect("version 4");
    let before = s.clone();
    assert!(s.remove_expired("sp", 1, until).is_none());
    assert!(s.remove_expired("sp", 3, until).is_none());
    assert_eq!(s, before, "nothing changed, not even the version");
    // An expiry of the current override removes it; a second one finds nothing.
    assert!(s.remove_expired("sp", 4, until).is_some());
    assert!(s.remove_expired("sp", 4, until).is_none());
    assert!(s.remove_expired("never-set", 9, until).is_none());
    assert_eq!(s.version(), 5);
}

#[test]
fn a_key_whose_metadata_has_no_version_counts_as_set_in_version_0() {
    // A document written before per-key versions were kept.
    let doc: ShadowDocument = serde_json::from_value(json!({
        "v": 1,
        "state": {"desired": {"sp": 7.5, "run": true}, "reported": {}},
        "metadata": {"desired": {"sp": {"timestamp": "2026-07-01T04:00:00Z"}}},
        "version": 12,
        "timestamp": "2026-07-01T04:00:01Z"
    }))
    .expect("old document");
    let mut s = Shadow::from_document(&doc);
    assert_eq!(s.set_in_version("sp"), Some(0));
    assert_eq!(s.set_in_version("run"), Some(0), "no metadata at all");
    assert!(s.remove_expired("sp", 0, t0()).is_some());
    assert!(s.remove_expired("run", 3, t0()).is_some());
    assert_eq!(s.version(), 14);
}

#[test]
fn reported_changes_at_the_resolution_store_the_value_but_list_only_real_changes() {
    let res = |k: &str| (k == "sp").then_some(0.1);
    let mut s = Shadow::default();
    let out = s
        .apply_reported_with(map(json!({"sp": 7.0, "mode": "cooling"})), t0(), &res)
        .expect("ok");
    assert_eq!(out.changes.len(), 2);

    let later = t0() + Duration::minutes(1);
    let out = s
        .apply_reported_with(map(json!({"sp": 7.04, "mode": "cooling"})), later, &res)
        .expect("ok");
    assert!(out.is_empty(), "7.04 equals 7.0 at resolution 0.1");
    assert_eq!(
        s.reported()["sp"],
        json!(7.04),
        "the value the PLC holds is kept"
    );
    assert_eq!(s.metadata().reported["sp"].timestamp, later);

    let out = s
        .apply_reported_with(map(json!({"sp": 7.1, "mode": null})), later, &res)
        .expect("ok");
    assert_eq!(
        out.changes,
        vec![
            KeyChange {
                key: "mode".into(),
                old: Some(json!("cooling")),
                new: None
            },
            KeyChange {
                key: "sp".into(),
                old: Some(json!(7.04)),
                new: Some(json!(7.1))
            },
        ]
    );
    // Objects compare both ways: a field that appears is a change.
    s.apply_reported_with(map(json!({"o": {"a": 1.0}})), later, &res)
        .expect("ok");
    let out = s
        .apply_reported_with(map(json!({"o": {"b": 2}})), later, &res)
        .expect("ok");
    assert_eq!(out.changes.len(), 1);
}

#[test]
fn a_reported_update_with_resolutions_acknowledges_its_applied_version() {
    let mut s = Shadow::default();
    s.apply_desired(DesiredChange::new(map(json!({"sp": 7.0, "x": 1}))), t0())
        .expect("accepted");
    s.apply_desired(DesiredChange::new(map(json!({"x": null}))), t0())
        .expect("accepted");
    let update: shiki_proto::ReportedUpdate = serde_json::from_value(json!({
        "v": 1,
        "state": {"reported": {"sp": 7.04}},
        "applied_version": 2,
        "timestamp": "2026-07-01T04:00:05Z"
    }))
    .expect("valid update");
    let res = |_: &str| Some(0.1);
    s.apply_reported_update_with(&update, t0(), &res)
        .expect("accepted");
    assert!(s.delta_message_with(t0(), &res).is_none());
}

#[test]
fn an_override_to_the_value_the_plant_holds_still_reaches_the_edge_until_acknowledged() {
    let mut s = Shadow::default();
    s.apply_reported(map(json!({"sp": 7.0})), t0()).expect("ok");
    let until = t0() + Duration::hours(2);
    s.apply_desired(
        DesiredChange {
            until: Some(until),
            ..DesiredChange::new(map(json!({"sp": 7.0})))
        },
        t0(),
    )
    .expect("accepted");
    // Reported already matches, so the plain delta is empty; the message still carries the
    // override and its `until`, or the edge would never hold it against the schedule.
    assert!(s.delta().is_empty());
    let msg = s.delta_message(t0()).expect("something to send");
    assert_eq!(msg.state, map(json!({"sp": 7.0})));
    assert_eq!(msg.metadata["sp"].until, Some(until));
    // Once the edge says it applied version 1, nothing is left to send.
    s.acknowledge(1);
    assert_eq!(s.acknowledged(), 1);
    assert!(s.delta_message(t0()).is_none());
    // Acknowledgements never go backwards (a late, older report).
    s.acknowledge(0);
    assert_eq!(s.acknowledged(), 1);
    // The acknowledged version survives a save and load.
    let back: Shadow =
        serde_json::from_value(serde_json::to_value(&s).expect("saves")).expect("loads");
    assert_eq!(back.acknowledged(), 1);
}
