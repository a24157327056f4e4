//! The parts of the [`Jobs`](super::state::Jobs) state machine that concern one execution
//! or one job: checking a new job, when an execution times out, when a rollout aborts, and
//! recording a transition ([`Scope`]).

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use shiki_proto::{JobId, JobUpdate};

use super::state::{Changes, JobError, JobTimeouts, NewJob, Transition};
use crate::notifier::{Alert, AlertKind};
use crate::store::{Author, ExecutionRecord, ExecutionStatus, JobRecord};

/// Checks a new job's own fields (devices and artifact are checked against the cloud).
pub(super) fn check(new: &NewJob) -> Result<(), JobError> {
    if new.devices.is_empty() {
        return Err(JobError::NoDevices);
    }
    let mut seen = HashSet::new();
    if let Some(d) = new.devices.iter().find(|d| !seen.insert(*d)) {
        return Err(JobError::DuplicateDevice(d.to_string()));
    }
    if new.rollout.max_in_progress == 0 {
        return Err(JobError::NoSlots);
    }
    let r = new.rollout.abort_failure_ratio;
    if !(0.0..=1.0).contains(&r) {
        return Err(JobError::Ratio(r));
    }
    Ok(())
}

/// "rollout aborted: …" once at least two executions finished (canceled ones aside) and
/// the failed share exceeds the job's ratio, while some are still queued.
pub(super) fn abort_reason(job: &JobRecord) -> Option<String> {
    let ex = &job.executions;
    let finished = ex
        .iter()
        .filter(|e| e.status.is_terminal() && e.status != ExecutionStatus::Canceled)
        .count();
    let failed = ex.iter().filter(|e| e.status.is_failure()).count();
    let queued = ex.iter().any(|e| e.status == ExecutionStatus::Queued);
    let ratio = job.rollout.abort_failure_ratio;
    (queued && finished >= 2 && failed as f64 / finished as f64 > ratio).then(|| {
        format!(
            "rollout aborted: {failed} of {finished} finished executions failed (more than {:.0} %)",
            ratio * 100.0
        )
    })
}

/// The edge's detail, or a reason saying it gave none.
pub(super) fn detail(update: &JobUpdate, what: &str) -> String {
    update
        .detail
        .clone()
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| format!("the edge reported {what} without a reason"))
}

/// When an execution times out, and why.
pub(super) fn deadline(
    cfg: &JobTimeouts,
    created: DateTime<Utc>,
    e: &ExecutionRecord,
    online: bool,
    version: &str,
) -> Option<(DateTime<Utc>, String)> {
    let after = |t: DateTime<Utc>, d: Duration| {
        t + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
    };
    let human = |d: Duration| humantime::format_duration(d).to_string();
    match e.status {
        ExecutionStatus::Queued => Some((
            after(created, cfg.queued),
            format!(
                "not started within {} of the job's creation ({})",
                human(cfg.queued),
                if online {
                    "waiting for a rollout slot"
                } else {
                    "device offline"
                }
            ),
        )),
        ExecutionStatus::InProgress => {
            let started = e.started_at?;
            let mut candidates = vec![(
                after(started, cfg.execution),
                format!("not finished within {} of its start", human(cfg.execution)),
            )];
            if let Some(ok) = e.edge_succeeded_at {
                candidates.push((
                    after(ok, cfg.verify),
                    format!(
                        "the edge reported success but its status did not report version {version} within {} (last reported: {})",
                        human(cfg.verify),
                        e.reported_version.as_deref().unwrap_or("none since the start")
                    ),
                ));
            } else if online {
                candidates.push((
                    after(e.last_activity.unwrap_or(started), cfg.no_update),
                    format!(
                        "no update from the edge for {} (last step: {}, {} %)",
                        human(cfg.no_update),
                        e.step
                            .map_or("none".to_owned(), |s| format!("{s:?}").to_lowercase()),
                        e.progress
                    ),
                ));
            }
            candidates.into_iter().min_by_key(|c| c.0)
        }
        _ => None,
    }
}

/// The job an execution belongs to and the instant of the input, for its transitions.
pub(super) struct Scope<'a> {
    pub job: &'a JobId,
    pub version: &'a str,
    pub now: DateTime<Utc>,
}

impl Scope<'_> {
    /// Ends an execution as `succeeded`.
    pub fn succeed(&self, e: &mut ExecutionRecord, by: Author, ch: &mut Changes) {
        e.progress = 100;
        e.step = None;
        e.reason = None;
        self.transition(e, ExecutionStatus::Succeeded, None, by, ch);
    }

    /// Ends an execution in a terminal state other than `succeeded`, with its reason;
    /// failures raise an alert.
    pub fn end(
        &self,
        e: &mut ExecutionRecord,
        to: ExecutionStatus,
        reason: String,
        by: Author,
        ch: &mut Changes,
    ) {
        if to.is_failure() {
            ch.alerts.push(Alert {
                device: e.device.clone(),
                kind: AlertKind::Ota,
                text: format!(
                    "OTA job {} (version {}) on {}: {to}: {reason}",
                    self.job, self.version, e.device
                ),
            });
        }
        e.reason = Some(reason.clone());
        self.transition(e, to, Some(reason), by, ch);
    }

    pub fn transition(
        &self,
        e: &mut ExecutionRecord,
        to: ExecutionStatus,
        reason: Option<String>,
        by: Author,
        ch: &mut Changes,
    ) {
        let from = e.status;
        e.status = to;
        if to.is_terminal() {
            e.finished_at = Some(self.now);
        }
        ch.jobs.insert(self.job.clone());
        ch.transitions.push(Transition {
            job: self.job.clone(),
            version: self.version.to_owned(),
            device: e.device.clone(),
            from: Some(from),
            to,
            reason,
            author: by,
            at: self.now,
        });
    }
}
