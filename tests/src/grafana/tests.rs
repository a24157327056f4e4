//! The expander against the expansions Grafana's own tests expect.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("test time")
}

/// 2018-04-12 18:00 to 18:05 UTC, the range of Grafana's macros_test.go.
fn ctx() -> QueryContext {
    let from = Utc
        .with_ymd_and_hms(2018, 4, 12, 18, 0, 0)
        .single()
        .expect("valid");
    QueryContext {
        range: TimeRange {
            from,
            to: from + Duration::minutes(5),
        },
        interval: Some(Interval {
            ms: 600_000,
            text: "10m".into(),
        }),
        vars: BTreeMap::new(),
        now: at("2026-07-01T00:00:00Z"),
    }
}

fn macros(sql: &str) -> String {
    expand_macros(sql, &ctx()).expect("expands").sql
}

#[test]
fn macros_expand_as_in_grafanas_macro_tests() {
    assert_eq!(
        macros("select $__time(time_column)"),
        "select time_column AS \"time\""
    );
    assert_eq!(
        macros("WHERE $__timeFilter(time_column)"),
        "WHERE time_column BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'"
    );
    assert_eq!(
        macros("select $__timeFrom()"),
        "select '2018-04-12T18:00:00Z'"
    );
    assert_eq!(
        macros("select $__timeTo()"),
        "select '2018-04-12T18:05:00Z'"
    );
    assert_eq!(
        macros("SELECT $__timeGroup(time_column,'5m')"),
        "SELECT floor(extract(epoch from time_column)/300)*300"
    );
    assert_eq!(
        macros("SELECT $__timeGroupAlias(time_column , '5m')"),
        "SELECT floor(extract(epoch from time_column)/300)*300 AS \"time\""
    );
    assert_eq!(
        macros("select $__unixEpochFilter(time)"),
        "select time >= 1523556000 AND time <= 1523556300"
    );
    assert_eq!(
        macros("select $__unixEpochNanoFilter(time)"),
        "select time >= 1523556000000000000 AND time <= 1523556300000000000"
    );
    assert_eq!(
        macros("SELECT $__unixEpochGroupAlias(time_column+time_adjustment,'5m')"),
        "SELECT floor((time_column+time_adjustment)/300)*300 AS \"time\""
    );
}

#[test]
fn a_time_group_followed_by_a_comma_gets_the_pre_5_3_alias() {
    assert_eq!(
        macros("SELECT $__timeGroup(time_column,'5m'), value"),
        "SELECT floor(extract(epoch from time_column)/300)*300 AS \"time\", value"
    );
    assert_eq!(
        macros("SELECT $__timeGroup(time_column,'5m') as time, value"),
        "SELECT floor(extract(epoch from time_column)/300)*300 as time, value"
    );
    // So `GROUP BY $__timeGroup(time, 1h), point` is a syntax error in Grafana too.
    assert!(macros("GROUP BY $__timeGroup(t, 1h), point").contains("AS \"time\", point"));
}

#[test]
fn fractions_of_a_second_keep_only_their_significant_digits() {
    let mut c = ctx();
    c.range.from = at("1960-02-01T07:00:00.5Z");
    c.range.to = at("1980-02-03T08:00:00.5Z");
    assert_eq!(
        expand_macros("WHERE $__timeFilter(t)", &c)
            .expect("expands")
            .sql,
        "WHERE t BETWEEN '1960-02-01T07:00:00.5Z' AND '1980-02-03T08:00:00.5Z'"
    );
}

#[test]
fn group_widths_are_written_like_go_writes_a_float() {
    let cases = [
        ("20ms", "0.02"),
        ("1s", "1"),
        ("1h", "3600"),
        ("1d", "86400"),
        ("7d", "604800"),
        ("30d", "2.592e+06"),
        ("1y", "3.1536e+07"),
    ];
    for (interval, width) in cases {
        assert_eq!(
            macros(&format!("$__timeGroup(t, {interval})")),
            format!("floor(extract(epoch from t)/{width})*{width}"),
            "{interval}"
        );
    }
    // A year from a date in a leap year's January is 366 days, as Go's AddDate counts.
    let mut c = ctx();
    c.now = at("2028-01-10T00:00:00Z");
    assert_eq!(
        expand_macros("$__timeGroup(t, 1y)", &c)
            .expect("expands")
            .sql,
        "floor(extract(epoch from t)/3.16224e+07)*3.16224e+07"
    );
}

#[test]
fn bad_macros_fail_the_query() {
    for sql in [
        "$__timeGroup(t)",
        "$__timeGroup(t, 5x)",
        "$__timeGroup(t, 5m, maybe)",
        "$__nope(t)",
    ] {
        assert!(expand_macros(sql, &ctx()).is_err(), "{sql}");
    }
    let fill = expand_macros("$__timeGroup(t, 5m, previous)", &ctx()).expect("expands");
    assert_eq!(fill.fill, Some(Fill::Previous));
    let fill = expand_macros("$__timeGroup(t, 5m, 0)", &ctx()).expect("expands");
    assert_eq!(fill.fill, Some(Fill::Value(0.0)));
}

#[test]
fn go_durations_parse_like_go() {
    assert_eq!(go_parse_duration("1h30m").expect("ok"), 5_400_000_000_000);
    assert_eq!(go_parse_duration("1.5s").expect("ok"), 1_500_000_000);
    assert_eq!(go_parse_duration("250ms").expect("ok"), 250_000_000);
    assert_eq!(go_parse_duration("0").expect("ok"), 0);
    for bad in ["", "5", "1d", "s", "1.5.5s"] {
        assert!(go_parse_duration(bad).is_err(), "{bad}");
    }
    let now = at("2027-01-31T12:00:00Z");
    // Go's AddDate: 31 January + 1 month is 3 March (2027 is not a leap year).
    assert_eq!(
        parse_interval("1M", now).expect("ok"),
        31 * 86_400_000_000_000
    );
    assert_eq!(
        parse_interval("2w", now).expect("ok"),
        14 * 86_400_000_000_000
    );
}

fn range_of(span: Duration) -> TimeRange {
    TimeRange::last(span, at("2026-07-01T12:00:00Z"))
}

#[test]
fn intervals_are_the_range_over_the_width_rounded_to_nice_values() {
    let cases = [
        (Duration::minutes(5), "200ms", 200),
        (Duration::hours(1), "5s", 5_000),
        (Duration::hours(6), "20s", 20_000),
        (Duration::hours(24), "1m", 60_000),
        (Duration::days(7), "10m", 600_000),
        (Duration::days(30), "30m", 1_800_000),
        (Duration::days(90), "2h", 7_200_000),
        (Duration::days(365), "6h", 21_600_000),
        (Duration::days(5 * 365), "1d", 86_400_000),
    ];
    for (span, text, ms) in cases {
        let i = Interval::calculate(&range_of(span), 1000, None).expect("interval");
        assert_eq!((i.text.as_str(), i.ms), (text, ms), "{span}");
    }
}

#[test]
fn the_minimum_interval_wins_over_a_finer_one() {
    let i = Interval::calculate(&range_of(Duration::hours(1)), 1000, Some("1m")).expect("ok");
    assert_eq!((i.text.as_str(), i.ms), ("1m", 60_000));
    let i = Interval::calculate(&range_of(Duration::hours(1)), 1000, Some("30")).expect("ok");
    assert_eq!((i.text.as_str(), i.ms), ("30s", 30_000));
    let i = Interval::calculate(&range_of(Duration::days(7)), 1000, Some(">1m")).expect("ok");
    assert_eq!((i.text.as_str(), i.ms), ("10m", 600_000));
    assert!(interval_to_ms("often").is_err());
    assert_eq!(seconds_to_hms(0.0005), "less than a millisecond");
    assert_eq!(format_interval(604_800_000), "7d");
    assert_eq!(format_interval(0), "1ms");
}

fn vars(pairs: &[(&str, VarValue)]) -> QueryContext {
    let mut c = ctx();
    c.vars = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    c
}

#[test]
fn variables_are_replaced_with_the_sql_data_sources_quoting() {
    let c = vars(&[
        ("device", VarValue::Single("o'brien-1".into())),
        ("devices", VarValue::Multi(vec!["a".into(), "b'c".into()])),
    ]);
    assert_eq!(
        replace_variables(
            "d = '$device' AND d = '${device}' AND d = '[[device]]' AND d IN ($devices)",
            &c
        )
        .expect("ok"),
        "d = 'o''brien-1' AND d = 'o''brien-1' AND d = 'o''brien-1' AND d IN ('a','b''c')"
    );
    assert_eq!(
        replace_variables("${devices:csv} ${device:raw} ${devices:sqlstring}", &c).expect("ok"),
        "a,b'c o'brien-1 'a','b''c'"
    );
    assert!(replace_variables("${device:percentencode}", &c).is_err());
    // Unknown names (server macros) stay for the server; arrays are not variables.
    assert_eq!(
        replace_variables("$__timeFilter(time) AND $other AND a[1] AND $ 5", &c).expect("ok"),
        "$__timeFilter(time) AND $other AND a[1] AND $ 5"
    );
}

#[test]
fn the_whole_expansion_uses_the_browsers_interval() {
    let mut c = vars(&[("device", VarValue::Single("chiller-01".into()))]);
    c.interval = Some(Interval {
        ms: 60_000,
        text: "1m".into(),
    });
    let e = expand(
        "SELECT $__timeGroupAlias(time, $__interval), avg(value) FROM s \
         WHERE $__timeFilter(time) AND device = '$device' AND $__interval_ms < 3600000 \
         GROUP BY 1 ORDER BY 1",
        &c,
    )
    .expect("expands");
    assert_eq!(
        e.sql,
        "SELECT floor(extract(epoch from time)/60)*60 AS \"time\", avg(value) FROM s \
         WHERE time BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z' \
         AND device = 'chiller-01' AND 60000 < 3600000 GROUP BY 1 ORDER BY 1"
    );
    // Without an interval (variable queries) the server writes 0 and 1ms.
    c.interval = None;
    assert_eq!(
        expand("$__interval_ms $__interval", &c).expect("ok").sql,
        "0 1ms"
    );
}

#[test]
fn epoch_seconds_and_milliseconds_are_read_as_grafana_reads_them() {
    let t = at("2026-07-01T03:00:00Z");
    assert_eq!(grafana_time(&Cell::Number(t.timestamp() as f64)), Some(t));
    assert_eq!(
        grafana_time(&Cell::Number(t.timestamp_millis() as f64)),
        Some(t)
    );
    assert_eq!(go_float(0.001), "0.001");
    assert_eq!(go_float(0.00001), "1e-05");
    assert_eq!(
        go_rfc3339_nano(at("2026-07-01T03:00:00.120Z")),
        "2026-07-01T03:00:00.12Z"
    );
}
