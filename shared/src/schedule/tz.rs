//! Local wall-clock time → instant, with the schedule's DST policy.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// How a local wall-clock time maps onto the time line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LocalKind {
    /// Exists exactly once.
    Single,
    /// Does not exist (spring-forward gap); mapped to the first instant after the gap.
    Gap,
    /// Exists twice (fall-back overlap); mapped to the first occurrence.
    Fold,
}

/// The instant (Unix seconds) at which a local wall-clock time fires, per the DST policy:
/// a time inside a gap fires at the first instant after the gap (the transition itself, e.g.
/// 03:00 local for 02:30 on the spring-forward day); a time that occurs twice fires once, at
/// its first occurrence.
pub(crate) fn localize(tz: &Tz, naive: NaiveDateTime) -> (i64, LocalKind) {
    match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Single(dt) => (dt.timestamp(), LocalKind::Single),
        chrono::LocalResult::Ambiguous(first, _) => (first.timestamp(), LocalKind::Fold),
        chrono::LocalResult::None => (gap_end(tz, naive), LocalKind::Gap),
    }
}

/// The local wall-clock time of an instant.
pub(crate) fn local_of(tz: &Tz, ts: i64) -> NaiveDateTime {
    let utc = DateTime::<Utc>::from_timestamp(ts, 0).unwrap_or(DateTime::<Utc>::MIN_UTC);
    utc.with_timezone(tz).naive_local()
}

/// Smallest instant whose local time is at or after `naive`: for a time in a gap, the
/// instant the gap ends. Local time is monotonic around a gap (no fold within ±26 h in any
/// real zone), so a binary search over that window finds it.
fn gap_end(tz: &Tz, naive: NaiveDateTime) -> i64 {
    let centre = naive.and_utc().timestamp();
    let (mut lo, mut hi) = (centre - 26 * 3600, centre + 26 * 3600);
    // invariant: local(hi) >= naive; answer in (lo, hi]
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if local_of(tz, mid) >= naive {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}
