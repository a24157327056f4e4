//! The schedule document as it travels (JSON), before validation.
//!
//! Dates, times, the time zone and cron expressions are kept as the strings the operator
//! wrote: validation parses every one of them and reports *all* problems at once, each with
//! its location, instead of stopping at the first field serde could not decode.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Setting name → value, e.g. `{"run": true, "mode": "cooling", "chw_setpoint_c": 7.0}`.
pub type Settings = BTreeMap<String, serde_json::Value>;

/// The time zone used when a document names none.
pub const DEFAULT_TIMEZONE: &str = "Asia/Tokyo";

fn default_timezone() -> String {
    DEFAULT_TIMEZONE.to_owned()
}

/// A yearly (or any date range) schedule document. `docs/schedule.md` describes every part
/// and the evaluation policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDocument {
    /// Identifier, `[A-Za-z0-9_.-]{1,64}`, e.g. `sapporo-2027`.
    pub id: String,
    /// IANA time zone of the site, default `Asia/Tokyo`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// First day of validity, `YYYY-MM-DD` (local), inclusive.
    pub valid_from: String,
    /// Last day of validity, `YYYY-MM-DD` (local), inclusive.
    pub valid_to: String,
    /// Settings in force at the very start of validity (`valid_from` 00:00 local), until a
    /// profile entry or a rule sets them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub defaults: Settings,
    /// Day profiles: name → entries in ascending time order.
    pub profiles: BTreeMap<String, Vec<ProfileEntry>>,
    /// Seasons: which profile runs on which kind of day.
    pub seasons: Vec<Season>,
    /// Public holidays (and company days off treated like them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holidays: Vec<Holiday>,
    /// One-off days or date ranges with their own profile; they take priority over seasons
    /// and holidays.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<Exception>,
    /// Recurring settings given by cron expressions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

/// One `time of day → settings` entry of a day profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileEntry {
    /// Local wall-clock time, `HH:MM` or `HH:MM:SS` (00:00 ..= 23:59:59).
    pub time: String,
    /// The settings this entry writes.
    pub settings: Settings,
}

/// A season: a yearly recurring range of days (`MM-DD`, inclusive) that may wrap the year
/// end (`11-01` .. `03-31`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Season {
    pub name: String,
    /// First day, `MM-DD`.
    pub from: String,
    /// Last day, `MM-DD`, inclusive. Earlier than `from` means the season wraps the year end.
    pub to: String,
    /// Profile for Monday to Friday.
    pub weekday: String,
    /// Profile for Saturday.
    pub saturday: String,
    /// Profile for Sunday.
    pub sunday: String,
    /// Profile for holidays; defaults to the Sunday profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holiday: Option<String>,
}

/// A holiday date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holiday {
    /// `YYYY-MM-DD`.
    pub date: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// An exception: one date (`date`) or a date range (`from` ..= `to`) that runs `profile`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exception {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// A single day, `YYYY-MM-DD` (use either `date` or `from`/`to`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub profile: String,
}

/// A recurring rule: at every firing of `cron` (local wall-clock time) it writes `settings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    /// A `cron` crate expression: 6 or 7 fields, seconds first, day-of-week names (`Mon`) or
    /// numbers with 1 = Sunday. A 5-field crontab expression is accepted and gets `0`
    /// seconds prepended. Day-of-month and day-of-week both restrict (AND), so
    /// `0 0 6 1-7 * Mon` is "first Monday of the month, 06:00".
    pub cron: String,
    pub settings: Settings,
}
