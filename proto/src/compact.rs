//! The compact telemetry batch (protocol version 2): a point dictionary instead of point
//! names in every sample, seq and time as deltas, time at the precision the samples have.
//!
//! ```json
//! {"v":2,"d":"8c1f3f2c0a9e4b71","n":["running","supply_c"],"p":0,"s":1041,"t":1782874800,
//!  "r":[[0,0,true,7.2],[1,60,true,7.1]]}
//! ```
//!
//! - `d`: the [`PointDictionary`] id (FNV-1a 64 of its names, 16 hex digits). The edge's
//!   dictionary is its catalog's point names in catalog order.
//! - `n`: the dictionary's names. Sent in the first batch of every connection, in every
//!   backlog batch, at least once an hour, and whenever a batch needs names outside the
//!   catalog; otherwise the cloud resolves `d` from what it has seen (an earlier `n`, the
//!   device's catalog).
//! - `p`: decimal digits of the time unit: 0 seconds, 3 milliseconds, 6 microseconds,
//!   9 nanoseconds (the coarsest that holds every `ts` of the batch exactly).
//! - `s`, `t`: seq and time (units of `p` since the Unix epoch) of the first sample.
//! - `r`: one row per sample: seq delta, time delta (both from the previous row; 0 and 0 in
//!   the first), then the values by dictionary position (`null`: not in the sample; trailing
//!   `null`s left out). Whole numbers are written without a fraction.
//!
//! Like every batch, it is gzip-compressed when that makes it smaller (see
//! [`crate::encode_compressed`]). Measured against JSON + gzip and CBOR in
//! `docs/adr/compact-telemetry.md` (`shiki-edge bench --link`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use crate::codec::{CodecError, check_size, gzip_if_smaller, json_text};
use crate::messages::{Catalog, PointValue, Sample, TelemetryBatch};

/// The protocol version of the compact telemetry batch.
pub const COMPACT_VERSION: u32 = 2;

/// Point names by position, and their id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointDictionary {
    id: String,
    names: Arc<[String]>,
}

impl PointDictionary {
    /// A dictionary of `names` in this order.
    pub fn new(names: Vec<String>) -> Self {
        Self {
            id: dictionary_id(&names),
            names: names.into(),
        }
    }

    /// The catalog's point names in catalog order (the edge's dictionary).
    pub fn from_catalog(catalog: &Catalog) -> Self {
        Self::new(catalog.points.iter().map(|p| p.name.clone()).collect())
    }

    /// Every point name the samples hold, sorted (for a batch the catalog does not cover).
    pub fn of_samples(samples: &[Sample]) -> Self {
        let names: BTreeSet<&String> = samples.iter().flat_map(|s| s.values.keys()).collect();
        Self::new(names.into_iter().cloned().collect())
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether every point of every sample has a position here.
    pub fn covers(&self, samples: &[Sample]) -> bool {
        let names: BTreeSet<&str> = self.names.iter().map(String::as_str).collect();
        samples
            .iter()
            .all(|s| s.values.keys().all(|k| names.contains(k.as_str())))
    }
}

/// FNV-1a 64 over the names, each followed by a NUL byte, as 16 lowercase hex digits.
fn dictionary_id(names: &[String]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for name in names {
        for b in name.as_bytes().iter().chain(std::iter::once(&0u8)) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Why a compact batch could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error("sample {seq}: point {point:?} is not in point dictionary {dictionary}")]
    NotInDictionary {
        seq: u64,
        point: String,
        dictionary: String,
    },
    #[error("samples are not in seq order (seq {seq} after {previous})")]
    Order { seq: u64, previous: u64 },
    #[error("point dictionary {0} is unknown here and the batch does not carry its names")]
    UnknownDictionary(String),
    #[error("the batch's names have id {actual}, not the {claimed} it names")]
    DictionaryMismatch { claimed: String, actual: String },
    #[error("row {row}: {reason}")]
    BadRow { row: usize, reason: String },
    #[error("time precision p = {0} is not 0, 3, 6 or 9")]
    BadPrecision(u32),
    #[error(
        "sample {seq}: time {ts} is outside what a compact batch carries (1677-09-21 to \
         2262-04-11); send it as a JSON batch"
    )]
    TimeOutOfRange { seq: u64, ts: DateTime<Utc> },
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// How a compact batch is laid out on the wire (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompactBatch {
    pub v: u32,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backlog: bool,
    pub d: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<Vec<String>>,
    #[serde(default)]
    pub p: u32,
    pub s: u64,
    pub t: i64,
    pub r: Vec<Vec<serde_json::Value>>,
}

/// A value as written in a row: whole numbers without a fraction.
struct RowValue<'a>(Option<&'a PointValue>);

impl Serialize for RowValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => s.serialize_unit(),
            Some(PointValue::Bool(b)) => s.serialize_bool(*b),
            Some(PointValue::Number(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 =>
            {
                #[allow(clippy::cast_possible_truncation)]
                s.serialize_i64(*n as i64)
            }
            Some(PointValue::Number(n)) => s.serialize_f64(*n),
            Some(PointValue::Text(t)) => s.serialize_str(t),
        }
    }
}

/// One row: seq delta, time delta, values by position.
struct Row<'a> {
    ds: u64,
    dt: i64,
    values: Vec<Option<&'a PointValue>>,
}

impl Serialize for Row<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(2 + self.values.len()))?;
        seq.serialize_element(&self.ds)?;
        seq.serialize_element(&self.dt)?;
        for v in &self.values {
            seq.serialize_element(&RowValue(*v))?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct CompactOut<'a> {
    v: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    backlog: bool,
    d: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<&'a [String]>,
    p: u32,
    s: u64,
    t: i64,
    r: Vec<Row<'a>>,
}

/// Nanoseconds since the epoch of a sample's time, or the error for a time a compact batch
/// cannot carry (an i64 of nanoseconds: 1677-09-21 to 2262-04-11).
fn nanos(sample: &Sample) -> Result<i64, CompactError> {
    sample
        .ts
        .timestamp_nanos_opt()
        .ok_or(CompactError::TimeOutOfRange {
            seq: sample.seq,
            ts: sample.ts,
        })
}

/// The coarsest precision (0, 3, 6, 9 digits) that holds every timestamp exactly.
fn precision_of(samples: &[Sample]) -> u32 {
    let sub = samples
        .iter()
        .map(|s| s.ts.timestamp_subsec_nanos())
        .fold(0, |acc, n| acc | u32::from(n != 0) << precision_digits(n));
    [9, 6, 3]
        .into_iter()
        .find(|d| sub & (1 << d) != 0)
        .unwrap_or(0)
}

/// Digits a sub-second part needs: 0 (none), 3, 6 or 9.
fn precision_digits(nanos: u32) -> u32 {
    if nanos == 0 {
        0
    } else if nanos.is_multiple_of(1_000_000) {
        3
    } else if nanos.is_multiple_of(1_000) {
        6
    } else {
        9
    }
}

fn unit_nanos(p: u32) -> Result<i64, CompactError> {
    match p {
        0 => Ok(1_000_000_000),
        3 => Ok(1_000_000),
        6 => Ok(1_000),
        9 => Ok(1),
        other => Err(CompactError::BadPrecision(other)),
    }
}

/// The compact batch of `samples` (seq order) with `dict`, its names included when
/// `with_names`; JSON, gzip-compressed when smaller. The result may be over the message
/// limit ([`CodecError::TooLarge`]); the caller splits the batch.
pub fn encode_compact(
    samples: &[Sample],
    dict: &PointDictionary,
    with_names: bool,
    backlog: bool,
) -> Result<Vec<u8>, CompactError> {
    let json = compact_json(samples, dict, with_names, backlog)?;
    let best = gzip_if_smaller(json);
    check_size(best.len())?;
    Ok(best)
}

/// The JSON text of [`encode_compact`], uncompressed.
pub fn compact_json(
    samples: &[Sample],
    dict: &PointDictionary,
    with_names: bool,
    backlog: bool,
) -> Result<Vec<u8>, CompactError> {
    let position: BTreeMap<&str, usize> = dict
        .names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let p = precision_of(samples);
    let unit = unit_nanos(p)?;
    let (s0, t0) = match samples.first() {
        Some(s) => (s.seq, nanos(s)? / unit),
        None => (0, 0),
    };
    let (mut prev_seq, mut prev_t) = (s0, t0);
    let mut rows = Vec::with_capacity(samples.len());
    for sample in samples {
        if sample.seq < prev_seq {
            return Err(CompactError::Order {
                seq: sample.seq,
                previous: prev_seq,
            });
        }
        let t = nanos(sample)? / unit;
        let mut values: Vec<Option<&PointValue>> = vec![None; dict.names.len()];
        for (name, value) in &sample.values {
            let i = *position
                .get(name.as_str())
                .ok_or_else(|| CompactError::NotInDictionary {
                    seq: sample.seq,
                    point: name.clone(),
                    dictionary: dict.id.clone(),
                })?;
            values[i] = Some(value);
        }
        while values.last().is_some_and(Option::is_none) {
            values.pop();
        }
        rows.push(Row {
            ds: sample.seq - prev_seq,
            dt: t - prev_t,
            values,
        });
        (prev_seq, prev_t) = (sample.seq, t);
    }
    let out = CompactOut {
        v: COMPACT_VERSION,
        backlog,
        d: &dict.id,
        n: with_names.then_some(&dict.names[..]),
        p,
        s: s0,
        t: t0,
        r: rows,
    };
    serde_json::to_vec(&out)
        .map_err(CodecError::Encode)
        .map_err(CompactError::from)
}

impl CompactBatch {
    /// The dictionary the batch carries (checked against `d`), if it carries one.
    pub fn carried_dictionary(&self) -> Result<Option<PointDictionary>, CompactError> {
        let Some(names) = &self.n else {
            return Ok(None);
        };
        let dict = PointDictionary::new(names.clone());
        if dict.id != self.d {
            return Err(CompactError::DictionaryMismatch {
                claimed: self.d.clone(),
                actual: dict.id,
            });
        }
        Ok(Some(dict))
    }

    /// The samples, with `dict` (whose id must be `d`) for the names.
    pub fn samples(&self, dict: &PointDictionary) -> Result<Vec<Sample>, CompactError> {
        if dict.id != self.d {
            return Err(CompactError::DictionaryMismatch {
                claimed: self.d.clone(),
                actual: dict.id.clone(),
            });
        }
        let unit = unit_nanos(self.p)?;
        let (mut seq, mut t) = (self.s, self.t);
        let mut out = Vec::with_capacity(self.r.len());
        for (i, row) in self.r.iter().enumerate() {
            let bad = |reason: String| CompactError::BadRow { row: i, reason };
            let (ds, dt) = match (row.first(), row.get(1)) {
                (Some(ds), Some(dt)) => (
                    ds.as_u64()
                        .ok_or_else(|| bad("seq delta is not a whole number ≥ 0".into()))?,
                    dt.as_i64()
                        .ok_or_else(|| bad("time delta is not a whole number".into()))?,
                ),
                _ => return Err(bad("fewer than 2 elements".into())),
            };
            if i > 0 && ds == 0 {
                return Err(bad("seq delta 0 after the first row".into()));
            }
            seq = seq
                .checked_add(ds)
                .ok_or_else(|| bad("seq overflows".into()))?;
            t = t
                .checked_add(dt)
                .ok_or_else(|| bad("time overflows".into()))?;
            let ns = t
                .checked_mul(unit)
                .ok_or_else(|| bad("time out of range".into()))?;
            let ts = DateTime::from_timestamp_nanos(ns);
            if row.len() - 2 > dict.names.len() {
                return Err(bad(format!(
                    "{} values for a dictionary of {} points",
                    row.len() - 2,
                    dict.names.len()
                )));
            }
            let mut values = BTreeMap::new();
            for (name, v) in dict.names.iter().zip(&row[2..]) {
                let value = match v {
                    serde_json::Value::Null => continue,
                    serde_json::Value::Bool(b) => PointValue::Bool(*b),
                    serde_json::Value::Number(n) => PointValue::Number(
                        n.as_f64()
                            .ok_or_else(|| bad(format!("{name}: number out of range")))?,
                    ),
                    serde_json::Value::String(s) => PointValue::Text(s.clone()),
                    other => {
                        return Err(bad(format!("{name}: {other} is not a point value")));
                    }
                };
                values.insert(name.clone(), value);
            }
            out.push(Sample { seq, ts, values });
        }
        Ok(out)
    }
}

/// A telemetry payload of either version, read into a [`TelemetryBatch`]. `v` 1 (and
/// anything with `samples`) is the JSON batch; `v` 2 with `r` the compact one, whose
/// dictionary is the carried one or `known(id)`. The carried dictionary, if any, is
/// returned too, for the caller to remember.
pub fn decode_telemetry(
    payload: &[u8],
    known: impl FnOnce(&str) -> Option<PointDictionary>,
) -> Result<(TelemetryBatch, Option<PointDictionary>), CompactError> {
    let text = json_text(payload)?;
    let any: AnyTelemetry = serde_json::from_slice(&text).map_err(CodecError::Malformed)?;
    match any {
        AnyTelemetry::Json(batch) => Ok((batch, None)),
        AnyTelemetry::Compact(c) => {
            let (samples, carried) = c.resolve(known)?;
            Ok((
                TelemetryBatch {
                    v: c.v,
                    backlog: c.backlog,
                    samples,
                },
                carried,
            ))
        }
    }
}

impl CompactBatch {
    /// The samples, with the carried dictionary or `known(d)`; and the carried dictionary.
    pub fn resolve(
        &self,
        known: impl FnOnce(&str) -> Option<PointDictionary>,
    ) -> Result<(Vec<Sample>, Option<PointDictionary>), CompactError> {
        let carried = self.carried_dictionary()?;
        let dict = match &carried {
            Some(d) => d.clone(),
            None => {
                known(&self.d).ok_or_else(|| CompactError::UnknownDictionary(self.d.clone()))?
            }
        };
        Ok((self.samples(&dict)?, carried))
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum AnyTelemetry {
    Json(TelemetryBatch),
    Compact(CompactBatch),
}
