//! The PlcLink's plain logic: decoding a poll into [`Readings`], failure episodes (one
//! event when a fault starts, one when it ends) and reconnect backoff. No I/O, no actix.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use shiki_proto::{EventKind, Severity};

use shiki_proto::PointValue;
use tokio::time::Instant;

use super::transport::{LinkError, ReadData, seconds};
use crate::backoff::Backoff;
use crate::messages::{Readings, RecordEvent, WriteError, WritePoint};
use crate::register_map::{Limited, PointConfig, Raw, ReadRequest, RegisterMap};

/// What the actor does after an operation, besides publishing or answering.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Effects {
    /// Events to record, in order.
    pub events: Vec<RecordEvent>,
    /// Keep the connection for the next operation; `false` drops it (a link fault, or it
    /// never opened).
    pub keep_connection: bool,
    /// After a link fault: poll again (reconnect) after this delay, replacing any timer
    /// set before.
    pub reconnect_in: Option<Duration>,
}

/// A write that passed the checks: what to put on the wire and how to read it back.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteJob {
    pub point: PointConfig,
    pub unit_id: u8,
    pub raw: Raw,
    /// Reads the written register(s) back.
    pub readback: ReadRequest,
}

/// The PlcLink's decisions (see the module docs).
#[derive(Debug)]
pub struct LinkState {
    map: RegisterMap,
    plan: Vec<ReadRequest>,
    health: Health,
    backoff: Backoff,
    /// After a link fault, until a connection works again: no connect attempt before this.
    retry_at: Option<Instant>,
}

impl LinkState {
    /// The state for `map` (its `[plc]` settings give the endpoint and the backoff).
    pub fn new(map: RegisterMap) -> Self {
        let c = map.config();
        Self {
            plan: map.plan_reads(),
            health: Health::new(c.endpoint().to_string()),
            backoff: Backoff::exact(c.reconnect_min, c.reconnect_max),
            retry_at: None,
            map,
        }
    }

    pub fn map(&self) -> &RegisterMap {
        &self.map
    }

    /// The grouped reads of one poll, in order.
    pub fn plan(&self) -> &[ReadRequest] {
        &self.plan
    }

    /// While waiting for the next reconnect attempt: why nothing touches the wire, with
    /// the wait in whole seconds (at least 1).
    fn backing_off(&self, now: Instant) -> Option<String> {
        let wait = self.retry_at?.checked_duration_since(now)?;
        Some(format!(
            "PLC link down, reconnecting in {}",
            seconds(Duration::from_secs(wait.as_secs().max(1)))
        ))
    }

    /// A poll is due at `ts`. While backing off it does not touch the wire: the answer is
    /// the readings to publish instead (every point failed, saying when the next attempt is).
    pub fn skip_poll(&self, now: Instant, ts: DateTime<Utc>) -> Option<Readings> {
        self.backing_off(now)
            .map(|cause| all_failed(&self.map, &cause, ts))
    }

    /// The I/O of the poll started at `ts` finished at `now` / `at`: `io` is the connect
    /// error, or the answers to [`LinkState::plan`] in order, possibly stopping after the
    /// first link fault. Any answer (even an exception) proves the link works; a link fault
    /// drops the connection and marks every read after it "not read".
    pub fn poll_done(
        &mut self,
        io: Result<Vec<Result<ReadData, LinkError>>, LinkError>,
        now: Instant,
        ts: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> (Readings, Effects) {
        let mut fx = Effects::default();
        let mut results = match io {
            Ok(results) => results,
            Err(e) => {
                self.link_fault(&e, now, at, &mut fx);
                return (all_failed(&self.map, &e.to_string(), ts), fx);
            }
        };
        let lost = self.cut_short(&mut results);
        if results
            .iter()
            .any(|r| r.as_ref().map_or_else(|e| !e.is_link_fault(), |_| true))
        {
            self.link_ok(at, &mut fx);
        }
        for (req, r) in self.plan.iter().zip(&results) {
            let key = FaultKey::Read(req.describe());
            let ev = match r {
                Ok(_) => self.health.ok(&key, at),
                Err(e) if !e.is_link_fault() => self.health.fail(key, e, at),
                Err(_) => None,
            };
            fx.events.extend(ev);
        }
        match lost {
            Some(e) => self.link_fault(&e, now, at, &mut fx),
            None => self.connected(&mut fx),
        }
        (decode_poll(&self.map, &self.plan, &results, ts), fx)
    }

    /// The first link fault in `results`, if any; every planned read after it becomes
    /// "not read: <that fault>" (the I/O stops there).
    fn cut_short(&self, results: &mut Vec<Result<ReadData, LinkError>>) -> Option<LinkError> {
        let (i, fault) = results.iter().enumerate().find_map(|(i, r)| {
            r.as_ref()
                .err()
                .filter(|e| e.is_link_fault())
                .map(|e| (i, e.clone()))
        })?;
        results.truncate(i + 1);
        let rest = format!("not read: {fault}");
        results.extend(self.plan[i + 1..].iter().map(|later| {
            Err(LinkError::Io {
                op: "read",
                register: later.kind.describe(later.start),
                unit_id: later.unit_id,
                cause: rest.clone(),
            })
        }));
        Some(fault)
    }

    /// A write is asked for: the point must exist, be writable, within its safety limits
    /// (never clamped here: Control does that) and encodable, and the link not backing off.
    pub fn write_job(&self, msg: &WritePoint, now: Instant) -> Result<WriteJob, WriteError> {
        let point = self
            .map
            .point(&msg.name)
            .ok_or_else(|| WriteError::UnknownPoint(msg.name.clone()))?;
        if !point.writable {
            return Err(WriteError::ReadOnly(msg.name.clone()));
        }
        let invalid = |reason: String| WriteError::InvalidValue {
            point: msg.name.clone(),
            value: format!("{:?}", msg.value),
            reason,
        };
        let value = match point.limit(msg.value.clone()) {
            Limited::Within(v) => v,
            Limited::Clamped(..) | Limited::Refused(_) => {
                return Err(invalid(format!(
                    "outside the safety limits {}..{}",
                    point.min.map_or("-inf".into(), |v| v.to_string()),
                    point.max.map_or("inf".into(), |v| v.to_string())
                )));
            }
        };
        let raw = point.encode(&value).map_err(|e| invalid(e.to_string()))?;
        if let Some(cause) = self.backing_off(now) {
            return Err(WriteError::Link(cause));
        }
        let unit_id = self.map.unit_id_of(point);
        Ok(WriteJob {
            readback: ReadRequest {
                unit_id,
                kind: point.kind,
                start: point.address,
                count: point.width(),
                points: Vec::new(),
            },
            point: point.clone(),
            unit_id,
            raw,
        })
    }

    /// The I/O of `job` finished: `io` is the read-back, or why the connect, the write or
    /// the read-back failed. The answer is the value the PLC holds, or the failure: a link
    /// fault (the write may be retried), a PLC busy or failing (a transient exception: the
    /// write is retried too) or a refusal (any other exception, or a silent unit).
    pub fn write_done(
        &mut self,
        job: &WriteJob,
        io: Result<ReadData, LinkError>,
        now: Instant,
        at: DateTime<Utc>,
    ) -> (Result<PointValue, WriteError>, Effects) {
        let mut fx = Effects::default();
        let answer = match io {
            Err(e) if e.is_link_fault() => {
                self.link_fault(&e, now, at, &mut fx);
                return (Err(WriteError::Link(e.to_string())), fx);
            }
            Err(LinkError::Exception {
                exception,
                transient: true,
                ..
            }) => Err(WriteError::Busy(exception)),
            Err(LinkError::Exception { exception, .. }) => Err(WriteError::Refused(exception)),
            Err(e) => Err(WriteError::Refused(e.to_string())),
            Ok(data) => decode_readback(&job.point, data),
        };
        self.link_ok(at, &mut fx);
        self.connected(&mut fx);
        (answer, fx)
    }

    /// A link fault: drop the connection, back off before the next attempt.
    fn link_fault(&mut self, err: &LinkError, now: Instant, at: DateTime<Utc>, fx: &mut Effects) {
        fx.events.extend(self.health.fail(FaultKey::Link, err, at));
        fx.keep_connection = false;
        let delay = self.backoff.next_delay();
        self.retry_at = Some(now + delay);
        fx.reconnect_in = Some(delay);
    }

    /// The PLC answered: the link works.
    fn link_ok(&mut self, at: DateTime<Utc>, fx: &mut Effects) {
        self.backoff.reset();
        self.retry_at = None;
        fx.events.extend(self.health.ok(&FaultKey::Link, at));
    }

    /// The connection stays open: nothing to wait for before the next attempt.
    fn connected(&mut self, fx: &mut Effects) {
        fx.keep_connection = true;
        self.retry_at = None;
    }
}

/// The value a write's read-back holds.
fn decode_readback(point: &PointConfig, data: ReadData) -> Result<PointValue, WriteError> {
    let raw = match data {
        ReadData::Bits(b) => b.first().copied().map(Raw::Bit),
        ReadData::Words(w) => Some(Raw::Words(w)),
    };
    raw.ok_or_else(|| "empty answer".to_owned())
        .and_then(|raw| point.decode(&raw).map_err(|e| e.to_string()))
        .map_err(|e| WriteError::Link(format!("read back of {} failed: {e}", point.name)))
}

/// Decode the results of one poll (one entry per planned request, in plan order).
pub fn decode_poll(
    map: &RegisterMap,
    plan: &[ReadRequest],
    results: &[Result<ReadData, LinkError>],
    ts: DateTime<Utc>,
) -> Readings {
    let mut readings = Readings {
        ts,
        values: BTreeMap::new(),
        errors: BTreeMap::new(),
    };
    for (req, result) in plan.iter().zip(results) {
        for &i in &req.points {
            let Some(p) = map.points().get(i) else {
                continue;
            };
            let offset = usize::from(p.address - req.start);
            let raw = match result {
                Err(e) => {
                    readings.errors.insert(p.name.clone(), e.to_string());
                    continue;
                }
                Ok(ReadData::Bits(bits)) => bits.get(offset).copied().map(Raw::Bit),
                Ok(ReadData::Words(words)) => words
                    .get(offset..offset + usize::from(p.width()))
                    .map(|w| Raw::Words(w.to_vec())),
            };
            let decoded = raw
                .ok_or_else(|| format!("{} missing from the answer", p.register()))
                .and_then(|raw| p.decode(&raw).map_err(|e| e.to_string()));
            match decoded {
                Ok(v) => {
                    readings.values.insert(p.name.clone(), v);
                }
                Err(e) => {
                    readings.errors.insert(p.name.clone(), e);
                }
            }
        }
    }
    readings
}

/// Readings for a poll that could not run at all (link down).
pub fn all_failed(map: &RegisterMap, cause: &str, ts: DateTime<Utc>) -> Readings {
    Readings {
        ts,
        values: BTreeMap::new(),
        errors: map
            .points()
            .iter()
            .map(|p| (p.name.clone(), cause.to_owned()))
            .collect(),
    }
}

/// What a fault is about: the link as a whole, or one planned read that the PLC refuses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKey {
    Link,
    Read(String),
}

#[derive(Debug, Clone)]
struct Episode {
    since: DateTime<Utc>,
    failures: u64,
}

/// Failure episodes: the first failure of a key raises `PlcError`, later failures of the
/// same key are counted silently, and the first success after them raises `PlcRecovered`.
#[derive(Debug, Default)]
pub struct Health {
    failing: BTreeMap<FaultKey, Episode>,
    endpoint: String,
}

impl Health {
    pub fn new(endpoint: String) -> Self {
        Self {
            failing: BTreeMap::new(),
            endpoint,
        }
    }

    pub fn is_failing(&self, key: &FaultKey) -> bool {
        self.failing.contains_key(key)
    }

    /// A failure; returns the event to record when it starts an episode.
    pub fn fail(
        &mut self,
        key: FaultKey,
        err: &LinkError,
        now: DateTime<Utc>,
    ) -> Option<RecordEvent> {
        if let Some(ep) = self.failing.get_mut(&key) {
            ep.failures += 1;
            return None;
        }
        self.failing.insert(
            key.clone(),
            Episode {
                since: now,
                failures: 1,
            },
        );
        let severity = if key == FaultKey::Link {
            Severity::Critical
        } else {
            Severity::Warning
        };
        Some(RecordEvent {
            ts: now,
            kind: EventKind::PlcError,
            severity,
            message: err.to_string(),
            data: serde_json::json!({
                "endpoint": self.endpoint,
                "register": err.register(),
                "cause": err.to_string(),
                "link_down": err.is_link_fault(),
            }),
        })
    }

    /// A success; returns the event to record when it ends an episode.
    pub fn ok(&mut self, key: &FaultKey, now: DateTime<Utc>) -> Option<RecordEvent> {
        let ep = self.failing.remove(key)?;
        let down_for = (now - ep.since).to_std().unwrap_or_default();
        let what = match key {
            FaultKey::Link => format!("PLC at {} reachable again", self.endpoint),
            FaultKey::Read(r) => format!("modbus read of {r} works again"),
        };
        Some(RecordEvent {
            ts: now,
            kind: EventKind::PlcRecovered,
            severity: Severity::Info,
            message: format!(
                "{what} after {} ({} failures)",
                seconds_rounded(down_for),
                ep.failures
            ),
            data: serde_json::json!({
                "endpoint": self.endpoint,
                "register": match key { FaultKey::Link => self.endpoint.clone(), FaultKey::Read(r) => r.clone() },
                "down_for_s": down_for.as_secs_f64(),
                "failures": ep.failures,
            }),
        })
    }
}

fn seconds_rounded(d: Duration) -> String {
    seconds(Duration::from_millis(
        d.as_millis().min(u128::from(u64::MAX)) as u64 / 100 * 100,
    ))
}
