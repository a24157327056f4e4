//! Tests of the batch builder: stored bytes spliced into the batch envelope decode to
//! exactly the batch that decoding and re-encoding every record would build.

use chrono::DateTime;
use shiki_proto::{
    Event, EventBatch, EventKind, MAX_MESSAGE_BYTES, PROTOCOL_VERSION, Sample, Severity,
    TelemetryBatch, decode, encode_compressed, json_text,
};

use super::*;

fn records(n: u64, values_per_sample: usize) -> Vec<StoredRecord> {
    (1..=n)
        .map(|seq| {
            let values = (0..values_per_sample)
                .map(|i| {
                    (
                        format!("point_{i}"),
                        shiki_proto::PointValue::Number((seq as f64) * 0.1 + i as f64),
                    )
                })
                .collect();
            let s = Sample {
                seq,
                ts: DateTime::from_timestamp(1_700_000_000 + seq as i64 * 60, 0).expect("valid"),
                values,
            };
            StoredRecord {
                seq,
                body: serde_json::to_vec(&s).expect("json"),
            }
        })
        .collect()
}

#[test]
fn backlog_batches_are_compressed_and_split_to_the_message_limit() {
    let recs = records(20_000, 8);
    let batch = build_batch(Stream::Telemetry, 1, &recs, true).expect("fits");
    assert!(batch.payload.len() <= MAX_MESSAGE_BYTES);
    assert_eq!(batch.payload[..2], [0x1f, 0x8b], "compressed");
    assert!(
        batch.count < 20_000 && batch.count >= 1000,
        "{}",
        batch.count
    );
    let decoded: TelemetryBatch = decode(&batch.payload).expect("decodes");
    assert!(decoded.backlog);
    assert_eq!(decoded.samples.first().map(|s| s.seq), Some(1));
    assert_eq!(batch.to, batch.count as u64);
}

#[test]
fn a_small_live_batch_stays_plain_json_when_gzip_would_not_save_bytes() {
    let recs = records(1, 1);
    let batch = build_batch(Stream::Telemetry, 1, &recs, false).expect("fits");
    assert_eq!(batch.payload[0], b'{');
    assert_eq!((batch.from, batch.to, batch.count), (1, 1, 1));
}

#[test]
fn a_corrupt_record_is_skipped_but_covered_by_the_range() {
    let mut recs = records(3, 2);
    recs[1].body = b"not json".to_vec();
    let batch = build_batch(Stream::Telemetry, 1, &recs, false).expect("fits");
    assert_eq!(
        (batch.from, batch.to, batch.count, batch.corrupt),
        (1, 3, 2, 1)
    );
}

fn events(n: u64) -> Vec<StoredRecord> {
    (1..=n)
        .map(|seq| {
            let e = Event {
                seq,
                ts: DateTime::from_timestamp(1_700_000_000 + seq as i64, 0).expect("valid"),
                kind: EventKind::PlcError,
                severity: Severity::Warning,
                message: format!("modbus read of holding register 4000{seq} timed out after 2 s"),
                data: if seq % 2 == 0 {
                    serde_json::json!({"register": seq, "cause": "timeout", "ratio": 0.1 * seq as f64})
                } else {
                    serde_json::Value::Null
                },
            };
            StoredRecord {
                seq,
                body: serde_json::to_vec(&e).expect("json"),
            }
        })
        .collect()
}

/// What the uplink built before it spliced: every record decoded, the batch encoded again.
fn reencoded_telemetry(records: &[StoredRecord], backlog: bool) -> TelemetryBatch {
    TelemetryBatch {
        v: PROTOCOL_VERSION,
        backlog,
        samples: records
            .iter()
            .filter_map(|r| serde_json::from_slice(&r.body).ok())
            .collect(),
    }
}

fn reencoded_events(records: &[StoredRecord]) -> EventBatch {
    EventBatch {
        v: PROTOCOL_VERSION,
        events: records
            .iter()
            .map(|r| serde_json::from_slice(&r.body).expect("event json"))
            .collect(),
    }
}

#[test]
fn a_spliced_telemetry_batch_is_the_batch_reencoding_built_compressed_or_not() {
    for (n, backlog) in [(1, false), (10, false), (3000, true), (3000, false)] {
        let recs = records(n, 8);
        let batch = build_batch(Stream::Telemetry, 1, &recs, backlog).expect("fits");
        let covered = &recs[..batch.count];
        let old = reencoded_telemetry(covered, backlog);
        let decoded: TelemetryBatch = decode(&batch.payload).expect("decodes");
        assert_eq!(decoded, old, "{n} records, backlog {backlog}");
        let text = json_text(&batch.payload).expect("json text");
        assert_eq!(
            *text,
            serde_json::to_vec(&old).expect("json")[..],
            "byte for byte the old JSON"
        );
        let old_payload = encode_compressed(&old).expect("fits");
        assert_eq!(
            batch.payload[..2] == [0x1f, 0x8b],
            old_payload[..2] == [0x1f, 0x8b],
            "compressed exactly when the old path compressed"
        );
    }
}

#[test]
fn a_spliced_event_batch_is_the_batch_reencoding_built() {
    let recs = events(40);
    let batch = build_batch(Stream::Events, 1, &recs, false).expect("fits");
    assert_eq!((batch.from, batch.to, batch.count), (1, 40, 40));
    let decoded: EventBatch = decode(&batch.payload).expect("decodes");
    let old = reencoded_events(&recs);
    assert_eq!(decoded, old);
    assert_eq!(
        *json_text(&batch.payload).expect("json text"),
        serde_json::to_vec(&old).expect("json")[..]
    );
}

#[test]
fn a_large_live_batch_is_split_to_the_message_limit_too() {
    // About 5 MB of JSON, still over the limit after gzip.
    let recs = records(6000, 40);
    let batch = build_batch(Stream::Telemetry, 1, &recs, false).expect("fits");
    assert!(batch.payload.len() <= MAX_MESSAGE_BYTES);
    assert!(batch.count < 6000, "{}", batch.count);
    let decoded: TelemetryBatch = decode(&batch.payload).expect("decodes");
    assert_eq!(decoded, reencoded_telemetry(&recs[..batch.count], false));
}

/// `n` pseudo-random hex digits: gzip cannot squeeze 400,000 of them under 128 KiB.
pub(super) fn incompressible(n: usize) -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            char::from_digit((x >> 60) as u32, 16).expect("a hex digit")
        })
        .collect()
}

#[test]
fn a_record_alone_over_the_limit_builds_no_batch() {
    let noise = incompressible(400_000);
    let mut recs = records(2, 1);
    recs[0].body =
        format!(r#"{{"seq":1,"ts":"2023-11-14T22:14:20Z","values":{{"note":"{noise}"}}}}"#)
            .into_bytes();
    assert_eq!(build_batch(Stream::Telemetry, 1, &recs, true), None);
}

#[test]
fn a_stored_body_that_does_not_decode_as_its_record_is_skipped() {
    let mut recs = records(5, 2);
    recs[1].body = b"[1,2]".to_vec();
    recs[2].body = b"{\"seq\":3,".to_vec();
    recs[3].body = br#"{"seq":4,"values":{}}"#.to_vec();
    let batch = build_batch(Stream::Telemetry, 1, &recs, false).expect("fits");
    assert_eq!(
        (batch.from, batch.to, batch.count, batch.corrupt),
        (1, 5, 2, 3)
    );
    let decoded: TelemetryBatch = decode(&batch.payload).expect("decodes");
    let seqs: Vec<u64> = decoded.samples.iter().map(|s| s.seq).collect();
    assert_eq!(seqs, [1, 5]);

    let mut evs = events(3);
    evs[1].body = br#"{"seq":2,"message":"no kind"}"#.to_vec();
    let batch = build_batch(Stream::Events, 1, &evs, false).expect("fits");
    assert_eq!((batch.count, batch.corrupt), (2, 1));
}

#[test]
fn compact_backlog_batches_carry_names_split_to_the_limit_and_decode_to_the_stored_samples() {
    let recs = records(20_000, 8);
    let dict = shiki_proto::PointDictionary::new((0..8).map(|i| format!("point_{i}")).collect());
    let batch = build_batch_as(
        Stream::Telemetry,
        1,
        &recs,
        true,
        Format::Compact {
            dict: &dict,
            with_names: false,
        },
    )
    .expect("fits");
    assert!(batch.payload.len() <= MAX_MESSAGE_BYTES);
    assert!(batch.with_names, "backlog batches always carry the names");
    let (decoded, carried) =
        shiki_proto::decode_telemetry(&batch.payload, |_| None).expect("decodes alone");
    assert_eq!(carried.as_ref().map(|d| d.id()), Some(dict.id()));
    assert!(decoded.backlog);
    let stored: Vec<Sample> = recs[..batch.count]
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("sample"))
        .collect();
    assert_eq!(decoded.samples, stored);
    // The same records as JSON + gzip (protocol version 1) take more bytes per sample.
    let json = build_batch(Stream::Telemetry, 1, &recs[..batch.count], true).expect("fits");
    let per_sample = |b: &Batch| b.payload.len() as f64 / b.count as f64;
    assert!(
        per_sample(&batch) < per_sample(&json),
        "compact {:.2} B, JSON {:.2} B per sample",
        per_sample(&batch),
        per_sample(&json)
    );
}
