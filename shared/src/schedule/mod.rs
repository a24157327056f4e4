//! The yearly schedule: document model, validation, content hash and evaluation. Pure: no
//! I/O, no clock; every function takes the instant it is asked about.
//!
//! # The document
//! A [`ScheduleDocument`] (JSON) covers `valid_from ..= valid_to` (local dates) in an IANA
//! time zone (default `Asia/Tokyo`):
//! - `defaults`: settings in force at the very start of validity;
//! - `profiles`: named day profiles, each a list of `{time, settings}` in ascending time;
//! - `seasons`: `MM-DD` ranges (may wrap the year end) naming the profile for weekdays,
//!   Saturdays, Sundays and holidays (holiday defaults to the Sunday profile). Every day of
//!   validity must be covered by exactly one season or by an exception;
//! - `holidays`: dates (inside validity) that run the season's holiday profile;
//! - `exceptions`: a date or date range (inside validity, not overlapping each other) running
//!   its own profile; exception > holiday > weekday/Saturday/Sunday;
//! - `rules`: cron expressions (`cron` crate, seconds first; 5-field crontab accepted) with
//!   settings.
//!
//! ```
//! use shiki_shared::schedule::{Schedule, ScheduleDocument};
//! let doc = ScheduleDocument::from_json_str(r#"{
//!   "id": "demo", "valid_from": "2027-01-01", "valid_to": "2027-12-31",
//!   "defaults": {"run": false},
//!   "profiles": {"work": [{"time": "08:00", "settings": {"run": true}},
//!                         {"time": "20:00", "settings": {"run": false}}],
//!                "off": []},
//!   "seasons": [{"name": "all", "from": "01-01", "to": "12-31",
//!                "weekday": "work", "saturday": "off", "sunday": "off"}]
//! }"#).expect("parses");
//! let schedule = Schedule::new(&doc, None).expect("valid");
//! let t = "2027-06-01T04:07:00Z".parse().expect("instant"); // Tuesday 13:07 in Tokyo
//! let now = schedule.settings_at(t);
//! assert_eq!(now.settings["run"].value, serde_json::json!(true));
//! assert_eq!(now.settings["run"].since.to_rfc3339(), "2027-05-31T23:00:00+00:00");
//! ```
//!
//! # Evaluation policies
//! - **Writes, last one wins.** The schedule is a time-ordered list of *writes*: the
//!   defaults at the start of validity, every profile entry of every day, every rule firing.
//!   A write sets only the keys it names; a key keeps its value until the next write that
//!   names it ("touches" it), even if that write repeats the same value. `since` is the
//!   instant of the last write touching the key.
//! - **Midnight carry-over.** Nothing happens at midnight: a day's profile takes over at its
//!   own first entry; until then the values of the previous day (whatever wrote them last)
//!   stay in force.
//! - **Start of validity.** At `valid_from` 00:00 local the `defaults` are written (one
//!   transition with source `defaults`); a key without a default is not in force until its
//!   first write (validation warns about such keys). Outside validity nothing is in force.
//! - **Rules** fire at their cron times read as *local wall-clock* times and write their
//!   settings on top of what the profile set; the value lasts until the next write touching
//!   those keys (typically the profile's next entry naming them). At the same instant the
//!   order is: defaults, profile entries (in time order), rules (in document order), so a
//!   rule beats a profile entry at the same instant.
//! - **DST.** A local time that does not exist (spring-forward gap, e.g. 02:30 on
//!   2027-03-28 in Europe/Berlin) fires at the first instant after the gap (03:00 local, the
//!   transition itself). A local time that occurs twice (fall-back, e.g. 01:30 on 2027-11-07
//!   in America/New_York) fires once, at its first occurrence (01:30 EDT). The same policy
//!   applies to rule firings. Validation reports each case as a warning with its location.
//! - **Rule firings are precomputed** for the validity range at load time (at most
//!   [`MAX_RULE_FIRINGS`] per schedule, so the memory stays small); use profiles for
//!   daily patterns.
//!
//! # Validation
//! [`ScheduleDocument::validate`] reports every problem at once with a json-path-like
//! location (`profiles.summer-weekday[2].time`). Errors: invalid id, unknown time zone,
//! unparsable dates/times, times not strictly ascending, unknown profile, overlapping
//! seasons, days not covered by a season or exception, holidays/exceptions outside validity,
//! overlapping exceptions, invalid cron, too many rule firings or items, and, with a
//! catalog, a setting the device does not have, is not writable, has the wrong kind or lies
//! outside its min/max/options. Warnings (legal, policy applied): DST gap/overlap (with the
//! instant it fires at), unused profile, duplicate holiday, a rule that never fires, a key
//! without a default, a value between two steps of the point's resolution.
//!
//! # Evaluating
//! - [`Schedule::settings_at`]: per setting the value in force at an instant, since when,
//!   what wrote it ([`Source`]) and the next write touching it (where an operator override
//!   without `until` ends; also [`Schedule::next_transition_touching`]). Use it at start-up
//!   and after a reboot: it restores what should be in force *now*.
//! - [`Schedule::transitions`] / [`Schedule::next_transitions`]: the writes in `[from, to)`
//!   in order, or the next ones after an instant (what the edge sleeps until).
//! - [`Cursor`]: incremental evaluation for a clock moving forward.
//!
//! Transitions list every write, also those that repeat the value already in force (a
//! Sunday's `00:00 run=false`): they are what "the next transition touching a setting"
//! counts. An edge that reports only changes compares with the value before.
//!
//! Every day's profile and UTC offset is precomputed at load time (a few KB for a year),
//! so evaluation is arithmetic plus a walk over the days that touch each setting.
//!
//! # Hash
//! [`ScheduleDocument::hash`]: canonical JSON of the typed document (keys sorted
//! recursively, no whitespace, numbers as `serde_json` prints them) → SHA-256, lowercase hex.
//! Cloud and edge both compute it after parsing, so key order and whitespace do not matter;
//! neither does spelling out a default (`"timezone": "Asia/Tokyo"`, `"holidays": []`).
//! [`Schedule::from_pushed`] does the edge's part: parse, compare hashes, validate.

mod calendar;
mod eval;
mod hash;
mod model;
mod problems;
mod tz;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

pub use eval::Cursor;
pub use hash::{canonical_json, content_hash};
pub use model::{
    DEFAULT_TIMEZONE, Exception, Holiday, ProfileEntry, Rule, ScheduleDocument, Season, Settings,
};
pub use problems::{Problem, ProblemKind, Report, Severity};
pub use validate::{
    MAX_ENTRIES, MAX_ITEMS, MAX_PROFILES, MAX_RULE_FIRINGS, MAX_SEASONS, MAX_SETTINGS,
};

/// Why a schedule could not be read or used.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule document does not match the schedule model: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("schedule {id} is invalid: {} error(s), first: {}", problems.len(), first(problems))]
    Invalid { id: String, problems: Vec<Problem> },
    #[error("schedule {id} has content hash {actual}, but was sent with hash {expected}")]
    HashMismatch {
        id: String,
        expected: String,
        actual: String,
    },
}

fn first(problems: &[Problem]) -> String {
    problems
        .first()
        .map(ToString::to_string)
        .unwrap_or_default()
}

impl ScheduleDocument {
    /// Parses a document from JSON text.
    pub fn from_json_str(text: &str) -> Result<Self, ScheduleError> {
        Ok(serde_json::from_str(text)?)
    }

    /// Parses a document from a JSON value (e.g. `ScheduleSet::document`).
    pub fn from_value(value: &serde_json::Value) -> Result<Self, ScheduleError> {
        Ok(Self::deserialize_value(value)?)
    }

    fn deserialize_value(value: &serde_json::Value) -> Result<Self, serde_json::Error> {
        serde::Deserialize::deserialize(value)
    }

    /// The typed document as a JSON value.
    pub fn to_value(&self) -> serde_json::Value {
        // Serialising plain structs, string-keyed maps and JSON values cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Content hash: SHA-256 of the canonical JSON of the typed document, lowercase hex.
    pub fn hash(&self) -> String {
        content_hash(&self.to_value())
    }

    /// Checks everything and returns every problem (errors and warnings) with its location.
    /// With a catalog, every setting must be a writable setting point of the device, of the
    /// right kind and within its limits.
    pub fn validate(&self, catalog: Option<&[shiki_proto::PointInfo]>) -> Report {
        validate::check(self, catalog).1
    }
}

/// Why a day runs the profile it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DayKind {
    Exception { name: String },
    Holiday { name: String, season: String },
    Weekday { season: String },
    Saturday { season: String },
    Sunday { season: String },
}

impl fmt::Display for DayKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DayKind::Exception { name } => write!(f, "exception {name}"),
            DayKind::Holiday { name, season } => write!(f, "season {season}, holiday {name}"),
            DayKind::Weekday { season } => write!(f, "season {season}, weekday"),
            DayKind::Saturday { season } => write!(f, "season {season}, saturday"),
            DayKind::Sunday { season } => write!(f, "season {season}, sunday"),
        }
    }
}

/// What wrote a setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// The document's `defaults`, written at the start of validity.
    Defaults,
    /// An entry of a day profile. `time` is the entry's time as written (`HH:MM`), `date`
    /// the local day it ran for.
    Profile {
        profile: String,
        time: String,
        date: NaiveDate,
        day: DayKind,
    },
    /// A firing of a rule.
    Rule { rule: String },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Defaults => f.write_str("defaults"),
            Source::Profile {
                profile, time, day, ..
            } => write!(f, "profile {profile} {time} ({day})"),
            Source::Rule { rule } => write!(f, "rule {rule}"),
        }
    }
}

/// One setting in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingInForce {
    pub value: serde_json::Value,
    /// The instant of the last write touching this setting.
    pub since: DateTime<Utc>,
    pub source: Source,
    /// The next write touching this setting within validity (`None`: none before the end of
    /// validity). An operator override without `until` lasts until then.
    pub next_transition: Option<DateTime<Utc>>,
}

/// The settings in force at an instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InForce {
    pub at: DateTime<Utc>,
    /// `false` when `at` lies outside validity (then `settings` is empty).
    pub within_validity: bool,
    pub settings: BTreeMap<String, SettingInForce>,
}

impl InForce {
    /// Just the values.
    pub fn values(&self) -> Settings {
        self.settings
            .iter()
            .map(|(k, s)| (k.clone(), s.value.clone()))
            .collect()
    }
}

/// One write of the schedule: at `at`, `source` sets `settings`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    pub at: DateTime<Utc>,
    /// Local wall-clock time at `at` (after the DST policy, e.g. 03:00 for a 02:30 entry on
    /// the spring-forward day).
    pub local: NaiveDateTime,
    pub source: Source,
    pub settings: Settings,
}

/// A validated schedule, ready to evaluate. Build it with [`Schedule::new`].
#[derive(Debug, Clone)]
pub struct Schedule {
    id: String,
    hash: String,
    tz: Tz,
    valid_from: NaiveDate,
    valid_to: NaiveDate,
    /// Unix seconds of `valid_from` 00:00 local.
    start: i64,
    /// Unix seconds of the day after `valid_to`, 00:00 local (exclusive end).
    end: i64,
    keys: Vec<String>,
    defaults: Vec<(u8, serde_json::Value)>,
    defaults_mask: u64,
    profiles: Vec<CProfile>,
    seasons: Vec<CSeason>,
    holidays: Vec<(NaiveDate, String)>,
    exceptions: Vec<CException>,
    rules: Vec<CRule>,
    /// Profile index for each day of validity.
    day_profile: Vec<u16>,
    /// Unix seconds of each day's local midnight when the day has no offset change, else
    /// `eval::IRREGULAR_DAY`.
    day_base: Vec<i64>,
    /// For each key, the days (index from `valid_from`, ascending) whose profile writes it.
    key_days: Vec<Vec<u16>>,
    warnings: Vec<Problem>,
}

#[derive(Debug, Clone)]
pub(crate) struct CProfile {
    name: String,
    mask: u64,
    entries: Vec<CEntry>,
}

#[derive(Debug, Clone)]
pub(crate) struct CEntry {
    time: chrono::NaiveTime,
    mask: u64,
    sets: Vec<(u8, serde_json::Value)>,
}

#[derive(Debug, Clone)]
pub(crate) struct CSeason {
    name: String,
    weekday: u16,
    saturday: u16,
    sunday: u16,
    holiday: u16,
    /// Day-of-leap-year ordinals (0..366) covered.
    days: Vec<bool>,
}

#[derive(Debug, Clone)]
pub(crate) struct CException {
    name: String,
    from: NaiveDate,
    to: NaiveDate,
    profile: u16,
}

#[derive(Debug, Clone)]
pub(crate) struct CRule {
    name: String,
    mask: u64,
    sets: Vec<(u8, serde_json::Value)>,
    /// Firing instants within validity (Unix seconds), ascending, distinct.
    fires: Vec<i64>,
}

impl Schedule {
    /// Validates `doc` (against `catalog` when given) and builds the evaluator. Fails with
    /// every error; warnings (DST gaps and overlaps, unused profiles, …) are kept in
    /// [`Schedule::warnings`].
    pub fn new(
        doc: &ScheduleDocument,
        catalog: Option<&[shiki_proto::PointInfo]>,
    ) -> Result<Schedule, ScheduleError> {
        let (compiled, report) = validate::check(doc, catalog);
        match compiled {
            Some(mut schedule) if !report.has_errors() => {
                schedule.warnings = report.problems;
                Ok(schedule)
            }
            _ => Err(ScheduleError::Invalid {
                id: doc.id.clone(),
                problems: report.errors().cloned().collect(),
            }),
        }
    }

    /// Reads a pushed document (`ScheduleSet::document` with `ScheduleSet::hash`): parses
    /// it, checks that its content hash is `expected_hash`, validates it (against `catalog`
    /// when given) and builds the evaluator.
    pub fn from_pushed(
        document: &serde_json::Value,
        expected_hash: &str,
        catalog: Option<&[shiki_proto::PointInfo]>,
    ) -> Result<Schedule, ScheduleError> {
        let doc = ScheduleDocument::from_value(document)?;
        let actual = doc.hash();
        if !actual.eq_ignore_ascii_case(expected_hash) {
            return Err(ScheduleError::HashMismatch {
                id: doc.id,
                expected: expected_hash.to_owned(),
                actual,
            });
        }
        Schedule::new(&doc, catalog)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The document's content hash ([`ScheduleDocument::hash`]).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    pub fn valid_from(&self) -> NaiveDate {
        self.valid_from
    }

    pub fn valid_to(&self) -> NaiveDate {
        self.valid_to
    }

    /// The first instant of validity (`valid_from` 00:00 local).
    pub fn start(&self) -> DateTime<Utc> {
        eval::instant(self.start)
    }

    /// The first instant after validity (the day after `valid_to`, 00:00 local).
    pub fn end(&self) -> DateTime<Utc> {
        eval::instant(self.end)
    }

    /// Whether `t` lies within validity.
    pub fn covers(&self, t: DateTime<Utc>) -> bool {
        (self.start..self.end).contains(&t.timestamp())
    }

    /// Validation warnings found when the schedule was built.
    pub fn warnings(&self) -> &[Problem] {
        &self.warnings
    }

    /// Rough heap + inline size of the evaluator in bytes (what the edge keeps in memory).
    pub fn approx_size_bytes(&self) -> usize {
        eval::approx_size(self)
    }
}
