//! Validation reports and the content hash.

use serde_json::{Value, json};
use shiki_proto::{PointInfo, PointRole, ValueKind};

use super::*;
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
fn a_wrong_shape_names_its_json_path() {
    let doc = |v: serde_json::Value| ScheduleDocument::from_value(&v);
    let base = serde_json::json!({"id":"x","valid_from":"2027-01-01","valid_to":"2027-12-31",
        "profiles":{"work":[{"time":"08:00","settings":{}}]},"seasons":[]});
    assert!(doc(base.clone()).is_ok());
    let mut wrong_type = base.clone();
    wrong_type["profiles"]["work"][0]["time"] = serde_json::json!(800);
    let mut unknown = base.clone();
    unknown["seasons"] =
        serde_json::json!([{"name":"all","from":"01-01","to":"12-31","wekday":"work"}]);
    let mut missing = base;
    missing.as_object_mut().expect("object").remove("valid_to");
    for (v, path) in [
        (wrong_type, "profiles.work[0].time"),
        (unknown, "seasons[0]"),
        (missing, ""),
    ] {
        match doc(v) {
            Err(ScheduleError::Structure { path: p, message }) => {
                assert!(p.starts_with(path), "{p} for {path}: {message}");
                let problem = ScheduleDocument::structure_problem(&p, &message);
                assert_eq!(problem.kind, ProblemKind::Structure);
            }
            other => panic!("expected a structure error at {path}, got {other:?}"),
        }
    }
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
    // spelling out defaults does not change the hash
    let e = a.replacen(
        "{\"id\":\"h\",",
        "{\"id\":\"h\",\"timezone\":\"Asia/Tokyo\",\"holidays\":[],\"rules\":[],",
        1,
    );
    assert_ne!(e, a);
    assert_eq!(ScheduleDocument::from_json_str(&e).expect("e").hash(), ha);
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

#[test]
fn a_value_between_resolution_steps_is_a_warning() {
    let d = doc(
        "Asia/Tokyo",
        "2027-01-01",
        "2027-12-31",
        json!({"p": [{"time": "08:00", "settings": {"chw_setpoint_c": 7.05, "run": true}},
                     {"time": "09:00", "settings": {"chw_setpoint_c": 7.1}}]}),
        one_season("p", "p", "p"),
        json!({"defaults": {"run": false, "chw_setpoint_c": 7.0}}),
    );
    let mut cat = catalog();
    for point in &mut cat {
        point.resolution = Some(if point.name == "chw_setpoint_c" {
            0.1
        } else {
            1.0
        });
    }
    let report = d.validate(Some(&cat));
    let got: Vec<(Severity, ProblemKind, &str)> = report
        .problems
        .iter()
        .map(|p| (p.severity, p.kind, p.path.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![(
            Severity::Warning,
            ProblemKind::OffResolution,
            "profiles.p[0].settings.chw_setpoint_c"
        )]
    );
}

#[test]
fn a_pushed_document_is_checked_against_its_hash_and_the_catalog() {
    let doc = example_doc();
    let value = doc.to_value();
    let cat = catalog();
    let s = Schedule::from_pushed(&value, &doc.hash(), Some(&cat)).expect("accepted");
    assert_eq!(s.hash(), doc.hash());
    match Schedule::from_pushed(&value, "00", Some(&cat)) {
        Err(e @ ScheduleError::HashMismatch { .. }) => {
            assert!(e.to_string().contains("sent with hash 00"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // a catalog without `saving` refuses the example, naming every place it is used
    let without: Vec<PointInfo> = cat.into_iter().filter(|p| p.name != "saving").collect();
    match Schedule::from_pushed(&value, &doc.hash(), Some(&without)) {
        Err(e @ ScheduleError::Invalid { .. }) => {
            let ScheduleError::Invalid { problems, .. } = &e else {
                unreachable!()
            };
            assert!(
                problems
                    .iter()
                    .all(|p| p.kind == ProblemKind::UnknownSetting)
            );
            let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
            assert_eq!(
                paths,
                vec![
                    "defaults.saving",
                    "profiles.cooling-weekday[1].settings.saving",
                    "profiles.heating-weekday[2].settings.saving",
                    "rules[0].settings.saving",
                ]
            );
            assert!(e.to_string().contains("4 error(s)"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Schedule::from_pushed(&json!({"id": 1}), "00", None),
        Err(ScheduleError::Structure { .. })
    ));
}

#[test]
fn oversized_lists_are_refused_before_anything_else() {
    let mut d = example_doc();
    let entry = d.profiles["off"][0].clone();
    d.profiles
        .insert("huge".into(), vec![entry; MAX_ENTRIES + 1]);
    d.seasons = vec![d.seasons[0].clone(); MAX_SEASONS + 1];
    let report = d.validate(None);
    let got: Vec<(ProblemKind, &str)> = report
        .problems
        .iter()
        .map(|p| (p.kind, p.path.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (ProblemKind::TooLarge, "profiles.huge"),
            (ProblemKind::TooLarge, "seasons")
        ]
    );
}
