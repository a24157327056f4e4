//! The document's header: its id, time zone and validity range.

use chrono::NaiveDate;
use chrono_tz::Tz;

use super::MAX_DAYS;
use super::parse::parse_date;
use crate::schedule::model::ScheduleDocument;
use crate::schedule::problems::{ProblemKind, Problems};

/// The time zone and validity range, each `None` when it did not parse (then everything
/// that depends on it is not checked).
#[derive(Debug, Clone, Copy)]
pub(super) struct Validity {
    pub(super) tz: Option<Tz>,
    /// `valid_from ..= valid_to`.
    pub(super) range: Option<(NaiveDate, NaiveDate)>,
}

impl Validity {
    /// Whether `d` lies within validity (true when the range is unknown: nothing to report).
    pub(super) fn contains(&self, d: NaiveDate) -> bool {
        self.range.is_none_or(|(f, t)| f <= d && d <= t)
    }
}

/// Checks the id, the time zone and the validity range.
pub(super) fn check(doc: &ScheduleDocument, p: &mut Problems) -> Validity {
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
    let from = parse_date(&doc.valid_from, "valid_from", p);
    let to = parse_date(&doc.valid_to, "valid_to", p);
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
    Validity { tz, range }
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}
