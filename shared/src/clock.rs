//! Injected wall-clock time. Components take an `Arc<dyn Clock>` ([`SharedClock`]) instead
//! of calling `Utc::now()`, so tests can hold time still and move it by hand.
//!
//! ```
//! use std::time::Duration;
//! use shiki_shared::clock::{Clock, TestClock};
//!
//! let clock = TestClock::at("2026-03-01T00:00:00Z".parse().unwrap());
//! let handle = clock.clone(); // e.g. given to the component under test
//! clock.advance(Duration::from_secs(90));
//! assert_eq!(handle.now().to_rfc3339(), "2026-03-01T00:01:30+00:00");
//! ```

use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// A source of the current UTC time.
pub trait Clock: Send + Sync + Debug {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// Whether this clock can step against the monotonic clock (the operating system's,
    /// set by NTP or an RTC): only then is a [`ClockWatch`] worth running. A test clock
    /// moved by hand would look like one step after another.
    fn may_step(&self) -> bool {
        false
    }
}

/// A clock shared between components.
pub type SharedClock = Arc<dyn Clock>;

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }
    fn may_step(&self) -> bool {
        (**self).may_step()
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }
    fn may_step(&self) -> bool {
        (**self).may_step()
    }
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// The system clock as a [`SharedClock`].
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn may_step(&self) -> bool {
        true
    }
}

/// A step of the wall clock: between two observations it moved `step` more (or, negative,
/// less) than the monotonic clock did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockStep {
    /// The wall time the step was noticed at (the new time).
    pub at: DateTime<Utc>,
    /// The wall time the previous observation saw.
    pub before: DateTime<Utc>,
    pub step: TimeDelta,
}

/// Notices the wall clock stepping (an NTP correction, an RTC reset to 1970 after a power
/// cut) by comparing how far it moved between two observations with how far the monotonic
/// clock moved. A delayed observation moves both alike; slewing and drift stay under
/// `tolerance`.
#[derive(Debug, Clone)]
pub struct ClockWatch {
    tolerance: TimeDelta,
    last: Option<(DateTime<Utc>, std::time::Instant)>,
}

impl ClockWatch {
    pub fn new(tolerance: Duration) -> Self {
        Self {
            tolerance: TimeDelta::from_std(tolerance).unwrap_or(TimeDelta::MAX),
            last: None,
        }
    }

    /// Records an observation of the wall clock (`wall`) and the monotonic one (`mono`);
    /// the step since the previous observation, if one beyond the tolerance happened.
    pub fn observe(&mut self, wall: DateTime<Utc>, mono: std::time::Instant) -> Option<ClockStep> {
        let previous = self.last.replace((wall, mono));
        let (before, then) = previous?;
        let elapsed = TimeDelta::from_std(mono.saturating_duration_since(then)).ok()?;
        let step = (wall - before) - elapsed;
        (step.abs() > self.tolerance).then_some(ClockStep {
            at: wall,
            before,
            step,
        })
    }
}

/// The earliest time a correct gateway clock can show: 2026-01-01T00:00:00Z, before any
/// release of Shiki was built. A clock reading earlier has not been set (an RTC reset to
/// 1970 after a power cut, an RTC without battery starting at its chip's epoch). Raise it
/// with a release when convenient; it must never be later than the day a release is built.
pub const EARLIEST_PLAUSIBLE_SECS: i64 = 1_767_225_600;

/// The latest time a correct clock can show: 2100-01-01T00:00:00Z. A clock reading later
/// holds garbage (an RTC register overflow, a GPS week rollover gone wrong).
pub const LATEST_PLAUSIBLE_SECS: i64 = 4_102_444_800;

/// A wall-clock reading no correct clock can show (see [`plausible`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ImplausibleTime {
    #[error(
        "the clock reads {0}, before {earliest} (earlier than any release of this software): \
         it has not been set since the gateway started (RTC reset after a power cut?); \
         check that the gateway reaches its NTP server and that its RTC battery is good",
        earliest = earliest_plausible().to_rfc3339()
    )]
    BeforeRelease(DateTime<Utc>),
    #[error(
        "the clock reads {0}, after {latest}: it holds garbage; check the gateway's NTP \
         server and RTC",
        latest = latest_plausible().to_rfc3339()
    )]
    FarFuture(DateTime<Utc>),
}

/// [`EARLIEST_PLAUSIBLE_SECS`] as an instant.
pub fn earliest_plausible() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(EARLIEST_PLAUSIBLE_SECS, 0).expect("a valid constant")
}

/// [`LATEST_PLAUSIBLE_SECS`] as an instant.
pub fn latest_plausible() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(LATEST_PLAUSIBLE_SECS, 0).expect("a valid constant")
}

/// `t` if a correct clock can show it: not before [`earliest_plausible`], not after
/// [`latest_plausible`]. The edge holds its schedule and its records while its clock is
/// implausible; the cloud counts records stamped with such a time.
pub fn plausible(t: DateTime<Utc>) -> Result<DateTime<Utc>, ImplausibleTime> {
    let s = t.timestamp();
    if s < EARLIEST_PLAUSIBLE_SECS {
        Err(ImplausibleTime::BeforeRelease(t))
    } else if s >= LATEST_PLAUSIBLE_SECS {
        Err(ImplausibleTime::FarFuture(t))
    } else {
        Ok(t)
    }
}

/// A clock that only moves when told to. Clones share the same time, so a test keeps one
/// handle and gives clones to the code under test.
#[derive(Debug, Clone)]
pub struct TestClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl TestClock {
    /// A clock standing at `start`.
    pub fn at(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// A clock standing at 2026-01-01T00:00:00Z.
    pub fn new() -> Self {
        Self::at(DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default())
    }

    /// This clock (sharing its time) as a [`SharedClock`].
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }

    /// Sets the time, forwards or backwards.
    pub fn set(&self, now: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = now;
    }

    /// Moves the time forwards by `by` and returns the new time.
    pub fn advance(&self, by: Duration) -> DateTime<Utc> {
        let delta = TimeDelta::from_std(by).unwrap_or(TimeDelta::MAX);
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now = now
            .checked_add_signed(delta)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        *now
    }

    /// Moves the time by a signed `delta` (negative goes back) and returns the new time.
    pub fn advance_by(&self, delta: TimeDelta) -> DateTime<Utc> {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now = now
            .checked_add_signed(delta)
            .unwrap_or(if delta < TimeDelta::zero() {
                DateTime::<Utc>::MIN_UTC
            } else {
                DateTime::<Utc>::MAX_UTC
            });
        *now
    }
}

impl Default for TestClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_reports_steps_either_way_and_not_delays_or_drift() {
        let t0: DateTime<Utc> = "2026-12-05T10:00:00Z".parse().expect("time");
        let m0 = std::time::Instant::now();
        let secs = |s: i64| TimeDelta::seconds(s);
        let mono = |s: u64| m0 + Duration::from_secs(s);
        let mut w = ClockWatch::new(Duration::from_secs(2));
        assert_eq!(w.observe(t0, m0), None, "nothing to compare the first time");
        // A late observation moves both clocks alike; a second of drift is tolerated.
        assert_eq!(w.observe(t0 + secs(30), mono(30)), None);
        assert_eq!(w.observe(t0 + secs(61), mono(60)), None);
        // NTP steps the clock 5 minutes forwards.
        let step = w.observe(t0 + secs(371), mono(70)).expect("a forward step");
        assert_eq!(step.step, secs(300));
        assert_eq!((step.before, step.at), (t0 + secs(61), t0 + secs(371)));
        // An RTC reset to 1970 after a power cut.
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        let back = w.observe(epoch, mono(80)).expect("a backward step");
        assert_eq!(back.step, epoch - (t0 + secs(371)) - secs(10));
        assert!(back.step < TimeDelta::zero());
        assert_eq!(w.observe(epoch + secs(10), mono(90)), None, "steady again");
    }

    #[test]
    fn times_before_any_release_or_after_2100_are_implausible() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().expect("time");
        for ok in [
            "2026-01-01T00:00:00Z",
            "2027-06-01T04:07:00Z",
            "2099-12-31T23:59:59Z",
        ] {
            assert_eq!(plausible(at(ok)), Ok(at(ok)), "{ok}");
        }
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        assert_eq!(plausible(epoch), Err(ImplausibleTime::BeforeRelease(epoch)));
        let y2000 = at("2000-01-01T00:00:00Z");
        assert_eq!(plausible(y2000), Err(ImplausibleTime::BeforeRelease(y2000)));
        let late = at("2100-01-01T00:00:00Z");
        assert_eq!(plausible(late), Err(ImplausibleTime::FarFuture(late)));
        let msg = ImplausibleTime::BeforeRelease(epoch).to_string();
        assert!(msg.contains("1970-01-01") && msg.contains("NTP"), "{msg}");
        assert_eq!(earliest_plausible(), at("2026-01-01T00:00:00Z"));
        assert_eq!(latest_plausible(), late);
    }

    #[test]
    fn only_the_system_clock_may_step() {
        assert!(SystemClock.may_step());
        assert!(SystemClock::shared().may_step());
        assert!(!TestClock::new().may_step());
        assert!(!TestClock::new().shared().may_step());
    }

    #[test]
    fn test_clock_stands_still_until_moved_and_clones_share_time() {
        let clock = TestClock::new();
        let start = clock.now();
        assert_eq!(start.to_rfc3339(), "2026-01-01T00:00:00+00:00");
        let shared: SharedClock = clock.shared();
        assert_eq!(shared.now(), start);
        let after = clock.advance(Duration::from_millis(1500));
        assert_eq!(after - start, TimeDelta::milliseconds(1500));
        assert_eq!(shared.now(), after);
        clock.set(start);
        assert_eq!(shared.now(), start);
        assert_eq!(
            clock.advance_by(TimeDelta::hours(-1)),
            start - TimeDelta::hours(1)
        );
    }

    #[test]
    fn test_clock_saturates_instead_of_panicking() {
        let clock = TestClock::at(DateTime::<Utc>::MAX_UTC - TimeDelta::seconds(1));
        assert_eq!(
            clock.advance(Duration::from_secs(u64::MAX)),
            DateTime::<Utc>::MAX_UTC
        );
    }

    #[test]
    fn system_clock_is_close_to_utc_now() {
        let before = Utc::now();
        let now = SystemClock.now();
        assert!(now >= before && now <= Utc::now());
    }
}
