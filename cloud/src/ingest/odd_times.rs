//! Samples stamped with a time no correct gateway clock shows: before any release of Shiki
//! (an RTC reset to 1970 after a power cut; `shiki_shared::clock::plausible`) or more than
//! [`FUTURE_TOLERANCE`] ahead of the cloud's clock.
//!
//! They are stored like every sample (under their seq, with the time the gateway gave: the
//! values are real, and the seq places them between their neighbours), never dropped (a
//! PostgreSQL store's retention keeps the months before the first release). But charts and
//! time queries put them at that time, so each one is counted (`shiki_ingest_implausible_time_total`) and the device is named in a warning at
//! most once per [`WARN_EVERY`] per device, saying what to fix. A current edge holds and
//! re-times such samples itself (docs/operations.md §2), so they come only from an edge
//! whose clock stayed unset longer than its hold, or from older edges.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use shiki_proto::DeviceId;

/// How far ahead of the cloud's clock a sample's time may be (clock drift, a slow link).
pub const FUTURE_TOLERANCE: TimeDelta = TimeDelta::hours(1);
/// The longest a device with implausible sample times goes without a warning.
pub const WARN_EVERY: Duration = Duration::from_secs(3600);
/// Devices remembered for [`WARN_EVERY`]; past this the memory starts over.
const MAX_TRACKED: usize = 4096;

/// Whether a sample stamped `ts` arriving at the cloud's `now` has an implausible time.
pub fn implausible(ts: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    shiki_shared::clock::plausible(ts).is_err() || ts - now > FUTURE_TOLERANCE
}

/// The implausible sample times of one payload.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OddTimes {
    pub count: usize,
    /// The first one's seq and time.
    pub first: Option<(u64, DateTime<Utc>)>,
}

impl OddTimes {
    /// Counts the sample `seq` stamped `ts` if its time is implausible at `now`.
    pub fn note(&mut self, seq: u64, ts: DateTime<Utc>, now: DateTime<Utc>) {
        if implausible(ts, now) {
            self.count += 1;
            self.first.get_or_insert((seq, ts));
        }
    }
}

/// When each device's implausible times were last logged.
#[derive(Debug, Default)]
pub struct OddTimeLog {
    last: Mutex<HashMap<DeviceId, (Instant, usize)>>,
}

impl OddTimeLog {
    /// Logs `odd` of `device` unless it was logged less than [`WARN_EVERY`] before `mono`
    /// (then it is counted into the next warning); `true` when it was logged.
    pub fn report(
        &self,
        device: &DeviceId,
        odd: &OddTimes,
        now: DateTime<Utc>,
        mono: Instant,
    ) -> bool {
        let Some((seq, ts)) = odd.first else {
            return false;
        };
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if last.len() >= MAX_TRACKED && !last.contains_key(device) {
            last.clear();
        }
        let since = match last.get_mut(device) {
            Some((at, held)) if mono.saturating_duration_since(*at) < WARN_EVERY => {
                *held += odd.count;
                return false;
            }
            Some((_, held)) => std::mem::take(held),
            None => 0,
        };
        last.insert(device.clone(), (mono, 0));
        let why = if ts > now {
            format!(
                "more than {} min ahead of the cloud's clock ({now})",
                FUTURE_TOLERANCE.num_minutes()
            )
        } else {
            format!(
                "before {}, earlier than any release of the edge software",
                shiki_shared::clock::earliest_plausible().to_rfc3339()
            )
        };
        tracing::warn!(
            device_id = %device,
            samples = odd.count + since,
            first_seq = seq,
            first_ts = %ts,
            "telemetry stamped {ts}, {why}: the gateway's clock is wrong (RTC reset after a power \
             cut, no NTP). The samples are stored under their seq with that time, so charts and \
             time queries place them there; fix the gateway's NTP server and RTC battery, and \
             use its clock_step events for the step that corrects these times"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("test time")
    }

    #[test]
    fn times_before_any_release_or_an_hour_ahead_are_implausible() {
        let now = at("2027-06-01T04:00:00Z");
        for (ts, odd) in [
            ("1970-01-01T00:00:00Z", true),
            ("2000-01-01T00:00:00Z", true),
            ("2026-01-01T00:00:00Z", false),
            ("2027-05-01T00:00:00Z", false),
            ("2027-06-01T05:00:00Z", false),
            ("2027-06-01T05:00:01Z", true),
            ("2106-02-07T06:28:15Z", true),
        ] {
            assert_eq!(implausible(at(ts), now), odd, "{ts}");
        }
    }

    #[test]
    fn each_device_is_named_at_most_once_an_hour() {
        let log = OddTimeLog::default();
        let now = at("2027-06-01T04:00:00Z");
        let m0 = Instant::now();
        let a = DeviceId::new("gw-a").expect("id");
        let b = DeviceId::new("gw-b").expect("id");
        let mut odd = OddTimes::default();
        odd.note(7, at("1970-01-01T00:01:00Z"), now);
        odd.note(8, now, now);
        assert_eq!(
            (odd.count, odd.first),
            (1, Some((7, at("1970-01-01T00:01:00Z"))))
        );
        assert!(
            !log.report(&a, &OddTimes::default(), now, m0),
            "nothing to say"
        );
        assert!(log.report(&a, &odd, now, m0));
        assert!(!log.report(&a, &odd, now, m0 + Duration::from_secs(60)));
        assert!(log.report(&b, &odd, now, m0 + Duration::from_secs(60)));
        assert!(log.report(&a, &odd, now, m0 + WARN_EVERY));
    }
}
