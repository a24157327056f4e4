//! A log line that repeats as fast as a failure does (a store commit that keeps failing)
//! goes through at most once per period, with the number of repeats held back.

use std::time::{Duration, Instant};

/// Lets an event through at most once per period: the first at once, then the first one
/// after each period has passed.
#[derive(Debug)]
pub struct Throttle {
    period: Duration,
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            last: None,
            held: 0,
        }
    }

    /// `Some(held back since the last one let through)` when this one goes through.
    pub fn pass(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < self.period)
        {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_goes_through_then_one_per_period_with_the_count_held_back() {
        let mut t = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.pass(t0), Some(0));
        assert_eq!(t.pass(t0 + Duration::from_secs(1)), None);
        assert_eq!(t.pass(t0 + Duration::from_secs(9)), None);
        assert_eq!(t.pass(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(t.pass(t0 + Duration::from_secs(11)), None);
        assert_eq!(t.pass(t0 + Duration::from_secs(25)), Some(1));
    }
}
