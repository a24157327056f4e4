//! The schedule messages and the [`FleetScheduleActor`], a thin actix shell around
//! [`FleetScheduler`]. Each device's [`ScheduleSync`](super::ScheduleSync) lives inside its
//! `DeviceActor` (see `crate::device`), which handles [`PutSchedule`], [`GetScheduleView`]
//! and [`FleetJobsDue`].
//!
//! ```text
//! Admin API ──PutSchedule / GetScheduleView──▶ DeviceActor ──schedule/set──▶ MQTT
//! FleetScheduleActor ──FleetJobsDue──▶ Registry (stores `last_run`, forwards to each
//!                                      DeviceActor, which runs the job itself)
//! ```

use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use shiki_shared::clock::SharedClock;

use super::effects::SetError;
use super::fleet::{FleetJob, FleetScheduler};
use shiki_cloud_api::{PutScheduleResponse, ScheduleView};
use shiki_cloud_model::schedule::SlotChoice;

/// Longest sleep of a schedule timer, the fleet actor's and each device's (clock steps are
/// noticed within it).
pub(crate) const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// `PUT /api/v1/devices/{id}/schedule`; `actor` is the authenticated operator or key
/// (recorded in history; its `kind:name` becomes the schedule's `set_by`).
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "Result<PutScheduleResponse, SetError>")]
pub struct PutSchedule {
    pub slot: SlotChoice,
    pub document: Value,
    pub actor: crate::store::Author,
}

/// `GET /api/v1/devices/{id}/schedule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "ScheduleView")]
pub struct GetScheduleView;

/// Evaluate the fleet's yearly jobs now (timer, tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct ScheduleTick;

/// Yearly jobs are due: forward to every device actor; persist `last_run` and
/// pass it to [`FleetScheduler::new`] at the next start.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct FleetJobsDue {
    pub jobs: Vec<FleetJob>,
    pub fleet_tz: Tz,
    pub last_run: DateTime<Utc>,
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
