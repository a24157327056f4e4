//! The document's strings → dates, month-days and times, each failure reported at its path.

use chrono::{Datelike, NaiveDate, NaiveTime};

use crate::schedule::problems::{ProblemKind, Problems};

/// `YYYY-MM-DD`.
pub(super) fn parse_date(text: &str, path: &str, p: &mut Problems) -> Option<NaiveDate> {
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
pub(super) fn parse_month_day(text: &str, path: &str, p: &mut Problems) -> Option<usize> {
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

/// The inverse of [`parse_month_day`], for messages.
pub(super) fn month_day_of_ordinal(ord: usize) -> String {
    NaiveDate::from_yo_opt(2000, ord as u32 + 1)
        .map(|d| d.format("%m-%d").to_string())
        .unwrap_or_default()
}

/// `HH:MM` or `HH:MM:SS`.
pub(super) fn parse_time(text: &str, path: &str, p: &mut Problems) -> Option<NaiveTime> {
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
