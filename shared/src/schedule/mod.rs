//! The yearly schedule: document model, validation, content hash and evaluation. Pure: no
//! I/O, no clock; every function takes the instant it is asked about.
//!
//! A [`ScheduleDocument`] (JSON) covers `valid_from ..= valid_to` in a time zone with day
//! profiles, seasons, holidays, exceptions (exception > holiday > weekday/Saturday/Sunday)
//! and cron rules. [`Schedule::new`] validates it and builds the evaluator, which says what
//! is in force at any instant and what comes next:
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
//! The document format, which profile runs on a day, the evaluation and DST policies, the
//! cron dialect, validation and the content hash are described for readers in
//! `docs/schedule.md` at the root of the repository.
//!
//! # Layout
//! - `model`: [`ScheduleDocument`] as it travels (JSON), every date and time still a string.
//! - `validate/`: [`ScheduleDocument::validate`] and the compiler behind [`Schedule::new`],
//!   one file per concern (validity, settings, profiles, calendar, rules, days).
//! - `eval/`: [`Schedule::settings_at`], [`Schedule::transitions`] and the other queries;
//!   `eval/cursor.rs` is [`Cursor`], `eval/size.rs` the memory estimate.
//! - `calendar`: which profile runs on a day; `tz`: local time → instant with the DST
//!   policy; `hash`: canonical JSON and [`content_hash`]; `problems`: [`Report`].

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
    /// The document's shape is wrong at `path` (a missing field, a wrong type, an unknown
    /// key); `path` is empty for the document itself.
    #[error("schedule document does not match the schedule model at {}: {message}", if path.is_empty() { "the top level" } else { path })]
    Structure { path: String, message: String },
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

    /// Parses a document from a JSON value (e.g. `ScheduleSet::document`); a shape error
    /// names the JSON path where it is ([`ScheduleError::Structure`]).
    pub fn from_value(value: &serde_json::Value) -> Result<Self, ScheduleError> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            ScheduleError::Structure {
                path: if path == "." { String::new() } else { path },
                message: e.into_inner().to_string(),
            }
        })
    }

    /// The problem a [`ScheduleError::Structure`] describes, as validation reports them.
    pub fn structure_problem(path: &str, message: &str) -> Problem {
        Problem {
            severity: Severity::Error,
            kind: ProblemKind::Structure,
            path: path.to_owned(),
            message: message.to_owned(),
        }
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
