//! Property tests: settings in force equal the accumulated transitions.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use proptest::prelude::*;

use super::*;

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
            cursor.advance_to(&s, t);
            let got: Settings = cursor.values(&s).map(|(k, v)| (k.to_owned(), v.clone())).collect();
            prop_assert_eq!(got, s.settings_at(t).values(), "{}", t);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The edge's clock steps (issue #21): backwards (NTP), to 1970 (an RTC reset) and back.
    /// Wherever it lands the cursor holds what `settings_at` says; moving forwards it applies
    /// exactly the writes in between, each once; moving backwards it applies none (it
    /// re-seeks), so a write passed again after a backward step is applied again.
    #[test]
    fn a_cursor_under_a_stepping_clock_agrees_with_settings_at(
        start in 0i64..(365 * 86_400),
        steps in proptest::collection::vec((-86_400i64..(2 * 86_400), 0u8..8), 1..40),
    ) {
        let s = example();
        let mut real = s.start() + chrono::Duration::seconds(start);
        let mut cursor = s.cursor(real);
        for (step, jump) in steps {
            real += chrono::Duration::seconds(step);
            let t = if jump == 0 { DateTime::<Utc>::UNIX_EPOCH } else { real };
            let before = cursor.at();
            let applied = cursor.advance_to(&s, t);
            let got: Settings = cursor.values(&s).map(|(k, v)| (k.to_owned(), v.clone())).collect();
            prop_assert_eq!(got, s.settings_at(t).values(), "{}", t);
            let expected = if t >= before {
                let second = chrono::Duration::seconds(1);
                s.count_transitions(before + second, t + second)
            } else {
                0
            };
            prop_assert_eq!(applied, expected, "from {} to {}", before, t);
        }
    }
}

#[test]
fn a_cursor_steps_through_the_year_minute_by_minute() {
    let s = example();
    let mut cursor = s.cursor(s.start() - chrono::Duration::minutes(1));
    assert_eq!(cursor.values(&s).count(), 0);
    let mut applied = 0;
    let mut t = s.start() - chrono::Duration::minutes(1);
    while t < s.end() + chrono::Duration::minutes(1) {
        applied += cursor.advance_to(&s, t);
        if t.timestamp() % 86_400 == 3 * 3600 + 7 * 60 {
            // 12:07 JST every day
            let got: Settings = cursor
                .values(&s)
                .map(|(k, v)| (k.to_owned(), v.clone()))
                .collect();
            assert_eq!(got, s.settings_at(t).values(), "{t}");
        }
        t += chrono::Duration::minutes(1);
    }
    assert_eq!(applied, s.count_transitions(s.start(), s.end()));
    assert_eq!(
        cursor.values(&s).count(),
        0,
        "nothing in force after validity"
    );
    assert_eq!(cursor.value(&s, "run"), None);
    // going back re-seeks
    cursor.advance_to(&s, tokyo("2027-07-06 13:07"));
    assert_eq!(cursor.value(&s, "demand_limit_pct"), Some(&json!(80)));
    assert_eq!(
        cursor.in_force(&s).settings["demand_limit_pct"].since,
        tokyo("2027-07-06 13:00")
    );
    // handed another schedule, the cursor re-seeks instead of mixing them
    let mut other = example_doc();
    other.timezone = "America/New_York".into();
    let ny = Schedule::new(&other, None).expect("valid");
    assert_eq!(cursor.value(&ny, "run"), None);
    let t = utc("2027-07-06T13:30:00Z"); // 09:30 EDT
    cursor.advance_to(&ny, t);
    assert_eq!(cursor.value(&ny, "run"), Some(&json!(true)));
    assert_eq!(cursor.value(&s, "run"), None);
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

// ---------------------------------------------------------------------------------------
// random documents

const KEYS: [&str; 3] = ["run", "saving", "chw_setpoint_c"];

/// A profile: distinct random times (seconds of the day, biased to DST hours and
/// midnight) each writing a non-empty subset of the keys.
fn profile_strategy() -> impl Strategy<Value = Vec<ProfileEntry>> {
    let time = prop_oneof![
        0u32..86_400,
        (0u32..4 * 3600),
        Just(0u32),
        Just(2 * 3600 + 30 * 60),
        Just(3600 + 30 * 60),
    ];
    proptest::collection::btree_map(time, (1u8..8, any::<bool>(), 50u32..120), 0..5).prop_map(
        |entries| {
            entries
                .into_iter()
                .map(|(secs, (mask, flag, chw))| {
                    let settings: Settings = KEYS
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| mask & (1 << i) != 0)
                        .map(|(i, k)| {
                            let v = match i {
                                2 => json!(f64::from(chw) / 10.0),
                                _ => json!(flag ^ (secs % 2 == 0)),
                            };
                            ((*k).to_owned(), v)
                        })
                        .collect();
                    ProfileEntry {
                        time: format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60),
                        settings,
                    }
                })
                .collect()
        },
    )
}

fn document_strategy() -> impl Strategy<Value = ScheduleDocument> {
    let tz = prop_oneof![
        Just("Asia/Tokyo"),
        Just("Europe/Berlin"),
        Just("America/New_York")
    ];
    let from = prop_oneof![
        Just("2027-03-01"),
        Just("2027-10-20"),
        Just("2027-12-25"),
        Just("2028-02-20")
    ];
    let rule = prop_oneof![
        Just(None),
        Just(Some("0 30 2 * * *")),
        Just(Some("0 15 1 * * Sun")),
        Just(Some("0 0 0 1-7 * Mon")),
        Just(Some("0 0 6 * * *")),
    ];
    (
        tz,
        from,
        10i64..50,
        proptest::collection::vec(profile_strategy(), 3),
        rule,
        proptest::collection::vec(0i64..50, 0..4),
        any::<bool>(),
    )
        .prop_map(
            |(tz, from, days, profiles, rule, holidays, with_defaults)| {
                let start: chrono::NaiveDate = from.parse().expect("date");
                let end = start + chrono::Duration::days(days);
                let names = ["a", "b", "c"];
                let mut doc = ScheduleDocument {
                    id: "random".into(),
                    timezone: tz.into(),
                    valid_from: start.to_string(),
                    valid_to: end.to_string(),
                    defaults: Settings::new(),
                    profiles: names
                        .iter()
                        .map(|n| (*n).to_owned())
                        .zip(profiles)
                        .collect(),
                    seasons: vec![Season {
                        name: "all".into(),
                        from: "01-01".into(),
                        to: "12-31".into(),
                        weekday: "a".into(),
                        saturday: "b".into(),
                        sunday: "c".into(),
                        holiday: Some("b".into()),
                    }],
                    holidays: holidays
                        .into_iter()
                        .filter(|d| *d <= days)
                        .map(|d| Holiday {
                            date: (start + chrono::Duration::days(d)).to_string(),
                            name: format!("h{d}"),
                        })
                        .collect(),
                    exceptions: vec![Exception {
                        name: "x".into(),
                        date: Some((start + chrono::Duration::days(days / 2)).to_string()),
                        from: None,
                        to: None,
                        profile: "c".into(),
                    }],
                    rules: vec![],
                };
                if with_defaults {
                    doc.defaults.insert("run".into(), json!(false));
                    doc.defaults.insert("chw_setpoint_c".into(), json!(7.0));
                }
                if let Some(cron) = rule {
                    doc.rules.push(Rule {
                        name: "r".into(),
                        cron: cron.into(),
                        settings: Settings::from([("saving".to_owned(), json!(true))]),
                    });
                }
                doc.holidays.sort_by(|a, b| a.date.cmp(&b.date));
                doc.holidays.dedup_by(|a, b| a.date == b.date);
                doc
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn random_documents_in_force_equals_accumulated_transitions(
        doc in document_strategy(),
        probes in proptest::collection::vec(0.0f64..1.0, 12),
    ) {
        let s = Schedule::new(&doc, None).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let all = s.transitions(s.start(), s.end());
        prop_assert!(all.windows(2).all(|w| w[0].at <= w[1].at));
        let span = (s.end() - s.start()).num_seconds() as f64;
        let mut instants: Vec<DateTime<Utc>> = probes
            .iter()
            .map(|f| s.start() + chrono::Duration::seconds((f * span) as i64))
            .collect();
        // around every transition
        for tr in all.iter().step_by(7) {
            instants.push(tr.at - chrono::Duration::seconds(1));
            instants.push(tr.at);
        }
        // listing in two pieces gives the same list
        let cut = instants[0];
        let mut pieces = s.transitions(s.start(), cut);
        pieces.extend(s.transitions(cut, s.end()));
        prop_assert_eq!(&pieces, &all);
        for t in instants {
            prop_assert_eq!(in_force(&s, t), accumulate(&s, t), "at {}", t);
            let later: Vec<&Transition> = all.iter().filter(|tr| tr.at > t).collect();
            for (key, x) in s.settings_at(t).settings {
                let want = later.iter().find(|tr| tr.settings.contains_key(&key)).map(|tr| tr.at);
                prop_assert_eq!(x.next_transition, want, "next {} at {}", key, t);
            }
        }
    }
}
