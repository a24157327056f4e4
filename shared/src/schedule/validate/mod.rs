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

use super::calendar::Calendar;
use super::model::ScheduleDocument;
use super::problems::{ProblemKind, Problems, Report};
use super::tz::localize;
use super::{CException, CProfile, CRule, CSeason, Schedule};
use settings::Keys;
use validity::Validity;

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

/// Everything compiled from a document, before the per-day tables.
struct Parts {
    keys: Vec<String>,
    defaults: Vec<(u8, serde_json::Value)>,
    defaults_mask: u64,
    profiles: Vec<CProfile>,
    seasons: Vec<CSeason>,
    holidays: Vec<(chrono::NaiveDate, String)>,
    exceptions: Vec<CException>,
    rules: Vec<CRule>,
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
    if p.has_errors() {
        return (None, Report { problems: p.0 });
    }
    let parts = Parts {
        keys: keys.names,
        defaults,
        defaults_mask,
        profiles,
        seasons,
        holidays,
        exceptions,
        rules,
    };
    let compiled = build(doc, validity, parts, day_profile);
    (compiled, Report { problems: p.0 })
}

/// The evaluator of a document without errors (`None` when time zone or validity is
/// unknown, which validation reports as errors).
fn build(
    doc: &ScheduleDocument,
    validity: Validity,
    parts: Parts,
    day_profile: Vec<u16>,
) -> Option<Schedule> {
    let (Some(tz), Some((f, t))) = (validity.tz, validity.range) else {
        return None;
    };
    let start = localize(&tz, f.and_time(NaiveTime::MIN)).0;
    let end = localize(&tz, (t + Duration::days(1)).and_time(NaiveTime::MIN)).0;
    let key_days = days::key_days(parts.keys.len(), &day_profile, &parts.profiles);
    Some(Schedule {
        id: doc.id.clone(),
        hash: doc.hash(),
        tz,
        valid_from: f,
        valid_to: t,
        start,
        end,
        day_base: days::day_base(&tz, (f, t)),
        key_days,
        keys: parts.keys,
        defaults: parts.defaults,
        defaults_mask: parts.defaults_mask,
        profiles: parts.profiles,
        seasons: parts.seasons,
        holidays: parts.holidays,
        exceptions: parts.exceptions,
        rules: parts.rules,
        day_profile,
        warnings: Vec::new(),
    })
}
