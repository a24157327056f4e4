//! Thin actix shells around [`ScheduleSync`] and [`FleetScheduler`].
//!
//! ```text
//! Admin API ──PutSchedule / GetScheduleView──▶ DeviceScheduleActor ──PublishScheduleSet──▶ MQTT (schedule/set)
//! Ingest ──ScheduleAckReceived / DeviceConnectivity / ReportedSchedule / UpdateCatalog──▶   │
//!    DeviceScheduleActor ──PersistDeviceSchedules──▶ Store   ──RecordScheduleHistory──▶ History
//!                        ──RaiseScheduleAlert──▶ Notifier
//! FleetScheduleActor ──FleetJobsDue──▶ registry (persists `last_run`, forwards to each
//!                                      DeviceScheduleActor, which runs the job itself)
//! ```

use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use shiki_proto::{ActiveSchedule, PointInfo, ScheduleAck, ScheduleSet};
use shiki_shared::clock::SharedClock;

use super::fleet::{FleetJob, FleetScheduler};
use super::state::{
    DeviceSchedules, ScheduleAlert, ScheduleHistory, ScheduleSync, SetError, SlotChoice,
    SyncEffects,
};
use super::view::{PutScheduleResponse, ScheduleView};

/// Longest sleep of either actor (clock steps are noticed within it).
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// Publish on `schedule/set` of `device_id`.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct PublishScheduleSet {
    pub device_id: String,
    pub set: ScheduleSet,
}

/// Store the device's schedules (replaces the stored record).
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct PersistDeviceSchedules {
    pub device_id: String,
    pub schedules: DeviceSchedules,
}

/// Write one history record.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct RecordScheduleHistory {
    pub device_id: String,
    pub record: ScheduleHistory,
}

/// Raise an alert.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct RaiseScheduleAlert(pub ScheduleAlert);

/// `PUT /api/v1/devices/{id}/schedule`; `actor` is the authenticated operator or key.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "Result<PutScheduleResponse, SetError>")]
pub struct PutSchedule {
    pub slot: SlotChoice,
    pub document: Value,
    pub actor: String,
}

/// `GET /api/v1/devices/{id}/schedule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "ScheduleView")]
pub struct GetScheduleView;

/// `schedule/ack` from the device.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct ScheduleAckReceived(pub ScheduleAck);

/// The device's `status` changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct DeviceConnectivity {
    pub online: bool,
}

/// The schedule the device reports running (shadow/reported `schedule`).
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct ReportedSchedule(pub Option<ActiveSchedule>);

/// The device's catalog (retained `catalog` topic) arrived or changed.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct UpdateCatalog(pub Vec<PointInfo>);

/// Evaluate now (timer, tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct ScheduleTick;

/// Yearly jobs are due: forward to every [`DeviceScheduleActor`]; persist `last_run` and
/// pass it to [`FleetScheduler::new`] at the next start.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct FleetJobsDue {
    pub jobs: Vec<FleetJob>,
    pub fleet_tz: Tz,
    pub last_run: DateTime<Utc>,
}

/// Where a [`DeviceScheduleActor`] sends its output.
#[derive(Debug, Clone)]
pub struct DeviceSchedulePeers {
    pub publish: Recipient<PublishScheduleSet>,
    pub persist: Recipient<PersistDeviceSchedules>,
    pub history: Recipient<RecordScheduleHistory>,
    pub alerts: Recipient<RaiseScheduleAlert>,
}

/// One device's schedule sync.
#[derive(Debug)]
pub struct DeviceScheduleActor {
    sync: ScheduleSync,
    clock: SharedClock,
    peers: DeviceSchedulePeers,
    catalog: Option<Vec<PointInfo>>,
    online: bool,
    timer: Option<SpawnHandle>,
}

impl DeviceScheduleActor {
    /// `catalog`: the device's last known catalog (`None`: puts are validated without it,
    /// the edge still checks). `online`: its last known status.
    pub fn new(
        sync: ScheduleSync,
        clock: SharedClock,
        peers: DeviceSchedulePeers,
        catalog: Option<Vec<PointInfo>>,
        online: bool,
    ) -> Self {
        Self {
            sync,
            clock,
            peers,
            catalog,
            online,
            timer: None,
        }
    }

    fn apply(&mut self, fx: SyncEffects, ctx: &mut Context<Self>) {
        let device_id = self.sync.device_id().to_owned();
        if let Some(schedules) = fx.persist {
            self.peers.persist.do_send(PersistDeviceSchedules {
                device_id: device_id.clone(),
                schedules,
            });
        }
        for set in fx.publish {
            self.peers.publish.do_send(PublishScheduleSet {
                device_id: device_id.clone(),
                set,
            });
        }
        for record in fx.history {
            self.peers.history.do_send(RecordScheduleHistory {
                device_id: device_id.clone(),
                record,
            });
        }
        for alert in fx.alerts {
            tracing::warn!(device_id = %alert.device_id, message = %alert.message, "schedule alert");
            self.peers.alerts.do_send(RaiseScheduleAlert(alert));
        }
        self.arm_timer(ctx);
    }

    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        let now = self.clock.now();
        let delay = self.sync.next_wakeup(self.online).map_or(MAX_SLEEP, |at| {
            (at - now).to_std().unwrap_or(Duration::ZERO).min(MAX_SLEEP)
        });
        self.timer = Some(ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            let fx = act.sync.on_tick(act.clock.now(), act.online);
            act.apply(fx, ctx);
        }));
    }
}

impl Actor for DeviceScheduleActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let fx = self.sync.on_tick(self.clock.now(), self.online);
        self.apply(fx, ctx);
    }
}

impl Handler<PutSchedule> for DeviceScheduleActor {
    type Result = Result<PutScheduleResponse, SetError>;

    fn handle(&mut self, msg: PutSchedule, ctx: &mut Self::Context) -> Self::Result {
        let now = self.clock.now();
        let fx = self.sync.set(
            msg.slot,
            &msg.document,
            &msg.actor,
            self.catalog.as_deref(),
            now,
            self.online,
        )?;
        let response = PutScheduleResponse {
            slot: fx.slot.unwrap_or(shiki_proto::ScheduleSlot::Current),
            pushed: !fx.publish.is_empty(),
            schedule: ScheduleView::from(&self.sync),
            warnings: fx.warnings.clone(),
        };
        self.apply(fx, ctx);
        Ok(response)
    }
}

impl Handler<GetScheduleView> for DeviceScheduleActor {
    type Result = MessageResult<GetScheduleView>;

    fn handle(&mut self, _: GetScheduleView, _: &mut Self::Context) -> Self::Result {
        MessageResult(ScheduleView::from(&self.sync))
    }
}

impl Handler<ScheduleAckReceived> for DeviceScheduleActor {
    type Result = ();

    fn handle(&mut self, msg: ScheduleAckReceived, ctx: &mut Self::Context) {
        let fx = self.sync.on_ack(&msg.0, self.clock.now());
        self.apply(fx, ctx);
    }
}

impl Handler<DeviceConnectivity> for DeviceScheduleActor {
    type Result = ();

    fn handle(&mut self, msg: DeviceConnectivity, ctx: &mut Self::Context) {
        let came_online = msg.online && !self.online;
        self.online = msg.online;
        let fx = if came_online {
            self.sync.on_connect(self.clock.now())
        } else {
            SyncEffects::default()
        };
        self.apply(fx, ctx);
    }
}

impl Handler<ReportedSchedule> for DeviceScheduleActor {
    type Result = ();

    fn handle(&mut self, msg: ReportedSchedule, ctx: &mut Self::Context) {
        let fx = self
            .sync
            .on_reported(msg.0.as_ref(), self.clock.now(), self.online);
        self.apply(fx, ctx);
    }
}

impl Handler<UpdateCatalog> for DeviceScheduleActor {
    type Result = ();

    fn handle(&mut self, msg: UpdateCatalog, _: &mut Self::Context) {
        self.catalog = Some(msg.0);
    }
}

impl Handler<ScheduleTick> for DeviceScheduleActor {
    type Result = ();

    fn handle(&mut self, _: ScheduleTick, ctx: &mut Self::Context) {
        let fx = self.sync.on_tick(self.clock.now(), self.online);
        self.apply(fx, ctx);
    }
}

impl Handler<FleetJobsDue> for DeviceScheduleActor {
    type Result = ();

    fn handle(&mut self, msg: FleetJobsDue, ctx: &mut Self::Context) {
        let now = self.clock.now();
        let mut all = SyncEffects::default();
        for job in &msg.jobs {
            let fx = self.sync.on_fleet_job(job, msg.fleet_tz, now, self.online);
            all.publish.extend(fx.publish);
            all.alerts.extend(fx.alerts);
            all.persist = fx.persist.or(all.persist);
        }
        self.apply(all, ctx);
    }
}

/// Runs the fleet's yearly jobs on time; one per process.
#[derive(Debug)]
pub struct FleetScheduleActor {
    scheduler: FleetScheduler,
    clock: SharedClock,
    jobs: Recipient<FleetJobsDue>,
    timer: Option<SpawnHandle>,
}

impl FleetScheduleActor {
    pub fn new(
        scheduler: FleetScheduler,
        clock: SharedClock,
        jobs: Recipient<FleetJobsDue>,
    ) -> Self {
        Self {
            scheduler,
            clock,
            jobs,
            timer: None,
        }
    }

    fn run(&mut self, ctx: &mut Context<Self>) {
        let now = self.clock.now();
        let jobs = self.scheduler.due(now);
        if !jobs.is_empty() {
            tracing::info!(?jobs, "yearly schedule jobs due");
            self.jobs.do_send(FleetJobsDue {
                jobs,
                fleet_tz: self.scheduler.timezone(),
                last_run: self.scheduler.last_run(),
            });
        }
        if let Some(handle) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        let delay = self.scheduler.next_wakeup().map_or(MAX_SLEEP, |at| {
            (at - now).to_std().unwrap_or(Duration::ZERO).min(MAX_SLEEP)
        });
        self.timer = Some(ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            act.run(ctx);
        }));
    }
}

impl Actor for FleetScheduleActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.run(ctx);
    }
}

impl Handler<ScheduleTick> for FleetScheduleActor {
    type Result = ();

    fn handle(&mut self, _: ScheduleTick, ctx: &mut Self::Context) {
        self.run(ctx);
    }
}
