//! [`Cursor`]: incremental evaluation for a clock that moves forward.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

use super::{Write, instant};
use crate::schedule::{InForce, Schedule};

/// Incremental evaluation for a clock that moves forward (the edge's control loop):
/// [`Cursor::advance_to`] applies the writes that became due since the last call, so
/// stepping through a year minute by minute costs little more than the transition list.
/// Moving backwards re-seeks with [`Schedule::settings_at`]'s algorithm.
///
/// The cursor owns only its position, so an actor can keep it beside the [`Schedule`]; every
/// method takes the schedule it was made from. Given another schedule (a different hash), it
/// re-seeks on `advance_to` and reports nothing before that.
#[derive(Debug, Clone)]
pub struct Cursor {
    hash: String,
    at: i64,
    state: Vec<Option<Write>>,
    /// Writes with `at` > `self.at` and < `window_end`, in order.
    pending: VecDeque<Write>,
    window_end: i64,
}

/// How far ahead a cursor lists writes at a time.
const CURSOR_WINDOW: i64 = 7 * 86_400;

impl Schedule {
    /// A cursor positioned at `t`.
    pub fn cursor(&self, t: DateTime<Utc>) -> Cursor {
        let ts = t.timestamp();
        Cursor {
            hash: self.hash.clone(),
            at: ts,
            state: self.last_writes(ts),
            pending: VecDeque::new(),
            window_end: ts.saturating_add(1),
        }
    }
}

impl Cursor {
    /// The instant the cursor stands at.
    pub fn at(&self) -> DateTime<Utc> {
        instant(self.at)
    }

    /// Moves to `t`, applying every write of `schedule` at or before it; returns how many
    /// were applied.
    pub fn advance_to(&mut self, schedule: &Schedule, t: DateTime<Utc>) -> usize {
        let ts = t.timestamp();
        if ts < self.at || self.hash != schedule.hash {
            *self = schedule.cursor(t);
            return 0;
        }
        let mut applied = 0;
        loop {
            while let Some(w) = self.pending.front().copied() {
                if w.rank.at > ts {
                    break;
                }
                self.pending.pop_front();
                for (key, _) in schedule.sets_of(w.origin) {
                    if let Some(slot) = self.state.get_mut(usize::from(*key)) {
                        *slot = Some(w);
                    }
                }
                applied += 1;
            }
            if !self.pending.is_empty() || self.window_end > ts || self.window_end >= schedule.end {
                break;
            }
            let lo = self.window_end;
            let hi = lo.saturating_add(CURSOR_WINDOW).max(ts.saturating_add(1));
            self.pending.extend(schedule.writes_between(lo, hi));
            self.window_end = hi;
        }
        self.at = ts;
        applied
    }

    fn usable(&self, schedule: &Schedule) -> bool {
        self.hash == schedule.hash && (schedule.start..schedule.end).contains(&self.at)
    }

    /// The value of `key` in force at the cursor (none outside validity).
    pub fn value<'s>(&self, schedule: &'s Schedule, key: &str) -> Option<&'s serde_json::Value> {
        let id = schedule.keys.iter().position(|k| k == key)?;
        self.value_of(schedule, id)
    }

    fn value_of<'s>(&self, schedule: &'s Schedule, id: usize) -> Option<&'s serde_json::Value> {
        if !self.usable(schedule) {
            return None;
        }
        let w = self.state.get(id).copied().flatten()?;
        schedule
            .sets_of(w.origin)
            .iter()
            .find(|(k, _)| usize::from(*k) == id)
            .map(|(_, v)| v)
    }

    /// Every value in force at the cursor.
    pub fn values<'s>(
        &self,
        schedule: &'s Schedule,
    ) -> impl Iterator<Item = (&'s str, &'s serde_json::Value)> {
        (0..schedule.keys.len()).filter_map(move |id| {
            Some((
                schedule.keys.get(id)?.as_str(),
                self.value_of(schedule, id)?,
            ))
        })
    }

    /// Everything [`Schedule::settings_at`] says about the cursor's instant.
    pub fn in_force(&self, schedule: &Schedule) -> InForce {
        schedule.settings_at(instant(self.at))
    }
}
