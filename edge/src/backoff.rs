//! Capped exponential backoff, shared by the PLC link (reconnects to the PLC) and the uplink
//! (reconnects to the broker). Plain code, no timers: the caller asks for the next delay and
//! schedules it.

use std::time::Duration;

use rand::Rng;

/// Capped exponential backoff: attempt `n` has the ceiling `min(max, min * 2^n)`.
///
/// [`Backoff::exact`] waits the ceiling itself (the PLC link: one PLC, the operator reads
/// "reconnecting in 4 s"); [`Backoff::jittered`] waits a random time in `[ceiling/2, ceiling]`
/// (the uplink: many gateways must not reconnect to one broker in step).
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    jitter: bool,
}

impl Backoff {
    /// `min`, 2×, 4×, … up to `max`, exactly.
    pub fn exact(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            attempt: 0,
            jitter: false,
        }
    }

    /// Like [`Backoff::exact`], each delay drawn from the upper half below the ceiling.
    pub fn jittered(min: Duration, max: Duration) -> Self {
        Self {
            jitter: true,
            ..Self::exact(min, max)
        }
    }

    /// The longest delay the next attempt may wait.
    pub fn ceiling(&self) -> Duration {
        self.min
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max)
    }

    /// The delay before the next attempt; doubles the ceiling of the one after.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        if !self.jitter {
            return ceiling;
        }
        let half = ceiling / 2;
        let jitter_ms = rand::rng().random_range(0..=half.as_millis().max(1) as u64);
        half + Duration::from_millis(jitter_ms).min(ceiling - half)
    }

    /// After a successful attempt: the next delay is `min` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn exact_backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::exact(100 * MS, 1000 * MS);
        let delays: Vec<_> = (0..6).map(|_| b.next_delay()).collect();
        assert_eq!(
            delays,
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
        b.reset();
        assert_eq!(b.next_delay(), 100 * MS);
    }

    #[test]
    fn jittered_backoff_stays_in_the_upper_half_below_the_ceiling_and_resets() {
        let mut b = Backoff::jittered(100 * MS, 2000 * MS);
        for attempt in 0..8u32 {
            let ceiling = (100 * MS * 2u32.pow(attempt)).min(2000 * MS);
            assert_eq!(b.ceiling(), ceiling, "attempt {attempt}");
            let d = b.next_delay();
            assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
        }
        assert_eq!(b.ceiling(), 2000 * MS);
        b.reset();
        assert!(b.next_delay() <= 100 * MS);
    }

    #[test]
    fn a_maximum_below_the_minimum_is_raised_to_it() {
        let mut b = Backoff::exact(500 * MS, 100 * MS);
        assert_eq!((b.next_delay(), b.next_delay()), (500 * MS, 500 * MS));
    }

    #[test]
    fn many_attempts_never_overflow() {
        let mut b = Backoff::exact(Duration::from_secs(1), Duration::from_secs(3600));
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.next_delay(), Duration::from_secs(3600));
    }
}
