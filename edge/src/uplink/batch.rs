//! Turning outbox records into publishes of at most [`MAX_MESSAGE_BYTES`].

use shiki_proto::{
    Event, EventBatch, MAX_MESSAGE_BYTES, PROTOCOL_VERSION, Sample, TelemetryBatch,
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
    /// Records skipped because their stored body could not be decoded.
    pub corrupt: usize,
}

/// Builds the largest batch from the front of `records` (all with `seq >= from`) that
/// encodes within the message limit, halving the record count until it fits.
pub fn build(stream: Stream, from: u64, records: &[StoredRecord], backlog: bool) -> Option<Batch> {
    let mut take = records.len();
    while take > 0 {
        let slice = &records[..take];
        let (payload, count, corrupt) = encode(stream, slice, backlog);
        match payload {
            Some(payload) if payload.len() <= MAX_MESSAGE_BYTES => {
                return Some(Batch {
                    payload,
                    from,
                    to: slice[take - 1].seq,
                    count,
                    corrupt,
                });
            }
            _ => take /= 2,
        }
    }
    None
}

fn encode(
    stream: Stream,
    records: &[StoredRecord],
    backlog: bool,
) -> (Option<Vec<u8>>, usize, usize) {
    let mut corrupt = 0;
    match stream {
        Stream::Telemetry => {
            let samples: Vec<Sample> = records
                .iter()
                .filter_map(|r| decode_body(stream, r, &mut corrupt))
                .collect();
            let n = samples.len();
            let batch = TelemetryBatch {
                v: PROTOCOL_VERSION,
                backlog,
                samples,
            };
            (encode_compressed(&batch).ok(), n, corrupt)
        }
        Stream::Events => {
            let events: Vec<Event> = records
                .iter()
                .filter_map(|r| decode_body(stream, r, &mut corrupt))
                .collect();
            let n = events.len();
            let batch = EventBatch {
                v: PROTOCOL_VERSION,
                events,
            };
            (encode_compressed(&batch).ok(), n, corrupt)
        }
    }
}

fn decode_body<T: serde::de::DeserializeOwned>(
    stream: Stream,
    r: &StoredRecord,
    corrupt: &mut usize,
) -> Option<T> {
    match serde_json::from_slice(&r.body) {
        Ok(v) => Some(v),
        Err(e) => {
            *corrupt += 1;
            tracing::error!(%stream, seq = r.seq, error = %e, "skipping corrupt outbox record");
            None
        }
    }
}
