//! Day by day over validity: which profile runs (every day covered), DST cases of profile
//! entries, and the per-day tables the evaluator keeps.

use chrono::{Duration, NaiveDate, NaiveTime};
use chrono_tz::Tz;

use super::dst::dst_message;
use super::validity::Validity;
use crate::schedule::CProfile;
use crate::schedule::calendar::Calendar;
use crate::schedule::eval::IRREGULAR_DAY;
use crate::schedule::problems::{ProblemKind, Problems};
use crate::schedule::tz::{LocalKind, localize};

/// The profile id of each day of validity (`u16::MAX` for a day no season or exception
/// covers, reported as an error per run of such days), warning about every profile entry
/// that falls into a DST gap or overlap. Empty when validity is unknown.
pub(super) fn resolve(
    calendar: &Calendar<'_>,
    profiles: &[CProfile],
    validity: &Validity,
    p: &mut Problems,
) -> Vec<u16> {
    let mut day_profile = Vec::new();
    let Some((f, t)) = validity.range else {
        return day_profile;
    };
    let mut uncovered: Vec<(NaiveDate, NaiveDate)> = Vec::new();
    for d in f.iter_days().take_while(|d| *d <= t) {
        match calendar.resolve(d) {
            Some((pi, _)) => {
                day_profile.push(pi);
                if let (Some(tz), Some(profile)) = (validity.tz, profiles.get(pi as usize)) {
                    warn_dst_entries(&tz, d, profile, p);
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
    day_profile
}

fn warn_dst_entries(tz: &Tz, d: NaiveDate, profile: &CProfile, p: &mut Problems) {
    for (ei, entry) in profile.entries.iter().enumerate() {
        let naive = d.and_time(entry.time);
        let (ts, kind) = localize(tz, naive);
        if let Some((k, msg)) = dst_message(tz, naive, ts, kind) {
            p.warning(k, format!("profiles.{}[{ei}].time", profile.name), msg);
        }
    }
}

/// Unix seconds of each day's local midnight, or [`IRREGULAR_DAY`] for a day whose UTC
/// offset changes.
pub(super) fn day_base(tz: &Tz, (f, t): (NaiveDate, NaiveDate)) -> Vec<i64> {
    f.iter_days()
        .take_while(|d| *d <= t)
        .map(|d| {
            let a = localize(tz, d.and_time(NaiveTime::MIN));
            let b = localize(tz, (d + Duration::days(1)).and_time(NaiveTime::MIN));
            let regular =
                a.1 == LocalKind::Single && b.1 == LocalKind::Single && b.0 - a.0 == 86_400;
            if regular { a.0 } else { IRREGULAR_DAY }
        })
        .collect()
}

/// For each of `keys` keys, the days (ascending) whose profile writes it.
pub(super) fn key_days(keys: usize, day_profile: &[u16], profiles: &[CProfile]) -> Vec<Vec<u16>> {
    let mut key_days: Vec<Vec<u16>> = vec![Vec::new(); keys];
    for (day, &pi) in day_profile.iter().enumerate() {
        let mask = profiles.get(usize::from(pi)).map_or(0, |p| p.mask);
        for (key, days) in key_days.iter_mut().enumerate() {
            if mask & (1 << key) != 0 {
                days.push(day as u16);
            }
        }
    }
    key_days
}
