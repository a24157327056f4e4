//! Records made while the gateway's clock reads an implausible time (an RTC reset to 1970
//! after a power cut, a garbage date past 2100: `shiki_shared::clock::plausible`).
//!
//! Stamping a sample with 1970 would send it to a month the cloud keeps no partition for
//! (PostgreSQL drops it with its retention) and to the wrong end of every chart. So
//! [`Held`] keeps such records in memory with the monotonic instant they were made at, in
//! order, and, once the clock reads a plausible time, re-times each one from the monotonic
//! clock (`now - (mono_now - mono_made)`, which no wall-clock step affects) and lets them
//! through ahead of the record at hand, followed by one `clock_step` event saying how many
//! were re-timed and by how much. Their seqs are assigned then, in the order they were made.
//!
//! Holding is bounded: a record held longer than [`HOLD_AT_MOST`], or beyond
//! [`MAX_HELD`] records, goes to the outbox as it is, with its implausible time (a warning
//! event first says so, once per episode), so a clock that is never set loses nothing and
//! memory stays small; the cloud counts such records (`shiki_ingest_implausible_time_total`)
//! and logs the device. A power cut while records are held loses at most those
//! [`HOLD_AT_MOST`] minutes; a graceful stop lets them through as they are ([`Held::drain`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use shiki_proto::{EventKind, Severity};
use shiki_shared::clock::plausible;

use super::truncate_ts;
use crate::outbox::NewRecord;

/// The longest a record waits for the clock to be set before it is sent with its
/// implausible time.
pub const HOLD_AT_MOST: Duration = Duration::from_secs(15 * 60);
/// The most records held at once.
pub const MAX_HELD: usize = 10_000;

/// Records waiting for a plausible clock, oldest first.
#[derive(Debug, Default)]
pub struct Held {
    records: VecDeque<(Instant, NewRecord)>,
    /// The implausible clock reading that started this episode.
    since: Option<DateTime<Utc>>,
    /// Records of this episode let through with their implausible time.
    spilled: usize,
    /// Precision of sample times (zero: as computed).
    ts_unit: Duration,
}

fn ts_of(r: &NewRecord) -> DateTime<Utc> {
    match r {
        NewRecord::Sample { ts, .. } | NewRecord::Event { ts, .. } => *ts,
    }
}

impl Held {
    /// Re-timed sample times are cut to `unit` like every sample time.
    pub fn new(ts_unit: Duration) -> Self {
        Self {
            ts_unit,
            ..Self::default()
        }
    }

    /// How many records are held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// `record` was made with the wall clock reading `now` and the monotonic clock `mono`:
    /// what to append to the outbox now, in order (see the module docs).
    pub fn admit(
        &mut self,
        record: NewRecord,
        now: DateTime<Utc>,
        mono: Instant,
    ) -> Vec<NewRecord> {
        match plausible(now) {
            Err(why) => {
                if self.since.is_none() {
                    tracing::warn!(
                        "{why}; samples and events are held until it is set (at most {} min)",
                        HOLD_AT_MOST.as_secs() / 60
                    );
                    self.since = Some(now);
                }
                self.records.push_back((mono, record));
                self.spill(now, mono)
            }
            Ok(now) => {
                let mut out = self.release(now, mono);
                out.push(self.retime(record, now, mono, mono));
                out
            }
        }
    }

    /// Everything held, as it is (a graceful stop: the outbox keeps them).
    pub fn drain(&mut self) -> Vec<NewRecord> {
        self.since = None;
        self.spilled = 0;
        self.records.drain(..).map(|(_, r)| r).collect()
    }

    /// Records over the bounds, with their implausible times; a warning first, once.
    fn spill(&mut self, now: DateTime<Utc>, mono: Instant) -> Vec<NewRecord> {
        let mut out = Vec::new();
        while let Some((made, _)) = self.records.front() {
            let too_old = mono.saturating_duration_since(*made) > HOLD_AT_MOST;
            if !too_old && self.records.len() <= MAX_HELD {
                break;
            }
            if self.spilled == 0 {
                let message = format!(
                    "the gateway's clock has read an implausible time since {} for {} min or {} records: \
                     samples and events now go out with that time (the cloud counts them as \
                     implausible; a later clock_step event gives the step that corrects them); \
                     check the gateway's NTP server and RTC battery",
                    self.since.unwrap_or(now).to_rfc3339(),
                    HOLD_AT_MOST.as_secs() / 60,
                    MAX_HELD
                );
                tracing::warn!(%message);
                out.push(NewRecord::Event {
                    ts: now,
                    kind: EventKind::ClockStep,
                    severity: Severity::Warning,
                    message,
                    data: serde_json::json!({"clock": now, "implausible": true, "held": false}),
                });
            }
            if let Some((_, r)) = self.records.pop_front() {
                self.spilled += 1;
                out.push(r);
            }
        }
        out
    }

    /// The held records re-timed against the plausible `now`, then a summary event.
    fn release(&mut self, now: DateTime<Utc>, mono: Instant) -> Vec<NewRecord> {
        let Some(since) = self.since.take() else {
            return Vec::new();
        };
        let spilled = std::mem::take(&mut self.spilled);
        let held: Vec<_> = self.records.drain(..).collect();
        let shift = held.first().map(|(made, r)| {
            let elapsed = TimeDelta::from_std(mono.saturating_duration_since(*made))
                .unwrap_or(TimeDelta::MAX);
            (now - elapsed) - ts_of(r)
        });
        let mut out: Vec<NewRecord> = held
            .into_iter()
            .map(|(made, r)| self.retime(r, now, mono, made))
            .collect();
        let message = format!(
            "the gateway's clock reads a plausible time again ({}) after reading {}: {} samples \
             and events made meanwhile were re-timed from the monotonic clock (by about {:.0} s){}",
            now.to_rfc3339(),
            since.to_rfc3339(),
            out.len(),
            shift.map_or(0.0, |s| s.num_milliseconds() as f64 / 1000.0),
            if spilled > 0 {
                format!("; {spilled} earlier ones went out with the implausible time")
            } else {
                String::new()
            }
        );
        tracing::info!(%message);
        out.push(NewRecord::Event {
            ts: now,
            kind: EventKind::ClockStep,
            severity: Severity::Info,
            message,
            data: serde_json::json!({
                "clock": now,
                "implausible_since": since,
                "retimed": out.len(),
                "retimed_by_seconds": shift.map(|s| s.num_milliseconds() as f64 / 1000.0),
                "sent_unretimed": spilled,
            }),
        });
        out
    }

    /// `r`, made at monotonic `made`, stamped `now - (mono - made)` if its own time is
    /// implausible; as it is otherwise.
    fn retime(&self, r: NewRecord, now: DateTime<Utc>, mono: Instant, made: Instant) -> NewRecord {
        if plausible(ts_of(&r)).is_ok() {
            return r;
        }
        let elapsed =
            TimeDelta::from_std(mono.saturating_duration_since(made)).unwrap_or(TimeDelta::MAX);
        let at = now.checked_sub_signed(elapsed).unwrap_or(now);
        match r {
            NewRecord::Sample { values, .. } => NewRecord::Sample {
                ts: if self.ts_unit.is_zero() {
                    at
                } else {
                    truncate_ts(at, self.ts_unit)
                },
                values,
            },
            NewRecord::Event {
                kind,
                severity,
                message,
                data,
                ..
            } => NewRecord::Event {
                ts: at,
                kind,
                severity,
                message,
                data,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use shiki_proto::PointValue;

    use super::*;

    const EPOCH: DateTime<Utc> = DateTime::<Utc>::UNIX_EPOCH;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("test time")
    }

    fn sample(ts: DateTime<Utc>, v: f64) -> NewRecord {
        NewRecord::Sample {
            ts,
            values: BTreeMap::from([("supply_c".to_owned(), PointValue::Number(v))]),
        }
    }

    fn event(ts: DateTime<Utc>, message: &str) -> NewRecord {
        NewRecord::Event {
            ts,
            kind: EventKind::Boot,
            severity: Severity::Info,
            message: message.to_owned(),
            data: serde_json::Value::Null,
        }
    }

    #[test]
    fn records_made_on_a_1970_clock_are_held_and_re_timed_in_order_when_ntp_sets_it() {
        let m0 = Instant::now();
        let secs = |s: u64| m0 + Duration::from_secs(s);
        let mut held = Held::new(Duration::from_secs(1));
        // A plausible clock lets records through at once.
        let good = at("2027-06-01T04:00:00Z");
        assert_eq!(
            held.admit(sample(good, 7.0), good, m0),
            vec![sample(good, 7.0)]
        );
        // A power cut; the gateway boots with its RTC at 1970.
        assert_eq!(held.admit(event(EPOCH, "boot"), EPOCH, secs(100)), vec![]);
        assert_eq!(
            held.admit(
                sample(EPOCH + TimeDelta::seconds(60), 7.1),
                EPOCH + TimeDelta::seconds(60),
                secs(160)
            ),
            vec![]
        );
        assert_eq!(held.len(), 2);
        // NTP steps the clock to 04:10:00.500 at monotonic 220.5 s.
        let ntp = at("2027-06-01T04:10:00.500Z");
        let out = held.admit(
            sample(ntp, 7.2),
            ntp,
            secs(220) + Duration::from_millis(500),
        );
        assert!(held.is_empty());
        assert_eq!(out.len(), 4, "{out:#?}");
        // Re-timed from the monotonic clock: 120.5 s and 60.5 s before the NTP reading;
        // the sample cut to whole seconds like every sample.
        assert_eq!(out[0], event(at("2027-06-01T04:08:00Z"), "boot"));
        assert_eq!(out[1], sample(at("2027-06-01T04:09:00Z"), 7.1));
        let NewRecord::Event {
            kind,
            severity,
            message,
            data,
            ts,
        } = &out[2]
        else {
            panic!("a summary event: {:?}", out[2])
        };
        assert_eq!(
            (*kind, *severity, *ts),
            (EventKind::ClockStep, Severity::Info, ntp)
        );
        assert_eq!(data["retimed"], 2);
        assert!(
            message.contains("1970-01-01T00:00:00+00:00") && message.contains("re-timed"),
            "{message}"
        );
        assert_eq!(out[3], sample(ntp, 7.2), "the record at hand as it is");
        // Nothing more to say afterwards.
        let later = ntp + TimeDelta::seconds(60);
        assert_eq!(held.admit(sample(later, 7.3), later, secs(280)).len(), 1);
    }

    #[test]
    fn an_event_stamped_before_the_clock_was_set_is_re_timed_when_it_arrives_after() {
        let m0 = Instant::now();
        let mut held = Held::new(Duration::from_secs(1));
        let now = at("2027-06-01T04:10:00Z");
        let out = held.admit(event(EPOCH, "late"), now, m0);
        assert_eq!(out, vec![event(now, "late")]);
    }

    #[test]
    fn a_clock_that_is_never_set_sends_records_with_their_time_after_the_hold_limit() {
        let m0 = Instant::now();
        let mut held = Held::new(Duration::from_secs(1));
        let minute = |n: u64| {
            (
                EPOCH + TimeDelta::minutes(n as i64),
                m0 + Duration::from_secs(60 * n),
            )
        };
        for n in 0..=15 {
            let (wall, mono) = minute(n);
            assert_eq!(
                held.admit(sample(wall, n as f64), wall, mono),
                vec![],
                "minute {n}"
            );
        }
        // Minute 16: the first record is older than 15 min: a warning, then it, as it is.
        let (wall, mono) = minute(16);
        let out = held.admit(sample(wall, 16.0), wall, mono);
        assert_eq!(out.len(), 2, "{out:#?}");
        let NewRecord::Event {
            kind,
            severity,
            message,
            ..
        } = &out[0]
        else {
            panic!("a warning first: {:?}", out[0])
        };
        assert_eq!(
            (*kind, *severity),
            (EventKind::ClockStep, Severity::Warning)
        );
        assert!(message.contains("NTP"), "{message}");
        assert_eq!(out[1], sample(EPOCH, 0.0));
        // Minute 17: one more, without a second warning.
        let (wall, mono) = minute(17);
        assert_eq!(
            held.admit(sample(wall, 17.0), wall, mono),
            vec![sample(minute(1).0, 1.0)]
        );
        assert_eq!(held.len(), 16);
        // The bound on records holds too.
        let mut many = Held::new(Duration::from_secs(1));
        let mut spilled = 0;
        for _ in 0..=MAX_HELD {
            spilled += many.admit(sample(EPOCH, 0.0), EPOCH, m0).len();
        }
        assert_eq!(
            (many.len(), spilled),
            (MAX_HELD, 2),
            "one warning and one record"
        );
        // A graceful stop lets the rest through as they are.
        assert_eq!(held.drain().len(), 16);
        assert!(held.is_empty());
    }
}
