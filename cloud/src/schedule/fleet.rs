//! The fleet-wide yearly jobs: push next year's schedule ahead of time (a cron expression,
//! default `0 0 0 1 12 *` = 1 December 00:00 in the fleet's time zone) and, at each New
//! Year, alert for every device that entered the year without a confirmed schedule.
//!
//! [`FleetScheduler`] only says which jobs are due; what a job means for one device is
//! [`ScheduleSync::fleet_actions`] (read-only, for [`plan`]) or
//! [`ScheduleSync::on_fleet_job`] (does it, inside the device actor).
//!
//! Each device's New Year is taken in its own schedule's time zone (fleet zone when it has
//! none), so a job fired at the fleet's midnight asks the right question of every site.
//! Missed fires (cloud down on 1 December) are caught up: construct the scheduler with the
//! persisted instant of the last run.

use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use shiki_proto::{ScheduleSlot, Severity};

use super::effects::{AlertKind, ScheduleAlert, SyncEffects};
use super::state::ScheduleSync;
use shiki_cloud_model::schedule::SyncStatus;

/// Default yearly push: 1 December 00:00 (seconds-first `cron` crate syntax).
pub const DEFAULT_PUSH_CRON: &str = "0 0 0 1 12 *";

/// `[schedule]` settings of the cloud.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FleetConfig {
    /// When to push next year's schedules: a `cron` crate expression (6 or 7 fields, seconds
    /// first; a 5-field crontab gets `0` seconds prepended), read in `timezone`.
    pub push_cron: String,
    /// IANA time zone of the cron expression and of devices without a schedule.
    pub timezone: String,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            push_cron: DEFAULT_PUSH_CRON.to_owned(),
            timezone: shiki_shared::schedule::DEFAULT_TIMEZONE.to_owned(),
        }
    }
}

/// A bad `[schedule]` setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetConfigError {
    #[error("schedule.push_cron `{expr}` is not a cron expression: {reason}")]
    Cron { expr: String, reason: String },
    #[error("schedule.timezone `{0}` is not an IANA time zone")]
    TimeZone(String),
}

/// Parses a cron expression (`cron` crate syntax; 5-field crontab accepted).
pub fn parse_cron(expr: &str) -> Result<cron::Schedule, FleetConfigError> {
    let text = if expr.split_whitespace().count() == 5 {
        format!("0 {expr}")
    } else {
        expr.to_owned()
    };
    cron::Schedule::from_str(&text).map_err(|e| FleetConfigError::Cron {
        expr: expr.to_owned(),
        reason: e.to_string(),
    })
}

/// The first fire of `cron` (local wall-clock time in `tz`) strictly after `after`.
/// DST: the `cron` crate skips a local time that does not exist and may fire twice in a
/// fall-back hour; [`FleetScheduler::due`] runs a job at most once per call.
pub fn next_fire(cron: &cron::Schedule, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.after(&after.with_timezone(&tz))
        .next()
        .map(|t| t.with_timezone(&Utc))
}

/// 1 January `year` 00:00 local in `tz`.
pub fn new_year_at(tz: Tz, year: i32) -> Option<DateTime<Utc>> {
    let midnight = NaiveDate::from_ymd_opt(year, 1, 1)?.and_hms_opt(0, 0, 0)?;
    tz.from_local_datetime(&midnight)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// The first New Year (00:00 local in `tz`) strictly after `after`.
pub fn next_new_year(tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let year = after.with_timezone(&tz).year();
    [year, year + 1]
        .into_iter()
        .filter_map(|y| new_year_at(tz, y))
        .find(|t| *t > after)
}

/// A yearly job that is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum FleetJob {
    /// Push the schedule for `year` to every device that has not confirmed it.
    YearlyPush { at: DateTime<Utc>, year: i32 },
    /// `year` has begun: alert for devices without a confirmed schedule covering it.
    NewYearCheck { at: DateTime<Utc>, year: i32 },
}

/// Decides when the yearly jobs are due. Pure: feed it `now`.
#[derive(Debug, Clone)]
pub struct FleetScheduler {
    cron: cron::Schedule,
    tz: Tz,
    last_run: DateTime<Utc>,
}

impl FleetScheduler {
    /// `last_run`: the persisted instant of the previous [`FleetScheduler::due`] call, or
    /// now on the very first start (nothing in the past is then due).
    pub fn new(config: &FleetConfig, last_run: DateTime<Utc>) -> Result<Self, FleetConfigError> {
        let tz = Tz::from_str(&config.timezone)
            .map_err(|_| FleetConfigError::TimeZone(config.timezone.clone()))?;
        Ok(Self {
            cron: parse_cron(&config.push_cron)?,
            tz,
            last_run,
        })
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The instant to persist (the previous run).
    pub fn last_run(&self) -> DateTime<Utc> {
        self.last_run
    }

    /// When a job is next due.
    pub fn next_wakeup(&self) -> Option<DateTime<Utc>> {
        [
            next_fire(&self.cron, self.tz, self.last_run),
            next_new_year(self.tz, self.last_run),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The jobs due in `(last_run, now]`, oldest first, each kind at most once (the latest).
    /// A clock that went backwards yields nothing and keeps `last_run`.
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<FleetJob> {
        if now <= self.last_run {
            return Vec::new();
        }
        let mut jobs = Vec::new();
        let mut fire = None;
        let mut after = self.last_run;
        while let Some(t) = next_fire(&self.cron, self.tz, after).filter(|t| *t <= now) {
            fire = Some(t);
            after = t;
        }
        if let Some(at) = fire {
            let year = at.with_timezone(&self.tz).year() + 1;
            jobs.push(FleetJob::YearlyPush { at, year });
        }
        let mut new_year = None;
        let mut after = self.last_run;
        while let Some(t) = next_new_year(self.tz, after).filter(|t| *t <= now) {
            new_year = Some(t);
            after = t;
        }
        if let Some(at) = new_year {
            let year = at.with_timezone(&self.tz).year();
            jobs.push(FleetJob::NewYearCheck { at, year });
        }
        jobs.sort_by_key(|j| match j {
            FleetJob::YearlyPush { at, .. } | FleetJob::NewYearCheck { at, .. } => *at,
        });
        self.last_run = now;
        jobs
    }
}

/// What the yearly jobs ask of the whole fleet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetPlan {
    /// (device id, slot) to push now.
    pub pushes: Vec<(String, ScheduleSlot)>,
    pub alerts: Vec<ScheduleAlert>,
}

/// Lists the pushes and alerts `jobs` call for across `devices` (read-only).
pub fn plan<'a>(
    jobs: &[FleetJob],
    devices: impl IntoIterator<Item = &'a ScheduleSync>,
    fleet_tz: Tz,
    now: DateTime<Utc>,
) -> FleetPlan {
    let mut out = FleetPlan::default();
    for device in devices {
        for job in jobs {
            let (pushes, alerts) = device.fleet_actions(job, fleet_tz, now);
            out.pushes.extend(
                pushes
                    .into_iter()
                    .map(|s| (device.device_id().to_owned(), s)),
            );
            out.alerts.extend(alerts);
        }
    }
    out
}

/// A sync status for a person.
fn describe(status: &SyncStatus) -> String {
    match status {
        SyncStatus::Pending { attempts: 0, .. } => "not pushed yet: device offline".to_owned(),
        SyncStatus::Pending { attempts, .. } => format!("pushed {attempts} times, no ack"),
        SyncStatus::Acked { at, .. } => format!("acked at {at}"),
        SyncStatus::Failed { reason, .. } => format!("refused: {reason}"),
    }
}

impl ScheduleSync {
    /// The device's time zone: its schedule's, else `fleet_tz`.
    fn timezone(&self, fleet_tz: Tz) -> Tz {
        [self.current(), self.next()]
            .into_iter()
            .flatten()
            .find_map(|s| Tz::from_str(&s.schedule.timezone).ok())
            .unwrap_or(fleet_tz)
    }

    /// What `job` asks of this device: slots to push and alerts (changes nothing).
    pub fn fleet_actions(
        &self,
        job: &FleetJob,
        fleet_tz: Tz,
        now: DateTime<Utc>,
    ) -> (Vec<ScheduleSlot>, Vec<ScheduleAlert>) {
        let (FleetJob::YearlyPush { year, .. } | FleetJob::NewYearCheck { year, .. }) = *job;
        let Some(boundary) = new_year_at(self.timezone(fleet_tz), year) else {
            return (Vec::new(), Vec::new());
        };
        let covering = self.covering(boundary);
        let id = self.device_id();
        let alert = |kind, severity, message: String| ScheduleAlert {
            device_id: id.to_owned(),
            at: now,
            kind,
            severity,
            message,
        };
        match (job, covering) {
            (_, Some((_, true))) => (Vec::new(), Vec::new()),
            (FleetJob::YearlyPush { .. }, Some((slot, false))) => {
                let which = if self
                    .next()
                    .is_some_and(|n| n.schedule.hash == slot.schedule.hash)
                {
                    ScheduleSlot::Next
                } else {
                    ScheduleSlot::Current
                };
                (vec![which], Vec::new())
            }
            (FleetJob::YearlyPush { .. }, None) => (
                Vec::new(),
                vec![alert(
                    AlertKind::MissingNextYear,
                    Severity::Warning,
                    format!("device {id} has no schedule for {year}"),
                )],
            ),
            (FleetJob::NewYearCheck { .. }, covering) => {
                let detail = match covering {
                    Some((slot, _)) => format!(
                        "schedule {} is not confirmed by the device ({})",
                        slot.schedule.id,
                        describe(&slot.status)
                    ),
                    None => format!("no schedule covers 1 January {year}"),
                };
                (
                    Vec::new(),
                    vec![alert(
                        AlertKind::EnteredYearWithoutSchedule,
                        Severity::Critical,
                        format!("device {id} entered {year} without its schedule: {detail}"),
                    )],
                )
            }
        }
    }

    /// Carries out `job` for this device (inside its actor): pushes (or marks due while
    /// offline) and alerts.
    pub fn on_fleet_job(
        &mut self,
        job: &FleetJob,
        fleet_tz: Tz,
        now: DateTime<Utc>,
        online: bool,
    ) -> SyncEffects {
        let (pushes, alerts) = self.fleet_actions(job, fleet_tz, now);
        let mut fx = SyncEffects::default();
        for slot in pushes {
            let step = self.push_now(slot, now, online);
            fx.publish.extend(step.publish);
            fx.alerts.extend(step.alerts);
            if step.persist.is_some() {
                fx.persist = step.persist;
            }
        }
        fx.alerts.extend(alerts);
        fx
    }
}
