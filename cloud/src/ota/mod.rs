//! OTA jobs in the cloud: one [`JobsActor`] per process, a thin shell over the
//! [`Jobs`](state::Jobs) state machine. It owns every job, persists each change
//! (`Write::Job`), records each execution's transitions in the device's history (key
//! `ota`), raises an alert for each failure, re-arms the timeouts, and hands `jobs/notify`
//! to the device actors ([`NotifyDevice`], through the registry). Device actors pass on
//! each device's status and `jobs/{job}/update` as [`DeviceJobInput`]s.
//!
//! On a cluster node ([`Mode`]) the actor drives the jobs only while the node holds the
//! jobs lease ([`DriveJobs`] / [`StandBy`] from the coordinator): every change is stored
//! fenced by that lease, `jobs/notify` goes straight to the publisher, and the inputs
//! come from the lease's own MQTT session (ADR `docs/adr/cluster-ota-jobs.md`).
//!
//! The artifacts come through the [`Artifacts`] interface (the artifact store's catalog
//! and URL signer).

mod artifacts;
mod execution;
mod messages;
pub mod state;
#[cfg(test)]
mod state_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tracing::Instrument;

pub use artifacts::{ArtifactInfo, Artifacts, StoredArtifacts};
pub use messages::{
    CancelJob, CreateJob, DeviceJobInput, DriveJobs, GetJob, JobInput, ListJobs, NotifyDevice,
    StandBy,
};
pub use state::{JobEffects, JobError, JobTimeouts, Jobs, NewJob, Presence, Transition};

#[cfg(test)]
pub(crate) use state_tests::MemoryArtifacts;

use crate::device::Clock;
use crate::notifier::Alert;
use crate::store::{Author, Commit, Fence, HistoryEntry, Side, Store, Write};

/// History key of job transitions.
pub const HISTORY_KEY: &str = "ota";

/// Whether a [`JobsActor`] drives the jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One process: it drives every job; writes need no fence.
    Alone,
    /// A cluster node without the jobs lease: no jobs; requests answer
    /// [`JobError::NotDriving`], inputs are ignored.
    Standby,
    /// A cluster node holding the jobs lease: every job change is stored with its fence.
    Driving(Fence),
}

/// The jobs actor.
pub struct JobsActor {
    jobs: Jobs,
    mode: Mode,
    store: Arc<dyn Store>,
    devices: Recipient<NotifyDevice>,
    alerts: Recipient<Alert>,
    clock: Arc<dyn Clock>,
    timer: Option<SpawnHandle>,
}

impl std::fmt::Debug for JobsActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobsActor")
            .field("jobs", &self.jobs)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl JobsActor {
    pub fn new(
        jobs: Jobs,
        store: Arc<dyn Store>,
        devices: Recipient<NotifyDevice>,
        alerts: Recipient<Alert>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            jobs,
            mode: Mode::Alone,
            store,
            devices,
            alerts,
            clock,
            timer: None,
        }
    }

    /// The same actor on a cluster node: idle until [`DriveJobs`].
    pub fn standby(mut self) -> Self {
        self.mode = Mode::Standby;
        self
    }

    fn driving(&self) -> Result<(), JobError> {
        match self.mode {
            Mode::Standby => Err(JobError::NotDriving),
            Mode::Alone | Mode::Driving(_) => Ok(()),
        }
    }

    /// Persists, records, publishes and alerts, then re-arms the timer; a failed commit is
    /// logged.
    fn apply(&mut self, fx: JobEffects, ctx: &mut Context<Self>) {
        if let Some(commit) = self.apply_then(fx, ctx) {
            ctx.spawn(
                async move {
                    if let Err(e) = commit.await {
                        tracing::error!(error = %e, "job change could not be stored");
                    }
                }
                .in_current_span()
                .into_actor(self),
            );
        }
    }

    /// As [`Self::apply`], but hands the commit of the changes back (`None`: nothing to
    /// store), for an API answer that waits until they are stored.
    fn apply_then(&mut self, fx: JobEffects, ctx: &mut Context<Self>) -> Option<Commit> {
        let mut writes: Vec<Write> = fx
            .persist
            .into_iter()
            .map(|j| Write::Job(Box::new(j)))
            .collect();
        for t in fx.transitions {
            tracing::info!(job_id = %t.job, device_id = %t.device, from = ?t.from.map(|s| s.name()), to = t.to.name(), reason = t.reason.as_deref().unwrap_or(""), "job execution");
            writes.push(self.history_write(t));
        }
        let commit = (!writes.is_empty()).then(|| match self.mode {
            Mode::Driving(fence) => self.store.submit_fenced(fence, writes),
            Mode::Alone | Mode::Standby => self.store.submit(writes),
        });
        for (device, notify) in fx.notify {
            let jobs: Vec<_> = notify.jobs.iter().map(|j| j.job_id.to_string()).collect();
            tracing::info!(device_id = %device, ?jobs, "jobs/notify");
            self.devices.do_send(NotifyDevice { device, notify });
        }
        for alert in fx.alerts {
            tracing::warn!(device_id = %alert.device, text = %alert.text, "job alert");
            self.alerts.do_send(alert);
        }
        self.reschedule(ctx);
        commit
    }

    /// The history entry of a transition: the device's `ota` key, old and new status.
    fn history_write(&self, t: Transition) -> Write {
        let side = match t.author {
            Author::Device(_) => Side::Reported,
            _ => Side::Desired,
        };
        let reason = t.reason.map(|r| format!(": {r}")).unwrap_or_default();
        Write::History(Box::new(HistoryEntry {
            id: self.store.next_id(),
            device: t.device,
            ts: t.at,
            actor: t.author,
            side,
            key: HISTORY_KEY.to_owned(),
            old: t.from.map_or(serde_json::Value::Null, |s| s.name().into()),
            new: t.to.name().into(),
            version: 0,
            comment: Some(format!("job {} (version {}){reason}", t.job, t.version)),
            verification_id: None,
        }))
    }

    fn reschedule(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.timer.take() {
            ctx.cancel_future(h);
        }
        if let Some(at) = self.jobs.next_deadline() {
            let wait = (at - self.clock.now()).to_std().unwrap_or(Duration::ZERO);
            self.timer = Some(ctx.run_later(wait, |act, ctx| {
                act.timer = None;
                let fx = act.jobs.on_tick(act.clock.now());
                act.apply(fx, ctx);
            }));
        }
    }
}

impl Actor for JobsActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Time out what expired while the cloud was down; arm the next timeout.
        let fx = self.jobs.on_tick(self.clock.now());
        self.apply(fx, ctx);
    }
}

/// Answers once the job is stored: a job the API acknowledged survives its driver.
impl Handler<CreateJob> for JobsActor {
    type Result = ResponseFuture<Result<shiki_proto::JobId, JobError>>;

    fn handle(&mut self, msg: CreateJob, ctx: &mut Self::Context) -> Self::Result {
        let devices = msg.job.devices.len();
        let created = self
            .driving()
            .and_then(|()| self.jobs.create(msg.job, msg.presence, self.clock.now()));
        let (id, fx) = match created {
            Ok(x) => x,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let _g = tracing::info_span!("job", job_id = %id).entered();
        tracing::info!(devices, "job created");
        let commit = self.apply_then(fx, ctx);
        Box::pin(stored(commit, id).in_current_span())
    }
}

/// Answers once the cancellation is stored.
impl Handler<CancelJob> for JobsActor {
    type Result = ResponseFuture<Result<crate::store::JobRecord, JobError>>;

    fn handle(&mut self, msg: CancelJob, ctx: &mut Self::Context) -> Self::Result {
        let _g = tracing::info_span!("job", job_id = %msg.id).entered();
        let canceled = self
            .driving()
            .and_then(|()| self.jobs.cancel(&msg.id, msg.by, self.clock.now()));
        let fx = match canceled {
            Ok(fx) => fx,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        tracing::info!(canceled = fx.transitions.len(), "job canceled");
        let commit = self.apply_then(fx, ctx);
        let job = self
            .jobs
            .job(&msg.id)
            .cloned()
            .expect("a job just canceled exists");
        Box::pin(stored(commit, job).in_current_span())
    }
}

/// `value` once `commit` (if any) is stored; else why not.
async fn stored<T>(commit: Option<Commit>, value: T) -> Result<T, JobError> {
    if let Some(commit) = commit {
        commit.await.map_err(|e| {
            tracing::error!(error = %e, "job change could not be stored");
            JobError::NotStored(e.to_string())
        })?;
    }
    Ok(value)
}

impl Handler<GetJob> for JobsActor {
    type Result = Result<Option<crate::store::JobRecord>, JobError>;

    fn handle(&mut self, msg: GetJob, _ctx: &mut Self::Context) -> Self::Result {
        self.driving()?;
        Ok(self.jobs.job(&msg.0).cloned())
    }
}

impl Handler<ListJobs> for JobsActor {
    type Result = MessageResult<ListJobs>;

    fn handle(&mut self, _msg: ListJobs, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(
            self.driving()
                .map(|()| self.jobs.list().into_iter().cloned().collect()),
        )
    }
}

/// The jobs lease taken: the stored jobs are driven from here on.
impl Handler<DriveJobs> for JobsActor {
    type Result = ();

    fn handle(&mut self, msg: DriveJobs, ctx: &mut Self::Context) {
        let open = msg.records.iter().filter(|j| !j.is_finished()).count();
        tracing::info!(
            jobs = msg.records.len(),
            open,
            epoch = msg.fence.epoch,
            "driving the OTA jobs"
        );
        self.jobs.reset(msg.records);
        self.mode = Mode::Driving(msg.fence);
        // As at start-up: time out what expired meanwhile, arm the next timeout.
        let fx = self.jobs.on_tick(self.clock.now());
        self.apply(fx, ctx);
    }
}

/// The jobs lease gone: nothing more is stored or published from here.
impl Handler<StandBy> for JobsActor {
    type Result = ();

    fn handle(&mut self, _msg: StandBy, ctx: &mut Self::Context) {
        if let Some(h) = self.timer.take() {
            ctx.cancel_future(h);
        }
        if self.mode != Mode::Standby {
            tracing::info!("no longer driving the OTA jobs");
        }
        self.jobs.reset(Vec::new());
        self.mode = Mode::Standby;
    }
}

impl Handler<DeviceJobInput> for JobsActor {
    type Result = ();

    fn handle(&mut self, msg: DeviceJobInput, ctx: &mut Self::Context) {
        if self.driving().is_err() {
            // The jobs lease's holder hears the same from the broker.
            return;
        }
        let now = self.clock.now();
        let fx = match msg.input {
            JobInput::Presence(p) => self.jobs.on_presence(&msg.device, p, now),
            JobInput::Update { job, update } => {
                let _g =
                    tracing::info_span!("job", job_id = %job, device_id = %msg.device).entered();
                tracing::info!(status = ?update.status, step = ?update.step, progress = ?update.progress, detail = update.detail.as_deref().unwrap_or(""), "job update");
                self.jobs.on_update(&msg.device, &job, &update, now)
            }
        };
        self.apply(fx, ctx);
    }
}
