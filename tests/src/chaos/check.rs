//! The campaign's invariants, as pure functions of what was observed from outside: the
//! edge's outbox counters, the seqs the cloud stored, the PLC register over time and when
//! each edge, link and PLC was up.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A stream (telemetry or events) of one device: what the edge committed against what the
/// cloud stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamCheck {
    /// Last seq the edge committed.
    pub committed: u64,
    /// Records the edge dropped (quota, undecodable) and reported as `data_dropped`.
    pub dropped: u64,
    /// Distinct seqs in `1..=committed` the cloud holds.
    pub stored: u64,
    /// Seqs in `1..=committed` the cloud lacks beyond what the edge dropped.
    pub lost: u64,
    /// Extra copies of a seq the cloud holds.
    pub duplicated: u64,
}

impl StreamCheck {
    /// Compares the cloud's seqs (any order, repeats as stored) with the edge's counters.
    /// Seqs after `committed` (taken after the edge's counters were read) are ignored. The
    /// edge may count as dropped a record already delivered (its deletion was still
    /// pending), so up to `dropped` missing seqs are explained, no more.
    pub fn of(committed: u64, dropped: u64, cloud_seqs: &[u64]) -> Self {
        let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
        for &s in cloud_seqs.iter().filter(|&&s| (1..=committed).contains(&s)) {
            *counts.entry(s).or_default() += 1;
        }
        let stored = counts.len() as u64;
        let duplicated = counts.values().map(|n| n - 1).sum();
        let missing = committed - stored;
        Self {
            committed,
            dropped,
            stored,
            lost: missing.saturating_sub(dropped),
            duplicated,
        }
    }

    /// Whether every record is accounted for.
    pub fn complete(&self) -> bool {
        self.lost == 0 && self.duplicated == 0
    }
}

/// A yes/no state over time (an edge running, a link up, a PLC healthy).
#[derive(Debug, Clone)]
pub struct Track {
    initial: bool,
    changes: Vec<(DateTime<Utc>, bool)>,
}

impl Track {
    pub fn new(initial: bool) -> Self {
        Self {
            initial,
            changes: Vec::new(),
        }
    }

    /// Records the state from `t` on (calls in time order).
    pub fn set(&mut self, t: DateTime<Utc>, up: bool) {
        self.changes.push((t, up));
    }

    /// The state at `t`.
    pub fn at(&self, t: DateTime<Utc>) -> bool {
        self.changes
            .iter()
            .take_while(|(c, _)| *c <= t)
            .last()
            .map_or(self.initial, |(_, up)| *up)
    }

    /// Whether the state was `true` throughout `[from, to]`.
    pub fn up_through(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
        self.at(from)
            && self
                .changes
                .iter()
                .filter(|(c, _)| *c > from && *c <= to)
                .all(|(_, up)| *up)
    }

    /// Up exactly when both are up.
    pub fn and(&self, other: &Track) -> Track {
        let mut times: Vec<DateTime<Utc>> = self
            .changes
            .iter()
            .chain(&other.changes)
            .map(|(t, _)| *t)
            .collect();
        times.sort();
        times.dedup();
        let mut out = Track::new(self.initial && other.initial);
        for t in times {
            out.set(t, self.at(t) && other.at(t));
        }
        out
    }

    /// Whether the state was `true` throughout `[t - span, t]`.
    pub fn up_for(&self, t: DateTime<Utc>, span: Duration) -> bool {
        self.up_through(t - span, t)
    }
}

/// What the schedule check found for one edge.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScheduleCheck {
    /// Transitions that passed while the edge and its PLC were up.
    pub transitions: u32,
    /// Of those, how many passed while the edge's link was down (offline).
    pub offline: u32,
    /// Transitions whose value the PLC held within the settle time.
    pub reached: u32,
    /// Observations of the register taken when edge and PLC had been up for the settle
    /// time and no transition was that recent.
    pub checked: u32,
    /// Those where the register did not hold the schedule's value: (when, seen, expected).
    pub wrong: Vec<(DateTime<Utc>, u16, u16)>,
    /// Transitions that were not reached: (when, value).
    pub missed: Vec<(DateTime<Utc>, u16)>,
}

impl ScheduleCheck {
    /// `observed`: the register over time (time order); `transitions`: the schedule's
    /// writes (time, raw value), in order; `healthy`: edge running and PLC answering;
    /// `link`: edge's link up; `settle`: how long the edge may take to write the PLC.
    pub fn of(
        observed: &[(DateTime<Utc>, u16)],
        transitions: &[(DateTime<Utc>, u16)],
        healthy: &Track,
        link: &Track,
        settle: Duration,
        until: DateTime<Utc>,
    ) -> Self {
        let in_force = |t: DateTime<Utc>| {
            transitions
                .iter()
                .take_while(|(at, _)| *at <= t)
                .last()
                .copied()
        };
        let settle_c = chrono::Duration::from_std(settle).unwrap_or_default();
        let mut out = Self::default();
        for &(at, value) in transitions {
            if at + settle_c > until
                || !healthy.up_through(at - chrono::Duration::seconds(1), at + settle_c)
            {
                continue;
            }
            out.transitions += 1;
            if !link.at(at) {
                out.offline += 1;
            }
            let reached = observed
                .iter()
                .any(|(t, v)| *t >= at && *t <= at + settle_c && *v == value);
            if reached {
                out.reached += 1;
            } else {
                out.missed.push((at, value));
            }
        }
        for &(t, seen) in observed {
            let Some((since, expected)) = in_force(t) else {
                continue;
            };
            if t - since < settle_c || !healthy.up_for(t, settle) {
                continue;
            }
            out.checked += 1;
            if seen != expected {
                out.wrong.push((t, seen, expected));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).expect("time")
    }

    #[test]
    fn a_gap_beyond_the_drops_is_lost_and_a_repeat_is_duplicated() {
        let all: Vec<u64> = (1..=10).collect();
        assert!(StreamCheck::of(10, 0, &all).complete());
        // Seqs after the edge's counters were read do not count.
        assert!(StreamCheck::of(8, 0, &all).complete());

        let gap = [1, 2, 3, 6, 7, 8, 9, 10];
        let c = StreamCheck::of(10, 0, &gap);
        assert_eq!((c.stored, c.lost, c.duplicated), (8, 2, 0));
        // Two reported drops explain the gap; one does not.
        assert!(StreamCheck::of(10, 2, &gap).complete());
        assert_eq!(StreamCheck::of(10, 1, &gap).lost, 1);
        // Drops of records already delivered explain nothing and hide nothing.
        assert!(StreamCheck::of(10, 5, &all).complete());

        let dup = [1, 2, 2, 3, 3, 3];
        let c = StreamCheck::of(3, 0, &dup);
        assert_eq!((c.stored, c.lost, c.duplicated), (3, 0, 3));
        assert!(!c.complete());
    }

    #[test]
    fn a_track_knows_its_state_at_any_time_and_over_a_span() {
        let mut tr = Track::new(true);
        tr.set(t(10), false);
        tr.set(t(20), true);
        assert!(tr.at(t(5)) && !tr.at(t(10)) && !tr.at(t(15)) && tr.at(t(20)));
        assert!(tr.up_through(t(0), t(9)));
        assert!(!tr.up_through(t(0), t(10)));
        assert!(!tr.up_through(t(15), t(25)));
        assert!(tr.up_through(t(20), t(30)));
        assert!(tr.up_for(t(30), Duration::from_secs(10)));
        assert!(!tr.up_for(t(25), Duration::from_secs(10)));
    }

    #[test]
    fn the_schedule_check_finds_a_missed_transition_and_a_wrong_value() {
        let transitions = [(t(0), 75), (t(60), 85), (t(120), 75)];
        let healthy = Track::new(true);
        let mut link = Track::new(true);
        link.set(t(50), false);
        link.set(t(70), true);
        let settle = Duration::from_secs(5);
        // The register follows the schedule within 2 s.
        let good: Vec<_> = (0..180)
            .map(|s| {
                let v = match s {
                    0..62 => 75,
                    62..122 => 85,
                    _ => 75,
                };
                (t(s), v)
            })
            .collect();
        let c = ScheduleCheck::of(&good, &transitions, &healthy, &link, settle, t(180));
        assert_eq!((c.transitions, c.offline, c.reached), (3, 1, 3));
        assert!(c.wrong.is_empty() && c.missed.is_empty(), "{c:?}");
        assert!(c.checked > 150);

        // The transition at 60 s never reaches the PLC.
        let missed: Vec<_> = good
            .iter()
            .map(|&(at, v)| (at, if v == 85 { 75 } else { v }))
            .collect();
        let c = ScheduleCheck::of(&missed, &transitions, &healthy, &link, settle, t(180));
        assert_eq!(c.missed, vec![(t(60), 85)]);
        assert!(!c.wrong.is_empty());

        // While the edge is down, neither counts against it.
        let mut down = Track::new(true);
        down.set(t(55), false);
        down.set(t(100), true);
        let c = ScheduleCheck::of(&missed, &transitions, &down, &link, settle, t(180));
        assert!(c.missed.is_empty(), "{c:?}");
        // Once it has been up for the settle time, a wrong value counts.
        assert!(c.wrong.iter().all(|(at, _, _)| *at >= t(105)), "{c:?}");
        assert!(!c.wrong.is_empty());
    }
}
