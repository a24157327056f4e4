//! Calendar table tests: a Tokyo year, DST in Berlin and New York, Feb 29, New Year.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use super::*;
// ---------------------------------------------------------------------------------------
// the example / Asia/Tokyo full year

#[test]
fn example_validates_against_the_default_register_map_without_any_problem() {
    let cat = catalog();
    let report = example_doc().validate(Some(&cat));
    assert_eq!(report.problems, vec![], "{:#?}", report.problems);
    let schedule = example();
    assert_eq!(schedule.id(), "sapporo-2027");
    assert_eq!(schedule.start(), utc("2026-12-31T15:00:00Z"));
    assert_eq!(schedule.end(), utc("2027-12-31T15:00:00Z"));
}

#[test]
fn tokyo_full_year_table() {
    let s = example();
    // (local time, key, value, since (local), source starts with)
    let cases: &[(&str, &str, Value, &str, &str)] = &[
        // New Year closure (exception beats the holiday), carried from the defaults
        (
            "2027-01-01 10:00",
            "run",
            json!(false),
            "2027-01-01 00:00",
            "profile off 00:00 (exception new-year-closure)",
        ),
        (
            "2027-01-01 00:00",
            "hw_setpoint_c",
            json!(50.0),
            "2027-01-01 00:00",
            "defaults",
        ),
        // first Monday (rule at 06:00) of the heating season
        (
            "2027-01-04 09:00",
            "saving",
            json!(false),
            "2027-01-04 06:00",
            "rule first-monday-full-capacity",
        ),
        (
            "2027-01-04 09:00",
            "hw_setpoint_c",
            json!(55.0),
            "2027-01-04 06:30",
            "profile heating-weekday 06:30 (season heating, weekday)",
        ),
        (
            "2027-01-04 12:30",
            "saving",
            json!(true),
            "2027-01-04 12:00",
            "profile heating-weekday 12:00",
        ),
        (
            "2027-01-05 10:30",
            "hw_setpoint_c",
            json!(50.0),
            "2027-01-05 10:00",
            "profile heating-weekday 10:00",
        ),
        // overnight carry-over: 20:00 run=false is in force until the next day's 06:30
        (
            "2027-01-06 05:00",
            "run",
            json!(false),
            "2027-01-05 20:00",
            "profile heating-weekday 20:00",
        ),
        // holidays
        (
            "2027-01-11 09:00",
            "run",
            json!(false),
            "2027-01-11 00:00",
            "profile off 00:00 (season heating, holiday 成人の日",
        ),
        (
            "2027-03-22 09:00",
            "run",
            json!(false),
            "2027-03-22 00:00",
            "profile off 00:00 (season heating, holiday 振替休日",
        ),
        (
            "2027-03-23 09:00",
            "run",
            json!(true),
            "2027-03-23 06:30",
            "profile heating-weekday 06:30",
        ),
        (
            "2027-04-29 09:00",
            "run",
            json!(false),
            "2027-04-29 00:00",
            "profile off 00:00 (season heating, holiday",
        ),
        // heating Saturday, Sunday
        (
            "2027-02-06 09:00",
            "run",
            json!(true),
            "2027-02-06 08:00",
            "profile heating-saturday 08:00 (season heating, saturday)",
        ),
        (
            "2027-02-07 09:00",
            "run",
            json!(false),
            "2027-02-07 00:00",
            "profile off 00:00 (season heating, sunday)",
        ),
        // mid-season off
        (
            "2027-05-06 09:00",
            "run",
            json!(false),
            "2027-05-06 00:00",
            "profile off 00:00 (season spring-mid, weekday)",
        ),
        (
            "2027-05-06 09:00",
            "mode",
            json!("heating"),
            "2027-04-30 06:30",
            "profile heating-weekday 06:30",
        ),
        // cooling season
        (
            "2027-06-15 09:00",
            "mode",
            json!("cooling"),
            "2027-06-15 08:00",
            "profile cooling-weekday 08:00 (season cooling, weekday)",
        ),
        (
            "2027-07-05 09:00",
            "saving",
            json!(false),
            "2027-07-05 06:00",
            "rule first-monday-full-capacity",
        ),
        (
            "2027-07-05 14:00",
            "demand_limit_pct",
            json!(80),
            "2027-07-05 13:00",
            "profile cooling-weekday 13:00",
        ),
        (
            "2027-07-10 10:00",
            "chw_setpoint_c",
            json!(8.0),
            "2027-07-10 09:00",
            "profile cooling-saturday 09:00",
        ),
        (
            "2027-07-19 10:00",
            "run",
            json!(false),
            "2027-07-19 00:00",
            "profile off 00:00 (season cooling, holiday 海の日",
        ),
        (
            "2027-08-11 10:00",
            "run",
            json!(false),
            "2027-08-11 00:00",
            "profile off 00:00 (season cooling, holiday 山の日",
        ),
        (
            "2027-08-13 10:00",
            "run",
            json!(false),
            "2027-08-13 00:00",
            "profile off 00:00 (exception obon)",
        ),
        (
            "2027-08-16 10:00",
            "run",
            json!(false),
            "2027-08-16 00:00",
            "profile off 00:00 (exception obon)",
        ),
        (
            "2027-08-17 10:00",
            "run",
            json!(true),
            "2027-08-17 08:00",
            "profile cooling-weekday 08:00",
        ),
        (
            "2027-09-16 10:00",
            "run",
            json!(false),
            "2027-09-16 00:00",
            "profile off 00:00 (season autumn-mid, weekday)",
        ),
        // heating again (wraps the year end), holiday, year-end closure
        (
            "2027-10-15 07:00",
            "mode",
            json!("heating"),
            "2027-10-15 06:30",
            "profile heating-weekday 06:30",
        ),
        (
            "2027-11-23 10:00",
            "run",
            json!(false),
            "2027-11-23 00:00",
            "profile off 00:00 (season heating, holiday",
        ),
        (
            "2027-12-28 19:59",
            "run",
            json!(true),
            "2027-12-28 06:30",
            "profile heating-weekday 06:30",
        ),
        (
            "2027-12-31 23:59",
            "run",
            json!(false),
            "2027-12-31 00:00",
            "profile off 00:00 (exception year-end-closure)",
        ),
    ];
    for (local, key, value, since, source) in cases {
        let now = s.settings_at(tokyo(local));
        let got = now
            .settings
            .get(*key)
            .unwrap_or_else(|| panic!("{local}: {key} missing"));
        assert_eq!(&got.value, value, "{local} {key}");
        assert_eq!(got.since, tokyo(since), "{local} {key} since");
        let text = got.source.to_string();
        assert!(
            text.starts_with(source),
            "{local} {key}: source `{text}` should start with `{source}`"
        );
    }
}

#[test]
fn tokyo_year_has_the_expected_number_of_transitions() {
    let s = example();
    let all = s.transitions(s.start(), s.end());
    assert_eq!(all.first().map(|t| &t.source), Some(&Source::Defaults));
    assert!(all.windows(2).all(|w| w[0].at <= w[1].at));
    // 12 first-Monday firings
    let rules = all
        .iter()
        .filter(|t| matches!(t.source, Source::Rule { .. }))
        .count();
    assert_eq!(rules, 12);
    assert_eq!(s.count_transitions(s.start(), s.end()), all.len());
    // every Japanese holiday of the year runs the off profile
    for date in [
        "2027-01-11",
        "2027-02-11",
        "2027-02-23",
        "2027-03-21",
        "2027-03-22",
        "2027-04-29",
        "2027-05-03",
        "2027-05-04",
        "2027-05-05",
        "2027-07-19",
        "2027-08-11",
        "2027-09-20",
        "2027-09-23",
        "2027-10-11",
        "2027-11-03",
        "2027-11-23",
    ] {
        let d = date.parse().expect("date");
        assert_eq!(s.profile_on(d), Some("off"), "{date}");
        assert!(
            matches!(s.day_kind(d), Some(DayKind::Holiday { .. })),
            "{date}"
        );
    }
    assert_eq!(
        s.profile_on("2027-01-01".parse().expect("date")),
        Some("off")
    );
    assert!(matches!(
        s.day_kind("2027-01-01".parse().expect("date")),
        Some(DayKind::Exception { .. })
    ));
}

#[test]
fn reboot_at_13_07_restores_the_13_00_settings() {
    let s = example();
    let now = s.settings_at(tokyo("2027-07-06 13:07"));
    assert!(now.within_validity);
    let demand = &now.settings["demand_limit_pct"];
    assert_eq!(demand.value, json!(80));
    assert_eq!(demand.since, tokyo("2027-07-06 13:00"));
    assert_eq!(
        demand.source.to_string(),
        "profile cooling-weekday 13:00 (season cooling, weekday)"
    );
    assert_eq!(demand.next_transition, Some(tokyo("2027-07-06 16:00")));
    let run = &now.settings["run"];
    assert_eq!(
        (run.value.clone(), run.since),
        (json!(true), tokyo("2027-07-06 08:00"))
    );
    assert_eq!(run.next_transition, Some(tokyo("2027-07-06 20:00")));
    assert_eq!(now.values().len(), 6);
    // exactly at 13:00 the entry is already in force
    assert_eq!(
        s.settings_at(tokyo("2027-07-06 13:00")).settings["demand_limit_pct"].value,
        json!(80)
    );
    assert_eq!(
        s.settings_at(tokyo("2027-07-06 12:59:59")).settings["demand_limit_pct"].value,
        json!(100)
    );
}

#[test]
fn next_transition_touching_a_setting_is_where_an_override_ends() {
    let s = example();
    // Friday 09:00: chw is next written by Saturday's 09:00 entry
    assert_eq!(
        s.next_transition_touching("chw_setpoint_c", tokyo("2027-07-02 09:00")),
        Some(tokyo("2027-07-03 09:00"))
    );
    // saving: next written Monday 06:00 by the rule? no: 2027-07-12 is not a first Monday;
    // the next write is the weekday 12:00 entry
    assert_eq!(
        s.next_transition_touching("saving", tokyo("2027-07-09 12:00")),
        Some(tokyo("2027-07-12 12:00"))
    );
    // the rule fires before the profile touches the key
    assert_eq!(
        s.next_transition_touching("saving", tokyo("2027-07-30 12:00")),
        Some(tokyo("2027-08-02 06:00"))
    );
    // strictly after
    assert_eq!(
        s.next_transition_touching("run", tokyo("2027-07-06 08:00")),
        Some(tokyo("2027-07-06 20:00"))
    );
    // hw is not written again after the last heating day's entries
    assert_eq!(
        s.next_transition_touching("hw_setpoint_c", tokyo("2027-12-28 11:00")),
        None
    );
    assert_eq!(
        s.next_transition_touching("no_such_key", tokyo("2027-07-06 08:00")),
        None
    );
}

#[test]
fn nothing_is_in_force_outside_validity_and_defaults_start_it() {
    let s = example();
    let before = s.settings_at(tokyo("2026-12-31 23:59:59"));
    assert!(!before.within_validity && before.settings.is_empty());
    let after = s.settings_at(tokyo("2028-01-01 00:00"));
    assert!(!after.within_validity && after.settings.is_empty());
    let first = s.settings_at(tokyo("2027-01-01 00:00"));
    assert_eq!(first.settings["saving"].source, Source::Defaults);
    assert_eq!(first.settings["saving"].since, tokyo("2027-01-01 00:00"));
    let next = s.next_transitions(tokyo("2026-12-31 12:00"));
    assert_eq!(next.len(), 2, "defaults and the 00:00 off entry");
    assert_eq!(next[0].source, Source::Defaults);
    let next = s.next_transitions(tokyo("2027-07-06 13:00"));
    assert_eq!(next[0].at, tokyo("2027-07-06 16:00"));
    assert_eq!(
        next[0].settings,
        Settings::from([("demand_limit_pct".to_owned(), json!(100))])
    );
    assert!(s.next_transitions(tokyo("2027-12-31 00:00")).is_empty());
}

// ---------------------------------------------------------------------------------------
// DST

#[test]
fn dst_gap_and_overlap_table() {
    use chrono_tz::{America::New_York, Europe::Berlin};
    // (zone, entry time, local day, expected firing instant, problem kind)
    let cases: &[(&str, Tz, &str, &str, &str, ProblemKind)] = &[
        // spring forward: 02:30 does not exist; fires when the gap ends (03:00 local)
        (
            "Europe/Berlin",
            Berlin,
            "02:30",
            "2027-03-28",
            "2027-03-28T01:00:00Z",
            ProblemKind::DstGap,
        ),
        (
            "America/New_York",
            New_York,
            "02:30",
            "2027-03-14",
            "2027-03-14T07:00:00Z",
            ProblemKind::DstGap,
        ),
        // fall back: the time occurs twice; fires once, at the first occurrence
        (
            "Europe/Berlin",
            Berlin,
            "02:30",
            "2027-10-31",
            "2027-10-31T00:30:00Z",
            ProblemKind::DstOverlap,
        ),
        (
            "America/New_York",
            New_York,
            "01:30",
            "2027-11-07",
            "2027-11-07T05:30:00Z",
            ProblemKind::DstOverlap,
        ),
    ];
    for (zone, tz, time, day, fires, kind) in cases {
        let d = dst_doc(zone, time);
        let report = d.validate(None);
        assert!(!report.has_errors(), "{report:?}");
        let warnings: Vec<&Problem> = report.warnings().filter(|p| p.kind == *kind).collect();
        assert_eq!(warnings.len(), 1, "{zone} {day}: {warnings:?}");
        assert_eq!(warnings[0].path, "profiles.day[1].time");
        assert!(warnings[0].message.contains(day), "{}", warnings[0].message);
        assert!(
            warnings[0].message.contains("policy"),
            "{}",
            warnings[0].message
        );

        let s = Schedule::new(&d, None).expect("valid");
        assert!(s.warnings().iter().any(|w| w.kind == *kind));
        let day_start = at(*tz, &format!("{day} 00:00"));
        let day_end = at(*tz, &format!("{day} 12:00"));
        let runs: Vec<Transition> = s
            .transitions(day_start, day_end)
            .into_iter()
            .filter(|t| t.settings.get("run") == Some(&json!(true)))
            .collect();
        assert_eq!(runs.len(), 1, "{zone} {day}: fires exactly once");
        assert_eq!(runs[0].at, utc(fires), "{zone} {day}");
        let fired = utc(fires);
        let just_before = s.settings_at(fired - chrono::Duration::seconds(1));
        assert_eq!(
            just_before.settings["run"].value,
            json!(false),
            "{zone} {day}"
        );
        let now = s.settings_at(fired);
        assert_eq!(now.settings["run"].value, json!(true));
        assert_eq!(now.settings["run"].since, fired);
        // during the repeated hour the first firing stays in force (no second firing)
        let probe = if *kind == ProblemKind::DstOverlap {
            65
        } else {
            30
        };
        let later = s.settings_at(fired + chrono::Duration::minutes(probe));
        assert_eq!(later.settings["run"].since, fired, "{zone} {day}");
    }
    // the local time printed for the gap case is 03:00
    let s = Schedule::new(&dst_doc("Europe/Berlin", "02:30"), None).expect("valid");
    let t = s.transitions(utc("2027-03-28T00:30:00Z"), utc("2027-03-28T01:30:00Z"));
    assert_eq!(t[0].local.format("%H:%M").to_string(), "03:00");
    assert!(matches!(&t[0].source, Source::Profile { time, .. } if time == "02:30"));
}

#[test]
fn ordinary_days_in_dst_zones_follow_the_offset_of_the_day() {
    use chrono_tz::America::New_York;
    let s = Schedule::new(&dst_doc("America/New_York", "02:30"), None).expect("valid");
    // winter (EST, -5) and summer (EDT, -4)
    for day in [
        "2027-01-15",
        "2027-03-13",
        "2027-03-15",
        "2027-07-01",
        "2027-11-06",
        "2027-11-08",
    ] {
        let fired = s
            .settings_at(at(New_York, &format!("{day} 03:00")))
            .settings["run"]
            .since;
        assert_eq!(fired, at(New_York, &format!("{day} 02:30")), "{day}");
    }
    // a day's 23 and 25 hours: 3 entries each day, one warning per DST day only
    assert_eq!(s.warnings().len(), 1, "{:?}", s.warnings());
}

#[test]
fn rules_follow_the_same_dst_policy() {
    let mut d = dst_doc("Europe/Berlin", "03:30");
    d.rules.push(Rule {
        name: "sunday-purge".into(),
        cron: "30 2 * * Sun".into(), // 5-field crontab syntax
        settings: Settings::from([("saving".to_owned(), json!(false))]),
    });
    d.defaults.insert("saving".into(), json!(true));
    let s = Schedule::new(&d, None).expect("valid");
    let gap: Vec<&Problem> = s
        .warnings()
        .iter()
        .filter(|w| w.path == "rules[0].cron")
        .collect();
    assert_eq!(gap.len(), 2, "{gap:?}");
    let firings: Vec<DateTime<Utc>> = s
        .transitions(utc("2027-03-27T00:00:00Z"), utc("2027-03-29T00:00:00Z"))
        .into_iter()
        .filter(|t| matches!(t.source, Source::Rule { .. }))
        .map(|t| t.at)
        .collect();
    assert_eq!(firings, vec![utc("2027-03-28T01:00:00Z")]);
    let firings: Vec<DateTime<Utc>> = s
        .transitions(utc("2027-10-30T00:00:00Z"), utc("2027-11-01T00:00:00Z"))
        .into_iter()
        .filter(|t| matches!(t.source, Source::Rule { .. }))
        .map(|t| t.at)
        .collect();
    assert_eq!(firings, vec![utc("2027-10-31T00:30:00Z")]);
}

// ---------------------------------------------------------------------------------------
// calendar edge cases

#[test]
fn feb_29_2028_must_be_covered_and_runs_its_profile() {
    let profiles = json!({"work": [{"time": "08:00", "settings": {"run": true}}],
                          "leap": [{"time": "09:00", "settings": {"run": true}}],
                          "off": [{"time": "00:00", "settings": {"run": false}}]});
    // seasons that forget Feb 29
    let forgetful = json!([
        {"name": "a", "from": "01-01", "to": "02-28", "weekday": "work", "saturday": "off", "sunday": "off"},
        {"name": "b", "from": "03-01", "to": "12-31", "weekday": "work", "saturday": "off", "sunday": "off"}]);
    let d = doc(
        "Asia/Tokyo",
        "2028-01-01",
        "2028-12-31",
        profiles.clone(),
        forgetful,
        json!({}),
    );
    let report = d.validate(None);
    let errors: Vec<&Problem> = report.errors().collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].kind, ProblemKind::UncoveredDays);
    assert!(
        errors[0].message.contains("2028-02-29"),
        "{}",
        errors[0].message
    );
    // ... but the same seasons are fine in 2027 (no Feb 29)
    let d27 = doc(
        "Asia/Tokyo",
        "2027-01-01",
        "2027-12-31",
        profiles.clone(),
        json!([{"name": "a", "from": "01-01", "to": "02-28", "weekday": "work", "saturday": "off", "sunday": "off"},
               {"name": "b", "from": "03-01", "to": "12-31", "weekday": "work", "saturday": "off", "sunday": "off"}]),
        json!({}),
    );
    assert!(!d27.validate(None).has_errors());

    let seasons = json!([
        {"name": "winter", "from": "12-01", "to": "02-29", "weekday": "work", "saturday": "off", "sunday": "off"},
        {"name": "rest", "from": "03-01", "to": "11-30", "weekday": "work", "saturday": "off", "sunday": "off"}]);
    let d = doc(
        "Asia/Tokyo",
        "2028-01-01",
        "2028-12-31",
        profiles.clone(),
        seasons.clone(),
        json!({}),
    );
    let s = Schedule::new(&d, None).expect("valid");
    // 2028-02-29 is a Tuesday in season winter
    assert_eq!(
        s.day_kind("2028-02-29".parse().expect("date")),
        Some(DayKind::Weekday {
            season: "winter".into()
        })
    );
    let now = s.settings_at(tokyo("2028-02-29 08:30"));
    assert_eq!(now.settings["run"].since, tokyo("2028-02-29 08:00"));
    // an exception on Feb 29 wins
    let d = doc(
        "Asia/Tokyo",
        "2028-01-01",
        "2028-12-31",
        profiles,
        seasons,
        json!({"exceptions": [{"name": "leap-day", "date": "2028-02-29", "profile": "leap"}],
               "holidays": [{"date": "2028-03-20", "name": "春分の日"}]}),
    );
    let s = Schedule::new(&d, None).expect("valid");
    let now = s.settings_at(tokyo("2028-02-29 09:30"));
    assert_eq!(now.settings["run"].since, tokyo("2028-02-29 09:00"));
    assert_eq!(
        now.settings["run"].source.to_string(),
        "profile leap 09:00 (exception leap-day)"
    );
    // the 1st of March carries the leap day's state until its first entry
    let now = s.settings_at(tokyo("2028-03-01 07:00"));
    assert_eq!(now.settings["run"].since, tokyo("2028-02-29 09:00"));
}

#[test]
fn season_wrapping_new_year_carries_state_across_midnight() {
    let d = doc(
        "Asia/Tokyo",
        "2027-10-01",
        "2028-03-31",
        json!({
            "winter": [{"time": "06:00", "settings": {"run": true, "mode": "heating"}},
                       {"time": "22:00", "settings": {"run": false}}],
            "other": [{"time": "09:00", "settings": {"run": true, "mode": "cooling"}}]}),
        json!([
            {"name": "winter", "from": "11-01", "to": "03-31", "weekday": "winter", "saturday": "winter", "sunday": "winter"},
            {"name": "other", "from": "04-01", "to": "10-31", "weekday": "other", "saturday": "other", "sunday": "other"}]),
        json!({}),
    );
    let s = Schedule::new(&d, None).expect("valid");
    let cases: &[(&str, &str, Value, &str)] = &[
        (
            "2027-10-31 12:00",
            "mode",
            json!("cooling"),
            "2027-10-31 09:00",
        ),
        (
            "2027-11-01 05:00",
            "mode",
            json!("cooling"),
            "2027-10-31 09:00",
        ), // carried until 06:00
        (
            "2027-11-01 06:00",
            "mode",
            json!("heating"),
            "2027-11-01 06:00",
        ),
        ("2027-12-31 23:59", "run", json!(false), "2027-12-31 22:00"),
        ("2028-01-01 00:00", "run", json!(false), "2027-12-31 22:00"), // across New Year
        ("2028-01-01 05:59", "run", json!(false), "2027-12-31 22:00"),
        ("2028-01-01 06:00", "run", json!(true), "2028-01-01 06:00"),
        ("2028-03-31 23:00", "run", json!(false), "2028-03-31 22:00"),
    ];
    for (local, key, value, since) in cases {
        let now = s.settings_at(tokyo(local));
        assert_eq!(now.settings[*key].value, *value, "{local}");
        assert_eq!(now.settings[*key].since, tokyo(since), "{local}");
        let season = match &now.settings[*key].source {
            Source::Profile {
                day:
                    DayKind::Weekday { season }
                    | DayKind::Saturday { season }
                    | DayKind::Sunday { season },
                ..
            } => season.clone(),
            other => panic!("{other:?}"),
        };
        assert!(!season.is_empty());
    }
    assert_eq!(
        s.day_kind("2027-12-31".parse().expect("date")),
        Some(DayKind::Weekday {
            season: "winter".into()
        })
    );
}
