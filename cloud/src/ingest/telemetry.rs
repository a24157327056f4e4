//! A telemetry payload into store rows, without building a [`Sample`] or copying its text.
//!
//! The payload is parsed once for the span of each sample's JSON (`RawValue`), each span is
//! checked to decode as a sample ([`Sample::check_json`], which allocates nothing), and the
//! store gets each span as a slice of the payload. The newest sample's span goes to the
//! device actor, which copies it into the buffer it keeps.
//!
//! A compact batch (protocol version 2, [`shiki_proto::CompactBatch`]) has no sample JSON
//! to keep: it is decoded with its point dictionary and each sample is written as the JSON
//! a version-1 edge would have sent, so the store and every reader see one format.

use std::borrow::Cow;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use shiki_proto::{CodecError, CompactBatch, CompactError, PointDictionary, Sample};

use chrono::{DateTime, Utc};

use super::odd_times::OddTimes;
use crate::device::SampleJson;
use crate::store::SampleRow;

/// (Version 1.) Each sample of a telemetry payload ([`shiki_proto::TelemetryBatch`]) as the store keeps
/// it (its JSON text as received, once it is known to decode as a [`Sample`]), and the
/// newest sample's text, for its device actor. One bad sample refuses the whole payload.
/// The samples of a payload, and the point dictionary it carried (compact batches).
pub(super) type TelemetryRows = (Vec<SampleRow>, Option<SampleJson>, Option<PointDictionary>);

/// A payload's rows ([`TelemetryRows`]) and its samples stamped with an implausible time at
/// the cloud's `now` ([`OddTimes`]).
pub(super) type CheckedRows = (TelemetryRows, OddTimes);

/// Each sample of a telemetry payload of either protocol version as the store keeps it, the
/// newest one's text, and the dictionary the payload carried. Version 1 as described above; `known(id)` resolves the point
/// dictionary of a compact batch that does not carry its names. Samples whose time is
/// implausible at `now` are counted (`odd_times`), never refused.
pub(super) fn telemetry_rows_any(
    payload: &Bytes,
    known: impl FnOnce(&str) -> Option<PointDictionary>,
    now: DateTime<Utc>,
) -> Result<CheckedRows, CompactError> {
    let text = match shiki_proto::json_text(payload)? {
        Cow::Borrowed(_) => payload.clone(),
        Cow::Owned(unzipped) => Bytes::from(unzipped),
    };
    let mut rows = Rows {
        text: &text,
        rows: Vec::new(),
        newest: None,
        now,
        odd: OddTimes::default(),
    };
    let mut de = serde_json::Deserializer::from_slice(&text);
    let shape = Batch(&mut rows)
        .deserialize(&mut de)
        .and_then(|shape| de.end().map(|()| shape))
        .map_err(CodecError::Malformed)?;
    if shape == Shape::Compact {
        return compact_rows(&text, known, now);
    }
    let newest = rows
        .newest
        .map(|i| SampleJson::checked(rows.rows[i].seq, rows.rows[i].json.clone()));
    Ok(((rows.rows, newest, None), rows.odd))
}

/// Version 1 payloads only (as [`telemetry_rows_any`] with no known dictionaries).
#[cfg(test)]
pub(super) fn telemetry_rows(
    payload: &Bytes,
) -> Result<(Vec<SampleRow>, Option<SampleJson>), CodecError> {
    match telemetry_rows_any(payload, |_| None, Utc::now()) {
        Ok(((rows, newest, _), _)) => Ok((rows, newest)),
        Err(CompactError::Codec(e)) => Err(e),
        Err(other) => Err(CodecError::Malformed(de::Error::custom(other))),
    }
}

/// The rows of a compact batch: each sample as the JSON of a [`Sample`].
fn compact_rows(
    text: &[u8],
    known: impl FnOnce(&str) -> Option<PointDictionary>,
    now: DateTime<Utc>,
) -> Result<CheckedRows, CompactError> {
    let batch: CompactBatch = serde_json::from_slice(text).map_err(CodecError::Malformed)?;
    let (samples, carried) = batch.resolve(known)?;
    let mut rows = Vec::with_capacity(samples.len());
    let mut newest: Option<usize> = None;
    let mut odd = OddTimes::default();
    for s in &samples {
        odd.note(s.seq, s.ts, now);
        let json = Bytes::from(serde_json::to_vec(s).map_err(CodecError::Encode)?);
        if newest.is_none_or(|i| s.seq > samples[i].seq) {
            newest = Some(rows.len());
        }
        rows.push(SampleRow { seq: s.seq, json });
    }
    let newest = newest.map(|i| SampleJson::checked(rows[i].seq, rows[i].json.clone()));
    Ok(((rows, newest, carried), odd))
}

/// What the samples of one payload have given so far.
struct Rows<'t> {
    /// The payload's JSON text, which the rows are slices of.
    text: &'t Bytes,
    rows: Vec<SampleRow>,
    /// Which of `rows` has the highest seq.
    newest: Option<usize>,
    /// The cloud's time, against which sample times are judged.
    now: DateTime<Utc>,
    odd: OddTimes,
}

impl Rows<'_> {
    fn push(&mut self, raw: &RawValue) -> Result<(), serde_json::Error> {
        let json = raw.get();
        let (seq, ts) = Sample::check_json_time(json)?;
        self.odd.note(seq, ts, self.now);
        if self.newest.is_none_or(|i| seq > self.rows[i].seq) {
            self.newest = Some(self.rows.len());
        }
        self.rows.push(SampleRow {
            seq,
            json: self.text.slice_ref(json.as_bytes()),
        });
        Ok(())
    }
}

/// The batch object: its `samples`, each handed to [`Rows::push`] as it is parsed; other
/// fields (`v`, `backlog`) are skipped.
struct Batch<'r, 't>(&'r mut Rows<'t>);

#[derive(serde::Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    Samples,
    /// The rows of a compact batch.
    R,
    #[serde(other)]
    Other,
}

/// Which protocol version's batch the payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Version 1: `samples`, already pushed to the rows.
    Json,
    /// Version 2: `r` and no `samples`; decoded separately.
    Compact,
}

impl<'de> DeserializeSeed<'de> for Batch<'_, '_> {
    type Value = Shape;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Shape, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Batch<'_, '_> {
    type Value = Shape;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a telemetry batch")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let (mut samples, mut rows) = (false, false);
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Samples if samples => return Err(de::Error::duplicate_field("samples")),
                Field::Samples => {
                    map.next_value_seed(Samples(&mut *self.0))?;
                    samples = true;
                }
                Field::R => {
                    map.next_value::<IgnoredAny>()?;
                    rows = true;
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        match (samples, rows) {
            (true, _) => Ok(Shape::Json),
            (false, true) => Ok(Shape::Compact),
            (false, false) => Err(de::Error::missing_field("samples")),
        }
    }
}

/// The `samples` array.
struct Samples<'r, 't>(&'r mut Rows<'t>);

impl<'de> DeserializeSeed<'de> for Samples<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Samples<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of samples")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            self.0.push(raw).map_err(de::Error::custom)?;
        }
        Ok(())
    }
}
