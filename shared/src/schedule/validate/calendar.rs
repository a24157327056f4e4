//! The calendar: seasons (no overlaps), holidays and exceptions (inside validity, exceptions
//! not overlapping each other).

use chrono::NaiveDate;

use super::parse::{month_day_of_ordinal, parse_date, parse_month_day};
use super::profiles::ProfileRefs;
use super::validity::Validity;
use crate::schedule::model::{Exception, ScheduleDocument};
use crate::schedule::problems::{ProblemKind, Problems};
use crate::schedule::{CException, CSeason};

/// Compiles the seasons in document order, reporting each overlap with an earlier season.
pub(super) fn seasons(
    doc: &ScheduleDocument,
    refs: &mut ProfileRefs<'_>,
    p: &mut Problems,
) -> Vec<CSeason> {
    let mut seasons: Vec<CSeason> = Vec::with_capacity(doc.seasons.len());
    for (i, s) in doc.seasons.iter().enumerate() {
        let path = format!("seasons[{i}]");
        let a = parse_month_day(&s.from, &format!("{path}.from"), p);
        let b = parse_month_day(&s.to, &format!("{path}.to"), p);
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
        let weekday = refs.resolve(&s.weekday, format!("{path}.weekday"), p);
        let saturday = refs.resolve(&s.saturday, format!("{path}.saturday"), p);
        let sunday = refs.resolve(&s.sunday, format!("{path}.sunday"), p);
        let holiday = match &s.holiday {
            Some(h) => refs.resolve(h, format!("{path}.holiday"), p),
            None => sunday,
        };
        for (j, other) in seasons.iter().enumerate() {
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
    seasons
}

/// The holidays inside validity, by date, without duplicates (each warned about).
pub(super) fn holidays(
    doc: &ScheduleDocument,
    validity: &Validity,
    p: &mut Problems,
) -> Vec<(NaiveDate, String)> {
    let mut holidays: Vec<(NaiveDate, String)> = Vec::with_capacity(doc.holidays.len());
    for (i, h) in doc.holidays.iter().enumerate() {
        let path = format!("holidays[{i}].date");
        let Some(d) = parse_date(&h.date, &path, p) else {
            continue;
        };
        if !validity.contains(d) {
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
    holidays
}

/// The exceptions inside validity and not overlapping an earlier one, by first day.
pub(super) fn exceptions(
    doc: &ScheduleDocument,
    validity: &Validity,
    refs: &mut ProfileRefs<'_>,
    p: &mut Problems,
) -> Vec<CException> {
    let mut exceptions: Vec<CException> = Vec::with_capacity(doc.exceptions.len());
    // the document index of each accepted exception, for overlap messages
    let mut exception_paths: Vec<usize> = Vec::new();
    for (i, e) in doc.exceptions.iter().enumerate() {
        let path = format!("exceptions[{i}]");
        let dates = exception_dates(e, &path, p);
        let profile = refs.resolve(&e.profile, format!("{path}.profile"), p);
        let Some((a, b)) = dates else { continue };
        if a > b {
            p.error(
                ProblemKind::InvalidRange,
                format!("{path}.to"),
                format!("{b} is before {a}"),
            );
            continue;
        }
        if !validity.contains(a) || !validity.contains(b) {
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
                path
            } else {
                e.name.clone()
            },
            from: a,
            to: b,
            profile,
        });
    }
    exceptions.sort_by_key(|e| e.from);
    exceptions
}

/// An exception's first and last day: `date`, or `from` ..= `to` (`to` defaults to `from`).
fn exception_dates(e: &Exception, path: &str, p: &mut Problems) -> Option<(NaiveDate, NaiveDate)> {
    match (&e.date, &e.from, &e.to) {
        (Some(d), None, None) => {
            let d = parse_date(d, &format!("{path}.date"), p);
            d.map(|d| (d, d))
        }
        (None, Some(a), b) => {
            let a = parse_date(a, &format!("{path}.from"), p);
            let b = match b {
                Some(b) => parse_date(b, &format!("{path}.to"), p),
                None => a,
            };
            a.zip(b)
        }
        _ => {
            p.error(
                ProblemKind::InvalidDate,
                path,
                "an exception has either `date` or `from` (and optionally `to`)",
            );
            None
        }
    }
}
