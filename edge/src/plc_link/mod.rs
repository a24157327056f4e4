//! The `PlcLink` actor: owns one Modbus TCP connection or one serial RTU bus.
//!
//! - Polls every `poll_interval` with the planned grouped reads and sends [`Readings`] to
//!   every subscriber (points that could not be read are in `Readings::errors`).
//! - Takes [`WritePoint`]: checks the point is writable, within its safety limits and
//!   encodable, writes it (single coil, single register or multiple registers), reads it
//!   back and answers the value the PLC holds. It never clamps: Control does that.
//! - Timeouts, lost connections and Modbus exceptions become [`RecordEvent`]s (`PlcError`
//!   once per failure episode, `PlcRecovered` when it ends). After a link fault the
//!   connection is dropped and re-opened with capped exponential backoff; polls and writes
//!   fail fast (without touching the wire) until the next attempt.
//!
//! The actor is a shell: [`LinkState`] (`state.rs`) decides what each poll and write means,
//! which events to record, whether to keep the connection and when to reconnect; the actor
//! runs the Modbus I/O (`transport.rs`) and forwards. The I/O is async on the actor's
//! arbiter; every operation runs under `ctx.wait` / [`AtomicResponse`], so polls and writes
//! are serialised and never interleave on the wire.
//!
//! ```text
//! PlcLink ──Readings──▶ subscribers        Control ──WritePoint──▶ PlcLink
//! PlcLink ──RecordEvent(PlcError | PlcRecovered)──▶ events
//! ```

pub mod messages;
#[cfg(test)]
mod rtu_tests;
mod state;
#[cfg(test)]
mod state_tests;
#[cfg(test)]
mod tests;
mod transport;

use actix::prelude::*;
use chrono::Utc;
use shiki_proto::PointValue;
use tokio::time::Instant;

pub use messages::{PollNow, Subscribe};
pub use state::{Effects, FaultKey, Health, LinkState, WriteJob, all_failed, decode_poll};
pub use transport::{LinkError, ReadData, exception_text, is_transient};

use transport::{Connection, Dialer};

use crate::messages::{Readings, RecordEvent, WriteError, WritePoint};
use crate::register_map::RegisterMap;

/// The PLC link actor. Build with [`PlcLink::new`], add subscribers, then `start()`.
#[derive(Debug)]
pub struct PlcLink {
    state: LinkState,
    dialer: Dialer,
    /// `None` while disconnected (I/O runs under `ctx.wait`, so it is never lent out while
    /// a handler runs).
    conn: Option<Connection>,
    retry_timer: Option<SpawnHandle>,
    subscribers: Vec<Recipient<Readings>>,
    events: Recipient<RecordEvent>,
}

impl PlcLink {
    /// A link for `map` (its `[plc]` settings say where and how often); events go to `events`.
    pub fn new(map: RegisterMap, events: Recipient<RecordEvent>) -> Self {
        let c = map.config();
        Self {
            dialer: Dialer {
                endpoint: c.endpoint(),
                serial: c.serial.clone(),
                timeout: c.request_timeout,
            },
            state: LinkState::new(map),
            conn: None,
            retry_timer: None,
            subscribers: Vec::new(),
            events,
        }
    }

    /// Add a [`Readings`] subscriber before starting (see also [`Subscribe`]).
    pub fn subscribe(mut self, recipient: Recipient<Readings>) -> Self {
        self.subscribers.push(recipient);
        self
    }

    fn publish(&self, readings: Readings) {
        for s in &self.subscribers {
            s.do_send(readings.clone());
        }
    }

    /// Carries out what the state decided after an operation on `conn`.
    fn apply(&mut self, conn: Option<Connection>, fx: Effects, ctx: &mut Context<Self>) {
        let endpoint = &self.dialer.endpoint;
        self.conn = conn.filter(|_| fx.keep_connection);
        for e in fx.events {
            match e.kind {
                shiki_proto::EventKind::PlcRecovered => {
                    tracing::info!(%endpoint, "{}", e.message)
                }
                _ => tracing::warn!(%endpoint, "{}", e.message),
            }
            self.events.do_send(e);
        }
        if let Some(delay) = fx.reconnect_in {
            tracing::debug!(%endpoint, delay_ms = delay.as_millis() as u64, "reconnect scheduled");
            if let Some(h) = self.retry_timer.take() {
                ctx.cancel_future(h);
            }
            self.retry_timer = Some(ctx.run_later(delay, |act, ctx| {
                act.retry_timer = None;
                act.poll(ctx);
            }));
        }
    }

    fn poll(&mut self, ctx: &mut Context<Self>) {
        let ts = Utc::now();
        if let Some(readings) = self.state.skip_poll(Instant::now(), ts) {
            self.publish(readings);
            return;
        }
        let (conn, dialer, plan) = (
            self.conn.take(),
            self.dialer.clone(),
            self.state.plan().to_vec(),
        );
        let io = async move {
            dialer
                .with_connection(conn, async |c, timeout| c.read_plan(&plan, timeout).await)
                .await
        };
        ctx.wait(io.into_actor(self).map(move |(conn, io), act, ctx| {
            let (readings, fx) = act.state.poll_done(io, Instant::now(), ts, Utc::now());
            act.apply(conn, fx, ctx);
            for (point, err) in &readings.errors {
                tracing::debug!(endpoint = %act.dialer.endpoint, point = %point, error = %err, "point not read");
            }
            act.publish(readings);
        }));
    }
}

impl Actor for PlcLink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::info!(endpoint = %self.dialer.endpoint, requests = self.state.plan().len(), "PLC link started");
        self.poll(ctx);
        ctx.run_interval(self.state.map().config().poll_interval, |act, ctx| {
            act.poll(ctx)
        });
    }
}

impl Handler<PollNow> for PlcLink {
    type Result = ();

    fn handle(&mut self, _: PollNow, ctx: &mut Self::Context) {
        self.poll(ctx);
    }
}

impl Handler<Subscribe> for PlcLink {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _: &mut Self::Context) {
        self.subscribers.push(msg.0);
    }
}

impl Handler<WritePoint> for PlcLink {
    type Result = AtomicResponse<Self, Result<PointValue, WriteError>>;

    fn handle(&mut self, msg: WritePoint, _: &mut Self::Context) -> Self::Result {
        let job = match self.state.write_job(&msg, Instant::now()) {
            Ok(job) => job,
            Err(e) => return AtomicResponse::new(Box::pin(fut::ready(Err(e)))),
        };
        let p = &job.point;
        tracing::info!(endpoint = %self.dialer.endpoint, point = %p.name, register = %p.register(), value = ?msg.value, "writing");
        let (conn, dialer) = (self.conn.take(), self.dialer.clone());
        let io = async move {
            let (conn, io) = dialer
                .with_connection(conn, async |c, timeout| {
                    c.write(
                        job.point.kind,
                        job.point.address,
                        job.unit_id,
                        &job.raw,
                        timeout,
                    )
                    .await?;
                    c.read(&job.readback, timeout).await
                })
                .await;
            (conn, io.and_then(|r| r), job)
        };
        AtomicResponse::new(Box::pin(io.into_actor(self).map(
            |(conn, io, job), act, ctx| {
                let (answer, fx) = act.state.write_done(&job, io, Instant::now(), Utc::now());
                act.apply(conn, fx, ctx);
                if let Err(e @ (WriteError::Refused(_) | WriteError::Busy(_))) = &answer {
                    tracing::warn!(endpoint = %act.dialer.endpoint, error = %e, "PLC refused a write");
                }
                answer
            },
        )))
    }
}
