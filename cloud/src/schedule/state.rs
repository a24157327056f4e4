//! [`ScheduleSync`]: one device's current and next schedule as the cloud knows them, and
//! whether the device has confirmed each by hash. Pure: no actix, no clock, no I/O.
//!
//! # Sync status of a slot
//! ```text
//!  set ──▶ Pending{attempts, next_retry} ──ack accepted, same hash──▶ Acked{hash, at}
//!             │   ▲ due & online: publish, attempts+1,                 │ device reports
//!             │   │ next_retry = now + 1, 2, 4 … min (capped at 1 h)   │ another hash
//!             │   └─────────────────────────────────────────────────── ┘ ──▶ Pending
//!             └─ack rejected, same hash──▶ Failed{reason, at} (alert; a new set starts over)
//! ```
//! - While the device is offline nothing is published (a persistent MQTT session would
//!   deliver every queued copy on reconnect, and bytes cost money); [`ScheduleSync::on_connect`]
//!   pushes everything pending at once.
//! - An ack for another hash (an older push) is ignored: the slot stays pending.
//! - After [`SyncConfig::alert_after_attempts`] unanswered pushes an alert is raised once;
//!   the retries go on.
//! - When the current validity ends, `next` becomes `current` (the edge switches by itself at
//!   the same boundary); the status carries over.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shiki_proto::{
    AckResult, ActiveSchedule, PROTOCOL_VERSION, PointInfo, ScheduleAck, ScheduleSet, ScheduleSlot,
    Severity,
};
use shiki_shared::schedule::{Problem, ProblemKind, Schedule, ScheduleDocument};

use super::effects::{AlertKind, ScheduleAlert, ScheduleHistory, SetError, SyncEffects};
use shiki_cloud_model::schedule::{
    DeviceSchedules, SlotChoice, SlotSync, StoredSchedule, SyncStatus,
};

/// Retry and alert settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncConfig {
    /// Wait after the first push before pushing again; doubles per attempt.
    #[serde(with = "humantime_serde")]
    pub first_retry: std::time::Duration,
    /// Longest wait between pushes.
    #[serde(with = "humantime_serde")]
    pub max_retry: std::time::Duration,
    /// Raise an alert once after this many pushes without an ack.
    pub alert_after_attempts: u32,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            first_retry: std::time::Duration::from_secs(60),
            max_retry: std::time::Duration::from_secs(3600),
            alert_after_attempts: 8,
        }
    }
}

impl SyncConfig {
    /// Wait after push number `attempts` (1-based): 1, 2, 4 … minutes, capped.
    pub fn backoff(&self, attempts: u32) -> chrono::TimeDelta {
        let factor = 1u32 << attempts.saturating_sub(1).min(20);
        let wait = self.first_retry.saturating_mul(factor).min(self.max_retry);
        chrono::TimeDelta::from_std(wait).unwrap_or(chrono::TimeDelta::hours(1))
    }
}

/// One device's schedule sync. See the module docs.
#[derive(Debug, Clone)]
pub struct ScheduleSync {
    device_id: String,
    config: SyncConfig,
    slots: DeviceSchedules,
}

fn slot_key(slot: ScheduleSlot) -> &'static str {
    match slot {
        ScheduleSlot::Next => "schedule.next",
        _ => "schedule.current",
    }
}

fn summary(s: Option<&SlotSync>) -> Value {
    s.map_or(Value::Null, |s| {
        json!({"id": s.schedule.id, "hash": s.schedule.hash,
               "valid_from": s.schedule.valid_from, "valid_to": s.schedule.valid_to})
    })
}

fn error(kind: ProblemKind, path: &str, message: String) -> Problem {
    Problem {
        severity: shiki_shared::schedule::Severity::Error,
        kind,
        path: path.to_owned(),
        message,
    }
}

impl ScheduleSync {
    /// A device's sync from what the store holds (or `DeviceSchedules::default()`).
    pub fn new(device_id: impl Into<String>, config: SyncConfig, slots: DeviceSchedules) -> Self {
        Self {
            device_id: device_id.into(),
            config,
            slots,
        }
    }

    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// Both slots (what to persist, what the view shows).
    pub fn slots(&self) -> &DeviceSchedules {
        &self.slots
    }

    pub fn current(&self) -> Option<&SlotSync> {
        self.slots.current.as_ref()
    }

    pub fn next(&self) -> Option<&SlotSync> {
        self.slots.next.as_ref()
    }

    fn slot_mut(&mut self, slot: ScheduleSlot) -> &mut Option<SlotSync> {
        match slot {
            ScheduleSlot::Next => &mut self.slots.next,
            _ => &mut self.slots.current,
        }
    }

    /// Validates `document` (against the device's `catalog` when it is known), stores it in
    /// the chosen slot, records history (`actor`) and pushes it when `online`.
    pub fn set(
        &mut self,
        choice: SlotChoice,
        document: &Value,
        actor: &str,
        catalog: Option<&[PointInfo]>,
        now: DateTime<Utc>,
        online: bool,
    ) -> Result<SyncEffects, SetError> {
        let doc = ScheduleDocument::from_value(document).map_err(|e| match e {
            // A wrong shape is reported like the other problems: where, and what.
            shiki_shared::schedule::ScheduleError::Structure { path, message } => {
                SetError::Invalid {
                    problems: vec![ScheduleDocument::structure_problem(&path, &message)],
                }
            }
            other => SetError::Malformed(other.to_string()),
        })?;
        let report = doc.validate(catalog);
        if report.has_errors() {
            return Err(SetError::Invalid {
                problems: report.problems,
            });
        }
        let schedule = Schedule::new(&doc, catalog).map_err(|e| match e {
            shiki_shared::schedule::ScheduleError::Invalid { problems, .. } => {
                SetError::Invalid { problems }
            }
            other => SetError::Malformed(other.to_string()),
        })?;
        let running = self.current().filter(|c| now < c.schedule.end);
        let slot = match (choice, running) {
            (SlotChoice::Next, Some(_)) => ScheduleSlot::Next,
            (SlotChoice::Auto, Some(c)) if schedule.start() >= c.schedule.end => ScheduleSlot::Next,
            _ => ScheduleSlot::Current,
        };
        let mut problems = Vec::new();
        if now >= schedule.end() {
            problems.push(error(
                ProblemKind::DateOutsideValidity,
                "valid_to",
                format!(
                    "validity ended on {} (before now, {now})",
                    schedule.valid_to()
                ),
            ));
        }
        if let (ScheduleSlot::Next, Some(c)) = (slot, running)
            && schedule.end() <= c.schedule.end
        {
            problems.push(error(
                ProblemKind::InvalidRange,
                "valid_to",
                format!(
                    "as next schedule it would never run: it ends on {}, the current schedule \
                     {} runs until {}",
                    schedule.valid_to(),
                    c.schedule.id,
                    c.schedule.valid_to
                ),
            ));
        }
        if !problems.is_empty() {
            return Err(SetError::Invalid { problems });
        }
        let stored = StoredSchedule {
            id: doc.id.clone(),
            hash: schedule.hash().to_owned(),
            document: doc.to_value(),
            timezone: doc.timezone.clone(),
            valid_from: schedule.valid_from(),
            valid_to: schedule.valid_to(),
            start: schedule.start(),
            end: schedule.end(),
            set_by: actor.to_owned(),
            set_at: now,
        };
        let new = SlotSync {
            schedule: stored,
            status: SyncStatus::Pending {
                attempts: 0,
                next_retry: now,
            },
        };
        let old = self.slot_mut(slot).replace(new);
        tracing::info!(device_id = %self.device_id, id = %doc.id, ?slot, actor, "schedule set");
        let mut fx = SyncEffects {
            history: vec![ScheduleHistory {
                at: now,
                actor: actor.to_owned(),
                key: slot_key(slot).to_owned(),
                old: summary(old.as_ref()),
                new: summary(self.slot_mut(slot).as_ref()),
                comment: format!("schedule {} put", doc.id),
            }],
            warnings: report.problems,
            slot: Some(slot),
            ..SyncEffects::default()
        };
        if online {
            self.push(slot, now, &mut fx);
        }
        fx.persist = Some(self.slots.clone());
        Ok(fx)
    }

    /// Publishes `slot` now and moves its retry time.
    fn push(&mut self, slot: ScheduleSlot, now: DateTime<Utc>, fx: &mut SyncEffects) {
        let config = self.config.clone();
        let device_id = self.device_id.clone();
        let Some(s) = self.slot_mut(slot).as_mut() else {
            return;
        };
        let attempts = match s.status {
            SyncStatus::Pending { attempts, .. } => attempts + 1,
            _ => 1,
        };
        s.status = SyncStatus::Pending {
            attempts,
            next_retry: now + config.backoff(attempts),
        };
        fx.publish.push(ScheduleSet {
            v: PROTOCOL_VERSION,
            schedule_id: s.schedule.id.clone(),
            hash: s.schedule.hash.clone(),
            slot,
            document: s.schedule.document.clone(),
        });
        if attempts == config.alert_after_attempts {
            fx.alerts.push(ScheduleAlert {
                device_id: device_id.clone(),
                at: now,
                kind: AlertKind::NotAcknowledged,
                severity: Severity::Warning,
                message: format!(
                    "device {device_id} has not acknowledged schedule {} after {attempts} pushes",
                    s.schedule.id
                ),
            });
        }
        fx.persist = Some(self.slots.clone());
    }

    /// `schedule/ack` arrived.
    pub fn on_ack(&mut self, ack: &ScheduleAck, now: DateTime<Utc>) -> SyncEffects {
        let mut fx = SyncEffects::default();
        let device_id = self.device_id.clone();
        let slot = [ScheduleSlot::Current, ScheduleSlot::Next]
            .into_iter()
            .find(|s| {
                self.slot_mut(*s)
                    .as_ref()
                    .is_some_and(|x| x.schedule.hash.eq_ignore_ascii_case(&ack.hash))
            });
        let Some(slot) = slot else {
            tracing::info!(%device_id, id = %ack.schedule_id, hash = %ack.hash, "ack for a schedule no slot holds (stale); ignored");
            return fx;
        };
        let Some(s) = self.slot_mut(slot).as_mut() else {
            return fx;
        };
        let (status, comment) = match ack.result {
            AckResult::Accepted if s.acked() => return fx,
            AckResult::Accepted => (
                SyncStatus::Acked {
                    hash: s.schedule.hash.clone(),
                    at: now,
                },
                format!("device acknowledged schedule {}", s.schedule.id),
            ),
            AckResult::Rejected => {
                let reason = ack
                    .reason
                    .clone()
                    .unwrap_or_else(|| "no reason given".to_owned());
                if matches!(&s.status, SyncStatus::Failed { reason: r, .. } if *r == reason) {
                    return fx;
                }
                fx.alerts.push(ScheduleAlert {
                    device_id: device_id.clone(),
                    at: now,
                    kind: AlertKind::Refused,
                    severity: Severity::Critical,
                    message: format!(
                        "device {device_id} refused schedule {}: {reason}",
                        s.schedule.id
                    ),
                });
                (
                    SyncStatus::Failed {
                        reason: reason.clone(),
                        at: now,
                    },
                    format!("device refused schedule {}: {reason}", s.schedule.id),
                )
            }
            AckResult::Unknown => {
                tracing::warn!(%device_id, "ack with an unknown result ignored");
                return fx;
            }
        };
        tracing::info!(%device_id, %comment);
        s.status = status;
        fx.history.push(ScheduleHistory {
            at: now,
            actor: "device".to_owned(),
            key: slot_key(slot).to_owned(),
            old: Value::Null,
            new: serde_json::to_value(&s.status).unwrap_or(Value::Null),
            comment,
        });
        fx.persist = Some(self.slots.clone());
        fx
    }

    /// Periodic step: switch to `next` at the boundary, push what is due (only `online`).
    pub fn on_tick(&mut self, now: DateTime<Utc>, online: bool) -> SyncEffects {
        let mut fx = SyncEffects::default();
        let over = self.current().is_none_or(|c| now >= c.schedule.end);
        if over && self.slots.next.is_some() {
            let old = self.slots.current.take();
            self.slots.current = self.slots.next.take();
            fx.history.push(ScheduleHistory {
                at: now,
                actor: "schedule".to_owned(),
                key: "schedule.current".to_owned(),
                old: summary(old.as_ref()),
                new: summary(self.current()),
                comment: "the next schedule took over at the end of validity".to_owned(),
            });
            fx.persist = Some(self.slots.clone());
        }
        if online {
            for slot in [ScheduleSlot::Current, ScheduleSlot::Next] {
                let due = self.slot_mut(slot).as_ref().is_some_and(|s| {
                    matches!(s.status, SyncStatus::Pending { next_retry, .. } if next_retry <= now)
                });
                if due {
                    self.push(slot, now, &mut fx);
                }
            }
        }
        fx
    }

    /// The device (re)connected: push everything pending now.
    pub fn on_connect(&mut self, now: DateTime<Utc>) -> SyncEffects {
        let mut fx = SyncEffects::default();
        for slot in [ScheduleSlot::Current, ScheduleSlot::Next] {
            if matches!(
                self.slot_mut(slot).as_ref().map(|s| &s.status),
                Some(SyncStatus::Pending { .. })
            ) {
                self.push(slot, now, &mut fx);
            }
        }
        fx
    }

    /// The device reported which schedule it runs (shadow/reported `schedule`). If the
    /// current schedule covers `now` but the device runs another (replaced gateway, lost
    /// store), the slot goes back to pending and is pushed (when `online`).
    pub fn on_reported(
        &mut self,
        running: Option<&ActiveSchedule>,
        now: DateTime<Utc>,
        online: bool,
    ) -> SyncEffects {
        let mut fx = SyncEffects::default();
        let Some(cur) = self.slots.current.as_mut() else {
            return fx;
        };
        if !cur.schedule.covers(now) || running.is_some_and(|r| r.hash == cur.schedule.hash) {
            return fx;
        }
        if matches!(cur.status, SyncStatus::Acked { .. }) {
            tracing::warn!(device_id = %self.device_id, id = %cur.schedule.id, reported = ?running, "device runs another schedule than it acknowledged; pushing again");
            cur.status = SyncStatus::Pending {
                attempts: 0,
                next_retry: now,
            };
            fx.persist = Some(self.slots.clone());
            if online {
                self.push(ScheduleSlot::Current, now, &mut fx);
            }
        }
        fx
    }

    /// When [`ScheduleSync::on_tick`] has something to do: the earliest due retry (only
    /// when `online`) or the end of the current validity when a next schedule waits.
    pub fn next_wakeup(&self, online: bool) -> Option<DateTime<Utc>> {
        let retries = [self.current(), self.next()]
            .into_iter()
            .flatten()
            .filter_map(|s| match s.status {
                SyncStatus::Pending { next_retry, .. } if online => Some(next_retry),
                _ => None,
            });
        let switch = self.next().and(self.current()).map(|c| c.schedule.end);
        retries.chain(switch).min()
    }

    /// The slot (if any) whose schedule covers `t`, and whether the device confirmed it.
    pub fn covering(&self, t: DateTime<Utc>) -> Option<(&SlotSync, bool)> {
        [self.current(), self.next()]
            .into_iter()
            .flatten()
            .find(|s| s.schedule.covers(t))
            .map(|s| (s, s.acked()))
    }

    /// Forces a push of `slot` now (the yearly job), if it holds an unconfirmed schedule.
    /// Offline: marks it due, so the next connect pushes it.
    pub fn push_now(
        &mut self,
        slot: ScheduleSlot,
        now: DateTime<Utc>,
        online: bool,
    ) -> SyncEffects {
        let mut fx = SyncEffects::default();
        let Some(s) = self.slot_mut(slot).as_mut() else {
            return fx;
        };
        if s.acked() || matches!(s.status, SyncStatus::Failed { .. }) {
            return fx;
        }
        if online {
            self.push(slot, now, &mut fx);
        } else if let SyncStatus::Pending { next_retry, .. } = &mut s.status {
            *next_retry = now;
            fx.persist = Some(self.slots.clone());
        }
        fx
    }
}
