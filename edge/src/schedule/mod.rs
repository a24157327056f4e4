//! The Schedule actor: runs the yearly schedule on the gateway, offline, from its own clock.
//!
//! A thin actix shell around [`ScheduleState`] (all logic, unit-tested without actix):
//!
//! ```text
//! Uplink ──ScheduleSetReceived──▶ Schedule ──PublishScheduleAck──▶ Uplink (schedule/ack)
//!                                     │ ──ScheduleSettings──▶ Control  (at start-up, on change)
//!                                     │ ──RecordEvent──────▶ Outbox   (transitions, installs)
//!                                     └── ScheduleStore (load at start, save on install/switch)
//! ```
//!
//! - Time comes from the injected [`SharedClock`]; the actor arms one timer for
//!   [`ScheduleState::next_wakeup`], never longer than [`ScheduleConfig::max_sleep`], so a
//!   clock jump (NTP after a long power-off) is noticed within that time. [`Tick`] forces an
//!   evaluation now (tests, or the composition root after a clock step).
//! - Store calls run on `spawn_blocking` while the actor's mailbox waits (`ctx.wait`), so
//!   the order of installs is kept and the arbiter is never blocked. An accepted schedule is
//!   acked only after it is saved; if saving fails, the previous state is restored and the
//!   ack says `rejected` with the storage error.
//!
//! # Layout
//! - `state`: [`ScheduleState`] and its [`Effects`].
//! - `file`: [`schedule_from_file`] (`schedule.file`, installed when the store is empty).
//! - `store`: the [`ScheduleStore`] trait, [`StoredSchedules`], [`MemoryScheduleStore`].

mod file;
mod state;
mod store;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use shiki_proto::{PointInfo, ScheduleAck, ScheduleSet};
use shiki_shared::clock::SharedClock;

pub use file::schedule_from_file;
pub use state::{Effects, MAX_REASON_PROBLEMS, MAX_TRANSITION_EVENTS, ScheduleState};
pub use store::{
    MemoryScheduleStore, ScheduleStore, ScheduleStoreError, StoredSchedule, StoredSchedules,
};

use crate::messages::{RecordEvent, ScheduleSettings, Stop};

/// Settings of the Schedule actor.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// Longest sleep between evaluations, whatever the next transition (clock jumps).
    pub max_sleep: Duration,
    /// The device's points (from the register map): schedules are validated against them.
    /// `None` validates only the document itself.
    pub catalog: Option<Vec<PointInfo>>,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            max_sleep: Duration::from_secs(60),
            catalog: None,
        }
    }
}

/// `schedule/set` arrived from the cloud (sent by the Uplink).
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct ScheduleSetReceived(pub ScheduleSet);

/// Publish this on `schedule/ack` (handled by the Uplink; QoS 1, through the outbox or
/// directly: a lost ack only makes the cloud push again, which is acked again).
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct PublishScheduleAck(pub ScheduleAck);

/// Evaluate the schedule now (timer, clock step, tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct Tick;

/// Where the Schedule actor sends its output.
#[derive(Debug, Clone)]
pub struct SchedulePeers {
    pub control: Recipient<ScheduleSettings>,
    pub events: Recipient<RecordEvent>,
    pub acks: Recipient<PublishScheduleAck>,
}

/// The Schedule actor. Build with [`ScheduleActor::new`] and `start()` it inside an actix
/// system; it loads the store and sends the settings in force at once.
#[derive(Debug)]
pub struct ScheduleActor {
    config: ScheduleConfig,
    clock: SharedClock,
    store: Arc<dyn ScheduleStore>,
    peers: SchedulePeers,
    state: ScheduleState,
    timer: Option<SpawnHandle>,
}

impl ScheduleActor {
    pub fn new(
        config: ScheduleConfig,
        clock: SharedClock,
        store: Arc<dyn ScheduleStore>,
        peers: SchedulePeers,
    ) -> Self {
        Self {
            config,
            clock,
            store,
            peers,
            state: ScheduleState::default(),
            timer: None,
        }
    }

    fn catalog(&self) -> Option<&[PointInfo]> {
        self.config.catalog.as_deref()
    }

    /// Saves (if asked) on the blocking pool with the mailbox paused, then sends the rest.
    /// `rollback`: the state before an install and its message, restored on a save error.
    fn carry_out(
        &mut self,
        mut fx: Effects,
        rollback: Option<(ScheduleState, ScheduleSet)>,
        ctx: &mut Context<Self>,
    ) {
        let Some(stored) = fx.persist.take() else {
            self.send(fx);
            self.arm_timer(ctx);
            return;
        };
        let store = Arc::clone(&self.store);
        let save = async move {
            match tokio::task::spawn_blocking(move || store.save(&stored)).await {
                Ok(result) => result,
                Err(e) => Err(ScheduleStoreError::Save(format!("save task failed: {e}"))),
            }
        };
        ctx.wait(save.into_actor(self).map(move |result, act, ctx| {
            match (result, rollback) {
                (Ok(()), _) => act.send(fx),
                (Err(e), Some((before, msg))) => {
                    tracing::error!(error = %e, id = %msg.schedule_id, "schedule not stored; refusing it");
                    act.state = before;
                    let now = act.clock.now();
                    act.send(ScheduleState::store_failed(&msg, &e.to_string(), now));
                }
                (Err(e), None) => {
                    // A switch at the boundary: it is recomputed from the stored pair after a
                    // reboot, so keep running and say so.
                    tracing::error!(error = %e, "saving the schedules after a switch failed");
                    fx.events.push(RecordEvent {
                        ts: act.clock.now(),
                        kind: shiki_proto::EventKind::ScheduleChanged,
                        severity: shiki_proto::Severity::Warning,
                        message: format!("schedules could not be saved: {e}"),
                        data: serde_json::Value::Null,
                    });
                    act.send(fx);
                }
            }
            act.arm_timer(ctx);
        }));
    }

    fn send(&self, fx: Effects) {
        if let Some(ack) = fx.ack {
            self.peers.acks.do_send(PublishScheduleAck(ack));
        }
        if let Some(settings) = fx.settings {
            tracing::debug!(active = ?settings.schedule, keys = settings.settings.len(), "schedule settings");
            self.peers.control.do_send(settings);
        }
        for event in fx.events {
            self.peers.events.do_send(event);
        }
    }

    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        let now = self.clock.now();
        let delay = self
            .state
            .next_wakeup(now)
            .and_then(|at| (at - now).to_std().ok())
            .map_or(self.config.max_sleep, |d| d.min(self.config.max_sleep));
        self.timer = Some(ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            act.tick(ctx);
        }));
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let fx = self.state.on_tick(self.clock.now());
        self.carry_out(fx, None, ctx);
    }
}

impl Actor for ScheduleActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let store = Arc::clone(&self.store);
        let load = async move {
            match tokio::task::spawn_blocking(move || store.load()).await {
                Ok(result) => result,
                Err(e) => Err(ScheduleStoreError::Load(format!("load task failed: {e}"))),
            }
        };
        ctx.wait(load.into_actor(self).map(|result, act, ctx| {
            let stored = result.unwrap_or_else(|e| {
                tracing::error!(error = %e, "no stored schedules; running without a schedule");
                StoredSchedules::default()
            });
            let (state, fx) = ScheduleState::restore(stored, act.catalog(), act.clock.now());
            act.state = state;
            act.carry_out(fx, None, ctx);
        }));
    }
}

impl Handler<ScheduleSetReceived> for ScheduleActor {
    type Result = ();

    fn handle(&mut self, msg: ScheduleSetReceived, ctx: &mut Self::Context) {
        let before = self.state.clone();
        let now = self.clock.now();
        let fx = self
            .state
            .on_schedule_set(&msg.0, self.config.catalog.as_deref(), now);
        self.carry_out(fx, Some((before, msg.0)), ctx);
    }
}

impl Handler<Tick> for ScheduleActor {
    type Result = ();

    fn handle(&mut self, _: Tick, ctx: &mut Self::Context) {
        self.tick(ctx);
    }
}

impl Handler<Stop> for ScheduleActor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
