//! One actor per device: a thin actix shell over [`state::DeviceState`], and the
//! [`Registry`] that starts actors on first contact and restores them from the store.

mod registry;
#[cfg(test)]
mod registry_tests;
mod schedule;
#[cfg(test)]
mod schedule_tests;
#[cfg(test)]
mod shadow_tests;
pub mod state;
#[cfg(test)]
mod tests;
mod types;
mod validate;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use actix::prelude::*;
use shiki_proto::{Catalog, DeviceId, Event, ReportedUpdate, ScheduleAck, ShadowGet, Status};
use tracing::Instrument;

pub use registry::{
    DeviceCount, DeviceDeps, Directory, ListDevices, LookupDevice, Ownership, Registry,
    RegistryError, Route, Router,
};
pub use state::{
    DesiredChange, DesiredError, DeviceConfig, DeviceState, DeviceView, Outbound, SampleJson,
};

use crate::ota::{DeviceJobInput, JobInput, NotifyDevice, Presence};
use crate::schedule::{DeviceSchedules, ScheduleSync};
use crate::store::{Store, Write};

pub use shiki_shared::clock::{Clock, SharedClock, SystemClock};
pub(crate) use types::at_resolution;

/// A message for one device's edge, published by the MQTT side.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct Publish {
    pub device: DeviceId,
    pub message: Outbound,
}

/// What the ingest routes to a device actor.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub enum DeviceInput {
    Status(Status),
    Catalog(Catalog),
    /// The newest sample of a batch the ingest already queued for the store.
    Telemetry(SampleJson),
    /// Events already queued for the store by the ingest.
    Events(Vec<Event>),
    Reported(Box<ReportedUpdate>),
    ShadowGet(ShadowGet),
    /// `schedule/ack`: the edge stored (or refused) a yearly schedule.
    ScheduleAck(ScheduleAck),
    /// `jobs/{job}/update`: passed on to the jobs actor.
    JobUpdate {
        job: shiki_proto::JobId,
        update: Box<shiki_proto::JobUpdate>,
    },
}

/// A desired change from the API and who asked for it.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<u64, DesiredError>")]
pub struct ChangeDesired {
    pub change: DesiredChange,
    pub author: crate::store::Author,
}

/// The device's current state.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "DeviceView")]
pub struct GetView;

/// What the fleet list needs of a device, without cloning its shadow or decoding its
/// newest sample (the console lists thousands; [`GetView`] serves the page shown).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "DeviceBrief")]
pub struct GetBrief;

/// The answer to [`GetBrief`].
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceBrief {
    pub id: DeviceId,
    pub online: bool,
    pub last_seen: Option<chrono::DateTime<chrono::Utc>>,
    pub version: u64,
    pub pending_verifications: usize,
    pub software_version: Option<String>,
    /// The `ts` of the last `status` (when it said online or offline).
    pub status_ts: Option<chrono::DateTime<chrono::Utc>>,
}

/// Fleet-wide gauges and counters the device actors keep up to date (for `/metrics`).
#[derive(Debug, Default)]
pub struct DeviceMetrics {
    pub online: AtomicI64,
    pub pending_verifications: AtomicI64,
    pub verified: AtomicU64,
    pub failed: AtomicU64,
    pub superseded: AtomicU64,
}

impl DeviceMetrics {
    fn count_outcomes(&self, writes: &[crate::store::Write]) {
        use crate::store::{FailureReason, VerificationOutcome, Write};
        for w in writes {
            if let Write::Verification(v) = w {
                let counter = match &v.outcome {
                    VerificationOutcome::Pending => continue,
                    VerificationOutcome::Verified { .. } => &self.verified,
                    VerificationOutcome::Failed {
                        reason: FailureReason::Superseded { .. },
                        ..
                    } => &self.superseded,
                    VerificationOutcome::Failed { .. } => &self.failed,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The actor of one device.
#[derive(Debug)]
pub struct DeviceActor {
    state: DeviceState,
    deps: Arc<DeviceDeps>,
    timer: Option<SpawnHandle>,
    was_online: bool,
    was_pending: i64,
    /// Yearly schedule sync; `None` until the device gets its first schedule, so that the
    /// many devices without one pay a single pointer for it.
    schedule: Option<Box<ScheduleSync>>,
    schedule_timer: Option<SpawnHandle>,
}

impl DeviceActor {
    pub fn new(state: DeviceState, deps: Arc<DeviceDeps>) -> Self {
        Self {
            state,
            deps,
            timer: None,
            was_online: false,
            was_pending: 0,
            schedule: None,
            schedule_timer: None,
        }
    }

    /// With the schedules restored from the store.
    pub fn with_schedules(mut self, schedules: Option<DeviceSchedules>) -> Self {
        self.schedule = schedules.map(|s| {
            Box::new(ScheduleSync::new(
                self.state.id().as_str(),
                self.deps.schedule.clone(),
                s,
            ))
        });
        self
    }

    fn apply(&mut self, fx: state::Effects, ctx: &mut Context<Self>) {
        let m = &self.deps.metrics;
        m.count_outcomes(&fx.writes);
        let (online, pending) = (self.state.online(), self.state.pending().count() as i64);
        if online != self.was_online {
            m.online
                .fetch_add(if online { 1 } else { -1 }, Ordering::Relaxed);
            self.was_online = online;
        }
        m.pending_verifications
            .fetch_add(pending - self.was_pending, Ordering::Relaxed);
        self.was_pending = pending;
        self.store(fx.writes, "device state", ctx);
        for message in fx.publish {
            self.publish(message);
        }
        for alert in fx.alerts {
            self.deps.alerts.do_send(alert);
        }
        self.reschedule(ctx);
    }

    /// Submits `writes` (if any) to the store; the commit is awaited off the handler and a
    /// failure logged as `what` not stored.
    fn store(&self, writes: Vec<Write>, what: &'static str, ctx: &mut Context<Self>) {
        if writes.is_empty() {
            return;
        }
        let commit = self.deps.store.submit(writes);
        ctx.spawn(
            async move {
                if let Err(e) = commit.await {
                    tracing::error!(error = %e, "{what} could not be stored");
                }
            }
            .instrument(self.span())
            .into_actor(self),
        );
    }

    /// Sends `message` to this device's edge.
    fn publish(&self, message: Outbound) {
        self.deps.publisher.do_send(Publish {
            device: self.state.id().clone(),
            message,
        });
    }

    fn reschedule(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.timer.take() {
            ctx.cancel_future(h);
        }
        if let Some(at) = self.state.next_deadline() {
            let now = self.deps.clock.now();
            let wait = (at - now).to_std().unwrap_or(Duration::ZERO);
            self.timer = Some(ctx.run_later(wait, |act, ctx| {
                act.timer = None;
                let now = act.deps.clock.now();
                let fx = act.state.on_tick(now);
                act.apply(fx, ctx);
            }));
        }
    }

    /// A span per handler call, not one kept per actor: a resident span per device costs
    /// memory across a large fleet.
    fn span(&self) -> tracing::Span {
        tracing::info_span!("device", device_id = %self.state.id())
    }

    /// Passes a status or a job update of this device on to the jobs actor (one process;
    /// a cluster's jobs lease hears them from the broker).
    fn tell_jobs(&self, input: JobInput) {
        if let Some(jobs) = &self.deps.jobs {
            jobs.do_send(DeviceJobInput {
                device: self.state.id().clone(),
                input,
            });
        }
    }

    fn next_id(store: &Arc<dyn Store>) -> impl FnMut() -> u64 + '_ {
        move || store.next_id()
    }
}

impl Actor for DeviceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Count restored state and resume restored verifications and offline alerts.
        self.apply(state::Effects::default(), ctx);
        // Resume restored schedule pushes and a pending switch to the next schedule.
        self.schedule_step(ctx, |sync, now, online| sync.on_tick(now, online));
    }
}

/// Stops a device's actor on a cluster node that gave the device's shard up: it writes and
/// publishes nothing more, and its share of the fleet gauges is taken back.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Retire;

impl Handler<Retire> for DeviceActor {
    type Result = ();

    fn handle(&mut self, _msg: Retire, ctx: &mut Self::Context) {
        let m = &self.deps.metrics;
        if self.was_online {
            m.online.fetch_sub(1, Ordering::Relaxed);
        }
        m.pending_verifications
            .fetch_sub(self.was_pending, Ordering::Relaxed);
        self.was_online = false;
        self.was_pending = 0;
        ctx.stop();
    }
}

impl Handler<DeviceInput> for DeviceActor {
    type Result = ();

    fn handle(&mut self, msg: DeviceInput, ctx: &mut Self::Context) {
        let now = self.deps.clock.now();
        if let DeviceInput::Telemetry(newest) = msg {
            // The hot path logs nothing, so it gets no span: a span costs an allocation
            // and a formatted device id per message at ingest rate.
            self.state.on_telemetry(newest, now);
            return;
        }
        let _g = self.span().entered();
        let store = self.deps.store.clone();
        let was_online = self.state.online();
        let fx = match msg {
            DeviceInput::Status(s) => {
                self.tell_jobs(JobInput::Presence(Presence::from(&s)));
                let fx = self.state.on_status(s, now);
                if self.state.online() && !was_online {
                    self.apply(fx, ctx);
                    self.schedule_step(ctx, |sync, now, _| sync.on_connect(now));
                    return;
                }
                fx
            }
            DeviceInput::JobUpdate { job, update } => {
                self.tell_jobs(JobInput::Update {
                    job,
                    update: *update,
                });
                return;
            }
            DeviceInput::ScheduleAck(ack) => {
                self.schedule_step(ctx, |sync, now, _| sync.on_ack(&ack, now));
                return;
            }
            DeviceInput::Reported(r) if self.schedule.is_some() => {
                let running = r.schedule.clone();
                let fx = self.state.on_reported(*r, now, &mut Self::next_id(&store));
                self.apply(fx, ctx);
                self.schedule_step(ctx, |sync, now, online| {
                    sync.on_reported(running.as_ref(), now, online)
                });
                return;
            }
            DeviceInput::Catalog(c) => self.state.on_catalog(c, now),
            DeviceInput::Telemetry(newest) => {
                self.state.on_telemetry(newest, now);
                return;
            }
            DeviceInput::Events(events) => self.state.on_events(&events, now),
            DeviceInput::Reported(r) => self.state.on_reported(*r, now, &mut Self::next_id(&store)),
            DeviceInput::ShadowGet(g) => self.state.on_shadow_get(g, now),
        };
        self.apply(fx, ctx);
    }
}

impl Handler<ChangeDesired> for DeviceActor {
    type Result = Result<u64, DesiredError>;

    fn handle(&mut self, msg: ChangeDesired, ctx: &mut Self::Context) -> Self::Result {
        let _g = self.span().entered();
        let now = self.deps.clock.now();
        let store = self.deps.store.clone();
        let (version, fx) =
            self.state
                .change_desired(msg.change, msg.author, now, &mut Self::next_id(&store))?;
        tracing::info!(version, "desired state changed");
        self.apply(fx, ctx);
        Ok(version)
    }
}

/// The jobs actor's `jobs/notify` for this device: published as it is.
impl Handler<NotifyDevice> for DeviceActor {
    type Result = ();

    fn handle(&mut self, msg: NotifyDevice, _ctx: &mut Self::Context) {
        self.publish(Outbound::JobNotify(Box::new(msg.notify)));
    }
}

impl Handler<GetBrief> for DeviceActor {
    type Result = MessageResult<GetBrief>;

    fn handle(&mut self, _msg: GetBrief, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.state.brief())
    }
}

impl Handler<GetView> for DeviceActor {
    type Result = MessageResult<GetView>;

    fn handle(&mut self, _msg: GetView, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.state.view())
    }
}
