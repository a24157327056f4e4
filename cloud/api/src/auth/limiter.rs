//! [`FailedAuthLimiter`]: after too many failed authentications from one client address
//! within a window, that address is locked out (429 with `Retry-After`) for a while, with
//! a good token too: a token guesser must not learn which of its guesses was right.
//!
//! Why not a crate such as `governor`: its GCRA gives a smooth rate (one more attempt every
//! `window / max` once the burst is spent), not a lockout; it cannot ask "is this address
//! locked?" without spending a cell, which a request with a good token must not do; and
//! what it reports is when the next cell frees, not when the lockout ends. What is needed
//! here is small: a sliding window of failure instants per address, a lockout end, and a
//! bound on the addresses kept.
//!
//! The state machine ([`FailureBook`]) takes "now" as an argument, so it is tested with
//! instants the test makes; [`FailedAuthLimiter`] holds it behind a mutex for the workers.
//!
//! Addresses: an IPv4 address (or an IPv4-mapped IPv6 one) counts alone; an IPv6 address
//! counts by its /64, the block one subscriber is usually given, so an attacker cannot
//! step through its own addresses.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many failures lock an address out, within what window, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedAuthLimits {
    /// Failed authentications within `window` that lock the address out (at least 1).
    pub max_failures: u32,
    /// The sliding window the failures are counted in.
    pub window: Duration,
    /// How long a locked-out address is refused.
    pub lockout: Duration,
    /// Most addresses remembered; beyond it the least recently failing one is forgotten.
    pub max_addresses: usize,
}

impl Default for FailedAuthLimits {
    fn default() -> Self {
        Self {
            max_failures: 10,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(300),
            max_addresses: 10_000,
        }
    }
}

/// An address is locked out: retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockedOut {
    pub retry_after: Duration,
}

impl LockedOut {
    /// `Retry-After` in whole seconds, rounded up (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        secs.max(1)
    }
}

/// What failures are counted under: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    V4([u8; 4]),
    V6Prefix([u8; 8]),
}

impl From<IpAddr> for ClientKey {
    fn from(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(v4) => ClientKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(v4.octets()),
                None => ClientKey::V6Prefix(prefix64(&v6)),
            },
        }
    }
}

fn prefix64(v6: &Ipv6Addr) -> [u8; 8] {
    let o = v6.octets();
    [o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]]
}

/// One address's recent failures and lockout.
#[derive(Debug, Default)]
struct Entry {
    /// Instants of the failures within the window, oldest first (at most `max_failures`).
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
    /// The last failure (what eviction orders by).
    last_failure: Option<Instant>,
}

impl Entry {
    /// Nothing left to remember at `now`: not locked, no failure within the window.
    fn idle(&self, now: Instant, window: Duration) -> bool {
        self.locked_until.is_none_or(|t| t <= now)
            && self
                .failures
                .back()
                .is_none_or(|t| now.saturating_duration_since(*t) >= window)
    }
}

/// The limiter's state, without a clock or a lock: every method takes "now".
#[derive(Debug)]
pub struct FailureBook {
    limits: FailedAuthLimits,
    entries: HashMap<ClientKey, Entry>,
}

impl FailureBook {
    pub fn new(limits: FailedAuthLimits) -> Self {
        Self {
            limits: FailedAuthLimits {
                max_failures: limits.max_failures.max(1),
                max_addresses: limits.max_addresses.max(1),
                ..limits
            },
            entries: HashMap::new(),
        }
    }

    /// Whether `key` may try to authenticate at `now`. An ended lockout is forgotten here.
    pub fn check(&mut self, key: ClientKey, now: Instant) -> Result<(), LockedOut> {
        let Some(entry) = self.entries.get_mut(&key) else {
            return Ok(());
        };
        match entry.locked_until {
            Some(until) if until > now => Err(LockedOut {
                retry_after: until - now,
            }),
            Some(_) => {
                entry.locked_until = None;
                if entry.idle(now, self.limits.window) {
                    self.entries.remove(&key);
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Records a failed authentication of `key` at `now`; `Some` when this failure locks
    /// the address out.
    pub fn record_failure(&mut self, key: ClientKey, now: Instant) -> Option<LockedOut> {
        if !self.entries.contains_key(&key) {
            self.make_room(now);
        }
        let limits = self.limits;
        let entry = self.entries.entry(key).or_default();
        entry.last_failure = Some(now);
        if entry.locked_until.is_some_and(|t| t > now) {
            // Failures during a lockout do not lengthen it (they are refused before).
            return None;
        }
        while entry
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= limits.window)
        {
            entry.failures.pop_front();
        }
        entry.failures.push_back(now);
        if entry.failures.len() < limits.max_failures as usize {
            return None;
        }
        entry.failures.clear();
        entry.locked_until = Some(now + limits.lockout);
        Some(LockedOut {
            retry_after: limits.lockout,
        })
    }

    /// Addresses remembered now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Before remembering one more address: when full, forget the idle ones, and if that
    /// is not enough, the one whose last failure is oldest.
    fn make_room(&mut self, now: Instant) {
        if self.entries.len() < self.limits.max_addresses {
            return;
        }
        let window = self.limits.window;
        self.entries.retain(|_, e| !e.idle(now, window));
        while self.entries.len() >= self.limits.max_addresses {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_failure)
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => {
                    self.entries.remove(&k);
                }
                None => break,
            }
        }
    }
}

/// [`FailureBook`] shared by the API's workers, on the monotonic clock.
#[derive(Debug)]
pub struct FailedAuthLimiter {
    book: Mutex<FailureBook>,
}

impl FailedAuthLimiter {
    pub fn new(limits: FailedAuthLimits) -> Self {
        Self {
            book: Mutex::new(FailureBook::new(limits)),
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, FailureBook> {
        // The book stays consistent even if a holder panicked: every method leaves it whole.
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `addr` may try to authenticate now.
    pub fn check(&self, addr: IpAddr) -> Result<(), LockedOut> {
        self.book().check(addr.into(), Instant::now())
    }

    /// Records a failed authentication from `addr`; `Some` when it locks `addr` out.
    pub fn record_failure(&self, addr: IpAddr) -> Option<LockedOut> {
        self.book().record_failure(addr.into(), Instant::now())
    }

    /// Addresses remembered now.
    pub fn tracked(&self) -> usize {
        self.book().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_failures: u32, max_addresses: usize) -> FailedAuthLimits {
        FailedAuthLimits {
            max_failures,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(300),
            max_addresses,
        }
    }

    fn v4(last: u8) -> ClientKey {
        ClientKey::from(IpAddr::from([10, 0, 0, last]))
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn the_failure_that_reaches_the_limit_locks_the_address_out_for_the_lockout() {
        let t0 = Instant::now();
        let mut book = FailureBook::new(limits(3, 100));
        assert_eq!(book.record_failure(v4(1), t0), None);
        assert_eq!(book.record_failure(v4(1), t0 + secs(1)), None);
        assert_eq!(book.check(v4(1), t0 + secs(1)), Ok(()));
        assert_eq!(
            book.record_failure(v4(1), t0 + secs(2)),
            Some(LockedOut {
                retry_after: secs(300)
            })
        );
        assert_eq!(
            book.check(v4(1), t0 + secs(12)),
            Err(LockedOut {
                retry_after: secs(290)
            })
        );
        assert_eq!(book.check(v4(1), t0 + secs(302)), Ok(()));
        // The lockout ended and the failures before it are not counted again.
        assert_eq!(book.record_failure(v4(1), t0 + secs(303)), None);
        assert_eq!(book.check(v4(1), t0 + secs(303)), Ok(()));
    }

    #[test]
    fn other_addresses_are_not_affected_by_a_lockout() {
        let t0 = Instant::now();
        let mut book = FailureBook::new(limits(1, 100));
        assert!(book.record_failure(v4(1), t0).is_some());
        assert!(book.check(v4(1), t0).is_err());
        assert_eq!(book.check(v4(2), t0), Ok(()));
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let t0 = Instant::now();
        let mut book = FailureBook::new(limits(3, 100));
        assert_eq!(book.record_failure(v4(1), t0), None);
        assert_eq!(book.record_failure(v4(1), t0 + secs(30)), None);
        // The first failure left the window at t0 + 60 s: only two remain.
        assert_eq!(book.record_failure(v4(1), t0 + secs(60)), None);
        // t0+30, t0+60, t0+89 are within one window: locked.
        assert!(book.record_failure(v4(1), t0 + secs(89)).is_some());
    }

    #[test]
    fn an_ended_lockout_with_no_recent_failure_is_forgotten() {
        let t0 = Instant::now();
        let mut book = FailureBook::new(limits(1, 100));
        assert!(book.record_failure(v4(1), t0).is_some());
        assert_eq!(book.len(), 1);
        assert_eq!(book.check(v4(1), t0 + secs(300)), Ok(()));
        assert!(book.is_empty());
    }

    #[test]
    fn memory_is_bounded_forgetting_idle_addresses_first_then_the_oldest_failure() {
        let t0 = Instant::now();
        let mut book = FailureBook::new(limits(2, 3));
        book.record_failure(v4(1), t0);
        book.record_failure(v4(2), t0 + secs(100));
        book.record_failure(v4(3), t0 + secs(101));
        assert_eq!(book.len(), 3);
        // Full: address 1's failure left the window, so it goes.
        book.record_failure(v4(4), t0 + secs(102));
        assert_eq!(book.len(), 3);
        book.record_failure(v4(1), t0 + secs(103));
        // Full and nobody idle: address 2 (oldest failure) was forgotten, 1 counts afresh.
        assert_eq!(book.len(), 3);
        assert_eq!(book.record_failure(v4(2), t0 + secs(104)), None);
        assert!(book.record_failure(v4(1), t0 + secs(105)).is_some());
        assert!(book.len() <= 3);
    }

    #[test]
    fn a_locked_out_address_keeps_its_lockout_while_others_fill_the_book() {
        let t0 = Instant::now();
        let mut book = FailureBook::new(limits(2, 2));
        book.record_failure(v4(1), t0);
        assert!(book.record_failure(v4(1), t0).is_some());
        book.record_failure(v4(2), t0);
        // Full when address 3 fails: address 2 is idle by now and goes, the lockout stays.
        book.record_failure(v4(3), t0 + secs(70));
        assert_eq!(book.len(), 2);
        assert!(book.check(v4(1), t0 + secs(71)).is_err());
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_bit_prefix_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("literal");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("literal");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("literal");
        assert_eq!(ClientKey::from(a), ClientKey::from(b));
        assert_ne!(ClientKey::from(a), ClientKey::from(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("literal");
        assert_eq!(ClientKey::from(mapped), v4(1));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_never_zero() {
        let r = |ms| LockedOut {
            retry_after: Duration::from_millis(ms),
        };
        assert_eq!(r(0).retry_after_secs(), 1);
        assert_eq!(r(1).retry_after_secs(), 1);
        assert_eq!(r(1000).retry_after_secs(), 1);
        assert_eq!(r(1001).retry_after_secs(), 2);
    }
}
