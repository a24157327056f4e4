//! Telemetry: keeps the latest [`Readings`] from the PLC link and, every telemetry
//! interval, appends one sample of every point to the outbox. It also records
//! [`RecordEvent`]s in the outbox (the outbox assigns the seq and commits before sending).
//!
//! A sample is taken at every interval even when the PLC gave no readings yet (its values
//! are then empty): the cloud sees that the gateway is alive and which minutes had no data.
//! Values are only those of the latest poll; points that failed in it are left out, and
//! readings older than `stale_after` are not repeated (the sample is then empty).
//!
//! A sample's time has the precision of the sampling: whole seconds when the interval is
//! whole seconds (one minute: `2026-07-01T03:00:00Z`), else milliseconds. Values come from
//! the PLC link already at their point's resolution.
//!
//! While the gateway's clock reads an implausible time (an RTC reset to 1970 after a power
//! cut), samples and events are held and re-timed from the monotonic clock once it is set
//! (`held`: [`Held`], bounded; docs/operations.md §2).

mod held;

pub use held::{HOLD_AT_MOST, Held, MAX_HELD};

use std::collections::BTreeMap;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use shiki_proto::PointValue;

use crate::messages::{Readings, RecordEvent, Stop};
use crate::outbox::{NewRecord, OutboxHandle, WriteOp, WriteOutcome};
use shiki_shared::clock::{Clock, SharedClock};

/// Plain settings of the telemetry actor.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    pub interval: Duration,
    /// Readings older than this are not sampled again (`None`: no limit).
    pub stale_after: Option<Duration>,
}

impl TelemetryConfig {
    /// The precision of sample times: a second when the interval is whole seconds, else a
    /// millisecond.
    pub fn ts_unit(&self) -> Duration {
        if self.interval.subsec_nanos() == 0 && !self.interval.is_zero() {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(1)
        }
    }
}

/// `ts` cut down to a whole multiple of `unit` (at least a nanosecond) since the epoch.
pub fn truncate_ts(ts: DateTime<Utc>, unit: Duration) -> DateTime<Utc> {
    let unit = i64::try_from(unit.as_nanos()).unwrap_or(i64::MAX).max(1);
    match ts.timestamp_nanos_opt() {
        Some(ns) => DateTime::from_timestamp_nanos(ns - ns.rem_euclid(unit)),
        None => ts,
    }
}

/// The sampling state, without actix.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sampler {
    latest: BTreeMap<String, PointValue>,
    latest_ts: Option<DateTime<Utc>>,
    stale_after: Option<Duration>,
    /// Precision of sample times (zero: as the clock gives them).
    ts_unit: Duration,
}

impl Sampler {
    pub fn new(stale_after: Option<Duration>) -> Self {
        Self {
            stale_after,
            ..Self::default()
        }
    }

    /// Sample times cut to `unit` (see [`TelemetryConfig::ts_unit`]).
    pub fn with_ts_unit(mut self, unit: Duration) -> Self {
        self.ts_unit = unit;
        self
    }

    pub fn on_readings(&mut self, r: &Readings) {
        self.latest = r.values.clone();
        self.latest_ts = Some(r.ts);
    }

    /// The sample to append at `now`.
    pub fn sample(&self, now: DateTime<Utc>) -> NewRecord {
        let fresh = match (self.stale_after, self.latest_ts) {
            (Some(limit), Some(ts)) => (now - ts).to_std().map_or(true, |age| age <= limit),
            _ => true,
        };
        NewRecord::Sample {
            ts: if self.ts_unit.is_zero() {
                now
            } else {
                truncate_ts(now, self.ts_unit)
            },
            values: if fresh {
                self.latest.clone()
            } else {
                BTreeMap::new()
            },
        }
    }
}

/// Ask for one sample now (used by tests and benchmarks besides the timer).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct SampleNow;

/// The telemetry actor.
#[derive(Debug)]
pub struct Telemetry {
    cfg: TelemetryConfig,
    outbox: OutboxHandle,
    clock: SharedClock,
    sampler: Sampler,
    /// Notices the wall clock stepping between samples (system clock only).
    watch: Option<shiki_shared::clock::ClockWatch>,
    /// Records made while the clock reads an implausible time.
    held: Held,
}

/// A wall-clock step smaller than this is drift or slewing, not worth an event.
const CLOCK_STEP_TOLERANCE: Duration = Duration::from_secs(2);

impl Telemetry {
    pub fn new(cfg: TelemetryConfig, outbox: OutboxHandle, clock: SharedClock) -> Self {
        Self {
            sampler: Sampler::new(cfg.stale_after).with_ts_unit(cfg.ts_unit()),
            held: Held::new(cfg.ts_unit()),
            watch: clock
                .may_step()
                .then(|| shiki_shared::clock::ClockWatch::new(CLOCK_STEP_TOLERANCE)),
            cfg,
            outbox,
            clock,
        }
    }

    /// A sample now; first an event if the wall clock stepped since the last one, so the
    /// jump in sample times is explained in the device's events.
    fn sample_now(&mut self, mono: std::time::Instant) {
        let now = self.clock.now();
        if let Some(step) = self.watch.as_mut().and_then(|w| w.observe(now, mono)) {
            let seconds = step.step.num_milliseconds() as f64 / 1000.0;
            let way = if seconds > 0.0 {
                "forwards"
            } else {
                "backwards"
            };
            tracing::warn!(step_seconds = seconds, before = %step.before, now = %step.at, "the gateway's clock stepped");
            self.append(
                NewRecord::Event {
                ts: now,
                kind: shiki_proto::EventKind::ClockStep,
                severity: shiki_proto::Severity::Warning,
                message: format!(
                    "the gateway's clock stepped {way} by {:.0} s (from {} to {}): sample and event times jump with it, and the schedule follows the new time",
                    seconds.abs(),
                    step.before.to_rfc3339(),
                    step.at.to_rfc3339()
                ),
                data: serde_json::json!({
                    "step_seconds": seconds,
                    "before": step.before,
                    "after": step.at,
                }),
            },
                now,
                mono,
            );
        }
        self.append(self.sampler.sample(now), now, mono);
    }

    /// Appends the record, made with the clock at `now` (monotonic `mono`), or holds it
    /// while `now` is implausible; see [`Held`].
    fn append(&mut self, record: NewRecord, now: DateTime<Utc>, mono: std::time::Instant) {
        for r in self.held.admit(record, now, mono) {
            self.submit(r);
        }
    }

    /// Queues the record now (so seqs follow the order of calls) and logs the outcome.
    fn submit(&self, record: NewRecord) {
        let stream = record.stream();
        let rx = self.outbox.submit(WriteOp::Append(record));
        actix::spawn(async move {
            match rx.await {
                Ok(Ok(WriteOutcome::Appended { seq, .. })) => {
                    tracing::trace!(%stream, seq, "committed")
                }
                Ok(Ok(other)) => tracing::error!(%stream, ?other, "unexpected outbox outcome"),
                Ok(Err(e)) => tracing::error!(%stream, error = %e, "record could not be committed"),
                Err(_) => tracing::error!(%stream, "record not committed: outbox writer gone"),
            }
        });
    }
}

impl Actor for Telemetry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.cfg.interval, |act, _| {
            act.sample_now(std::time::Instant::now());
        });
    }
}

impl Handler<Readings> for Telemetry {
    type Result = ();

    fn handle(&mut self, msg: Readings, _ctx: &mut Context<Self>) {
        self.sampler.on_readings(&msg);
    }
}

impl Handler<Stop> for Telemetry {
    type Result = ();

    fn handle(&mut self, _msg: Stop, ctx: &mut Context<Self>) {
        // Held records go to the outbox as they are rather than be lost.
        for r in self.held.drain() {
            self.submit(r);
        }
        ctx.stop();
    }
}

impl Handler<SampleNow> for Telemetry {
    type Result = ();

    fn handle(&mut self, _msg: SampleNow, _ctx: &mut Context<Self>) {
        self.sample_now(std::time::Instant::now());
    }
}

impl Handler<RecordEvent> for Telemetry {
    type Result = ();

    fn handle(&mut self, e: RecordEvent, _ctx: &mut Context<Self>) {
        let now = self.clock.now();
        self.append(
            NewRecord::Event {
                ts: e.ts,
                kind: e.kind,
                severity: e.severity,
                message: e.message,
                data: e.data,
            },
            now,
            std::time::Instant::now(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{OutboxOptions, RedbOutbox, Stream};
    use shiki_proto::{EventKind, Sample, Severity};
    use shiki_shared::clock::SystemClock;
    use std::sync::Arc;

    #[test]
    fn a_sample_holds_the_latest_readings() {
        let mut s = Sampler::default();
        let now = Utc::now();
        let NewRecord::Sample { values, .. } = s.sample(now) else {
            panic!("not a sample")
        };
        assert!(values.is_empty());
        let mut v = BTreeMap::new();
        v.insert("supply_c".to_owned(), PointValue::Number(7.2));
        s.on_readings(&Readings {
            ts: now,
            values: v.clone(),
            errors: BTreeMap::new(),
        });
        assert_eq!(
            s.sample(now),
            NewRecord::Sample {
                ts: now,
                values: v.clone()
            }
        );
    }

    #[test]
    fn stale_readings_are_not_repeated() {
        let mut s = Sampler::new(Some(Duration::from_secs(30)));
        let t0 = Utc::now();
        let v: BTreeMap<_, _> = [("supply_c".to_owned(), PointValue::Number(7.2))].into();
        s.on_readings(&Readings {
            ts: t0,
            values: v.clone(),
            errors: BTreeMap::new(),
        });
        let at = |secs| t0 + chrono::Duration::seconds(secs);
        assert_eq!(
            s.sample(at(30)),
            NewRecord::Sample {
                ts: at(30),
                values: v
            }
        );
        assert_eq!(
            s.sample(at(31)),
            NewRecord::Sample {
                ts: at(31),
                values: BTreeMap::new()
            }
        );
    }

    #[test]
    fn sample_times_have_the_precision_of_the_interval() {
        let at = DateTime::parse_from_rfc3339("2026-07-01T03:00:59.987654321Z")
            .expect("ts")
            .to_utc();
        let minute = TelemetryConfig {
            interval: Duration::from_secs(60),
            stale_after: None,
        };
        let fast = TelemetryConfig {
            interval: Duration::from_millis(250),
            stale_after: None,
        };
        let ts = |cfg: &TelemetryConfig| match Sampler::new(None)
            .with_ts_unit(cfg.ts_unit())
            .sample(at)
        {
            NewRecord::Sample { ts, .. } => ts.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            other => panic!("not a sample: {other:?}"),
        };
        assert_eq!(ts(&minute), "2026-07-01T03:00:59Z");
        assert_eq!(ts(&fast), "2026-07-01T03:00:59.987Z");
        let before_epoch = DateTime::from_timestamp_nanos(-1_500_000_000);
        assert_eq!(
            truncate_ts(before_epoch, Duration::from_secs(1)),
            DateTime::from_timestamp_nanos(-2_000_000_000)
        );
    }

    #[actix::test]
    async fn readings_are_sampled_at_the_interval_and_events_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            RedbOutbox::open(&dir.path().join("t.redb"), OutboxOptions::default()).expect("open");
        let (outbox, _join) = OutboxHandle::start(store).expect("start");
        let addr = Telemetry::new(
            TelemetryConfig {
                interval: Duration::from_millis(100),
                stale_after: None,
            },
            outbox.clone(),
            Arc::new(SystemClock),
        )
        .start();
        let mut values = BTreeMap::new();
        values.insert("return_c".to_owned(), PointValue::Number(12.5));
        addr.send(Readings {
            ts: Utc::now(),
            values,
            errors: BTreeMap::new(),
        })
        .await
        .expect("readings");
        addr.send(RecordEvent {
            ts: Utc::now(),
            kind: EventKind::Boot,
            severity: Severity::Info,
            message: "boot".into(),
            data: serde_json::Value::Null,
        })
        .await
        .expect("event");
        let mut committed = outbox.committed();
        tokio::time::timeout(
            Duration::from_secs(10),
            committed.wait_for(|c| c.telemetry >= 3 && c.events >= 1),
        )
        .await
        .expect("samples within 10 s")
        .expect("watch");
        let recs = outbox
            .peek_from(Stream::Telemetry, 0, 10, 1 << 20)
            .await
            .expect("peek");
        let s: Sample = serde_json::from_slice(&recs[0].body).expect("sample");
        assert_eq!(s.values.get("return_c"), Some(&PointValue::Number(12.5)));
    }

    /// A test clock that steps like the operating system's (moved by hand here).
    #[derive(Debug)]
    struct SteppingClock(shiki_shared::clock::TestClock);

    impl Clock for SteppingClock {
        fn now(&self) -> DateTime<Utc> {
            self.0.now()
        }
        fn may_step(&self) -> bool {
            true
        }
    }

    #[actix::test]
    async fn clock_steps_are_events_and_records_made_on_a_1970_clock_are_re_timed_when_it_is_set() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            RedbOutbox::open(&dir.path().join("t.redb"), OutboxOptions::default()).expect("open");
        let (outbox, _join) = OutboxHandle::start(store).expect("start");
        let wall = shiki_shared::clock::TestClock::new();
        let addr = Telemetry::new(
            TelemetryConfig {
                // The timer stays out of the way: samples are asked for.
                interval: Duration::from_secs(3600),
                stale_after: None,
            },
            outbox.clone(),
            Arc::new(SteppingClock(wall.clone())),
        )
        .start();
        addr.send(SampleNow).await.expect("first sample");
        // An RTC reset to 1970 after a power cut: the step's event and the sample are held.
        let before = wall.now();
        wall.set(DateTime::<Utc>::UNIX_EPOCH);
        addr.send(SampleNow).await.expect("second sample");
        // NTP sets the clock: the held records are re-timed and let through, then the
        // summary, the forward step and the new sample.
        let ntp = before + chrono::Duration::minutes(5);
        wall.set(ntp);
        addr.send(SampleNow).await.expect("third sample");
        let mut committed = outbox.committed();
        tokio::time::timeout(
            Duration::from_secs(10),
            committed.wait_for(|c| c.telemetry >= 3 && c.events >= 3),
        )
        .await
        .expect("committed within 10 s")
        .expect("watch");
        let events: Vec<shiki_proto::Event> = outbox
            .peek_from(Stream::Events, 0, 10, 1 << 20)
            .await
            .expect("peek")
            .iter()
            .map(|r| serde_json::from_slice(&r.body).expect("event"))
            .collect();
        assert_eq!(events.len(), 3, "{events:#?}");
        assert!(events.iter().all(|e| e.kind == EventKind::ClockStep));
        let back = &events[0];
        assert_eq!(back.severity, Severity::Warning);
        assert!(
            back.message.contains("stepped backwards"),
            "{}",
            back.message
        );
        let step = back.data["step_seconds"].as_f64().expect("step");
        let expected = -(before.timestamp() as f64);
        assert!((step - expected).abs() < 5.0, "{step} vs {expected}");
        // Re-timed: not 1970, but when it happened by the monotonic clock.
        assert!((ntp - back.ts).num_seconds().abs() < 5, "{}", back.ts);
        assert_eq!(events[1].severity, Severity::Info);
        assert_eq!(events[1].data["retimed"], 2);
        assert!(
            events[2].message.contains("stepped forwards"),
            "{}",
            events[2].message
        );
        let samples: Vec<Sample> = outbox
            .peek_from(Stream::Telemetry, 0, 10, 1 << 20)
            .await
            .expect("peek")
            .iter()
            .map(|r| serde_json::from_slice(&r.body).expect("sample"))
            .collect();
        assert_eq!(samples.len(), 3);
        assert!(
            samples
                .iter()
                .all(|s| shiki_shared::clock::plausible(s.ts).is_ok()),
            "no sample stamped 1970: {samples:?}"
        );
        assert!(samples.windows(2).all(|w| w[0].ts <= w[1].ts));
        // Without a step, no event.
        addr.send(SampleNow).await.expect("fourth sample");
        tokio::time::timeout(
            Duration::from_secs(10),
            committed.wait_for(|c| c.telemetry >= 4),
        )
        .await
        .expect("committed")
        .expect("watch");
        assert_eq!(
            outbox
                .peek_from(Stream::Events, 0, 10, 1 << 20)
                .await
                .expect("peek")
                .len(),
            3
        );
    }
}
