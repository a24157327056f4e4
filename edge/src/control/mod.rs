//! The `Control` actor: owns the effective settings of the plant.
//!
//! Inputs: [`SetOverrides`] (operator overrides from the shadow), [`ScheduleSettings`]
//! (what the yearly schedule has in force), [`Readings`] (what the PLC holds; also catches a
//! PLC changed locally; failed writes are retried here), and a timer every
//! `expiry_check_interval` that acts when an override's time has come. On each, Control ends
//! overrides whose time has come, computes each setting's target (safety limits > override >
//! schedule > defaults; see [`ControlState`]), sends [`WritePoint`] for settings whose PLC
//! value differs at the point's resolution (nothing before the first poll), takes the value read back, and sends a
//! [`ControlReport`] to every report recipient — after every `SetOverrides` /
//! `ScheduleSettings`, and otherwise only when the report changed. It records
//! `SettingApplied`, `ControlError` (once per distinct failure or refusal) and
//! `OverrideExpired` events.
//!
//! ```text
//! PlcLink ──Readings──▶ Control ──WritePoint──▶ PlcLink (answers the value read back)
//! Shadow ──SetOverrides──▶ Control ──ControlReport──▶ Shadow
//! ScheduleActor ──ScheduleSettings──▶ Control ──RecordEvent──▶ Telemetry (appends to the outbox)
//! ```
//! Writes run under `ctx.wait`, one after another, so inputs that arrive meanwhile are
//! handled after the writes complete, against fresh state.

mod config;
pub mod state;
#[cfg(test)]
mod state_tests;
#[cfg(test)]
mod tests;

use actix::prelude::*;
use shiki_shared::clock::{Clock, SharedClock};

pub use config::{ControlConfig, ControlConfigError};
pub use state::{ControlState, Decision, Target};

use crate::messages::{
    ControlReport, Readings, RecordEvent, ScheduleSettings, SetOverrides, WriteError, WritePoint,
};
use crate::register_map::RegisterMap;

/// Add a [`ControlReport`] recipient.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct SubscribeReports(pub Recipient<ControlReport>);

/// Ask for the current report now (e.g. the shadow after a reconnect). Does not drain
/// expired overrides from the next pushed report.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "ControlReport")]
pub struct CurrentReport;

/// The Control actor. Build with [`Control::new`], add report recipients, then `start()`.
pub struct Control {
    state: ControlState,
    config: ControlConfig,
    plc: Recipient<WritePoint>,
    events: Recipient<RecordEvent>,
    reports: Vec<Recipient<ControlReport>>,
    clock: SharedClock,
    last_report: Option<ControlReport>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("state", &self.state)
            .field("reports", &self.reports.len())
            .finish_non_exhaustive()
    }
}

impl Control {
    /// Control of the writable points of `map`, writing through `plc`. Fails when
    /// `[control.defaults]` names an unknown setting or an invalid value.
    pub fn new(
        map: RegisterMap,
        config: ControlConfig,
        plc: Recipient<WritePoint>,
        events: Recipient<RecordEvent>,
        clock: SharedClock,
    ) -> Result<Self, ControlConfigError> {
        Ok(Self {
            state: ControlState::new(map, &config)?,
            config,
            plc,
            events,
            reports: Vec::new(),
            clock,
            last_report: None,
        })
    }

    /// Add a report recipient before starting (see also [`SubscribeReports`]).
    pub fn report_to(mut self, recipient: Recipient<ControlReport>) -> Self {
        self.reports.push(recipient);
        self
    }

    fn record(&self, events: impl IntoIterator<Item = RecordEvent>) {
        for e in events {
            tracing::info!(kind = ?e.kind, "{}", e.message);
            self.events.do_send(e);
        }
    }

    fn send_report(&mut self, force: bool) {
        let report = self.state.report(self.clock.now());
        let changed = match &self.last_report {
            None => true,
            Some(last) => {
                last.reported != report.reported
                    || last.settings != report.settings
                    || last.applied_version != report.applied_version
                    || last.schedule != report.schedule
            }
        };
        if force || changed || !report.expired.is_empty() {
            for r in &self.reports {
                r.do_send(report.clone());
            }
        }
        self.last_report = Some(report);
    }

    /// Timer: only when an override ended (or a report is due) — retries of failed writes
    /// wait for the next `Readings`, so a dead link is not hammered every second.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self
            .state
            .next_expiry()
            .is_some_and(|at| at <= self.clock.now())
        {
            self.reconcile(ctx, true);
        } else {
            self.send_report(false);
        }
    }

    /// Expire, write what differs, read back, report.
    fn reconcile(&mut self, ctx: &mut Context<Self>, force_report: bool) {
        let now = self.clock.now();
        let expired = self.state.expire(now);
        let force_report = force_report || !expired.is_empty();
        self.record(expired);
        let refused = self.state.refusal_events(now);
        self.record(refused);
        let writes = self.state.writes();
        if writes.is_empty() {
            self.send_report(force_report);
            return;
        }
        let plc = self.plc.clone();
        let io = async move {
            let mut results = Vec::with_capacity(writes.len());
            for w in writes {
                let r = plc.send(w.clone()).await.unwrap_or_else(|e| {
                    Err(WriteError::Link(format!("PLC link actor unavailable: {e}")))
                });
                results.push((w, r));
            }
            results
        };
        ctx.wait(io.into_actor(self).map(move |results, act, _| {
            for (w, r) in results {
                let ev = act.state.on_write(&w, r, act.clock.now());
                act.record(ev);
            }
            act.send_report(true);
        }));
    }
}

impl Actor for Control {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.config.expiry_check_interval, |act, ctx| act.tick(ctx));
    }
}

impl Handler<Readings> for Control {
    type Result = ();

    fn handle(&mut self, msg: Readings, ctx: &mut Self::Context) {
        self.state.observe(&msg.values);
        self.reconcile(ctx, false);
    }
}

impl Handler<SetOverrides> for Control {
    type Result = ();

    fn handle(&mut self, msg: SetOverrides, ctx: &mut Self::Context) {
        tracing::info!(
            desired_version = msg.desired_version,
            keys = msg.overrides.len(),
            "overrides"
        );
        self.state.set_overrides(msg);
        self.reconcile(ctx, true);
    }
}

impl Handler<ScheduleSettings> for Control {
    type Result = ();

    fn handle(&mut self, msg: ScheduleSettings, ctx: &mut Self::Context) {
        self.state.set_schedule(msg);
        self.reconcile(ctx, true);
    }
}

impl Handler<SubscribeReports> for Control {
    type Result = ();

    fn handle(&mut self, msg: SubscribeReports, _: &mut Self::Context) {
        self.reports.push(msg.0);
    }
}

impl Handler<CurrentReport> for Control {
    type Result = MessageResult<CurrentReport>;

    fn handle(&mut self, _: CurrentReport, _: &mut Self::Context) -> Self::Result {
        let mut state = self.state.clone();
        MessageResult(state.report(self.clock.now()))
    }
}
