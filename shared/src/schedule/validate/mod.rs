//! Validation and compilation: parse every string of the document, report every problem
//! with its location, and build the [`Schedule`] evaluator when there is no error.
//!
//! [`check`] runs the parts in document order, so problems come out in that order:
//! `validity` (id, time zone, validity range), `settings` (every value written, against the
//! catalog), `profiles`, `calendar` (seasons, holidays, exceptions), `rules` (cron), then
//! `days` (coverage and DST cases of each day of validity). `parse` and `dst` hold the
//! helpers they share.

mod calendar;
mod days;
mod dst;
mod parse;
mod profiles;
mod rules;
mod settings;
mod validity;

use chrono::{Duration, NaiveTime};
use shiki_proto::PointInfo;

use super::Schedule;
use super::calendar::Calendar;
use super::model::ScheduleDocument;
use super::problems::{ProblemKind, Problems, Report};
use super::tz::localize;
use settings::Keys;

/// At most this many rule firings within validity (all rules together): they are
/// precomputed, and the evaluator must stay small on the gateway. Use day profiles for
/// daily patterns.
pub const MAX_RULE_FIRINGS: usize = 4096;
/// At most this many distinct setting names in one schedule.
pub const MAX_SETTINGS: usize = 64;
/// Longest validity accepted, in days (about ten years).
const MAX_DAYS: i64 = 3660;

/// Size limits: a schedule lives on a small gateway, and validation work grows with the
/// square of seasons and exceptions.
pub const MAX_PROFILES: usize = 256;
/// Entries per profile.
pub const MAX_ENTRIES: usize = 256;
/// Seasons per schedule.
pub const MAX_SEASONS: usize = 64;
/// Holidays, exceptions and rules, each.
pub const MAX_ITEMS: usize = 4096;

/// Reports every list over its limit; true when there was one (then nothing else is checked).
fn too_large(doc: &ScheduleDocument, p: &mut Problems) -> bool {
    let before = p.0.len();
    let mut limit = |path: String, len: usize, max: usize| {
        if len > max {
            p.error(
                ProblemKind::TooLarge,
                path,
                format!("{len} items; at most {max} are accepted"),
            );
        }
    };
    limit("profiles".into(), doc.profiles.len(), MAX_PROFILES);
    for (name, entries) in &doc.profiles {
        limit(format!("profiles.{name}"), entries.len(), MAX_ENTRIES);
    }
    limit("seasons".into(), doc.seasons.len(), MAX_SEASONS);
    limit("holidays".into(), doc.holidays.len(), MAX_ITEMS);
    limit("exceptions".into(), doc.exceptions.len(), MAX_ITEMS);
    limit("rules".into(), doc.rules.len(), MAX_ITEMS);
    p.0.len() > before
}

/// Validates `doc` and, when there is no error, builds the evaluator.
pub(crate) fn check(
    doc: &ScheduleDocument,
    catalog: Option<&[PointInfo]>,
) -> (Option<Schedule>, Report) {
    let mut p = Problems(Vec::new());
    if too_large(doc, &mut p) {
        return (None, Report { problems: p.0 });
    }
    let validity = validity::check(doc, &mut p);
    let mut keys = Keys::new(catalog);
    let (defaults, defaults_mask) = keys.settings(&doc.defaults, "defaults", &mut p);
    let profiles = profiles::compile(doc, &mut keys, &mut p);
    let mut refs = profiles::ProfileRefs::new(doc);
    let seasons = calendar::seasons(doc, &mut refs, &mut p);
    let holidays = calendar::holidays(doc, &validity, &mut p);
    let exceptions = calendar::exceptions(doc, &validity, &mut refs, &mut p);
    refs.warn_unused(&mut p);
    let rules = rules::compile(doc, &validity, &mut keys, &mut p);
    keys.warn_no_default(defaults_mask, &profiles, &rules, &mut p);
    let calendar = Calendar {
        seasons: &seasons,
        holidays: &holidays,
        exceptions: &exceptions,
    };
    let day_profile = days::resolve(&calendar, &profiles, &validity, &mut p);
    let (Some(tz), Some((f, t)), false) = (validity.tz, validity.range, p.has_errors()) else {
        // an unknown time zone or validity range is an error too
        return (None, Report { problems: p.0 });
    };
    let schedule = Schedule {
        id: doc.id.clone(),
        hash: doc.hash(),
        tz,
        valid_from: f,
        valid_to: t,
        start: localize(&tz, f.and_time(NaiveTime::MIN)).0,
        end: localize(&tz, (t + Duration::days(1)).and_time(NaiveTime::MIN)).0,
        day_base: days::day_base(&tz, (f, t)),
        key_days: days::key_days(keys.names.len(), &day_profile, &profiles),
        keys: keys.names,
        defaults,
        defaults_mask,
        profiles,
        seasons,
        holidays,
        exceptions,
        rules,
        day_profile,
        warnings: Vec::new(),
    };
    (Some(schedule), Report { problems: p.0 })
}
