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
}

/// A clock shared between components.
pub type SharedClock = Arc<dyn Clock>;

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
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
