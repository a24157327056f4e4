//! The schedule document parser and validator (`shiki_shared::schedule`), and the
//! evaluator built from what validates.
//!
//! Input: the document's JSON text. Properties:
//! - parsing, validating (without and with the golden catalog) and building never panic;
//! - `validate` reports an error exactly when `Schedule::new` refuses the document;
//! - the document read back from its JSON value (the edge's `schedule/set` path) has the
//!   same content hash, and `Schedule::from_pushed` with that hash agrees with `new`;
//! - the edge's `Cursor`, advanced through validity, holds the values `settings_at` gives
//!   (the cloud's view) at every instant it stops at.
#![no_main]

use chrono::{DateTime, Duration, Utc};
use libfuzzer_sys::fuzz_target;
use shiki_fuzz::example_points;
use shiki_shared::schedule::{Schedule, ScheduleDocument, Settings};

fn cursor_values(schedule: &Schedule, cursor: &shiki_shared::schedule::Cursor) -> Settings {
    cursor
        .values(schedule)
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect()
}

fn exercise(schedule: &Schedule) {
    let (start, end) = (schedule.start(), schedule.end());
    assert!(start < end, "validity must not be empty");
    let span = end - start;
    let mut stops: Vec<DateTime<Utc>> = vec![
        start - Duration::seconds(1),
        start,
        start + Duration::hours(7),
        start + Duration::hours(31) + Duration::minutes(30),
        start + span / 3,
        start + span / 2,
        end - Duration::seconds(1),
        end,
    ];
    stops.sort();
    let mut cursor = schedule.cursor(stops[0]);
    for &t in &stops {
        cursor.advance_to(schedule, t);
        let expected = schedule.settings_at(t);
        assert_eq!(expected.within_validity, schedule.covers(t));
        assert_eq!(
            cursor_values(schedule, &cursor),
            expected.values(),
            "cursor and settings_at disagree at {t}"
        );
        for next in schedule.next_transitions(t) {
            assert!(next.at > t, "next transition {} is not after {t}", next.at);
        }
    }
    let day = schedule.transitions(start, start + Duration::days(2));
    assert_eq!(
        day.len(),
        schedule.count_transitions(start, start + Duration::days(2))
    );
    assert!(
        day.windows(2).all(|w| w[0].at <= w[1].at),
        "transitions out of order"
    );
    let _ = schedule.approx_size_bytes();
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(doc) = ScheduleDocument::from_json_str(text) else {
        return;
    };
    let value = doc.to_value();
    let again = ScheduleDocument::from_value(&value).expect("a document's own value reads back");
    assert_eq!(again, doc);
    let hash = doc.hash();
    assert_eq!(again.hash(), hash);
    let points = example_points();
    for catalog in [None, Some(&points[..])] {
        let report = doc.validate(catalog);
        let built = Schedule::new(&doc, catalog);
        assert_eq!(
            report.has_errors(),
            built.is_err(),
            "validate and Schedule::new disagree"
        );
        let pushed = Schedule::from_pushed(&value, &hash, catalog);
        assert_eq!(
            pushed.is_ok(),
            built.is_ok(),
            "from_pushed and new disagree"
        );
        if let Ok(schedule) = built {
            assert_eq!(schedule.hash(), hash);
            exercise(&schedule);
        }
    }
});
