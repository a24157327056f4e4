//! Evaluation: settings in force at an instant, transitions between two instants, next
//! write touching a setting. See `docs/schedule.md` for the policies.
//!
//! Here: the writes (defaults, profile entries, rule firings) and their order, and the
//! [`Schedule`] queries built on them. `cursor`: [`Cursor`], the incremental evaluation for
//! a clock moving forward. `size`: the evaluator's approximate memory.

mod cursor;
mod size;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Timelike, Utc};

use super::calendar::{Calendar, DayRef};
use super::tz::{local_of, localize};
use super::{DayKind, InForce, Schedule, SettingInForce, Source, Transition};

pub use cursor::Cursor;
pub(crate) use size::approx_size;

/// Marks a day whose UTC offset changes (DST switch): its times go through [`localize`].
pub(crate) const IRREGULAR_DAY: i64 = i64::MIN;

pub(crate) fn instant(ts: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(ts, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Total order of writes: instant, then defaults < profile entries < rules, then day and
/// entry (or rule index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    at: i64,
    class: u8,
    day: u32,
    idx: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Defaults,
    Entry { day: u32, entry: u32 },
    Rule { rule: u32 },
}

#[derive(Debug, Clone, Copy)]
struct Write {
    rank: Rank,
    origin: Origin,
}

impl Write {
    fn defaults(at: i64) -> Self {
        Write {
            rank: Rank {
                at,
                class: 0,
                day: 0,
                idx: 0,
            },
            origin: Origin::Defaults,
        }
    }

    fn entry(at: i64, day: usize, entry: usize) -> Self {
        let (day, entry) = (day as u32, entry as u32);
        Write {
            rank: Rank {
                at,
                class: 1,
                day,
                idx: entry,
            },
            origin: Origin::Entry { day, entry },
        }
    }

    fn rule(at: i64, rule: usize) -> Self {
        let rule = rule as u32;
        Write {
            rank: Rank {
                at,
                class: 2,
                day: 0,
                idx: rule,
            },
            origin: Origin::Rule { rule },
        }
    }
}

fn keys_of(mask: u64) -> impl Iterator<Item = usize> {
    (0..64).filter(move |k| mask & (1u64 << k) != 0)
}

impl Schedule {
    fn days(&self) -> usize {
        self.day_profile.len()
    }

    /// Index of a local date in validity, clamped to the first/last day.
    fn day_index_clamped(&self, d: NaiveDate) -> usize {
        let i = (d - self.valid_from).num_days();
        i.clamp(0, self.days().saturating_sub(1) as i64) as usize
    }

    fn date_of(&self, day: usize) -> NaiveDate {
        self.valid_from + Duration::days(day as i64)
    }

    fn profile_of(&self, day: usize) -> Option<&super::CProfile> {
        self.day_profile
            .get(day)
            .and_then(|&p| self.profiles.get(p as usize))
    }

    fn local_day(&self, ts: i64) -> usize {
        self.day_index_clamped(local_of(&self.tz, ts).date())
    }

    fn entry_instant(&self, day: usize, time: chrono::NaiveTime) -> i64 {
        match self.day_base.get(day) {
            // a day without an offset change: plain arithmetic
            Some(&base) if base != IRREGULAR_DAY => {
                base + i64::from(time.num_seconds_from_midnight())
            }
            _ => localize(&self.tz, self.date_of(day).and_time(time)).0,
        }
    }

    fn sets_of(&self, origin: Origin) -> &[(u8, serde_json::Value)] {
        match origin {
            Origin::Defaults => &self.defaults,
            Origin::Entry { day, entry } => self
                .profile_of(day as usize)
                .and_then(|p| p.entries.get(entry as usize))
                .map(|e| e.sets.as_slice())
                .unwrap_or(&[]),
            Origin::Rule { rule } => self
                .rules
                .get(rule as usize)
                .map(|r| r.sets.as_slice())
                .unwrap_or(&[]),
        }
    }

    fn calendar(&self) -> Calendar<'_> {
        Calendar {
            seasons: &self.seasons,
            holidays: &self.holidays,
            exceptions: &self.exceptions,
        }
    }

    /// Why local day `d` runs the profile it runs.
    pub fn day_kind(&self, d: NaiveDate) -> Option<DayKind> {
        let (_, r) = self.calendar().resolve(d)?;
        let season = |i: usize| {
            self.seasons
                .get(i)
                .map(|s| s.name.clone())
                .unwrap_or_default()
        };
        Some(match r {
            DayRef::Exception(i) => DayKind::Exception {
                name: self
                    .exceptions
                    .get(i)
                    .map(|e| e.name.clone())
                    .unwrap_or_default(),
            },
            DayRef::Holiday(h, s) => DayKind::Holiday {
                name: self
                    .holidays
                    .get(h)
                    .map(|h| h.1.clone())
                    .unwrap_or_default(),
                season: season(s),
            },
            DayRef::Weekday(s) => DayKind::Weekday { season: season(s) },
            DayRef::Saturday(s) => DayKind::Saturday { season: season(s) },
            DayRef::Sunday(s) => DayKind::Sunday { season: season(s) },
        })
    }

    /// The name of the profile that runs on local day `d` (within validity).
    pub fn profile_on(&self, d: NaiveDate) -> Option<&str> {
        if d < self.valid_from || d > self.valid_to {
            return None;
        }
        self.profile_of(self.day_index_clamped(d))
            .map(|p| p.name.as_str())
    }

    fn source_of(&self, origin: Origin) -> Source {
        match origin {
            Origin::Defaults => Source::Defaults,
            Origin::Rule { rule } => Source::Rule {
                rule: self
                    .rules
                    .get(rule as usize)
                    .map(|r| r.name.clone())
                    .unwrap_or_default(),
            },
            Origin::Entry { day, entry } => {
                let date = self.date_of(day as usize);
                let profile = self.profile_of(day as usize);
                let time = profile
                    .and_then(|p| p.entries.get(entry as usize))
                    .map(|e| {
                        let (h, m, sec) = (e.time.hour(), e.time.minute(), e.time.second());
                        if sec == 0 {
                            format!("{h:02}:{m:02}")
                        } else {
                            format!("{h:02}:{m:02}:{sec:02}")
                        }
                    })
                    .unwrap_or_default();
                Source::Profile {
                    profile: profile.map(|p| p.name.clone()).unwrap_or_default(),
                    time,
                    date,
                    day: self.day_kind(date).unwrap_or(DayKind::Exception {
                        name: String::new(),
                    }),
                }
            }
        }
    }

    fn transition_of(&self, w: Write) -> Transition {
        Transition {
            at: instant(w.rank.at),
            local: local_of(&self.tz, w.rank.at),
            source: self.source_of(w.origin),
            settings: self
                .sets_of(w.origin)
                .iter()
                .filter_map(|(k, v)| Some((self.keys.get(*k as usize)?.clone(), v.clone())))
                .collect(),
        }
    }

    /// The entries of day `day`'s profile that write `key`: entry index and instant, in
    /// time order.
    fn entries_writing(
        &self,
        day: usize,
        key: usize,
    ) -> impl DoubleEndedIterator<Item = (usize, i64)> + '_ {
        let entries = self
            .profile_of(day)
            .map_or(&[][..], |p| p.entries.as_slice());
        entries
            .iter()
            .enumerate()
            .filter(move |(_, entry)| entry.mask & (1 << key) != 0)
            .map(move |(ei, entry)| (ei, self.entry_instant(day, entry.time)))
    }

    /// Last write at or before `ts` for each key (index = key id).
    fn last_writes(&self, ts: i64) -> Vec<Option<Write>> {
        let mut best: Vec<Option<Write>> = vec![None; self.keys.len()];
        let offer = |best: &mut Vec<Option<Write>>, key: usize, w: Write| {
            if let Some(slot) = best.get_mut(key)
                && slot.is_none_or(|old| old.rank < w.rank)
            {
                *slot = Some(w);
            }
        };
        if self.start <= ts {
            for key in keys_of(self.defaults_mask) {
                offer(&mut best, key, Write::defaults(self.start));
            }
        }
        let last_day = (self.local_day(ts) + 1).min(self.days().saturating_sub(1));
        for (key, days) in self.key_days.iter().enumerate() {
            // the days whose profile writes `key`, latest first
            let n = days.partition_point(|&d| usize::from(d) <= last_day);
            let last = days[..n].iter().rev().find_map(|&day| {
                let day = usize::from(day);
                let mut writes = self.entries_writing(day, key).rev();
                writes
                    .find(|&(_, at)| at <= ts)
                    .map(|(ei, at)| Write::entry(at, day, ei))
            });
            if let Some(w) = last {
                offer(&mut best, key, w);
            }
        }
        for (ri, rule) in self.rules.iter().enumerate() {
            let n = rule.fires.partition_point(|&f| f <= ts);
            if let Some(&at) = n.checked_sub(1).and_then(|i| rule.fires.get(i)) {
                for key in keys_of(rule.mask) {
                    offer(&mut best, key, Write::rule(at, ri));
                }
            }
        }
        best
    }

    /// First write strictly after `ts` for each key in `want` (index = key id).
    fn next_writes(&self, ts: i64, want: u64) -> Vec<Option<i64>> {
        let mut next: Vec<Option<i64>> = vec![None; self.keys.len()];
        let offer = |next: &mut Vec<Option<i64>>, key: usize, at: i64| {
            if let Some(slot) = next.get_mut(key)
                && slot.is_none_or(|old| at < old)
            {
                *slot = Some(at);
            }
        };
        if ts < self.start {
            for key in keys_of(self.defaults_mask & want) {
                offer(&mut next, key, self.start);
            }
        }
        let first_day = if ts < self.start {
            0
        } else {
            self.local_day(ts).saturating_sub(1)
        };
        for key in keys_of(want) {
            let Some(days) = self.key_days.get(key) else {
                continue;
            };
            // the days whose profile writes `key`, earliest first
            let n = days.partition_point(|&d| usize::from(d) < first_day);
            let first = days[n..].iter().find_map(|&day| {
                let mut writes = self.entries_writing(usize::from(day), key);
                writes.find(|&(_, at)| at > ts).map(|(_, at)| at)
            });
            if let Some(at) = first {
                offer(&mut next, key, at);
            }
        }
        for rule in &self.rules {
            if rule.mask & want == 0 {
                continue;
            }
            let n = rule.fires.partition_point(|&f| f <= ts);
            if let Some(&at) = rule.fires.get(n) {
                for key in keys_of(rule.mask & want) {
                    offer(&mut next, key, at);
                }
            }
        }
        next
    }

    /// The settings in force at `t`: per key its value, since when, what wrote it and the
    /// next write touching it. Empty outside validity. A gateway that reboots at 13:07
    /// gets the 13:00 entry's values with `since` = 13:00.
    pub fn settings_at(&self, t: DateTime<Utc>) -> InForce {
        let ts = t.timestamp();
        if !(self.start..self.end).contains(&ts) {
            return InForce {
                at: t,
                within_validity: false,
                settings: BTreeMap::new(),
            };
        }
        let last = self.last_writes(ts);
        let found = last
            .iter()
            .enumerate()
            .filter(|(_, w)| w.is_some())
            .fold(0u64, |m, (k, _)| m | (1 << k));
        let next = self.next_writes(ts, found);
        let mut settings = BTreeMap::new();
        // several keys usually share one write: build each source once
        let mut sources: Vec<(Origin, Source)> = Vec::with_capacity(4);
        for (key, w) in last.iter().enumerate() {
            let Some(w) = w else { continue };
            let Some(value) = self
                .sets_of(w.origin)
                .iter()
                .find(|(k, _)| *k as usize == key)
                .map(|(_, v)| v.clone())
            else {
                continue;
            };
            let Some(name) = self.keys.get(key) else {
                continue;
            };
            settings.insert(
                name.clone(),
                SettingInForce {
                    value,
                    since: instant(w.rank.at),
                    source: match sources.iter().find(|(o, _)| *o == w.origin) {
                        Some((_, source)) => source.clone(),
                        None => {
                            let source = self.source_of(w.origin);
                            sources.push((w.origin, source.clone()));
                            source
                        }
                    },
                    next_transition: next.get(key).copied().flatten().map(instant),
                },
            );
        }
        InForce {
            at: t,
            within_validity: true,
            settings,
        }
    }

    /// The first write touching `key` strictly after `after`, within validity. An operator
    /// override of `key` without `until` lasts until then.
    pub fn next_transition_touching(
        &self,
        key: &str,
        after: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let id = self.keys.iter().position(|k| k == key)?;
        self.next_writes(after.timestamp(), 1 << id)
            .get(id)
            .copied()
            .flatten()
            .map(instant)
    }

    fn writes_between(&self, lo: i64, hi: i64) -> Vec<Write> {
        let lo = lo.max(self.start);
        let hi = hi.min(self.end);
        let mut writes = Vec::new();
        if lo >= hi {
            return writes;
        }
        if (lo..hi).contains(&self.start) && self.defaults_mask != 0 {
            writes.push(Write::defaults(self.start));
        }
        let first_day = self.local_day(lo).saturating_sub(1);
        let last_day = (self.local_day(hi) + 1).min(self.days().saturating_sub(1));
        for day in first_day..=last_day {
            let Some(profile) = self.profile_of(day) else {
                continue;
            };
            for (ei, entry) in profile.entries.iter().enumerate() {
                let at = self.entry_instant(day, entry.time);
                if (lo..hi).contains(&at) {
                    writes.push(Write::entry(at, day, ei));
                }
            }
        }
        for (ri, rule) in self.rules.iter().enumerate() {
            let a = rule.fires.partition_point(|&f| f < lo);
            let b = rule.fires.partition_point(|&f| f < hi);
            for &at in rule.fires.get(a..b).unwrap_or(&[]) {
                writes.push(Write::rule(at, ri));
            }
        }
        writes.sort_by_key(|w| w.rank);
        writes
    }

    /// Every write with `from <= at < to`, in order (at equal instants: defaults, profile
    /// entries, rules). The start of validity is a transition writing the defaults.
    pub fn transitions(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Transition> {
        self.writes_between(from.timestamp(), to.timestamp())
            .into_iter()
            .map(|w| self.transition_of(w))
            .collect()
    }

    /// Number of writes with `from <= at < to`, without building them (cheap).
    pub fn count_transitions(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> usize {
        self.writes_between(from.timestamp(), to.timestamp()).len()
    }

    /// The first transitions strictly after `after` (all writes at that same instant), or
    /// an empty list when none is left within validity. The edge sleeps until then.
    pub fn next_transitions(&self, after: DateTime<Utc>) -> Vec<Transition> {
        let mut lo = after.timestamp().saturating_add(1).max(self.start);
        while lo < self.end {
            let hi = lo + 8 * 86_400;
            let writes = self.writes_between(lo, hi);
            if let Some(first) = writes.first() {
                let at = first.rank.at;
                return writes
                    .into_iter()
                    .take_while(|w| w.rank.at == at)
                    .map(|w| self.transition_of(w))
                    .collect();
            }
            lo = hi;
        }
        Vec::new()
    }
}
