//! The edge's schedule state machine: no actix, no clock, no I/O. Every method takes the
//! instant it runs at and returns [`Effects`] for the actor shell to carry out.
//!
//! # Slots and switching
//! - `current` runs while `now` lies within its validity; `next` waits.
//! - A `schedule/set` for slot `current` replaces the running schedule at once; one for
//!   slot `next` is stored and takes over when the current validity ends (or at once when
//!   no current schedule is installed). The switch happens on the edge's own clock, offline.
//! - A document that fails (unparsable, id or hash mismatch, invalid, validity already
//!   over, a `next` that would never run) is refused in the ack with every problem; the
//!   old schedules keep running untouched.
//! - Re-sending a schedule that is already installed (the cloud retries until it sees the
//!   ack) is acknowledged again with no other effect.
//!
//! # What the Control actor gets
//! [`ScheduleSettings`] with the settings in force now: per key its value, `since` (the last
//! write touching it) and `next_change` (the next write touching it, or the end of validity
//! when none is left: the value stops being scheduled there). Outside validity, or with no
//! schedule, `schedule` is `None` and `settings` empty. It is sent at start-up (after a
//! reboot mid-day: the settings in force now), whenever the result changes, and never twice
//! unchanged in a row.
//!
//! # Events
//! - `ScheduleTransition` (info) for every write that passed since the previous evaluation,
//!   stamped with the transition instant; at most [`MAX_TRANSITION_EVENTS`] per evaluation
//!   (the latest ones) plus one summary when more were skipped (clock jumps). None for the
//!   past at start-up or when a new current schedule is installed.
//! - `ScheduleChanged` for an install (info), a switch at the boundary (info), a refusal
//!   (warning), and a stored schedule that could not be restored (critical).
//! - `ClockStep` when the clock turns implausible (warning) and when it is plausible again
//!   (info); see below.
//!
//! # When the clock steps
//! The schedule follows the edge's clock; what a step does (docs/operations.md §2):
//! - **Forwards** past transitions: the settings in force at the new time are sent once
//!   (Control writes only what differs from the PLC, so a key touched by several skipped
//!   transitions is written once, with the latest value). Every skipped transition is still
//!   reported as a `ScheduleTransition` event at its own instant (at most
//!   [`MAX_TRANSITION_EVENTS`] and a summary); one reached more than [`LATE_AFTER`] after its
//!   instant says so and carries `applied_at`, since its values were not written at `at`.
//! - **Backwards** across a transition: the settings in force at the new, earlier time are
//!   sent once, with no event; when the clock passes the transition again it is applied and
//!   reported again. That is what the step implies: the PLC sees the older value for as
//!   long as the clock shows the older time.
//! - **Forwards past the end of validity, then back** (a wrong NTP answer): the switch to
//!   the next schedule is undone when the clock goes back before the next one starts, as
//!   long as no newer next schedule was installed meanwhile (both slots hold one each); a
//!   `ScheduleChanged` warning says so. Held in memory only: a reboot in between keeps the
//!   switch.
//! - **To an implausible time** (`shiki_shared::clock::plausible`: before any release, as
//!   after an RTC reset to 1970, or after 2100): nothing is evaluated, no schedule is switched
//!   and no transition is reported. Control gets the settings last in force marked `held`
//!   (none after a start-up at such a time), so it writes neither other schedule values nor
//!   `[control.defaults]`: the PLC keeps what it holds. When the clock is plausible again
//!   the schedule resumes as after a forward step from the last plausible evaluation (or, after
//!   a start-up at an implausible time, as at start-up: the settings in force, no past events).

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use shiki_proto::{
    AckResult, ActiveSchedule, EventKind, PROTOCOL_VERSION, PointInfo, ScheduleAck, ScheduleSet,
    ScheduleSlot, Severity,
};
use shiki_shared::clock::{ImplausibleTime, plausible};
use shiki_shared::schedule::{Schedule, ScheduleDocument, ScheduleError, Settings, Transition};

use super::store::{StoredSchedule, StoredSchedules};
use crate::messages::{RecordEvent, ScheduleSettings, ScheduledValue};

/// Most `ScheduleTransition` events emitted by one evaluation (a clock jump or a long
/// power-off would otherwise flood the outbox).
pub const MAX_TRANSITION_EVENTS: usize = 100;
/// A transition evaluated this long after its instant (a clock step forwards, a pause) is
/// reported as late, with the instant its values were really applied.
pub const LATE_AFTER: TimeDelta = TimeDelta::seconds(60);
/// Most problems spelled out in a refusal's reason (the rest are counted).
pub const MAX_REASON_PROBLEMS: usize = 20;

/// What the actor shell must do after a step, in this order: persist (and only if that
/// succeeds) publish the ack, then send the settings and record the events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    /// Save both slots (a schedule was installed or switched).
    pub persist: Option<StoredSchedules>,
    /// Publish on `schedule/ack`.
    pub ack: Option<ScheduleAck>,
    /// Send to the Control actor (changed since the last one sent).
    pub settings: Option<ScheduleSettings>,
    /// Send to the outbox.
    pub events: Vec<RecordEvent>,
}

impl Effects {
    fn merge(&mut self, other: Effects) {
        if other.persist.is_some() {
            self.persist = other.persist;
        }
        if other.ack.is_some() {
            self.ack = other.ack;
        }
        if other.settings.is_some() {
            self.settings = other.settings;
        }
        self.events.extend(other.events);
    }
}

#[derive(Debug, Clone)]
struct Loaded {
    schedule: Schedule,
    stored: StoredSchedule,
}

impl Loaded {
    fn active(&self) -> ActiveSchedule {
        ActiveSchedule {
            id: self.stored.id.clone(),
            hash: self.stored.hash.clone(),
        }
    }
}

/// The current and next schedule and what was last sent to Control.
#[derive(Debug, Clone, Default)]
pub struct ScheduleState {
    current: Option<Loaded>,
    next: Option<Loaded>,
    /// The instant of the previous evaluation at a plausible time; transitions after it are
    /// reported.
    last_eval: Option<DateTime<Utc>>,
    last_sent: Option<ScheduleSettings>,
    /// The clock read an implausible time at the last evaluation: the schedule holds.
    holding: bool,
    /// The schedule the last switch replaced (in memory only), restored when the clock goes
    /// back before the new one starts while the next slot is free: that switch followed a
    /// wrong step forwards.
    previous: Option<Loaded>,
}

impl ScheduleState {
    /// Rebuilds the state from the store at start-up and evaluates `now`: the effects
    /// always carry the settings in force now (also after a reboot mid-day). A stored
    /// schedule that no longer validates against `catalog` (e.g. the register map changed)
    /// keeps running, with a warning event: the Control actor still refuses unknown points.
    /// One that cannot be read at all is dropped with a critical event.
    pub fn restore(
        stored: StoredSchedules,
        catalog: Option<&[PointInfo]>,
        now: DateTime<Utc>,
    ) -> (Self, Effects) {
        let mut fx = Effects::default();
        let mut state = ScheduleState::default();
        let mut dropped = false;
        for (slot, doc) in [("current", stored.current), ("next", stored.next)] {
            let Some(doc) = doc else { continue };
            match restore_slot(&doc, catalog) {
                Ok((loaded, warning)) => {
                    if let Some(w) = warning {
                        fx.events.push(RecordEvent::new(
                            now,
                            EventKind::ScheduleChanged,
                            Severity::Warning,
                            format!("stored {slot} schedule {} {w}; running it anyway", doc.id),
                            json!({"slot": slot, "schedule_id": doc.id, "hash": doc.hash}),
                        ));
                    }
                    if slot == "current" {
                        state.current = Some(loaded);
                    } else {
                        state.next = Some(loaded);
                    }
                }
                Err(reason) => {
                    tracing::error!(slot, id = %doc.id, %reason, "stored schedule dropped");
                    dropped = true;
                    fx.events.push(RecordEvent::new(
                        now,
                        EventKind::ScheduleChanged,
                        Severity::Critical,
                        format!("stored {slot} schedule {} cannot be used: {reason}", doc.id),
                        json!({"slot": slot, "schedule_id": doc.id, "hash": doc.hash}),
                    ));
                }
            }
        }
        let eval = state.evaluate(now, false);
        fx.merge(eval);
        if dropped && fx.persist.is_none() {
            fx.persist = Some(state.stored());
        }
        (state, fx)
    }

    /// The installed current schedule (running, or waiting for its validity to start).
    pub fn current(&self) -> Option<&Schedule> {
        self.current.as_ref().map(|l| &l.schedule)
    }

    /// The installed next schedule.
    pub fn next(&self) -> Option<&Schedule> {
        self.next.as_ref().map(|l| &l.schedule)
    }

    /// The schedule in force at `now` (reported in shadow/reported), if any.
    pub fn active(&self, now: DateTime<Utc>) -> Option<ActiveSchedule> {
        self.current
            .as_ref()
            .filter(|c| c.schedule.covers(now))
            .map(Loaded::active)
    }

    /// Both slots as they should be stored.
    pub fn stored(&self) -> StoredSchedules {
        StoredSchedules {
            current: self.current.as_ref().map(|l| l.stored.clone()),
            next: self.next.as_ref().map(|l| l.stored.clone()),
        }
    }

    /// A `schedule/set` arrived: validate, install, ack. See the module docs.
    pub fn on_schedule_set(
        &mut self,
        msg: &ScheduleSet,
        catalog: Option<&[PointInfo]>,
        now: DateTime<Utc>,
    ) -> Effects {
        // Same hash claimed *and* the document really hashes to it.
        let genuine = ScheduleDocument::from_value(&msg.document)
            .is_ok_and(|d| d.id == msg.schedule_id && d.hash().eq_ignore_ascii_case(&msg.hash));
        let installed = |l: &Option<Loaded>| {
            genuine
                && l.as_ref()
                    .is_some_and(|l| l.stored.hash.eq_ignore_ascii_case(&msg.hash))
        };
        let already = match msg.slot {
            ScheduleSlot::Current => installed(&self.current),
            ScheduleSlot::Next => installed(&self.next) || installed(&self.current),
            ScheduleSlot::Unknown => false,
        };
        if already {
            tracing::debug!(id = %msg.schedule_id, "schedule already installed; acking again");
            return Effects {
                ack: Some(ack(msg, AckResult::Accepted, None, now)),
                ..Effects::default()
            };
        }
        let loaded = match self.check(msg, catalog, now) {
            Ok(loaded) => loaded,
            Err(problems) => {
                let reason = reason_of(&problems);
                tracing::warn!(id = %msg.schedule_id, %reason, "schedule refused");
                return Effects {
                    ack: Some(ack(msg, AckResult::Rejected, Some(reason.clone()), now)),
                    events: vec![RecordEvent::new(
                        now,
                        EventKind::ScheduleChanged,
                        Severity::Warning,
                        format!("schedule {} refused: {reason}", msg.schedule_id),
                        json!({"schedule_id": msg.schedule_id, "hash": msg.hash,
                               "slot": msg.slot, "problems": problems}),
                    )],
                    ..Effects::default()
                };
            }
        };
        let id = loaded.stored.id.clone();
        let data = json!({"schedule_id": id, "hash": msg.hash, "slot": msg.slot,
                          "valid_from": loaded.schedule.valid_from(),
                          "valid_to": loaded.schedule.valid_to()});
        let message = if msg.slot == ScheduleSlot::Current {
            let old = self.current.replace(loaded);
            self.previous = None;
            // The new schedule's past is not reported: only what happens from now on (from
            // when the clock is plausible again, if it is not now).
            self.last_eval = plausible(now).ok();
            match old {
                Some(old) => format!("schedule {id} installed, replacing {}", old.stored.id),
                None => format!("schedule {id} installed"),
            }
        } else {
            let from = self
                .current
                .as_ref()
                .map_or(loaded.schedule.start(), |c| c.schedule.end());
            self.next = Some(loaded);
            format!("schedule {id} stored as next; takes over at {from}")
        };
        tracing::info!(%message);
        let mut fx = Effects {
            persist: Some(self.stored()),
            ack: Some(ack(msg, AckResult::Accepted, None, now)),
            settings: None,
            events: vec![RecordEvent::new(
                now,
                EventKind::ScheduleChanged,
                Severity::Info,
                message,
                data,
            )],
        };
        let eval = self.evaluate(now, true);
        fx.merge(eval);
        fx.persist = Some(self.stored());
        fx
    }

    /// Re-evaluates at `now`: reports the transitions since the previous evaluation,
    /// switches to the next schedule when the current validity has ended, and sends the
    /// settings in force when they changed.
    pub fn on_tick(&mut self, now: DateTime<Utc>) -> Effects {
        self.evaluate(now, true)
    }

    /// When to evaluate again: the next transition of the current schedule, the start or
    /// end of its validity (the switch to `next`), whichever comes first. `None` when
    /// nothing is left to happen.
    pub fn next_wakeup(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Some(cur) = &self.current else {
            return self.next.as_ref().map(|_| now);
        };
        let s = &cur.schedule;
        let transition = s.next_transitions(now).first().map(|t| t.at);
        let start = Some(s.start()).filter(|t| *t > now);
        let end = Some(s.end()).filter(|t| *t > now);
        let switch_overdue = self.next.is_some() && now >= s.end();
        [transition, start, end, switch_overdue.then_some(now)]
            .into_iter()
            .flatten()
            .min()
    }

    /// The ack and event to publish instead when the store could not save an accepted
    /// schedule (the shell restores the previous state).
    pub fn store_failed(msg: &ScheduleSet, error: &str, now: DateTime<Utc>) -> Effects {
        let reason = format!("the edge could not store the schedule: {error}");
        Effects {
            ack: Some(ack(msg, AckResult::Rejected, Some(reason.clone()), now)),
            events: vec![RecordEvent::new(
                now,
                EventKind::ScheduleChanged,
                Severity::Critical,
                format!("schedule {} refused: {reason}", msg.schedule_id),
                json!({"schedule_id": msg.schedule_id, "hash": msg.hash, "slot": msg.slot}),
            )],
            ..Effects::default()
        }
    }

    fn check(
        &self,
        msg: &ScheduleSet,
        catalog: Option<&[PointInfo]>,
        now: DateTime<Utc>,
    ) -> Result<Loaded, Vec<String>> {
        let mut problems = Vec::new();
        if msg.slot == ScheduleSlot::Unknown {
            problems.push("unknown slot (expected current or next)".to_owned());
        }
        let doc = ScheduleDocument::from_value(&msg.document).map_err(|e| {
            let mut p = problems.clone();
            p.push(e.to_string());
            p
        })?;
        if doc.id != msg.schedule_id {
            problems.push(format!(
                "schedule_id `{}` differs from the document's id `{}`",
                msg.schedule_id, doc.id
            ));
        }
        let hash = doc.hash();
        if !hash.eq_ignore_ascii_case(&msg.hash) {
            problems.push(format!(
                "hash mismatch: the message says {} but the document hashes to {hash}",
                msg.hash
            ));
        }
        let schedule = match Schedule::new(&doc, catalog) {
            Ok(s) => Some(s),
            Err(ScheduleError::Invalid {
                problems: found, ..
            }) => {
                problems.extend(found.iter().map(ToString::to_string));
                None
            }
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        };
        if let Some(s) = &schedule {
            if now >= s.end() {
                problems.push(format!(
                    "validity ended on {} (before now, {now})",
                    s.valid_to()
                ));
            }
            if msg.slot == ScheduleSlot::Next
                && let Some(cur) = &self.current
                && s.end() <= cur.schedule.end()
            {
                problems.push(format!(
                    "as next schedule it would never run: it ends on {}, the current \
                     schedule {} runs until {}",
                    s.valid_to(),
                    cur.stored.id,
                    cur.schedule.valid_to()
                ));
            }
        }
        match schedule {
            Some(schedule) if problems.is_empty() => Ok(Loaded {
                stored: StoredSchedule {
                    id: doc.id.clone(),
                    hash,
                    document: doc.to_value(),
                },
                schedule,
            }),
            _ => Err(problems),
        }
    }

    /// The clock reads an implausible time: send Control the settings last in force, marked
    /// held (once), and say so the first time. Nothing else changes.
    fn hold(&mut self, now: DateTime<Utc>, why: ImplausibleTime) -> Effects {
        let mut fx = Effects::default();
        let held = ScheduleSettings {
            held: true,
            ..self.last_sent.clone().unwrap_or_default()
        };
        if !self.holding {
            self.holding = true;
            let active = held
                .schedule
                .as_ref()
                .map(|a| a.id.as_str())
                .unwrap_or("none");
            let message = format!(
                "schedule held: {why}. The PLC keeps the settings it holds (schedule {active}, \
                 {} scheduled values, no defaults) until the clock is set",
                held.settings.len()
            );
            tracing::warn!(%message);
            fx.events.push(RecordEvent::new(
                now,
                EventKind::ClockStep,
                Severity::Warning,
                message,
                json!({"clock": now, "held": true, "schedule": held.schedule,
                       "last_evaluated": self.last_eval}),
            ));
        }
        if self.last_sent.as_ref() != Some(&held) {
            self.last_sent = Some(held.clone());
            fx.settings = Some(held);
        }
        fx
    }

    fn evaluate(&mut self, now: DateTime<Utc>, report: bool) -> Effects {
        if let Err(why) = plausible(now) {
            return self.hold(now, why);
        }
        let mut fx = Effects::default();
        if std::mem::take(&mut self.holding) {
            let message = format!(
                "the clock reads {} again, a plausible time: the schedule resumes with the \
                 settings in force now",
                now.to_rfc3339()
            );
            tracing::info!(%message);
            fx.events.push(RecordEvent::new(
                now,
                EventKind::ClockStep,
                Severity::Info,
                message,
                json!({"clock": now, "held": false, "last_evaluated": self.last_eval}),
            ));
        }
        let last = self.last_eval.filter(|l| report && *l < now);
        let mut passed: Vec<(ActiveSchedule, Transition)> = Vec::new();
        if let (Some(last), Some(cur)) = (last, &self.current) {
            let lo = last.timestamp() + 1;
            passed.extend(transitions(cur, lo, now));
        }
        if self.next.is_none()
            && self
                .previous
                .as_ref()
                .is_some_and(|p| now < p.schedule.end())
            && self
                .current
                .as_ref()
                .is_some_and(|c| now < c.schedule.start())
        {
            fx.events.extend(self.switch_back(now));
            fx.persist = Some(self.stored());
        }
        if self.next.is_some()
            && self
                .current
                .as_ref()
                .is_none_or(|c| now >= c.schedule.end())
        {
            let old = self.current.take();
            self.current = self.next.take();
            if let Some(new) = &self.current {
                let boundary = old.as_ref().map(|o| o.schedule.end());
                let message = match &old {
                    Some(o) => format!(
                        "switched from schedule {} to {}",
                        o.stored.id, new.stored.id
                    ),
                    None => format!("switched to schedule {}", new.stored.id),
                };
                tracing::info!(%message);
                fx.events.push(RecordEvent::new(
                    boundary.unwrap_or(now).min(now),
                    EventKind::ScheduleChanged,
                    Severity::Info,
                    message,
                    json!({"schedule_id": new.stored.id, "hash": new.stored.hash,
                           "previous": old.as_ref().map(Loaded::active),
                           "valid_from": new.schedule.valid_from(),
                           "valid_to": new.schedule.valid_to()}),
                ));
                if let Some(last) = last {
                    let lo =
                        (last.timestamp() + 1).max(boundary.map_or(i64::MIN, |b| b.timestamp()));
                    passed.extend(transitions(new, lo, now));
                }
            }
            self.previous = old;
            fx.persist = Some(self.stored());
        }
        let skipped = passed.len().saturating_sub(MAX_TRANSITION_EVENTS);
        if skipped > 0 {
            tracing::warn!(skipped, "too many transitions since the last evaluation");
            fx.events.push(RecordEvent::new(
                now,
                EventKind::ScheduleTransition,
                Severity::Warning,
                format!("{skipped} schedule transitions since {} not reported one by one (clock jump or long pause)",
                    last.map(|l| l.to_rfc3339()).unwrap_or_default()),
                json!({"skipped": skipped}),
            ));
        }
        for (active, t) in passed.into_iter().skip(skipped) {
            fx.events.push(transition_event(&active, &t, now));
        }
        let settings = self.settings_now(now);
        if self.last_sent.as_ref() != Some(&settings) {
            self.last_sent = Some(settings.clone());
            fx.settings = Some(settings);
        }
        self.last_eval = Some(now);
        fx
    }

    /// Undoes the last switch (see `previous`): the replaced schedule runs again and the one
    /// that replaced it waits as next.
    fn switch_back(&mut self, now: DateTime<Utc>) -> Option<RecordEvent> {
        let back = self.previous.take()?;
        let ahead = self.current.replace(back);
        self.next = ahead;
        let (back, ahead) = (self.current.as_ref()?, self.next.as_ref()?);
        let message = format!(
            "switched back from schedule {} to {}: the clock went back to {}, before {} \
             starts, so the switch at {} followed a clock step past {}'s end",
            ahead.stored.id,
            back.stored.id,
            now.to_rfc3339(),
            ahead.stored.id,
            back.schedule.end().to_rfc3339(),
            back.stored.id
        );
        tracing::warn!(%message);
        Some(RecordEvent::new(
            now,
            EventKind::ScheduleChanged,
            Severity::Warning,
            message,
            json!({"schedule_id": back.stored.id, "hash": back.stored.hash,
                   "next": ahead.active(), "clock": now}),
        ))
    }

    fn settings_now(&self, now: DateTime<Utc>) -> ScheduleSettings {
        let Some(cur) = self.current.as_ref().filter(|c| c.schedule.covers(now)) else {
            return ScheduleSettings::default();
        };
        let end = cur.schedule.end();
        let settings = cur
            .schedule
            .settings_at(now)
            .settings
            .into_iter()
            .map(|(k, s)| {
                let v = ScheduledValue {
                    value: s.value,
                    since: s.since,
                    next_change: Some(s.next_transition.unwrap_or(end)),
                };
                (k, v)
            })
            .collect();
        ScheduleSettings {
            schedule: Some(cur.active()),
            settings,
            held: false,
        }
    }
}

/// Transitions of `l` with `lo <= at <= now` (Unix seconds for `lo`).
fn transitions(l: &Loaded, lo: i64, now: DateTime<Utc>) -> Vec<(ActiveSchedule, Transition)> {
    let (Some(from), Some(to)) = (
        DateTime::<Utc>::from_timestamp(lo, 0),
        DateTime::<Utc>::from_timestamp(now.timestamp().saturating_add(1), 0),
    ) else {
        return Vec::new();
    };
    if from >= to {
        return Vec::new();
    }
    let active = l.active();
    l.schedule
        .transitions(from, to)
        .into_iter()
        .map(|t| (active.clone(), t))
        .collect()
}

fn restore_slot(
    doc: &StoredSchedule,
    catalog: Option<&[PointInfo]>,
) -> Result<(Loaded, Option<String>), String> {
    let parsed = ScheduleDocument::from_value(&doc.document).map_err(|e| e.to_string())?;
    let hash = parsed.hash();
    if hash != doc.hash {
        return Err(format!(
            "stored hash {} differs from the document's hash {hash}",
            doc.hash
        ));
    }
    let loaded = |schedule| Loaded {
        schedule,
        stored: doc.clone(),
    };
    match Schedule::new(&parsed, catalog) {
        Ok(s) => Ok((loaded(s), None)),
        Err(with_catalog) if catalog.is_some() => match Schedule::new(&parsed, None) {
            Ok(s) => Ok((
                loaded(s),
                Some(format!(
                    "no longer fits the device's points ({with_catalog})"
                )),
            )),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    }
}

fn reason_of(problems: &[String]) -> String {
    let mut reason = problems
        .iter()
        .take(MAX_REASON_PROBLEMS)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > MAX_REASON_PROBLEMS {
        reason.push_str(&format!(
            "; and {} more",
            problems.len() - MAX_REASON_PROBLEMS
        ));
    }
    reason
}

fn ack(
    msg: &ScheduleSet,
    result: AckResult,
    reason: Option<String>,
    now: DateTime<Utc>,
) -> ScheduleAck {
    ScheduleAck {
        v: PROTOCOL_VERSION,
        schedule_id: msg.schedule_id.clone(),
        hash: msg.hash.clone(),
        result,
        reason,
        ts: now,
    }
}

fn fmt_settings(settings: &Settings) -> String {
    settings
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The event of transition `t`, evaluated at `now`: late when `now` is more than
/// [`LATE_AFTER`] past it (its values reached Control only at `now`, and only those still
/// in force then).
fn transition_event(active: &ActiveSchedule, t: &Transition, now: DateTime<Utc>) -> RecordEvent {
    let mut message = format!(
        "schedule {}: {} set {}",
        active.id,
        t.source,
        fmt_settings(&t.settings)
    );
    let mut data = json!({"schedule_id": active.id, "hash": active.hash, "at": t.at,
                          "local": t.local, "source": t.source, "settings": t.settings});
    if now - t.at > LATE_AFTER {
        message.push_str(&format!(
            " (due {}, reached {} after a clock step or pause: only the values still in \
             force then were written)",
            t.at.to_rfc3339(),
            now.to_rfc3339()
        ));
        data["applied_at"] = json!(now);
    }
    RecordEvent::new(
        t.at,
        EventKind::ScheduleTransition,
        Severity::Info,
        message,
        data,
    )
}
