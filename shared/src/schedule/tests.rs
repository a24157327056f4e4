//! Table tests with real calendar cases, validation, hashing and a property test.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use serde_json::{Value, json};
use shiki_proto::{PointInfo, PointRole, ValueKind};

use super::*;

const EXAMPLE: &str = include_str!("../../../deploy/schedule.example.json");

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

// ---------------------------------------------------------------------------------------
// validation

#[test]
fn validation_returns_every_problem_with_its_location() {
    let v = json!({
        "id": "bad id!",
        "timezone": "Asia/Sapporo",
        "valid_from": "2027-01-01",
        "valid_to": "2027-12-31",
        "defaults": {"run": "yes"},
        "profiles": {
            "summer-weekday": [
                {"time": "08:00", "settings": {"run": true, "chw_setpoint_c": 4.0}},
                {"time": "13:00", "settings": {"fan_speed": 3}},
                {"time": "12:00", "settings": {"mode": "dehumidify"}},
                {"time": "25:00", "settings": {"supply_c": 7.0}}],
            "spare": []
        },
        "seasons": [
            {"name": "summer", "from": "06-01", "to": "09-30", "weekday": "summer-weekday", "saturday": "summer-saturday", "sunday": "summer-weekday"},
            {"name": "autumn", "from": "09-15", "to": "13-01", "weekday": "summer-weekday", "saturday": "summer-weekday", "sunday": "summer-weekday"},
            {"name": "winter", "from": "11-01", "to": "03-31", "weekday": "summer-weekday", "saturday": "summer-weekday", "sunday": "summer-weekday"}
        ],
        "holidays": [{"date": "2028-01-01", "name": "next year"}, {"date": "2027-02-30"}],
        "exceptions": [{"from": "2027-12-30", "to": "2028-01-02", "profile": "nope"}],
        "rules": [{"name": "bad", "cron": "every monday", "settings": {"saving": false}},
                  {"name": "hot", "cron": "0 0 6 * * Mon", "settings": {"hw_setpoint_c": 75.0}}]
    });
    let d = ScheduleDocument::from_value(&v).expect("shape is fine");
    let mut cat = catalog();
    cat.push(PointInfo {
        name: "supply_c".into(),
        role: PointRole::Reading,
        kind: ValueKind::Number,
        unit: None,
        writable: false,
        min: None,
        max: None,
        resolution: None,
        options: vec![],
    });
    let report = d.validate(Some(&cat));
    let got: Vec<(ProblemKind, &str)> =
        report.errors().map(|p| (p.kind, p.path.as_str())).collect();
    let want: Vec<(ProblemKind, &str)> = vec![
        (ProblemKind::InvalidId, "id"),
        (ProblemKind::UnknownTimeZone, "timezone"),
        (ProblemKind::WrongValueKind, "defaults.run"),
        (
            ProblemKind::OutOfLimits,
            "profiles.summer-weekday[0].settings.chw_setpoint_c",
        ),
        (
            ProblemKind::UnknownSetting,
            "profiles.summer-weekday[1].settings.fan_speed",
        ),
        (
            ProblemKind::TimesNotAscending,
            "profiles.summer-weekday[2].time",
        ),
        (
            ProblemKind::OutOfLimits,
            "profiles.summer-weekday[2].settings.mode",
        ),
        (ProblemKind::InvalidTime, "profiles.summer-weekday[3].time"),
        (
            ProblemKind::NotWritable,
            "profiles.summer-weekday[3].settings.supply_c",
        ),
        (ProblemKind::UnknownProfile, "seasons[0].saturday"),
        (ProblemKind::InvalidDate, "seasons[1].to"),
        (ProblemKind::DateOutsideValidity, "holidays[0].date"),
        (ProblemKind::InvalidDate, "holidays[1].date"),
        (ProblemKind::UnknownProfile, "exceptions[0].profile"),
        (ProblemKind::DateOutsideValidity, "exceptions[0]"),
        (ProblemKind::InvalidCron, "rules[0].cron"),
        (ProblemKind::OutOfLimits, "rules[1].settings.hw_setpoint_c"),
        (ProblemKind::UncoveredDays, "seasons"),
        (ProblemKind::UncoveredDays, "seasons"),
    ];
    assert_eq!(got, want, "{:#?}", report.problems);
    let warnings: Vec<(ProblemKind, &str)> = report
        .warnings()
        .map(|p| (p.kind, p.path.as_str()))
        .collect();
    assert!(
        warnings.contains(&(ProblemKind::UnusedProfile, "profiles.spare")),
        "{warnings:?}"
    );
    // Schedule::new refuses with the errors
    match Schedule::new(&d, Some(&cat)) {
        Err(ScheduleError::Invalid { problems, .. }) => assert_eq!(problems.len(), want.len()),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        report.clone().into_result().map_err(|p| p.len()),
        Err(report.problems.len())
    );
    let text = report
        .errors()
        .next()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(text.starts_with("error at id: "), "{text}");
}

#[test]
fn validation_finds_overlaps_gaps_and_uncovered_days_in_a_valid_zone() {
    let d = doc(
        "Asia/Tokyo",
        "2027-01-01",
        "2027-12-31",
        json!({"p": [{"time": "08:00", "settings": {"run": true}}]}),
        json!([
            {"name": "winter", "from": "11-01", "to": "03-31", "weekday": "p", "saturday": "p", "sunday": "p"},
            {"name": "spring", "from": "03-15", "to": "05-31", "weekday": "p", "saturday": "p", "sunday": "p"},
            {"name": "summer", "from": "07-01", "to": "09-30", "weekday": "p", "saturday": "p", "sunday": "p"}]),
        json!({"exceptions": [{"from": "2027-06-01", "to": "2027-06-20", "profile": "p"},
                              {"date": "2027-06-20", "profile": "p"}],
               "rules": [{"name": "never", "cron": "0 0 0 30 2 *", "settings": {"saving": true}}]}),
    );
    let report = d.validate(None);
    let got: Vec<(ProblemKind, &str)> = report
        .problems
        .iter()
        .map(|p| (p.kind, p.path.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (ProblemKind::OverlappingSeasons, "seasons[1]"),
            (ProblemKind::OverlappingExceptions, "exceptions[1]"),
            (ProblemKind::RuleNeverFires, "rules[0].cron"),
            (ProblemKind::NoDefault, "defaults"),
            (ProblemKind::UncoveredDays, "seasons"),
            (ProblemKind::UncoveredDays, "seasons"),
        ],
        "{:#?}",
        report.problems
    );
    let messages: Vec<&str> = report.problems.iter().map(|p| p.message.as_str()).collect();
    assert!(messages[0].contains("03-15 .. 03-31"), "{}", messages[0]);
    assert!(
        messages[4].contains("2027-06-21 ..= 2027-06-30"),
        "{}",
        messages[4]
    );
    assert!(
        messages[5].contains("2027-10-01 ..= 2027-10-31"),
        "{}",
        messages[5]
    );
}

#[test]
fn unknown_fields_are_refused_when_parsing() {
    let err = ScheduleDocument::from_json_str(
        r#"{"id":"x","valid_from":"2027-01-01","valid_to":"2027-12-31","profiles":{},"seasons":[],"holidyas":[]}"#,
    );
    assert!(matches!(err, Err(ScheduleError::Parse(_))), "{err:?}");
    let ok = ScheduleDocument::from_json_str(
        r#"{"id":"x","valid_from":"2027-01-01","valid_to":"2027-12-31","profiles":{},"seasons":[]}"#,
    )
    .expect("minimal document");
    assert_eq!(ok.timezone, DEFAULT_TIMEZONE);
}

#[test]
fn too_many_rule_firings_are_refused() {
    let d = doc(
        "Asia/Tokyo",
        "2027-01-01",
        "2027-12-31",
        json!({"p": [{"time": "08:00", "settings": {"run": true}}]}),
        one_season("p", "p", "p"),
        json!({"rules": [{"name": "every-minute", "cron": "0 * * * * *", "settings": {"run": true}}]}),
    );
    let kinds: Vec<ProblemKind> = d.validate(None).errors().map(|p| p.kind).collect();
    assert_eq!(kinds, vec![ProblemKind::TooManyRuleFirings]);
}

#[test]
fn a_rule_beats_a_profile_entry_at_the_same_instant() {
    let d = doc(
        "Asia/Tokyo",
        "2027-01-01",
        "2027-12-31",
        json!({"p": [{"time": "06:00", "settings": {"run": true, "saving": true}}]}),
        one_season("p", "p", "p"),
        json!({"rules": [{"name": "r", "cron": "0 0 6 * * *", "settings": {"saving": false}}],
               "defaults": {"run": false, "saving": true}}),
    );
    let s = Schedule::new(&d, None).expect("valid");
    let now = s.settings_at(tokyo("2027-05-05 06:00"));
    assert_eq!(now.settings["saving"].value, json!(false));
    assert_eq!(
        now.settings["saving"].source,
        Source::Rule { rule: "r".into() }
    );
    assert_eq!(now.settings["run"].value, json!(true));
    let t = s.transitions(tokyo("2027-05-05 06:00"), tokyo("2027-05-05 06:00:01"));
    assert_eq!(t.len(), 2);
    assert!(matches!(t[0].source, Source::Profile { .. }));
    assert!(matches!(t[1].source, Source::Rule { .. }));
}

// ---------------------------------------------------------------------------------------
// hash

#[test]
fn hash_is_stable_under_key_reordering_and_whitespace() {
    let a = r#"{"id":"h","valid_from":"2027-01-01","valid_to":"2027-12-31",
        "profiles":{"p":[{"time":"08:00","settings":{"run":true,"chw_setpoint_c":7.0}}]},
        "seasons":[{"name":"all","from":"01-01","to":"12-31","weekday":"p","saturday":"p","sunday":"p"}]}"#;
    let b = r#"{ "seasons" : [ { "sunday":"p", "saturday":"p", "weekday":"p", "to":"12-31", "from":"01-01", "name":"all" } ],
        "profiles" : { "p" : [ { "settings" : { "chw_setpoint_c" : 7.0 , "run" : true } , "time" : "08:00" } ] },
        "valid_to" : "2027-12-31", "valid_from" : "2027-01-01", "id" : "h" }"#;
    let ha = ScheduleDocument::from_json_str(a).expect("a").hash();
    let hb = ScheduleDocument::from_json_str(b).expect("b").hash();
    assert_eq!(ha, hb);
    assert_eq!(ha.len(), 64);
    assert!(
        ha.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    // the raw values hash the same too
    let va: Value = serde_json::from_str(a).expect("a");
    let vb: Value = serde_json::from_str(b).expect("b");
    assert_eq!(content_hash(&va), content_hash(&vb));
    // a changed value changes the hash; 7 and 7.0 are different documents
    let c = a.replace("7.0", "7.5");
    assert_ne!(ScheduleDocument::from_json_str(&c).expect("c").hash(), ha);
    let d = a.replace("7.0", "7");
    assert_ne!(ScheduleDocument::from_json_str(&d).expect("d").hash(), ha);
    // the example's hash is what a compiled schedule reports
    assert_eq!(example().hash(), example_doc().hash());
}

#[test]
fn canonical_json_sorts_keys_recursively_without_whitespace() {
    let v = json!({"b": [1, {"z": 1.5, "a": "x\"y"}], "a": null, "ä": true, "B": false});
    assert_eq!(
        canonical_json(&v),
        r#"{"B":false,"a":null,"b":[1,{"a":"x\"y","z":1.5}],"ä":true}"#
    );
    // SHA-256 of the empty object "{}"
    assert_eq!(
        content_hash(&json!({})),
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
}

#[test]
fn compiled_example_is_small() {
    let s = example();
    assert!(
        s.approx_size_bytes() < 100 * 1024,
        "{}",
        s.approx_size_bytes()
    );
}

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
