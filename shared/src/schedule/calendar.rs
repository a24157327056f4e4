//! Which profile runs on a day: exception > holiday > weekday/Saturday/Sunday of the
//! season covering the day.

use chrono::{Datelike, NaiveDate, Weekday};

use super::{CException, CSeason};

/// Day-of-year of `d`'s month and day in a leap year (0..366), so Feb 29 has its own slot
/// and season ranges (`MM-DD`) compare the same way every year.
pub(crate) fn leap_ordinal(d: NaiveDate) -> usize {
    NaiveDate::from_ymd_opt(2000, d.month(), d.day())
        .map(|x| x.ordinal0() as usize)
        .unwrap_or(0)
}

/// Everything parsed about the calendar, shared by the day resolution.
pub(crate) struct Calendar<'a> {
    pub(crate) seasons: &'a [CSeason],
    pub(crate) holidays: &'a [(NaiveDate, String)],
    pub(crate) exceptions: &'a [CException],
}

/// Which rule decided a day's profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DayRef {
    Exception(usize),
    Holiday(usize, usize),
    Weekday(usize),
    Saturday(usize),
    Sunday(usize),
}

impl Calendar<'_> {
    /// The profile of day `d` and why: exception > holiday > weekday/Saturday/Sunday.
    pub(crate) fn resolve(&self, d: NaiveDate) -> Option<(u16, DayRef)> {
        if let Some(i) = self
            .exceptions
            .iter()
            .position(|e| e.from <= d && d <= e.to)
        {
            return Some((self.exceptions[i].profile, DayRef::Exception(i)));
        }
        let ord = leap_ordinal(d);
        let si = self.seasons.iter().position(|s| s.days[ord])?;
        let season = &self.seasons[si];
        if let Ok(h) = self.holidays.binary_search_by(|(hd, _)| hd.cmp(&d)) {
            return Some((season.holiday, DayRef::Holiday(h, si)));
        }
        Some(match d.weekday() {
            Weekday::Sat => (season.saturday, DayRef::Saturday(si)),
            Weekday::Sun => (season.sunday, DayRef::Sunday(si)),
            _ => (season.weekday, DayRef::Weekday(si)),
        })
    }
}
