//! Property tests: settings in force equal the accumulated transitions.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::*;
use proptest::prelude::*;
// ---------------------------------------------------------------------------------------
// property: settings_at == accumulated transitions

fn accumulate(
    s: &Schedule,
    t: DateTime<Utc>,
) -> std::collections::BTreeMap<String, (Value, DateTime<Utc>, String)> {
    let mut state = std::collections::BTreeMap::new();
    for tr in s.transitions(s.start(), t + chrono::Duration::seconds(1)) {
        for (k, v) in tr.settings {
            state.insert(k, (v, tr.at, tr.source.to_string()));
        }
    }
    state
}

fn in_force(
    s: &Schedule,
    t: DateTime<Utc>,
) -> std::collections::BTreeMap<String, (Value, DateTime<Utc>, String)> {
    s.settings_at(t)
        .settings
        .into_iter()
        .map(|(k, x)| (k, (x.value, x.since, x.source.to_string())))
        .collect()
}

fn dst_rules_schedule() -> Schedule {
    let mut d = dst_doc("America/New_York", "01:30");
    d.profiles.insert(
        "weekend".into(),
        vec![
            ProfileEntry {
                time: "01:30".into(),
                settings: Settings::from([("run".to_owned(), json!(true))]),
            },
            ProfileEntry {
                time: "02:30".into(),
                settings: Settings::from([("chw_setpoint_c".to_owned(), json!(8.0))]),
            },
        ],
    );
    d.seasons[0].sunday = "weekend".into();
    d.rules.push(Rule {
        name: "r".into(),
        cron: "0 15 1 * * *".into(),
        settings: Settings::from([("chw_setpoint_c".to_owned(), json!(9.0))]),
    });
    Schedule::new(&d, None).expect("valid")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn in_force_equals_the_accumulated_transitions(secs in 0i64..(365 * 86_400)) {
        let s = example();
        let t = s.start() + chrono::Duration::seconds(secs);
        prop_assert_eq!(in_force(&s, t), accumulate(&s, t));
    }

    #[test]
    fn in_force_equals_the_accumulated_transitions_across_dst(secs in 0i64..(365 * 86_400)) {
        let s = dst_rules_schedule();
        let t = s.start() + chrono::Duration::seconds(secs);
        prop_assert_eq!(in_force(&s, t), accumulate(&s, t));
    }

    #[test]
    fn next_transition_of_each_key_is_the_next_write_touching_it(secs in 0i64..(360 * 86_400)) {
        let s = example();
        let t = s.start() + chrono::Duration::seconds(secs);
        let later = s.transitions(t + chrono::Duration::seconds(1), s.end());
        for (key, x) in s.settings_at(t).settings {
            let want = later.iter().find(|tr| tr.settings.contains_key(&key)).map(|tr| tr.at);
            prop_assert_eq!(x.next_transition, want, "{}", key);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_cursor_moving_forward_agrees_with_settings_at(
        start in -86_400i64..(365 * 86_400),
        steps in proptest::collection::vec(0i64..(3 * 86_400), 1..40),
        dst in any::<bool>(),
    ) {
        let s = if dst { dst_rules_schedule() } else { example() };
        let mut t = s.start() + chrono::Duration::seconds(start);
        let mut cursor = s.cursor(t);
        for step in steps {
            t += chrono::Duration::seconds(step);
            cursor.advance_to(t);
            let got: Settings = cursor.values().map(|(k, v)| (k.to_owned(), v.clone())).collect();
            prop_assert_eq!(got, s.settings_at(t).values(), "{}", t);
        }
    }
}

#[test]
fn a_cursor_steps_through_the_year_minute_by_minute() {
    let s = example();
    let mut cursor = s.cursor(s.start() - chrono::Duration::minutes(1));
    assert_eq!(cursor.values().count(), 0);
    let mut applied = 0;
    let mut t = s.start() - chrono::Duration::minutes(1);
    while t < s.end() + chrono::Duration::minutes(1) {
        applied += cursor.advance_to(t);
        if t.timestamp() % 86_400 == 3 * 3600 + 7 * 60 {
            // 12:07 JST every day
            let got: Settings = cursor
                .values()
                .map(|(k, v)| (k.to_owned(), v.clone()))
                .collect();
            assert_eq!(got, s.settings_at(t).values(), "{t}");
        }
        t += chrono::Duration::minutes(1);
    }
    assert_eq!(applied, s.count_transitions(s.start(), s.end()));
    assert_eq!(
        cursor.values().count(),
        0,
        "nothing in force after validity"
    );
    assert_eq!(cursor.value("run"), None);
    // going back re-seeks
    cursor.advance_to(tokyo("2027-07-06 13:07"));
    assert_eq!(cursor.value("demand_limit_pct"), Some(&json!(80)));
    assert_eq!(
        cursor.in_force().settings["demand_limit_pct"].since,
        tokyo("2027-07-06 13:00")
    );
}

#[test]
fn in_force_equals_transitions_around_the_dst_switches() {
    let s = dst_rules_schedule();
    for start in [
        "2027-03-14T04:00:00Z",
        "2027-11-07T03:00:00Z",
        "2027-03-13T04:00:00Z",
        "2027-11-06T03:00:00Z",
    ] {
        let mut t = utc(start);
        for _ in 0..(6 * 60) {
            assert_eq!(in_force(&s, t), accumulate(&s, t), "{t}");
            t += chrono::Duration::minutes(1);
        }
    }
}
