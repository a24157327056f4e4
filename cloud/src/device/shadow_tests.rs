//! The device state on the shared shadow model: versions counted per accepted change,
//! per-key desired versions on the wire, deletions re-sent until acknowledged, and the
//! shadow limits.

use serde_json::{Value, json};
use shiki_cloud_model::shadow::{ShadowError, ShadowLimits};
use shiki_proto::{ExpiredOverride, ShadowGet};

use super::state::*;
use super::tests::{
    Ids, catalog, change, desire, device, histories, online, ops, reported, secs, verifications,
};
use crate::store::{Author, FailureReason, VerificationOutcome};

fn only_delta(fx: &Effects) -> &shiki_proto::ShadowDelta {
    match &fx.publish[..] {
        [Outbound::Delta(d)] => d,
        other => panic!("expected one delta, got {other:?}"),
    }
}

#[test]
fn setting_a_key_to_the_value_and_until_it_has_records_nothing_but_counts_the_version() {
    let mut s = device();
    let mut ids = Ids(0);
    desire(&mut s, &mut ids, json!({"chw_setpoint": 7.0}), secs(1));
    let (version, fx) = s
        .change_desired(
            change(json!({"chw_setpoint": 7.0}), Some(1)),
            ops(),
            secs(2),
            &mut ids.f(),
        )
        .expect("accepted");
    assert_eq!(version, 2, "every accepted change counts (as AWS IoT)");
    assert!(histories(&fx).is_empty());
    assert!(verifications(&fx).is_empty());
    assert_eq!(
        s.pending().count(),
        1,
        "the first verification keeps running"
    );
    assert_eq!(only_delta(&fx).version, 2, "the edge learns the version");
    assert_eq!(
        s.view().metadata.desired["chw_setpoint"].version,
        Some(2),
        "the key was set again in version 2"
    );
}

#[test]
fn changing_only_the_until_of_a_key_is_recorded_and_verified_again() {
    let mut s = device();
    let mut ids = Ids(0);
    let mut c = change(json!({"chw_setpoint": 7.0}), None);
    c.until = Some(secs(60));
    s.change_desired(c.clone(), ops(), secs(0), &mut ids.f())
        .expect("accepted");
    c.until = Some(secs(120));
    let (version, fx) = s
        .change_desired(c, ops(), secs(1), &mut ids.f())
        .expect("accepted");
    assert_eq!(version, 2);
    let h = histories(&fx);
    assert_eq!(h.len(), 1);
    assert_eq!(
        (h[0].old.clone(), h[0].new.clone()),
        (json!(7.0), json!(7.0))
    );
    let v = verifications(&fx);
    assert!(v.iter().any(|v| v.outcome
        == VerificationOutcome::Failed {
            at: secs(1),
            reason: FailureReason::Superseded { by_version: 2 }
        }));
    assert!(v.iter().any(|v| v.version == 2 && v.is_pending()));
    let meta = &s.view().metadata.desired["chw_setpoint"];
    assert_eq!((meta.until, meta.version), (Some(secs(120)), Some(2)));
}

#[test]
fn desired_metadata_carries_the_version_that_set_each_key_in_view_delta_and_document() {
    let mut s = device();
    let mut ids = Ids(0);
    desire(
        &mut s,
        &mut ids,
        json!({"chw_setpoint": 7.0, "mode": "cooling"}),
        secs(0),
    );
    let fx = desire(&mut s, &mut ids, json!({"chw_setpoint": 8.0}), secs(1));
    assert_eq!(only_delta(&fx).metadata["chw_setpoint"].version, Some(2));
    assert_eq!(only_delta(&fx).metadata["mode"].version, Some(1));
    let view = s.view();
    assert_eq!(view.metadata.desired["chw_setpoint"].version, Some(2));
    assert_eq!(view.metadata.desired["mode"].version, Some(1));
    let fx = s.on_shadow_get(
        ShadowGet {
            v: 1,
            client_token: None,
        },
        secs(2),
    );
    match &fx.publish[..] {
        [Outbound::Document(d)] => {
            assert_eq!(d.metadata, view.metadata);
            assert_eq!(d.version, 2);
        }
        other => panic!("expected a document, got {other:?}"),
    }
}

#[test]
fn a_deleted_key_stays_null_in_deltas_until_the_edge_acknowledges_it() {
    let mut s = device();
    let mut ids = Ids(0);
    desire(
        &mut s,
        &mut ids,
        json!({"chw_setpoint": 7.0, "mode": "cooling"}),
        secs(0),
    );
    let fx = desire(&mut s, &mut ids, json!({"mode": null}), secs(1));
    assert_eq!(only_delta(&fx).state.get("mode"), Some(&Value::Null));
    // The edge has not applied version 2 yet: the next delta repeats the deletion.
    let fx = desire(&mut s, &mut ids, json!({"chw_setpoint": 8.0}), secs(2));
    assert_eq!(only_delta(&fx).state.get("mode"), Some(&Value::Null));
    s.on_reported(
        reported(json!({"chw_setpoint": 8.0}), 3),
        secs(3),
        &mut ids.f(),
    );
    let fx = desire(&mut s, &mut ids, json!({"chw_setpoint": 9.0}), secs(4));
    assert_eq!(
        only_delta(&fx).state,
        *json!({"chw_setpoint": 9.0}).as_object().expect("object")
    );
}

fn limited(max_bytes: usize) -> DeviceState {
    let cfg = DeviceConfig {
        shadow_limits: ShadowLimits {
            max_depth: 6,
            max_bytes,
        },
        ..DeviceConfig::default()
    };
    let mut s = DeviceState::new(shiki_proto::DeviceId::new("gw-1").expect("id"), cfg);
    s.on_catalog(catalog(), secs(0));
    online(&mut s, secs(0));
    s
}

#[test]
fn a_desired_change_that_would_break_the_shadow_limits_is_refused() {
    let mut s = limited(50);
    let mut ids = Ids(0);
    s.on_reported(
        reported(json!({"chw_setpoint": 7.0, "mode": "cooling"}), 0),
        secs(1),
        &mut ids.f(),
    );
    let err = s
        .change_desired(
            change(json!({"chw_setpoint": 7.0, "mode": "heating"}), None),
            ops(),
            secs(2),
            &mut ids.f(),
        )
        .expect_err("74 bytes > 50");
    assert!(
        matches!(
            err,
            DesiredError::Limit(ShadowError::TooLarge { limit: 50, .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("50 bytes"), "{err}");
    assert_eq!(s.shadow().version(), 0);
}

#[test]
fn a_report_that_would_break_the_shadow_limits_is_ignored_but_its_expiries_apply() {
    let mut s = limited(200);
    let mut ids = Ids(0);
    let mut c = change(json!({"chw_setpoint": 7.0}), None);
    c.until = Some(secs(60));
    s.change_desired(c, ops(), secs(0), &mut ids.f())
        .expect("accepted");
    let mut r = reported(json!({"chw_setpoint": 9.0, "blob": "x".repeat(300)}), 1);
    r.expired.push(ExpiredOverride {
        key: "chw_setpoint".into(),
        at: secs(60),
        desired_version: 1,
    });
    let fx = s.on_reported(r, secs(61), &mut ids.f());
    assert!(
        s.shadow().reported().is_empty(),
        "the oversized report is not kept"
    );
    let h = histories(&fx);
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].actor, Author::Schedule);
    assert!(!s.shadow().desired().contains_key("chw_setpoint"));
    assert_eq!(s.shadow().version(), 2);
}

#[test]
fn an_override_to_the_value_the_plant_already_holds_is_sent_to_the_edge_with_its_until() {
    let mut s = device();
    let mut ids = Ids(0);
    desire(&mut s, &mut ids, json!({"chw_setpoint": 7.0}), secs(0));
    s.on_reported(
        reported(json!({"chw_setpoint": 7.0}), 1),
        secs(1),
        &mut ids.f(),
    );
    // Hold 7.0 for an hour: the plant has it already, but the edge must learn the `until`
    // or the schedule would change the setpoint under the operator's override.
    let mut c = change(json!({"chw_setpoint": 7.0}), None);
    c.until = Some(secs(3600));
    let (version, fx) = s
        .change_desired(c, ops(), secs(2), &mut ids.f())
        .expect("accepted");
    let delta = only_delta(&fx);
    assert_eq!(delta.version, version);
    assert_eq!(delta.state.get("chw_setpoint"), Some(&json!(7.0)));
    assert_eq!(delta.metadata["chw_setpoint"].until, Some(secs(3600)));
    // Once the edge reports it applied that version, a later change sends only itself.
    s.on_reported(
        reported(json!({"chw_setpoint": 7.0}), version),
        secs(3),
        &mut ids.f(),
    );
    let fx = desire(&mut s, &mut ids, json!({"mode": "cooling"}), secs(4));
    assert_eq!(
        only_delta(&fx).state,
        *json!({"mode": "cooling"}).as_object().expect("object")
    );
}
