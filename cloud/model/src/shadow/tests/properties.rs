//! Property tests of the shadow model.

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use serde_json::Value;
use std::collections::BTreeMap;

use super::super::*;
use super::t0;

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::from),
        (-3i64..3).prop_map(Value::from),
        prop::sample::select(vec![0.0, 0.1, 0.2, 0.30000000000000004, 7.0, 7.04, -1.5])
            .prop_map(Value::from),
        prop::sample::select(vec!["cooling", "heating", ""]).prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::btree_map(
                key(),
                prop_oneof![3 => inner.clone(), 1 => Just(Value::Null)],
                0..3
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
            prop::collection::vec(inner, 0..3).prop_map(Value::Array),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "d"]).prop_map(str::to_owned)
}

/// A patch: keys set to values or to null (delete).
fn patch() -> impl Strategy<Value = JsonMap> {
    prop::collection::btree_map(
        key(),
        prop_oneof![4 => value(), 1 => Just(Value::Null)],
        0..4,
    )
    .prop_map(|m| m.into_iter().collect())
}

#[derive(Debug, Clone)]
enum Op {
    Desired {
        patch: JsonMap,
        expect: Option<u64>,
        until_secs: Option<i64>,
    },
    Reported(JsonMap),
    Remove(String),
    Ack(u64),
    /// The edge reports the override of `key` it got in `version` expired.
    Expire {
        key: String,
        version: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (
            patch(),
            prop::option::of(0u64..6),
            prop::option::of(-5i64..3600)
        )
            .prop_map(|(patch, expect, until_secs)| Op::Desired {
                patch,
                expect,
                until_secs
            }),
        patch().prop_map(Op::Reported),
        key().prop_map(Op::Remove),
        (0u64..8).prop_map(Op::Ack),
        (key(), 0u64..8).prop_map(|(key, version)| Op::Expire { key, version }),
    ]
}

/// Applies `op` at `now`; returns whether it was refused.
fn apply(s: &mut Shadow, op: &Op, now: DateTime<Utc>) -> bool {
    match op {
        Op::Desired {
            patch,
            expect,
            until_secs,
        } => {
            let change = DesiredChange {
                settings: patch.clone(),
                expected_version: *expect,
                until: until_secs.map(|secs| now + Duration::seconds(secs)),
                comment: None,
            };
            s.apply_desired(change, now).is_err()
        }
        Op::Reported(patch) => s.apply_reported(patch.clone(), now).is_err(),
        Op::Remove(key) => {
            s.remove_desired(key, now);
            false
        }
        Op::Ack(v) => {
            s.acknowledge(*v);
            false
        }
        Op::Expire { key, version } => {
            s.remove_expired(key, *version, now);
            false
        }
    }
}

fn small_limits() -> ShadowLimits {
    ShadowLimits {
        max_depth: 3,
        max_bytes: 120,
    }
}

proptest! {
    #[test]
    fn delta_is_empty_iff_reported_covers_desired(ops in prop::collection::vec(op(), 0..25)) {
        let mut s = Shadow::default();
        for (i, op) in ops.iter().enumerate() {
            apply(&mut s, op, t0() + Duration::seconds(i as i64));
            let covered = s.desired().iter().all(|(k, v)| {
                s.reported().get(k).is_some_and(|r| values_match(v, r, None))
            });
            prop_assert_eq!(s.delta().is_empty(), covered);
            prop_assert_eq!(s.is_in_sync(&|_| None), covered);
            for k in s.delta().keys() {
                prop_assert!(s.desired().contains_key(k));
            }
        }
        // Reporting exactly what is desired always converges.
        let desired = s.desired().clone();
        s.set_limits(ShadowLimits { max_depth: 6, max_bytes: usize::MAX });
        s.apply_reported(desired, t0()).expect("no limit to break");
        prop_assert!(s.delta().is_empty());
    }

    #[test]
    fn versions_strictly_increase_over_accepted_desired_changes(
        ops in prop::collection::vec(op(), 0..25),
    ) {
        let mut s = Shadow::new(small_limits());
        for (i, op) in ops.iter().enumerate() {
            let now = t0() + Duration::seconds(i as i64);
            let before = s.version();
            match op {
                Op::Desired { patch, expect, until_secs } => {
                    let change = DesiredChange {
                        settings: patch.clone(),
                        expected_version: *expect,
                        until: until_secs.map(|secs| now + Duration::seconds(secs)),
                        comment: None,
                    };
                    match s.apply_desired(change, now) {
                        Ok(out) => {
                            prop_assert_eq!(out.version, before + 1);
                            prop_assert_eq!(s.version(), before + 1);
                        }
                        Err(_) => prop_assert_eq!(s.version(), before),
                    }
                }
                Op::Remove(key) => {
                    let had = s.desired().contains_key(key);
                    let out = s.remove_desired(key, now);
                    prop_assert_eq!(out.is_some(), had);
                    prop_assert_eq!(s.version(), before + u64::from(had));
                }
                Op::Expire { key, version } => {
                    let out = s.remove_expired(key, *version, now);
                    prop_assert_eq!(s.version(), before + u64::from(out.is_some()));
                }
                other => {
                    apply(&mut s, other, now);
                    prop_assert_eq!(s.version(), before);
                }
            }
        }
    }

    #[test]
    fn applying_the_same_report_twice_is_idempotent(
        ops in prop::collection::vec(op(), 0..15),
        report in patch(),
    ) {
        let mut s = Shadow::new(small_limits());
        for (i, op) in ops.iter().enumerate() {
            apply(&mut s, op, t0() + Duration::seconds(i as i64));
        }
        let first = s.apply_reported(report.clone(), t0() + Duration::hours(1));
        let after_first = s.clone();
        let second = s.apply_reported(report, t0() + Duration::hours(2));
        prop_assert_eq!(&s, &after_first, "state and metadata unchanged");
        match (first, second) {
            (Ok(_), Ok(out)) => prop_assert!(out.is_empty()),
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(false, "first {:?}, second {:?}", a, b),
        }
    }

    #[test]
    fn a_refused_change_never_mutates(ops in prop::collection::vec(op(), 0..30)) {
        let mut s = Shadow::new(small_limits());
        for (i, op) in ops.iter().enumerate() {
            let before = s.clone();
            if apply(&mut s, op, t0() + Duration::seconds(i as i64)) {
                prop_assert_eq!(&s, &before);
            }
            // Accepted or not, the limits always hold.
            prop_assert!(s.limits().check(s.desired(), s.reported()).is_ok());
        }
    }

    #[test]
    fn serde_round_trip_preserves_any_shadow(ops in prop::collection::vec(op(), 0..15)) {
        let mut s = Shadow::default();
        for (i, op) in ops.iter().enumerate() {
            apply(&mut s, op, t0() + Duration::seconds(i as i64));
        }
        let text = serde_json::to_string(&s).expect("serialises");
        let back: Shadow = serde_json::from_str(&text).expect("deserialises");
        prop_assert_eq!(back, s);
    }

    /// Model: the version of the last accepted change that set each key. The shadow's
    /// per-key versions follow it, and an expiry removes a key exactly when the key was
    /// not set after the version the edge names.
    #[test]
    fn per_key_versions_follow_a_model_and_expiries_never_remove_a_newer_override(
        ops in prop::collection::vec(op(), 0..30),
    ) {
        let mut s = Shadow::new(small_limits());
        let mut set_in: BTreeMap<String, u64> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            let now = t0() + Duration::seconds(i as i64);
            match op {
                Op::Desired { patch, expect, until_secs } => {
                    let change = DesiredChange {
                        settings: patch.clone(),
                        expected_version: *expect,
                        until: until_secs.map(|secs| now + Duration::seconds(secs)),
                        comment: None,
                    };
                    if let Ok(out) = s.apply_desired(change, now) {
                        for (k, v) in patch {
                            if v.is_null() {
                                set_in.remove(k);
                            } else {
                                set_in.insert(k.clone(), out.version);
                            }
                        }
                    }
                }
                Op::Remove(key) => {
                    s.remove_desired(key, now);
                    set_in.remove(key);
                }
                Op::Expire { key, version } => {
                    let before = s.clone();
                    let removed = s.remove_expired(key, *version, now).is_some();
                    let expected = set_in.get(key).is_some_and(|v| v <= version);
                    prop_assert_eq!(removed, expected, "{} set in {:?}", key, set_in.get(key));
                    if removed {
                        set_in.remove(key);
                    } else {
                        prop_assert_eq!(&s, &before);
                    }
                }
                other => {
                    apply(&mut s, other, now);
                }
            }
            let keys: Vec<&String> = s.desired().keys().collect();
            prop_assert_eq!(keys, set_in.keys().collect::<Vec<_>>());
            for (k, v) in &set_in {
                prop_assert_eq!(s.metadata().desired[k].version, Some(*v));
                prop_assert!(*v <= s.version());
            }
        }
    }
}
