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
//! Modbus I/O is async on the actor's arbiter; every operation runs under `ctx.wait` /
//! [`AtomicResponse`], so polls and writes are serialised and never interleave on the wire.
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
mod tests;
mod transport;

use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use shiki_proto::PointValue;

pub use messages::{PollNow, Subscribe};
pub use state::{FaultKey, Health, all_failed, decode_poll};
pub use transport::{LinkError, ReadData, exception_text};

use transport::Connection;

use crate::backoff::Backoff;
use crate::messages::{Readings, RecordEvent, WriteError, WritePoint};
use crate::register_map::{Endpoint, Limited, Raw, ReadRequest, RegisterMap};

/// The PLC link actor. Build with [`PlcLink::new`], add subscribers, then `start()`.
#[derive(Debug)]
pub struct PlcLink {
    map: RegisterMap,
    endpoint: Endpoint,
    plan: Vec<ReadRequest>,
    /// `None` while disconnected (I/O runs under `ctx.wait`, so it is never lent out while
    /// a handler runs).
    conn: Option<Connection>,
    health: Health,
    backoff: Backoff,
    /// Earliest time of the next connect attempt after a link fault.
    retry_at: Option<tokio::time::Instant>,
    retry_timer: Option<SpawnHandle>,
    subscribers: Vec<Recipient<Readings>>,
    events: Recipient<RecordEvent>,
}

impl PlcLink {
    /// A link for `map` (its `[plc]` settings say where and how often); events go to `events`.
    pub fn new(map: RegisterMap, events: Recipient<RecordEvent>) -> Self {
        let c = map.config();
        let endpoint = c.endpoint();
        Self {
            plan: map.plan_reads(),
            health: Health::new(endpoint.to_string()),
            backoff: Backoff::exact(c.reconnect_min, c.reconnect_max),
            endpoint,
            map,
            conn: None,
            retry_at: None,
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

    fn timeout(&self) -> Duration {
        self.map.config().request_timeout
    }

    fn record(&self, event: Option<RecordEvent>) {
        if let Some(e) = event {
            match e.kind {
                shiki_proto::EventKind::PlcRecovered => {
                    tracing::info!(endpoint = %self.endpoint, "{}", e.message)
                }
                _ => tracing::warn!(endpoint = %self.endpoint, "{}", e.message),
            }
            self.events.do_send(e);
        }
    }

    fn publish(&self, readings: Readings) {
        for s in &self.subscribers {
            s.do_send(readings.clone());
        }
    }

    /// A link fault: drop the connection, schedule a reconnect with backoff.
    fn link_fault(&mut self, err: &LinkError, ctx: &mut Context<Self>) {
        self.conn = None;
        let ev = self.health.fail(FaultKey::Link, err, Utc::now());
        self.record(ev);
        let delay = self.backoff.next_delay();
        tracing::debug!(endpoint = %self.endpoint, delay_ms = delay.as_millis() as u64, "reconnect scheduled");
        self.retry_at = Some(tokio::time::Instant::now() + delay);
        if let Some(h) = self.retry_timer.take() {
            ctx.cancel_future(h);
        }
        self.retry_timer = Some(ctx.run_later(delay, |act, ctx| {
            act.retry_timer = None;
            act.poll(ctx);
        }));
    }

    fn link_ok(&mut self) {
        self.backoff.reset();
        self.retry_at = None;
        let ev = self.health.ok(&FaultKey::Link, Utc::now());
        self.record(ev);
    }

    /// While disconnected and waiting for the next reconnect attempt: how long (whole
    /// seconds, at least 1). Polls and writes fail fast meanwhile.
    fn backing_off(&self) -> Option<Duration> {
        let at = self.retry_at.filter(|_| self.conn.is_none())?;
        let wait = at.checked_duration_since(tokio::time::Instant::now())?;
        Some(Duration::from_secs(wait.as_secs().max(1)))
    }

    fn poll(&mut self, ctx: &mut Context<Self>) {
        let ts = Utc::now();
        if let Some(wait) = self.backing_off() {
            let cause = format!(
                "PLC link down, reconnecting in {}",
                transport::seconds(wait)
            );
            self.publish(all_failed(&self.map, &cause, ts));
            return;
        }
        let conn = self.conn.take();
        let endpoint = self.endpoint.clone();
        let serial = self.map.config().serial.clone();
        let plan = self.plan.clone();
        let timeout = self.timeout();
        let io = async move {
            let mut conn = match conn {
                Some(c) => c,
                None => match transport::connect(&endpoint, &serial, timeout).await {
                    Ok(c) => c,
                    Err(e) => return (None, Err(e)),
                },
            };
            let mut results = Vec::with_capacity(plan.len());
            for (i, req) in plan.iter().enumerate() {
                let r = conn.read(req, timeout).await;
                if let Err(e) = &r
                    && e.is_link_fault()
                {
                    let rest = format!("not read: {e}");
                    results.push(r);
                    for later in &plan[i + 1..] {
                        results.push(Err(LinkError::Io {
                            op: "read",
                            register: later.kind.describe(later.start),
                            unit_id: later.unit_id,
                            cause: rest.clone(),
                        }));
                    }
                    return (None, Ok(results));
                }
                results.push(r);
            }
            (Some(conn), Ok(results))
        };
        ctx.wait(io.into_actor(self).map(move |(conn, outcome), act, ctx| {
            let results = match outcome {
                Err(e) => {
                    act.link_fault(&e, ctx);
                    act.publish(all_failed(&act.map, &e.to_string(), ts));
                    return;
                }
                Ok(results) => results,
            };
            let now = Utc::now();
            let lost = conn.is_none();
            act.conn = conn;
            // Any answer (even an exception) proves the link works.
            if results.iter().any(|r| r.as_ref().map_or_else(|e| !e.is_link_fault(), |_| true)) {
                act.link_ok();
            }
            for (req, r) in act.plan.iter().zip(&results) {
                let key = FaultKey::Read(req.describe());
                let ev = match r {
                    Ok(_) => act.health.ok(&key, now),
                    Err(e) if !e.is_link_fault() => act.health.fail(key, e, now),
                    Err(_) => None,
                };
                act.record(ev);
            }
            if lost
                && let Some(e) = results
                    .iter()
                    .find_map(|r| r.as_ref().err().filter(|e| e.is_link_fault()))
            {
                let e = e.clone();
                act.link_fault(&e, ctx);
            }
            let readings = decode_poll(&act.map, &act.plan, &results, ts);
            for (point, err) in &readings.errors {
                tracing::debug!(endpoint = %act.endpoint, point = %point, error = %err, "point not read");
            }
            act.publish(readings);
        }));
    }

    fn check_write(&self, msg: &WritePoint) -> Result<(u8, Raw), WriteError> {
        let p = self
            .map
            .point(&msg.name)
            .ok_or_else(|| WriteError::UnknownPoint(msg.name.clone()))?;
        if !p.writable {
            return Err(WriteError::ReadOnly(msg.name.clone()));
        }
        let invalid = |reason: String| WriteError::InvalidValue {
            point: msg.name.clone(),
            value: format!("{:?}", msg.value),
            reason,
        };
        let value = match p.limit(msg.value.clone()) {
            Limited::Within(v) => v,
            Limited::Clamped(..) | Limited::Refused(_) => {
                return Err(invalid(format!(
                    "outside the safety limits {}..{}",
                    p.min.map_or("-inf".into(), |v| v.to_string()),
                    p.max.map_or("inf".into(), |v| v.to_string())
                )));
            }
        };
        let raw = p.encode(&value).map_err(|e| invalid(e.to_string()))?;
        Ok((self.map.unit_id_of(p), raw))
    }
}

impl Actor for PlcLink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::info!(endpoint = %self.endpoint, requests = self.plan.len(), "PLC link started");
        self.poll(ctx);
        ctx.run_interval(self.map.config().poll_interval, |act, ctx| act.poll(ctx));
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
        let (unit_id, raw) = match self.check_write(&msg) {
            Ok(x) => x,
            Err(e) => return AtomicResponse::new(Box::pin(fut::ready(Err(e)))),
        };
        let Some(point) = self.map.point(&msg.name).cloned() else {
            return AtomicResponse::new(Box::pin(fut::ready(Err(WriteError::UnknownPoint(
                msg.name,
            )))));
        };
        if let Some(wait) = self.backing_off() {
            return AtomicResponse::new(Box::pin(fut::ready(Err(WriteError::Link(format!(
                "PLC link down, reconnecting in {}",
                transport::seconds(wait)
            ))))));
        }
        let conn = self.conn.take();
        let endpoint = self.endpoint.clone();
        let serial = self.map.config().serial.clone();
        let timeout = self.timeout();
        let readback = ReadRequest {
            unit_id,
            kind: point.kind,
            start: point.address,
            count: point.width(),
            points: Vec::new(),
        };
        tracing::info!(endpoint = %self.endpoint, point = %point.name, register = %point.register(), value = ?msg.value, "writing");
        let io = async move {
            let mut conn = match conn {
                Some(c) => c,
                None => match transport::connect(&endpoint, &serial, timeout).await {
                    Ok(c) => c,
                    Err(e) => return (None, Err(e)),
                },
            };
            let result = async {
                conn.write(point.kind, point.address, unit_id, &raw, timeout)
                    .await?;
                conn.read(&readback, timeout).await
            }
            .await;
            let keep = match &result {
                Err(e) if e.is_link_fault() => None,
                _ => Some(conn),
            };
            (keep, result.map(|data| (point, data)))
        };
        AtomicResponse::new(Box::pin(io.into_actor(self).map(
            |(conn, result), act, ctx| {
                let got_conn = conn.is_some();
                act.conn = conn;
                match result {
                    Ok((point, data)) => {
                        act.link_ok();
                        let raw = match data {
                            ReadData::Bits(b) => b.first().copied().map(Raw::Bit),
                            ReadData::Words(w) => Some(Raw::Words(w)),
                        };
                        raw.ok_or_else(|| "empty answer".to_owned())
                            .and_then(|raw| point.decode(&raw).map_err(|e| e.to_string()))
                            .map_err(|e| {
                                WriteError::Link(format!("read back of {} failed: {e}", point.name))
                            })
                    }
                    Err(e) if e.is_link_fault() => {
                        act.link_fault(&e, ctx);
                        Err(WriteError::Link(e.to_string()))
                    }
                    Err(e) => {
                        if got_conn {
                            act.link_ok();
                        }
                        let exception = match &e {
                            LinkError::Exception { exception, .. } => exception.clone(),
                            other => other.to_string(),
                        };
                        tracing::warn!(endpoint = %act.endpoint, error = %e, "PLC refused a write");
                        Err(WriteError::Refused(exception))
                    }
                }
            },
        )))
    }
}
