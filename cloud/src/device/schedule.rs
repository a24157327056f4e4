//! The yearly-schedule half of the [`DeviceActor`]: it drives the device's
//! [`ScheduleSync`] (created on the first put, restored from the store) and turns its
//! [`SyncEffects`] into store writes (`schedules` table, history), `schedule/set`
//! publishes and alerts.
//!
//! ```text
//! Admin API ──PutSchedule / GetScheduleView──▶ DeviceActor ──Publish(ScheduleSet)──▶ MqttPublisher
//! Ingest ──DeviceInput::{ScheduleAck, Status, Reported}──▶ │ ──Write::{Schedules, History}──▶ Store
//! Registry ──FleetJobsDue (from FleetScheduleActor)──▶      │ ──Alert──▶ Notifier
//! ```

use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use shiki_proto::DeviceId;

use super::{DeviceActor, Outbound};
use crate::notifier::{Alert, AlertKind};
use crate::schedule::{
    FleetJobsDue, GetScheduleView, MAX_SLEEP, PutSchedule, PutScheduleResponse, ScheduleHistory,
    ScheduleSync, ScheduleView, SetError, SyncEffects,
};
use crate::store::{Author, HistoryEntry, Side, Write};

/// Who a schedule history record names: `device` (an ack: this device), `schedule` (a
/// switch, the yearly job), `api-key:NAME` / `user:NAME` / `operator:NAME`, anything else an operator.
/// A put records the [`PutSchedule`]'s own actor instead (with the API key's role).
fn history_actor(actor: &str, device: &DeviceId) -> Author {
    match actor {
        "device" => Author::Device(device.clone()),
        "schedule" | "fleet" => Author::Schedule,
        other => match other.split_once(':') {
            Some(("api-key", name)) => Author::ApiKey {
                name: name.to_owned(),
                role: None,
            },
            Some(("operator", name)) => Author::Operator(name.to_owned()),
            Some(("user", name)) => Author::User {
                name: name.to_owned(),
                role: None,
            },
            _ => Author::Operator(other.to_owned()),
        },
    }
}

impl DeviceActor {
    /// The device's sync, created empty on first use.
    fn sync_mut(&mut self) -> &mut ScheduleSync {
        let (id, config) = (self.state.id().as_str(), &self.deps.schedule);
        self.schedule.get_or_insert_with(|| {
            Box::new(ScheduleSync::new(id, config.clone(), Default::default()))
        })
    }

    /// Runs one step of the sync (if the device has one) and applies its effects.
    pub(super) fn schedule_step(
        &mut self,
        ctx: &mut Context<Self>,
        step: impl FnOnce(&mut ScheduleSync, DateTime<Utc>, bool) -> SyncEffects,
    ) {
        let (now, online) = (self.deps.clock.now(), self.state.online());
        let Some(sync) = self.schedule.as_deref_mut() else {
            return;
        };
        let fx = step(sync, now, online);
        self.apply_schedule(fx, None, ctx);
    }

    /// A history record of the sync; `by` is who caused it when it is not the sync itself.
    fn history_write(&self, r: ScheduleHistory, by: Option<&Author>) -> Write {
        let side = if r.actor == "device" {
            Side::Reported
        } else {
            Side::Desired
        };
        Write::History(Box::new(HistoryEntry {
            id: self.deps.store.next_id(),
            device: self.state.id().clone(),
            ts: r.at,
            actor: by
                .cloned()
                .unwrap_or_else(|| history_actor(&r.actor, self.state.id())),
            side,
            key: r.key,
            old: r.old,
            new: r.new,
            version: self.state.shadow().version(),
            comment: Some(r.comment),
            verification_id: None,
        }))
    }

    /// Persists, records, publishes and alerts, then re-arms the schedule timer. History
    /// records name `by` when given (the caller of a put), else what the sync says.
    fn apply_schedule(&mut self, fx: SyncEffects, by: Option<&Author>, ctx: &mut Context<Self>) {
        let mut writes: Vec<Write> = Vec::new();
        if let Some(schedules) = fx.persist {
            writes.push(Write::Schedules {
                device: self.state.id().clone(),
                schedules: Box::new(schedules),
            });
        }
        for r in fx.history {
            writes.push(self.history_write(r, by));
        }
        self.store(writes, "device schedules", ctx);
        for set in fx.publish {
            tracing::info!(id = %set.schedule_id, hash = %set.hash, slot = ?set.slot, "schedule/set published");
            self.publish(Outbound::ScheduleSet(Box::new(set)));
        }
        for a in fx.alerts {
            tracing::warn!(kind = ?a.kind, message = %a.message, "schedule alert");
            self.deps.alerts.do_send(Alert {
                device: self.state.id().clone(),
                kind: AlertKind::Schedule,
                text: a.message,
            });
        }
        self.arm_schedule_timer(ctx);
    }

    fn arm_schedule_timer(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.schedule_timer.take() {
            ctx.cancel_future(h);
        }
        let online = self.state.online();
        let Some(at) = self.schedule.as_deref().and_then(|s| s.next_wakeup(online)) else {
            return;
        };
        let wait = (at - self.deps.clock.now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(MAX_SLEEP);
        self.schedule_timer = Some(ctx.run_later(wait, |act, ctx| {
            act.schedule_timer = None;
            let _g = act.span().entered();
            act.schedule_step(ctx, |sync, now, online| sync.on_tick(now, online));
        }));
    }
}

impl Handler<PutSchedule> for DeviceActor {
    type Result = Result<PutScheduleResponse, SetError>;

    fn handle(&mut self, msg: PutSchedule, ctx: &mut Self::Context) -> Self::Result {
        let _g = self.span().entered();
        let (now, online) = (self.deps.clock.now(), self.state.online());
        let catalog = self.state.catalog().map(|c| c.points.clone());
        let fx = self.sync_mut().set(
            msg.slot,
            &msg.document,
            &msg.actor.to_string(),
            catalog.as_deref(),
            now,
            online,
        )?;
        let sync = self.sync_mut();
        let response = PutScheduleResponse {
            slot: fx.slot.unwrap_or(shiki_proto::ScheduleSlot::Current),
            pushed: !fx.publish.is_empty(),
            schedule: ScheduleView::from(&*sync),
            warnings: fx.warnings.clone(),
        };
        self.apply_schedule(fx, Some(&msg.actor), ctx);
        Ok(response)
    }
}

impl Handler<GetScheduleView> for DeviceActor {
    type Result = MessageResult<GetScheduleView>;

    fn handle(&mut self, _: GetScheduleView, _: &mut Self::Context) -> Self::Result {
        MessageResult(match self.schedule.as_deref() {
            Some(sync) => ScheduleView::from(sync),
            None => ScheduleView {
                device_id: self.state.id().to_string(),
                current: None,
                next: None,
            },
        })
    }
}

impl Handler<FleetJobsDue> for DeviceActor {
    type Result = ();

    fn handle(&mut self, msg: FleetJobsDue, ctx: &mut Self::Context) {
        let _g = self.span().entered();
        // A device without any schedule still answers the yearly jobs (it lacks next year's).
        let (now, online) = (self.deps.clock.now(), self.state.online());
        let sync = self.sync_mut();
        let mut all = SyncEffects::default();
        for job in &msg.jobs {
            let fx = sync.on_fleet_job(job, msg.fleet_tz, now, online);
            all.publish.extend(fx.publish);
            all.alerts.extend(fx.alerts);
            all.persist = fx.persist.or(all.persist);
        }
        if sync.current().is_none() && sync.next().is_none() {
            // A device without schedules keeps no sync (see `DeviceActor::schedule`).
            self.schedule = None;
        }
        self.apply_schedule(all, None, ctx);
    }
}
