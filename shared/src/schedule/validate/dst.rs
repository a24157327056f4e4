//! Warnings about local times that DST skips or repeats, naming the instant they fire at.

use chrono::{NaiveDateTime, Utc};
use chrono_tz::Tz;

use crate::schedule::problems::ProblemKind;
use crate::schedule::tz::LocalKind;

/// The warning for a local time `naive` that fires at `ts` (`None` when it exists once).
pub(super) fn dst_message(
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

/// `03:00:00 CEST (2027-03-28T01:00:00Z)`.
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
