//! Validation and compilation: parse every string of the document, report every problem
//! with its location, and build the [`Schedule`] evaluator when there is no error.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use shiki_proto::{PointInfo, PointRole, ValueKind};

use super::calendar::Calendar;
use super::model::{ScheduleDocument, Settings};
use super::problems::{ProblemKind, Problems, Report};
use super::tz::{LocalKind, localize};
use super::{CEntry, CException, CProfile, CRule, CSeason, Schedule};

/// At most this many rule firings within validity (all rules together): they are
/// precomputed, and the evaluator must stay small on the gateway. Use day profiles for
/// daily patterns.
pub const MAX_RULE_FIRINGS: usize = 4096;
/// At most this many distinct setting names in one schedule.
pub const MAX_SETTINGS: usize = 64;
/// Longest validity accepted, in days (about ten years).
const MAX_DAYS: i64 = 3660;

fn parse_date(text: &str, path: &str, p: &mut Problems) -> Option<NaiveDate> {
    match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(d) if text.len() == 10 => Some(d),
        _ => {
            p.error(
                ProblemKind::InvalidDate,
                path,
                format!("`{text}` is not a date (YYYY-MM-DD)"),
            );
            None
        }
    }
}

/// `MM-DD` → ordinal in a leap year (0..366), so Feb 29 has its own slot.
fn parse_month_day(text: &str, path: &str, p: &mut Problems) -> Option<usize> {
    let parsed = text
        .split_once('-')
        .filter(|(m, d)| m.len() == 2 && d.len() == 2)
        .and_then(|(m, d)| Some((m.parse::<u32>().ok()?, d.parse::<u32>().ok()?)))
        .and_then(|(m, d)| NaiveDate::from_ymd_opt(2000, m, d));
    match parsed {
        Some(d) => Some(d.ordinal0() as usize),
        None => {
            p.error(
                ProblemKind::InvalidDate,
                path,
                format!("`{text}` is not a month and day (MM-DD)"),
            );
            None
        }
    }
}

fn month_day_of_ordinal(ord: usize) -> String {
    NaiveDate::from_yo_opt(2000, ord as u32 + 1)
        .map(|d| d.format("%m-%d").to_string())
        .unwrap_or_default()
}

fn parse_time(text: &str, path: &str, p: &mut Problems) -> Option<NaiveTime> {
    let ok_shape = matches!(text.len(), 5 | 8);
    let parsed = NaiveTime::parse_from_str(text, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M"))
        .ok()
        .filter(|_| ok_shape);
    if parsed.is_none() {
        p.error(
            ProblemKind::InvalidTime,
            path,
            format!("`{text}` is not a time of day (HH:MM or HH:MM:SS, 00:00 to 23:59:59)"),
        );
    }
    parsed
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Accepts the `cron` crate's 6/7-field syntax and 5-field crontab (seconds `0` prepended).
pub(crate) fn parse_cron(expr: &str) -> Result<cron::Schedule, String> {
    let text = if expr.split_whitespace().count() == 5 {
        format!("0 {expr}")
    } else {
        expr.to_owned()
    };
    cron::Schedule::from_str(&text).map_err(|e| e.to_string())
}

struct Keys<'c> {
    names: Vec<String>,
    catalog: Option<&'c [PointInfo]>,
    too_many_reported: bool,
}

impl Keys<'_> {
    fn id(&mut self, name: &str, path: &str, p: &mut Problems) -> Option<u8> {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return u8::try_from(i).ok();
        }
        if self.names.len() >= MAX_SETTINGS {
            if !self.too_many_reported {
                self.too_many_reported = true;
                p.error(
                    ProblemKind::TooManySettings,
                    path,
                    format!("more than {MAX_SETTINGS} distinct settings"),
                );
            }
            return None;
        }
        self.names.push(name.to_owned());
        u8::try_from(self.names.len() - 1).ok()
    }

    /// Checks and interns a settings map.
    fn settings(
        &mut self,
        settings: &Settings,
        path: &str,
        p: &mut Problems,
    ) -> (Vec<(u8, serde_json::Value)>, u64) {
        let mut sets = Vec::with_capacity(settings.len());
        let mut mask = 0u64;
        for (name, value) in settings {
            let vpath = format!("{path}.{name}");
            check_value(name, value, &vpath, self.catalog, p);
            if let Some(id) = self.id(name, &vpath, p) {
                sets.push((id, value.clone()));
                mask |= 1 << id;
            }
        }
        (sets, mask)
    }
}

fn check_value(
    name: &str,
    value: &serde_json::Value,
    path: &str,
    catalog: Option<&[PointInfo]>,
    p: &mut Problems,
) {
    use serde_json::Value;
    let Some(points) = catalog else {
        if !matches!(value, Value::Bool(_) | Value::Number(_) | Value::String(_)) {
            p.error(
                ProblemKind::WrongValueKind,
                path,
                format!("`{name}` must be a boolean, a number or a string, not {value}"),
            );
        }
        return;
    };
    let Some(point) = points.iter().find(|pt| pt.name == name) else {
        let known: Vec<&str> = points
            .iter()
            .filter(|pt| pt.writable && pt.role != PointRole::Reading)
            .map(|pt| pt.name.as_str())
            .collect();
        p.error(
            ProblemKind::UnknownSetting,
            path,
            format!(
                "the device has no setting `{name}` (settings: {})",
                known.join(", ")
            ),
        );
        return;
    };
    if !point.writable || point.role == PointRole::Reading {
        p.error(
            ProblemKind::NotWritable,
            path,
            format!("`{name}` is a reading or not writable on this device"),
        );
        return;
    }
    match point.kind {
        ValueKind::Bool if !value.is_boolean() => p.error(
            ProblemKind::WrongValueKind,
            path,
            format!("`{name}` takes true or false, not {value}"),
        ),
        ValueKind::Number => match value.as_f64() {
            None => p.error(
                ProblemKind::WrongValueKind,
                path,
                format!("`{name}` takes a number, not {value}"),
            ),
            Some(x) => {
                if let Some(min) = point.min.filter(|min| x < *min) {
                    p.error(
                        ProblemKind::OutOfLimits,
                        path,
                        format!("{x} is below the minimum {min} of `{name}`"),
                    );
                }
                if let Some(max) = point.max.filter(|max| x > *max) {
                    p.error(
                        ProblemKind::OutOfLimits,
                        path,
                        format!("{x} is above the maximum {max} of `{name}`"),
                    );
                }
                if let Some(res) = point.resolution.filter(|r| *r > 0.0) {
                    let steps = x / res;
                    if (steps - steps.round()).abs() > 1e-6 {
                        p.warning(
                            ProblemKind::OffResolution,
                            path,
                            format!(
                                "{x} is not a multiple of the resolution {res} of `{name}`; the PLC will hold {}",
                                steps.round() * res
                            ),
                        );
                    }
                }
            }
        },
        ValueKind::Enum => match value.as_str() {
            None => p.error(
                ProblemKind::WrongValueKind,
                path,
                format!(
                    "`{name}` takes one of {}, not {value}",
                    point.options.join(", ")
                ),
            ),
            Some(s) if !point.options.iter().any(|o| o == s) => p.error(
                ProblemKind::OutOfLimits,
                path,
                format!("`{s}` is not one of {}", point.options.join(", ")),
            ),
            Some(_) => {}
        },
        _ => {}
    }
}

fn describe(tz: &Tz, ts: i64) -> String {
    match chrono::DateTime::<Utc>::from_timestamp(ts, 0) {
        Some(t) => format!(
            "{} ({})",
            t.with_timezone(tz).format("%H:%M:%S %Z"),
            t.format("%Y-%m-%dT%H:%M:%SZ")
        ),
        None => ts.to_string(),
    }
}

fn dst_message(
    tz: &Tz,
    naive: NaiveDateTime,
    ts: i64,
    kind: LocalKind,
) -> Option<(ProblemKind, String)> {
    let what = naive.format("%H:%M:%S on %Y-%m-%d");
    match kind {
        LocalKind::Single => None,
        LocalKind::Gap => Some((
            ProblemKind::DstGap,
            format!(
                "{what} does not exist in {tz} (DST gap); policy: fires at the first instant after the gap, {}",
                describe(tz, ts)
            ),
        )),
        LocalKind::Fold => Some((
            ProblemKind::DstOverlap,
            format!(
                "{what} occurs twice in {tz} (DST overlap); policy: fires once, at the first occurrence, {}",
                describe(tz, ts)
            ),
        )),
    }
}

/// The instants at which `cron` fires within validity (local wall-clock times, DST policy
/// applied, distinct, ascending), warning about DST cases; `None` when there are more than
/// `budget`.
fn rule_fires(
    cron: &cron::Schedule,
    tz: &Tz,
    (from, to): (NaiveDate, NaiveDate),
    budget: usize,
    path: &str,
    p: &mut Problems,
) -> Option<Vec<i64>> {
    let start = from.and_time(NaiveTime::MIN);
    let end = (to + Duration::days(1)).and_time(NaiveTime::MIN);
    // the cron crate runs on naive local time (as if UTC): no DST handling of its own
    let after = Utc.from_utc_datetime(&(start - Duration::seconds(1)));
    let mut fires: Vec<i64> = Vec::new();
    let mut last_warned: Option<NaiveDate> = None;
    for fire in cron.after(&after) {
        let naive = fire.naive_utc();
        if naive >= end {
            break;
        }
        let (ts, kind) = localize(tz, naive);
        if let Some((k, msg)) = dst_message(tz, naive, ts, kind)
            && last_warned != Some(naive.date())
        {
            last_warned = Some(naive.date());
            p.warning(k, path, msg);
        }
        if fires.last() != Some(&ts) {
            if fires.len() == budget {
                return None;
            }
            fires.push(ts);
        }
    }
    Some(fires)
}

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
    if !valid_id(&doc.id) {
        p.error(
            ProblemKind::InvalidId,
            "id",
            format!("`{}` is not an id ([A-Za-z0-9_.-]{{1,64}})", doc.id),
        );
    }
    let tz: Option<Tz> = match doc.timezone.parse::<Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            p.error(
                ProblemKind::UnknownTimeZone,
                "timezone",
                format!(
                    "`{}` is not an IANA time zone (e.g. Asia/Tokyo)",
                    doc.timezone
                ),
            );
            None
        }
    };
    let from = parse_date(&doc.valid_from, "valid_from", &mut p);
    let to = parse_date(&doc.valid_to, "valid_to", &mut p);
    let range = match (from, to) {
        (Some(f), Some(t)) if f <= t && (t - f).num_days() < MAX_DAYS => Some((f, t)),
        (Some(f), Some(t)) => {
            p.error(
                ProblemKind::InvalidRange,
                "valid_to",
                format!("validity {f} ..= {t} must be ascending and at most {MAX_DAYS} days long"),
            );
            None
        }
        _ => None,
    };
    let in_range = |d: NaiveDate| range.is_none_or(|(f, t)| f <= d && d <= t);

    let mut keys = Keys {
        names: Vec::new(),
        catalog,
        too_many_reported: false,
    };
    let (defaults, defaults_mask) = keys.settings(&doc.defaults, "defaults", &mut p);

    // profiles
    let mut profile_ids: BTreeMap<&str, u16> = BTreeMap::new();
    let mut profiles = Vec::with_capacity(doc.profiles.len());
    for (name, entries) in &doc.profiles {
        let mut centries: Vec<CEntry> = Vec::with_capacity(entries.len());
        let mut mask = 0;
        let mut last: Option<(usize, NaiveTime)> = None;
        for (i, entry) in entries.iter().enumerate() {
            let path = format!("profiles.{name}[{i}]");
            let time = parse_time(&entry.time, &format!("{path}.time"), &mut p);
            if let (Some(t), Some((j, prev))) = (time, last)
                && t <= prev
            {
                p.error(
                    ProblemKind::TimesNotAscending,
                    format!("{path}.time"),
                    format!(
                        "{} is not after {} (profiles.{name}[{j}]); entries must be in ascending time order",
                        entry.time, entries[j].time
                    ),
                );
            }
            if let Some(t) = time {
                last = Some((i, t));
            }
            let (sets, emask) = keys.settings(&entry.settings, &format!("{path}.settings"), &mut p);
            mask |= emask;
            centries.push(CEntry {
                time: time.unwrap_or(NaiveTime::MIN),
                mask: emask,
                sets,
            });
        }
        profile_ids.insert(name.as_str(), profiles.len() as u16);
        profiles.push(CProfile {
            name: name.clone(),
            mask,
            entries: centries,
        });
    }
    let mut used = vec![false; profiles.len()];
    let mut profile_ref = |name: &str, path: String, p: &mut Problems| -> u16 {
        match profile_ids.get(name) {
            Some(&i) => {
                used[i as usize] = true;
                i
            }
            None => {
                let known: Vec<&str> = profile_ids.keys().copied().collect();
                p.error(
                    ProblemKind::UnknownProfile,
                    path,
                    format!("unknown profile `{name}` (profiles: {})", known.join(", ")),
                );
                u16::MAX
            }
        }
    };

    // seasons
    let mut seasons = Vec::with_capacity(doc.seasons.len());
    for (i, s) in doc.seasons.iter().enumerate() {
        let path = format!("seasons[{i}]");
        let a = parse_month_day(&s.from, &format!("{path}.from"), &mut p);
        let b = parse_month_day(&s.to, &format!("{path}.to"), &mut p);
        let mut days = vec![false; 366];
        if let (Some(a), Some(b)) = (a, b) {
            for (ord, day) in days.iter_mut().enumerate() {
                *day = if a <= b {
                    a <= ord && ord <= b
                } else {
                    ord >= a || ord <= b
                };
            }
        }
        let weekday = profile_ref(&s.weekday, format!("{path}.weekday"), &mut p);
        let saturday = profile_ref(&s.saturday, format!("{path}.saturday"), &mut p);
        let sunday = profile_ref(&s.sunday, format!("{path}.sunday"), &mut p);
        let holiday = match &s.holiday {
            Some(h) => profile_ref(h, format!("{path}.holiday"), &mut p),
            None => sunday,
        };
        for (j, other) in seasons.iter().enumerate() {
            let other: &CSeason = other;
            let shared: Vec<usize> = (0..366).filter(|&o| days[o] && other.days[o]).collect();
            if let (Some(first), Some(last)) = (shared.first(), shared.last()) {
                p.error(
                    ProblemKind::OverlappingSeasons,
                    path.clone(),
                    format!(
                        "season `{}` overlaps seasons[{j}] `{}` on {} day(s) ({} .. {})",
                        s.name,
                        other.name,
                        shared.len(),
                        month_day_of_ordinal(*first),
                        month_day_of_ordinal(*last)
                    ),
                );
            }
        }
        seasons.push(CSeason {
            name: s.name.clone(),
            weekday,
            saturday,
            sunday,
            holiday,
            days,
        });
    }

    // holidays
    let mut holidays: Vec<(NaiveDate, String)> = Vec::with_capacity(doc.holidays.len());
    for (i, h) in doc.holidays.iter().enumerate() {
        let path = format!("holidays[{i}].date");
        let Some(d) = parse_date(&h.date, &path, &mut p) else {
            continue;
        };
        if !in_range(d) {
            p.error(
                ProblemKind::DateOutsideValidity,
                path,
                format!(
                    "{d} lies outside validity {} ..= {}",
                    doc.valid_from, doc.valid_to
                ),
            );
        } else if holidays.iter().any(|(x, _)| *x == d) {
            p.warning(
                ProblemKind::DuplicateHoliday,
                path,
                format!("{d} is listed twice"),
            );
        } else {
            holidays.push((d, h.name.clone()));
        }
    }
    holidays.sort();

    // exceptions
    let mut exceptions: Vec<CException> = Vec::with_capacity(doc.exceptions.len());
    let mut exception_paths: Vec<usize> = Vec::new();
    for (i, e) in doc.exceptions.iter().enumerate() {
        let path = format!("exceptions[{i}]");
        let dates = match (&e.date, &e.from, &e.to) {
            (Some(d), None, None) => {
                let d = parse_date(d, &format!("{path}.date"), &mut p);
                d.map(|d| (d, d))
            }
            (None, Some(a), b) => {
                let a = parse_date(a, &format!("{path}.from"), &mut p);
                let b = match b {
                    Some(b) => parse_date(b, &format!("{path}.to"), &mut p),
                    None => a,
                };
                a.zip(b)
            }
            _ => {
                p.error(
                    ProblemKind::InvalidDate,
                    path.clone(),
                    "an exception has either `date` or `from` (and optionally `to`)",
                );
                None
            }
        };
        let profile = profile_ref(&e.profile, format!("{path}.profile"), &mut p);
        let Some((a, b)) = dates else { continue };
        if a > b {
            p.error(
                ProblemKind::InvalidRange,
                format!("{path}.to"),
                format!("{b} is before {a}"),
            );
            continue;
        }
        if !in_range(a) || !in_range(b) {
            p.error(
                ProblemKind::DateOutsideValidity,
                path.clone(),
                format!(
                    "{a} ..= {b} lies (partly) outside validity {} ..= {}",
                    doc.valid_from, doc.valid_to
                ),
            );
            continue;
        }
        if let Some(j) = exceptions.iter().position(|x| x.from <= b && a <= x.to) {
            p.error(
                ProblemKind::OverlappingExceptions,
                path.clone(),
                format!("{a} ..= {b} overlaps exceptions[{}]", exception_paths[j]),
            );
            continue;
        }
        exception_paths.push(i);
        exceptions.push(CException {
            name: if e.name.is_empty() {
                format!("exceptions[{i}]")
            } else {
                e.name.clone()
            },
            from: a,
            to: b,
            profile,
        });
    }
    exceptions.sort_by_key(|e| e.from);

    for (i, u) in used.iter().enumerate() {
        if !u {
            p.warning(
                ProblemKind::UnusedProfile,
                format!("profiles.{}", profiles[i].name),
                "no season or exception uses this profile",
            );
        }
    }

    // rules
    let mut rules = Vec::with_capacity(doc.rules.len());
    let mut budget = MAX_RULE_FIRINGS;
    for (i, r) in doc.rules.iter().enumerate() {
        let path = format!("rules[{i}]");
        let (sets, mask) = keys.settings(&r.settings, &format!("{path}.settings"), &mut p);
        let mut fires = Vec::new();
        match parse_cron(&r.cron) {
            Err(e) => p.error(
                ProblemKind::InvalidCron,
                format!("{path}.cron"),
                format!(
                    "`{}` is not a cron expression (sec min hour day month weekday [year]): {e}",
                    r.cron
                ),
            ),
            Ok(cron) => {
                if let (Some(tz), Some(range), true) = (tz, range, budget > 0) {
                    let cpath = format!("{path}.cron");
                    match rule_fires(&cron, &tz, range, budget, &cpath, &mut p) {
                        Some(list) => {
                            if list.is_empty() {
                                p.warning(
                                    ProblemKind::RuleNeverFires,
                                    cpath,
                                    format!("`{}` never fires within validity", r.cron),
                                );
                            }
                            budget -= list.len();
                            fires = list;
                        }
                        None => {
                            p.error(
                                ProblemKind::TooManyRuleFirings,
                                cpath,
                                format!(
                                    "the rules fire more than {MAX_RULE_FIRINGS} times within validity (this one from its firing {} on); use day profiles for daily patterns",
                                    budget + 1
                                ),
                            );
                            budget = 0;
                        }
                    }
                }
            }
        }
        rules.push(CRule {
            name: if r.name.is_empty() {
                path
            } else {
                r.name.clone()
            },
            mask,
            sets,
            fires,
        });
    }

    // keys written somewhere without a default
    let written: u64 = profiles.iter().map(|x| x.mask).fold(0, |a, b| a | b)
        | rules.iter().map(|r| r.mask).fold(0, |a, b| a | b);
    for (i, name) in keys.names.iter().enumerate() {
        if written & !defaults_mask & (1 << i) != 0 {
            p.warning(
                ProblemKind::NoDefault,
                "defaults",
                format!(
                    "`{name}` has no default: it is not in force before its first scheduled write"
                ),
            );
        }
    }

    // day by day: coverage and DST cases of profile entries
    let calendar = Calendar {
        seasons: &seasons,
        holidays: &holidays,
        exceptions: &exceptions,
    };
    let mut day_profile = Vec::new();
    if let Some((f, t)) = range {
        let mut uncovered: Vec<(NaiveDate, NaiveDate)> = Vec::new();
        for d in f.iter_days().take_while(|d| *d <= t) {
            match calendar.resolve(d) {
                Some((pi, _)) => {
                    day_profile.push(pi);
                    let (Some(tz), Some(profile)) = (tz, profiles.get(pi as usize)) else {
                        continue;
                    };
                    for (ei, entry) in profile.entries.iter().enumerate() {
                        let naive = d.and_time(entry.time);
                        let (ts, kind) = localize(&tz, naive);
                        if let Some((k, msg)) = dst_message(&tz, naive, ts, kind) {
                            p.warning(k, format!("profiles.{}[{ei}].time", profile.name), msg);
                        }
                    }
                }
                None => {
                    day_profile.push(u16::MAX);
                    match uncovered.last_mut() {
                        Some((_, end)) if *end + Duration::days(1) == d => *end = d,
                        _ => uncovered.push((d, d)),
                    }
                }
            }
        }
        for (a, b) in uncovered {
            p.error(
                ProblemKind::UncoveredDays,
                "seasons",
                if a == b {
                    format!("{a} is not covered by any season or exception")
                } else {
                    format!("{a} ..= {b} are not covered by any season or exception")
                },
            );
        }
    }

    let hash = doc.hash();
    let compiled = match (tz, range) {
        (Some(tz), Some((f, t))) if !p.has_errors() => {
            let start = localize(&tz, f.and_time(NaiveTime::MIN)).0;
            let end = localize(&tz, (t + Duration::days(1)).and_time(NaiveTime::MIN)).0;
            let day_base: Vec<i64> = f
                .iter_days()
                .take_while(|d| *d <= t)
                .map(|d| {
                    let a = localize(&tz, d.and_time(NaiveTime::MIN));
                    let b = localize(&tz, (d + Duration::days(1)).and_time(NaiveTime::MIN));
                    let regular =
                        a.1 == LocalKind::Single && b.1 == LocalKind::Single && b.0 - a.0 == 86_400;
                    if regular {
                        a.0
                    } else {
                        super::eval::IRREGULAR_DAY
                    }
                })
                .collect();
            let mut key_days: Vec<Vec<u16>> = vec![Vec::new(); keys.names.len()];
            for (day, &pi) in day_profile.iter().enumerate() {
                let mask = profiles.get(usize::from(pi)).map_or(0, |p| p.mask);
                for (key, days) in key_days.iter_mut().enumerate() {
                    if mask & (1 << key) != 0 {
                        days.push(day as u16);
                    }
                }
            }
            Some(Schedule {
                id: doc.id.clone(),
                hash,
                tz,
                valid_from: f,
                valid_to: t,
                start,
                end,
                keys: keys.names,
                defaults,
                defaults_mask,
                profiles,
                seasons,
                holidays,
                exceptions,
                rules,
                day_profile,
                day_base,
                key_days,
                warnings: Vec::new(),
            })
        }
        _ => None,
    };
    (compiled, Report { problems: p.0 })
}
