//! Turning outbox records into publishes of at most [`shiki_proto::MAX_MESSAGE_BYTES`].
//!
//! The outbox stores each record as the JSON of its `Sample` or `Event`, and that JSON is
//! what goes out: a batch is the stored bytes spliced into the batch envelope
//! (`{"v":1,"backlog":…,"samples":[…]}` / `{"v":1,"events":[…]}`, the shape of
//! [`shiki_proto::TelemetryBatch`] and [`shiki_proto::EventBatch`]), never decoded and
//! encoded again. A stored body is only checked to decode (a sample with
//! [`Sample::check_json`], which builds nothing, as the cloud's ingest does; an event by
//! decoding it, events are few); one that does not (a damaged record) is skipped and
//! counted, since the cloud refuses a whole batch for one bad record.
//!
//! With `telemetry.encoding = "compact"` telemetry goes as the compact batch of protocol
//! version 2 instead ([`shiki_proto::encode_compact`]): each stored sample is decoded and
//! written by its position in the point dictionary (the catalog's points), with its names
//! when the cloud may not know them yet, or a dictionary of the batch's own points when a
//! sample holds one the catalog does not list.

use serde::Serialize;
use serde_json::value::RawValue;
use shiki_proto::{
    CodecError, CompactError, Event, PROTOCOL_VERSION, PointDictionary, Sample, encode_compact,
    encode_compressed,
};

use crate::outbox::{StoredRecord, Stream};

/// One publish's worth of records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// JSON, or gzip-compressed JSON when that is smaller.
    pub payload: Vec<u8>,
    /// The batch covers every outbox seq in `from..=to`.
    pub from: u64,
    pub to: u64,
    /// Records in the payload.
    pub count: usize,
    /// Records skipped because their stored body does not decode.
    pub corrupt: usize,
    /// A compact batch that carries the names of the dictionary it was asked to use (not
    /// of a dictionary of its own, made for points outside it).
    pub with_names: bool,
}

/// How telemetry is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format<'a> {
    /// Protocol version 1: the stored JSON spliced into the envelope.
    Json,
    /// Protocol version 2 with `dict`; its names are included when `with_names`.
    Compact {
        dict: &'a PointDictionary,
        with_names: bool,
    },
}

/// The envelope of `TelemetryBatch` around stored samples (same fields, same order).
#[derive(Serialize)]
struct TelemetryEnvelope<'a> {
    v: u32,
    backlog: bool,
    samples: &'a [&'a RawValue],
}

/// The envelope of `EventBatch` around stored events.
#[derive(Serialize)]
struct EventEnvelope<'a> {
    v: u32,
    events: &'a [&'a RawValue],
}

/// Builds the largest batch from the front of `records` (all with `seq >= from`) that
/// encodes within the message limit, halving the record count until it fits.
pub fn build(stream: Stream, from: u64, records: &[StoredRecord], backlog: bool) -> Option<Batch> {
    build_as(stream, from, records, backlog, Format::Json)
}

/// [`build`] in `format` (events are always JSON).
pub fn build_as(
    stream: Stream,
    from: u64,
    records: &[StoredRecord],
    backlog: bool,
    format: Format<'_>,
) -> Option<Batch> {
    match (stream, format) {
        (Stream::Telemetry, Format::Compact { dict, with_names }) => {
            build_compact(from, records, backlog, dict, with_names)
        }
        _ => build_json(stream, from, records, backlog),
    }
}

fn build_json(stream: Stream, from: u64, records: &[StoredRecord], backlog: bool) -> Option<Batch> {
    let bodies: Vec<Option<&RawValue>> = records.iter().map(|r| stored_json(stream, r)).collect();
    let mut take = records.len();
    while take > 0 {
        let spliced: Vec<&RawValue> = bodies[..take].iter().flatten().copied().collect();
        if let Ok(payload) = splice(stream, &spliced, backlog) {
            return Some(Batch {
                payload,
                from,
                to: records[take - 1].seq,
                count: spliced.len(),
                corrupt: take - spliced.len(),
                with_names: false,
            });
        }
        take /= 2;
    }
    None
}

/// The batch payload around `bodies` (refused when over the message limit).
fn splice(
    stream: Stream,
    bodies: &[&RawValue],
    backlog: bool,
) -> Result<Vec<u8>, shiki_proto::CodecError> {
    let v = PROTOCOL_VERSION;
    match stream {
        Stream::Telemetry => encode_compressed(&TelemetryEnvelope {
            v,
            backlog,
            samples: bodies,
        }),
        Stream::Events => encode_compressed(&EventEnvelope { v, events: bodies }),
    }
}

/// The stored JSON of `r`, or `None` (logged) when it does not decode as a record of `stream`.
fn stored_json(stream: Stream, r: &StoredRecord) -> Option<&RawValue> {
    let checked = std::str::from_utf8(&r.body)
        .map_err(|e| e.to_string())
        .and_then(|text| {
            let decodes = match stream {
                Stream::Telemetry => Sample::check_json(text).map(drop),
                Stream::Events => serde_json::from_str::<Event>(text).map(drop),
            };
            decodes
                .and_then(|()| serde_json::from_str::<&RawValue>(text))
                .map_err(|e| e.to_string())
        });
    match checked {
        Ok(raw) => Some(raw),
        Err(error) => {
            tracing::error!(%stream, seq = r.seq, %error, "skipping corrupt outbox record");
            None
        }
    }
}

/// The compact batch of the front of `records`, halved until it fits the message limit.
fn build_compact(
    from: u64,
    records: &[StoredRecord],
    backlog: bool,
    dict: &PointDictionary,
    with_names: bool,
) -> Option<Batch> {
    let samples: Vec<Option<Sample>> = records.iter().map(stored_sample).collect();
    let mut take = records.len();
    while take > 0 {
        let batch: Vec<Sample> = samples[..take].iter().flatten().cloned().collect();
        // A sample with a point the catalog does not list (a record stored before the
        // point list changed): the batch gets a dictionary of its own, names included.
        // Always the names in a backlog batch: it is large, and the names cost little in it.
        let with_names = with_names || backlog;
        let own;
        let (used, names, given_names) = if dict.covers(&batch) {
            (dict, with_names, with_names)
        } else {
            own = PointDictionary::of_samples(&batch);
            (&own, true, false)
        };
        match encode_compact(&batch, used, names, backlog) {
            Ok(payload) => {
                return Some(Batch {
                    payload,
                    from,
                    to: records[take - 1].seq,
                    count: batch.len(),
                    corrupt: take - batch.len(),
                    with_names: given_names,
                });
            }
            Err(CompactError::Codec(CodecError::TooLarge { .. })) => take /= 2,
            Err(error) => {
                tracing::error!(from, %error, "compact batch cannot be encoded; sending JSON");
                return build_json(Stream::Telemetry, from, &records[..take], backlog);
            }
        }
    }
    None
}

/// The stored sample of `r`, or `None` (logged) when it does not decode.
fn stored_sample(r: &StoredRecord) -> Option<Sample> {
    match serde_json::from_slice::<Sample>(&r.body) {
        Ok(s) => Some(s),
        Err(error) => {
            tracing::error!(stream = %Stream::Telemetry, seq = r.seq, %error, "skipping corrupt outbox record");
            None
        }
    }
}
