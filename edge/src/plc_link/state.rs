//! The PlcLink's plain logic: decoding a poll into [`Readings`], failure episodes (one
//! event when a fault starts, one when it ends) and reconnect backoff. No I/O, no actix.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use shiki_proto::{EventKind, Severity};

use super::transport::{LinkError, ReadData, seconds};
use crate::messages::{Readings, RecordEvent};
use crate::register_map::{Raw, ReadRequest, RegisterMap};

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
