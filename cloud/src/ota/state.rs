//! The jobs' execution as a plain state machine: every job with each device's execution,
//! inputs with a `now` (a job created or canceled, an edge's `JobUpdate`, a device's status,
//! a tick), outputs as [`JobEffects`] (jobs to persist, `jobs/notify` to publish, history
//! transitions, alerts). No I/O, no actix.
//!
//! One execution (job × device):
//!
//! | from | input | to |
//! |---|---|---|
//! | queued | a rollout slot, the device online and busy with no other job | in_progress, `jobs/notify` with a fresh URL |
//! | queued | [`JobTimeouts::queued`] after the job's creation | timed_out |
//! | queued | the rollout aborts (failure ratio exceeded) | canceled, "rollout aborted: …" |
//! | in_progress | update `in_progress` (step, progress) | in_progress |
//! | in_progress | update `in_progress` with step `url_expired` | in_progress, `jobs/notify` with a fresh URL |
//! | in_progress | the device comes back online | in_progress, `jobs/notify` again |
//! | in_progress | update `succeeded`, then an online status with the artifact's version (only statuses since the start count) | succeeded |
//! | in_progress | update `failed` / `rejected` | failed, the edge's detail |
//! | in_progress | update `rolled_back` | rolled_back, the edge's detail |
//! | in_progress | online and no update for [`JobTimeouts::no_update`]; no version after `succeeded` for [`JobTimeouts::verify`]; [`JobTimeouts::execution`] since the start | timed_out |
//! | queued, in_progress | cancel | canceled (an in-progress device gets a `jobs/notify` without the job) |
//!
//! A device runs one execution at a time, whatever the job.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use shiki_proto::{
    DeviceId, JobDocument, JobId, JobNotify, JobOperation, JobStatus, JobStep, JobUpdate,
    PROTOCOL_VERSION,
};

use super::artifacts::Artifacts;
use super::execution::{Scope, abort_reason, check, deadline, detail};
use crate::notifier::Alert;
use crate::store::{Author, ExecutionRecord, ExecutionStatus, JobArtifact, JobRecord, Rollout};

/// How long each state may last (`[ota]` durations; humantime strings in TOML).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobTimeouts {
    /// A queued execution that has not started this long after the job's creation (the
    /// device stayed offline, or the rollout never reached it) times out.
    #[serde(default = "default_queued", with = "humantime_serde")]
    pub queued: Duration,
    /// An in-progress execution of an online device without any update this long.
    #[serde(default = "default_no_update", with = "humantime_serde")]
    pub no_update: Duration,
    /// After the edge reported `succeeded`, how long its status may take to report the new
    /// version.
    #[serde(default = "default_verify", with = "humantime_serde")]
    pub verify: Duration,
    /// The longest an execution may be in progress, whatever happens.
    #[serde(default = "default_execution", with = "humantime_serde")]
    pub execution: Duration,
}

fn default_queued() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_no_update() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_verify() -> Duration {
    Duration::from_secs(10 * 60)
}
fn default_execution() -> Duration {
    Duration::from_secs(6 * 3600)
}

impl Default for JobTimeouts {
    fn default() -> Self {
        Self {
            queued: default_queued(),
            no_update: default_no_update(),
            verify: default_verify(),
            execution: default_execution(),
        }
    }
}

/// Whether a device is online and which version it reported last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Presence {
    pub online: bool,
    pub software_version: Option<String>,
}

impl From<&shiki_proto::Status> for Presence {
    /// What a device's `status` message says of it.
    fn from(s: &shiki_proto::Status) -> Self {
        Self {
            online: s.state == shiki_proto::Connectivity::Online,
            software_version: s.software_version.clone(),
        }
    }
}

/// A job to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub artifact_version: String,
    pub devices: Vec<DeviceId>,
    pub rollout: Rollout,
    pub author: Author,
}

/// Why a job could not be created or canceled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    #[error("no artifact with version {0:?}; upload it first (PUT /api/v1/artifacts/{0})")]
    UnknownVersion(String),
    #[error("device {0:?} is unknown to the cloud")]
    UnknownDevice(String),
    #[error("a job needs at least one device")]
    NoDevices,
    #[error("device {0:?} is listed twice")]
    DuplicateDevice(String),
    #[error("max_in_progress must be at least 1")]
    NoSlots,
    #[error("abort_failure_ratio must lie between 0.0 and 1.0, got {0}")]
    Ratio(f64),
    #[error("job {0:?} not found")]
    NotFound(String),
    /// The artifact store could not be read (not the caller's fault).
    #[error("artifact lookup failed: {0}")]
    ArtifactLookup(String),
    /// The change was made but could not be stored (the store failed, or a cluster
    /// node's jobs lease moved on before its commit).
    #[error(
        "the job change could not be stored ({0}); list the jobs to see what was kept, and retry"
    )]
    NotStored(String),
    /// A cluster node that does not hold the jobs lease (it moved, or is moving).
    #[error(
        "this cloud node does not drive the OTA jobs now (the cluster's jobs lease is held elsewhere or changing hands); retry in a few seconds"
    )]
    NotDriving,
}

/// One execution changing state, for the device's history.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub job: JobId,
    pub version: String,
    pub device: DeviceId,
    /// `None` when the job was created.
    pub from: Option<ExecutionStatus>,
    pub to: ExecutionStatus,
    pub reason: Option<String>,
    pub author: Author,
    pub at: DateTime<Utc>,
}

/// What an input caused.
#[derive(Debug, Default)]
pub struct JobEffects {
    /// Jobs that changed, to store whole.
    pub persist: Vec<JobRecord>,
    /// A `jobs/notify` per device: its pending jobs, each with a fresh URL.
    pub notify: Vec<(DeviceId, JobNotify)>,
    pub transitions: Vec<Transition>,
    pub alerts: Vec<Alert>,
}

/// What changed during one input; turned into [`JobEffects`] at its end.
#[derive(Default)]
pub(super) struct Changes {
    pub jobs: BTreeSet<JobId>,
    pub notify: BTreeSet<DeviceId>,
    pub transitions: Vec<Transition>,
    pub alerts: Vec<Alert>,
}

/// Every job and what the jobs know of their devices.
pub struct Jobs {
    cfg: JobTimeouts,
    artifacts: Arc<dyn Artifacts>,
    jobs: BTreeMap<JobId, JobRecord>,
    presence: HashMap<DeviceId, Presence>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("cfg", &self.cfg)
            .field("jobs", &self.jobs.len())
            .finish_non_exhaustive()
    }
}

impl Jobs {
    /// The jobs restored from the store. Devices count as offline until their status
    /// arrives (the broker re-delivers every retained status when the cloud subscribes).
    pub fn restore(
        cfg: JobTimeouts,
        artifacts: Arc<dyn Artifacts>,
        records: Vec<JobRecord>,
    ) -> Self {
        Self {
            cfg,
            artifacts,
            jobs: records.into_iter().map(|j| (j.id.clone(), j)).collect(),
            presence: HashMap::new(),
        }
    }

    /// Replaces every job with `records` (the jobs as stored now: a cluster node took the
    /// jobs lease, or gave it up with none) and forgets what it knew of the devices, which
    /// count as offline until their status arrives again.
    pub fn reset(&mut self, records: Vec<JobRecord>) {
        self.jobs = records.into_iter().map(|j| (j.id.clone(), j)).collect();
        self.presence.clear();
    }

    pub fn job(&self, id: &str) -> Option<&JobRecord> {
        self.jobs.values().find(|j| j.id.as_str() == id)
    }

    /// Every job, newest first.
    pub fn list(&self) -> Vec<&JobRecord> {
        let mut v: Vec<_> = self.jobs.values().collect();
        v.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        v
    }

    /// Creates a job for devices the cloud knows (`presence` says how each is now) and
    /// starts what the rollout allows.
    pub fn create(
        &mut self,
        new: NewJob,
        presence: Vec<(DeviceId, Presence)>,
        now: DateTime<Utc>,
    ) -> Result<(JobId, JobEffects), JobError> {
        check(&new)?;
        let artifact = self
            .artifacts
            .lookup(&new.artifact_version)
            .map_err(JobError::ArtifactLookup)?
            .ok_or_else(|| JobError::UnknownVersion(new.artifact_version.clone()))?;
        for (device, p) in presence {
            self.presence.insert(device, p);
        }
        let id = self.new_id(now);
        let mut ch = Changes::default();
        let job = JobRecord {
            id: id.clone(),
            artifact: JobArtifact {
                version: artifact.version,
                sha256: artifact.sha256,
                size: artifact.size,
                signature: artifact.signature,
            },
            created_at: now,
            created_by: new.author.clone(),
            rollout: new.rollout,
            executions: new
                .devices
                .into_iter()
                .map(ExecutionRecord::queued)
                .collect(),
            canceled_by: None,
        };
        for e in &job.executions {
            ch.transitions.push(Transition {
                job: id.clone(),
                version: job.artifact.version.clone(),
                device: e.device.clone(),
                from: None,
                to: ExecutionStatus::Queued,
                reason: None,
                author: new.author.clone(),
                at: now,
            });
        }
        self.jobs.insert(id.clone(), job);
        ch.jobs.insert(id.clone());
        self.advance(&id, now, &mut ch);
        Ok((id, self.finish(ch, now)))
    }

    /// `ota-YYYYMMDD-HHMMSS`, with `-2`, `-3`, … when a job of the same second exists.
    fn new_id(&self, now: DateTime<Utc>) -> JobId {
        let base = format!("ota-{}", now.format("%Y%m%d-%H%M%S"));
        (1..)
            .map(|n| match n {
                1 => base.clone(),
                n => format!("{base}-{n}"),
            })
            .map(|s| JobId::new(s).expect("ota-digits-digits is a valid job id"))
            .find(|id| !self.jobs.contains_key(id))
            .expect("some suffix is free")
    }

    /// Cancels every execution of job `id` that has not finished; `by` is recorded.
    pub fn cancel(
        &mut self,
        id: &str,
        by: Author,
        now: DateTime<Utc>,
    ) -> Result<JobEffects, JobError> {
        let job = self
            .jobs
            .values_mut()
            .find(|j| j.id.as_str() == id)
            .ok_or_else(|| JobError::NotFound(id.to_owned()))?;
        let mut ch = Changes::default();
        let reason = format!("canceled by {by}");
        let scope = Scope {
            job: &job.id,
            version: &job.artifact.version,
            now,
        };
        for e in job
            .executions
            .iter_mut()
            .filter(|e| !e.status.is_terminal())
        {
            if e.status == ExecutionStatus::InProgress {
                ch.notify.insert(e.device.clone());
            }
            scope.end(
                e,
                ExecutionStatus::Canceled,
                reason.clone(),
                by.clone(),
                &mut ch,
            );
        }
        if !ch.transitions.is_empty() {
            job.canceled_by = Some(by);
        }
        // Devices freed here may start their executions of other jobs.
        self.advance_all(now, &mut ch);
        Ok(self.finish(ch, now))
    }

    /// An edge's `jobs/{job}/update`.
    pub fn on_update(
        &mut self,
        device: &DeviceId,
        job: &JobId,
        update: &JobUpdate,
        now: DateTime<Utc>,
    ) -> JobEffects {
        let mut ch = Changes::default();
        let Some(record) = self.jobs.get_mut(job) else {
            tracing::warn!(job_id = %job, device_id = %device, "update for an unknown job ignored");
            return JobEffects::default();
        };
        let scope = Scope {
            job: &record.id,
            version: &record.artifact.version,
            now,
        };
        let Some(e) = record.executions.iter_mut().find(|e| &e.device == device) else {
            tracing::warn!(job_id = %job, device_id = %device, "update from a device outside the job ignored");
            return JobEffects::default();
        };
        if e.status != ExecutionStatus::InProgress {
            tracing::info!(job_id = %job, device_id = %device, status = %e.status, update = ?update.status, "update for an execution not in progress ignored");
            return JobEffects::default();
        }
        let by = Author::Device(device.clone());
        e.last_activity = Some(now);
        match update.status {
            JobStatus::Queued | JobStatus::InProgress
                if update.step == Some(JobStep::UrlExpired) =>
            {
                ch.notify.insert(device.clone());
            }
            JobStatus::Queued | JobStatus::InProgress => {
                if let Some(p) = update.progress {
                    e.progress = p.min(100);
                }
                e.step = update.step.or(e.step);
            }
            JobStatus::Succeeded => {
                e.edge_succeeded_at = Some(now);
                e.progress = 100;
                if e.reported_version.as_deref() == Some(scope.version) {
                    scope.succeed(e, by, &mut ch);
                }
            }
            JobStatus::Failed | JobStatus::Rejected => {
                let reason = detail(update, "failed");
                scope.end(e, ExecutionStatus::Failed, reason, by, &mut ch);
            }
            JobStatus::RolledBack => {
                let reason = detail(update, "rolled back");
                scope.end(e, ExecutionStatus::RolledBack, reason, by, &mut ch);
            }
            JobStatus::Unknown => {
                tracing::warn!(job_id = %job, device_id = %device, "update with an unknown status ignored");
                return JobEffects::default();
            }
        }
        ch.jobs.insert(job.clone());
        self.advance_all(now, &mut ch);
        self.finish(ch, now)
    }

    /// A device's status: online or not, and the version it runs.
    pub fn on_presence(
        &mut self,
        device: &DeviceId,
        presence: Presence,
        now: DateTime<Utc>,
    ) -> JobEffects {
        let was_online = self.presence.get(device).is_some_and(|p| p.online);
        let came_online = presence.online && !was_online;
        let mut ch = Changes::default();
        for job in self.jobs.values_mut() {
            let scope = Scope {
                job: &job.id,
                version: &job.artifact.version,
                now,
            };
            let Some(e) = job
                .executions
                .iter_mut()
                .find(|e| &e.device == device && e.status == ExecutionStatus::InProgress)
            else {
                continue;
            };
            if !presence.online {
                continue;
            }
            if presence.software_version.is_some() {
                e.reported_version.clone_from(&presence.software_version);
            }
            if came_online {
                e.last_activity = Some(now);
                if e.edge_succeeded_at.is_none() {
                    ch.notify.insert(device.clone());
                }
            }
            if e.edge_succeeded_at.is_some() && e.reported_version.as_deref() == Some(scope.version)
            {
                scope.succeed(e, Author::Device(device.clone()), &mut ch);
            }
            ch.jobs.insert(job.id.clone());
        }
        self.presence.insert(device.clone(), presence);
        if came_online || !ch.jobs.is_empty() {
            self.advance_all(now, &mut ch);
        }
        self.finish(ch, now)
    }

    /// Times out what has waited too long, then lets the rollouts go on.
    pub fn on_tick(&mut self, now: DateTime<Utc>) -> JobEffects {
        let mut ch = Changes::default();
        for job in self.jobs.values_mut() {
            let scope = Scope {
                job: &job.id,
                version: &job.artifact.version,
                now,
            };
            for e in job.executions.iter_mut() {
                let online = self.presence.get(&e.device).is_some_and(|p| p.online);
                let Some((at, reason)) =
                    deadline(&self.cfg, job.created_at, e, online, scope.version)
                else {
                    continue;
                };
                if at <= now {
                    let by = job.created_by.clone();
                    scope.end(e, ExecutionStatus::TimedOut, reason, by, &mut ch);
                }
            }
        }
        if !ch.jobs.is_empty() {
            self.advance_all(now, &mut ch);
        }
        self.finish(ch, now)
    }

    /// When [`Jobs::on_tick`] has something to do next.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        self.jobs
            .values()
            .flat_map(|j| {
                j.executions.iter().filter_map(|e| {
                    let online = self.presence.get(&e.device).is_some_and(|p| p.online);
                    deadline(&self.cfg, j.created_at, e, online, &j.artifact.version)
                        .map(|(at, _)| at)
                })
            })
            .min()
    }

    /// Lets every unfinished job's rollout go on.
    fn advance_all(&mut self, now: DateTime<Utc>, ch: &mut Changes) {
        let open: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| !j.is_finished())
            .map(|j| j.id.clone())
            .collect();
        for id in open {
            self.advance(&id, now, ch);
        }
    }

    /// Aborts the job's rollout if too many finished executions failed, else starts queued
    /// executions of online, idle devices up to `max_in_progress`.
    fn advance(&mut self, id: &JobId, now: DateTime<Utc>, ch: &mut Changes) {
        let busy: HashSet<DeviceId> = self
            .jobs
            .values()
            .flat_map(|j| &j.executions)
            .filter(|e| e.status == ExecutionStatus::InProgress)
            .map(|e| e.device.clone())
            .collect();
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        let scope = Scope {
            job: &job.id,
            version: &job.artifact.version,
            now,
        };
        let by = &job.created_by;
        if let Some(reason) = abort_reason(job) {
            for e in job
                .executions
                .iter_mut()
                .filter(|e| e.status == ExecutionStatus::Queued)
            {
                scope.end(e, ExecutionStatus::Canceled, reason.clone(), by.clone(), ch);
            }
            return;
        }
        let mut running = job
            .executions
            .iter()
            .filter(|e| e.status == ExecutionStatus::InProgress)
            .count();
        let max = job.rollout.max_in_progress.max(1) as usize;
        for e in job.executions.iter_mut() {
            if running >= max {
                break;
            }
            let online = self.presence.get(&e.device).is_some_and(|p| p.online);
            if e.status != ExecutionStatus::Queued || !online || busy.contains(&e.device) {
                continue;
            }
            e.started_at = Some(now);
            e.last_activity = Some(now);
            e.reported_version = None;
            scope.transition(e, ExecutionStatus::InProgress, None, by.clone(), ch);
            ch.notify.insert(e.device.clone());
            running += 1;
        }
    }

    /// The device's pending jobs (in progress, not yet reported done), each with a URL
    /// signed now.
    fn notify_for(&self, device: &DeviceId, now: DateTime<Utc>) -> JobNotify {
        let jobs = self
            .jobs
            .values()
            .filter(|j| {
                j.executions.iter().any(|e| {
                    &e.device == device
                        && e.status == ExecutionStatus::InProgress
                        && e.edge_succeeded_at.is_none()
                })
            })
            .map(|j| {
                let (url, expires) = self.artifacts.signed_url(&j.artifact.sha256, now);
                JobDocument {
                    job_id: j.id.clone(),
                    operation: JobOperation::Ota {
                        software_version: j.artifact.version.clone(),
                        url,
                        size: j.artifact.size,
                        sha256: j.artifact.sha256.clone(),
                        signature: j.artifact.signature.clone(),
                        url_expires: Some(expires),
                        allow_downgrade: j.rollout.allow_downgrade,
                    },
                }
            })
            .collect();
        JobNotify {
            v: PROTOCOL_VERSION,
            jobs,
        }
    }

    fn finish(&self, ch: Changes, now: DateTime<Utc>) -> JobEffects {
        JobEffects {
            persist: ch
                .jobs
                .iter()
                .filter_map(|id| self.jobs.get(id).cloned())
                .collect(),
            notify: ch
                .notify
                .into_iter()
                .map(|d| {
                    let n = self.notify_for(&d, now);
                    (d, n)
                })
                .collect(),
            transitions: ch.transitions,
            alerts: ch.alerts,
        }
    }
}
