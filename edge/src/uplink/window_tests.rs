//! Tests of the send window (no actix, no broker, no outbox): what to read next, how many
//! batches fly at once, when a batch is done, and the replay order after a reconnect.

use std::time::Duration;

use chrono::DateTime;
use shiki_proto::{MAX_MESSAGE_BYTES, Sample, TelemetryBatch, decode};

use super::state::Mode;
use super::*;

const CFG: WindowConfig = WindowConfig {
    live_batch_max: 10,
    backlog_batch_bytes: 64 * 1024,
    max_inflight_batches: 2,
    batch_max_delay: Duration::ZERO,
};

fn committed(telemetry: u64, events: u64) -> Committed {
    Committed { telemetry, events }
}

/// Stored samples `from..=to` (as the outbox would answer a read).
fn samples(from: u64, to: u64) -> Vec<StoredRecord> {
    (from..=to)
        .map(|seq| StoredRecord {
            seq,
            body: serde_json::to_vec(&Sample {
                seq,
                ts: DateTime::from_timestamp(1_700_000_000 + seq as i64 * 60, 0).expect("valid"),
                values: Default::default(),
            })
            .expect("json"),
        })
        .collect()
}

/// Answers `peek` with `records` and, when that is a batch, publishes it; the batch's range.
fn publish(w: &mut Window, peek: &Peek, records: &[StoredRecord]) -> (u64, u64) {
    match w.peeked(peek, records) {
        Step::Publish { stream, batch, .. } => {
            w.published(stream, batch.from, batch.to, batch.count);
            (batch.from, batch.to)
        }
        other => panic!("expected a batch, got {other:?}"),
    }
}

/// The stream, from and upto of each read.
fn reads(peeks: &[Peek]) -> Vec<(Stream, u64, u64)> {
    peeks.iter().map(|p| (p.stream, p.from, p.upto)).collect()
}

#[test]
fn nothing_is_read_while_offline() {
    let mut w = Window::new(CFG, committed(5, 1), (0, 0));
    assert_eq!(w.mode(), Mode::Offline);
    assert!(w.peeks().is_empty());
}

#[test]
fn after_a_connect_each_stream_is_read_from_its_frontier_events_first_one_read_at_a_time() {
    let mut w = Window::new(CFG, committed(5, 2), (0, 0));
    assert_eq!(w.connected(), 7, "backlog");
    assert_eq!(w.mode(), Mode::Online);
    let peeks = w.peeks();
    assert_eq!(
        reads(&peeks),
        [(Stream::Events, 1, 2), (Stream::Telemetry, 1, 5)]
    );
    let live = &peeks[1];
    assert_eq!(
        (live.max_count, live.max_bytes, live.backlog),
        (10, MAX_MESSAGE_BYTES, false)
    );
    assert!(w.peeks().is_empty(), "a read per stream is running");
}

#[test]
fn reads_and_unacknowledged_batches_stay_within_the_in_flight_limit() {
    let mut w = Window::new(CFG, committed(5, 0), (0, 0));
    w.connected();
    let peek = w.peeks().remove(0);
    assert_eq!(publish(&mut w, &peek, &samples(1, 3)), (1, 3));
    let peek = w.peeks().remove(0);
    assert_eq!(
        (peek.from, peek.upto),
        (4, 5),
        "read on where the batch ended"
    );
    assert_eq!(publish(&mut w, &peek, &samples(4, 5)), (4, 5));
    w.committed(committed(8, 0));
    // Two batches wait for their PUBACK: no third read.
    assert_eq!(w.inflight().batches(), 2);
    assert!(w.peeks().is_empty());
    w.outgoing(1);
    w.outgoing(2);
    assert_eq!(
        w.puback(1),
        Acked::Frontier {
            stream: Stream::Telemetry,
            up_to: 3
        },
        "a batch is done when its PUBACK arrives"
    );
    assert_eq!(reads(&w.peeks()), [(Stream::Telemetry, 6, 8)]);
    assert_eq!(w.totals(), (2, 5));
}

#[test]
fn a_backlog_is_read_in_large_batches_until_caught_up() {
    let mut w = Window::new(CFG, committed(100, 0), (0, 0));
    assert_eq!(w.connected(), 100);
    assert_eq!(w.mode(), Mode::DrainingBacklog);
    let peek = w.peeks().remove(0);
    assert_eq!(
        (peek.max_count, peek.max_bytes, peek.backlog),
        (usize::MAX, CFG.backlog_batch_bytes, true)
    );
    match w.peeked(&peek, &samples(1, 95)) {
        Step::Publish { stream, batch, .. } => {
            let decoded: TelemetryBatch = decode(&batch.payload).expect("decodes");
            assert!(decoded.backlog, "backlog batches say so");
            w.published(stream, batch.from, batch.to, batch.count);
        }
        other => panic!("{other:?}"),
    }
    let peek = w.peeks().remove(0);
    assert_eq!(w.mode(), Mode::Online, "5 unsent: caught up");
    assert!(!peek.backlog);
}

#[test]
fn live_data_piling_up_while_online_turns_into_a_backlog() {
    let mut w = Window::new(CFG, committed(2, 0), (0, 0));
    w.connected();
    assert_eq!(w.mode(), Mode::Online);
    w.committed(committed(50, 0));
    let peek = w.peeks().remove(0);
    assert_eq!(w.mode(), Mode::DrainingBacklog);
    assert!(peek.backlog);
}

#[test]
fn after_a_reconnect_unacknowledged_records_are_read_again_oldest_first() {
    let mut w = Window::new(CFG, committed(6, 0), (0, 0));
    w.connected();
    let peek = w.peeks().remove(0);
    publish(&mut w, &peek, &samples(1, 3));
    w.outgoing(1);
    assert!(matches!(w.puback(1), Acked::Frontier { up_to: 3, .. }));
    let peek = w.peeks().remove(0);
    publish(&mut w, &peek, &samples(4, 6));
    let stale = {
        w.committed(committed(7, 0));
        w.peeks().remove(0)
    };
    assert!(w.disconnected(), "reconnect");
    assert_eq!(w.mode(), Mode::Offline);
    assert_eq!(
        w.peeked(&stale, &samples(7, 7)),
        Step::Ignore,
        "an older session's read"
    );
    assert!(!w.read_failed(&stale));

    w.connected();
    assert_eq!(
        w.inflight().batches(),
        0,
        "the old session's publishes are forgotten"
    );
    assert_eq!(
        reads(&w.peeks()),
        [(Stream::Telemetry, 4, 7)],
        "from the first unacknowledged seq"
    );
}

#[test]
fn a_range_the_quota_dropped_is_acknowledged_without_sending() {
    let mut w = Window::new(CFG, committed(5, 0), (0, 0));
    w.connected();
    let peek = w.peeks().remove(0);
    assert_eq!(
        w.peeked(&peek, &[]),
        Step::Skip {
            acked: Acked::Frontier {
                stream: Stream::Telemetry,
                up_to: 5
            },
            skipped: None
        }
    );
    assert!(w.peeks().is_empty(), "nothing left to read");
}

#[test]
fn a_record_over_the_message_limit_is_skipped_and_reported() {
    let mut w = Window::new(CFG, committed(3, 0), (0, 0));
    w.connected();
    let peek = w.peeks().remove(0);
    let mut records = samples(1, 3);
    let noise = super::batch_tests::incompressible(400_000);
    records[0].body =
        format!(r#"{{"seq":1,"ts":"2023-11-14T22:14:20Z","values":{{"note":"{noise}"}}}}"#)
            .into_bytes();
    let step = w.peeked(&peek, &records);
    assert_eq!(
        step,
        Step::Skip {
            acked: Acked::Frontier {
                stream: Stream::Telemetry,
                up_to: 1
            },
            skipped: Some(Skipped {
                stream: Stream::Telemetry,
                from: 1,
                to: 1,
                count: 1,
                reason: "exceeds the message limit"
            })
        }
    );
    assert_eq!(reads(&w.peeks()), [(Stream::Telemetry, 2, 3)]);
}

#[test]
fn a_failed_read_is_retried_and_a_corrupt_record_is_reported_with_its_batch() {
    let mut w = Window::new(CFG, committed(3, 0), (0, 0));
    w.connected();
    let peek = w.peeks().remove(0);
    assert!(w.read_failed(&peek), "read again later");
    let peek = w.peeks().remove(0);
    assert_eq!((peek.from, peek.upto), (1, 3), "the same range");
    let mut records = samples(1, 3);
    records[1].body = b"not json".to_vec();
    match w.peeked(&peek, &records) {
        Step::Publish { batch, skipped, .. } => {
            assert_eq!((batch.from, batch.to, batch.count), (1, 3, 2));
            assert_eq!(skipped.map(|s| (s.from, s.to, s.count)), Some((1, 3, 1)));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn after_shutdown_nothing_is_read_and_no_reconnect_follows() {
    let mut w = Window::new(CFG, committed(3, 0), (0, 0));
    w.connected();
    let peek = w.peeks().remove(0);
    assert!(w.shut_down(), "it was sending");
    assert_eq!(w.peeked(&peek, &samples(1, 3)), Step::Ignore);
    w.committed(committed(9, 0));
    assert!(w.peeks().is_empty());
    assert!(!w.disconnected(), "no reconnect while shutting down");
}

// ---------------------------------------------------------------------------------------
// telemetry.batch_max_delay and compact batches

const DELAYED: WindowConfig = WindowConfig {
    live_batch_max: 5,
    batch_max_delay: Duration::from_secs(300),
    ..CFG
};

fn acks_all(w: &mut Window, pkid: u16) {
    w.outgoing(pkid);
    w.puback(pkid);
}

#[test]
fn live_telemetry_waits_up_to_the_delay_and_events_never_wait() {
    let t0 = tokio::time::Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut w = Window::new(DELAYED, committed(0, 0), (0, 0));
    w.connected();
    assert!(w.peeks_at(at(0)).is_empty());
    // The first sample after a connect starts the wait (nothing waited through an outage).
    w.committed(committed(1, 0));
    let first = w.peeks_at(at(1));
    assert_eq!(
        reads(&first),
        [(Stream::Telemetry, 1, 1)],
        "after a connect: at once"
    );
    publish(&mut w, &first[0], &samples(1, 1));
    acks_all(&mut w, 1);
    w.committed(committed(2, 0));
    assert!(w.peeks_at(at(60)).is_empty(), "sample 2 waits");
    assert_eq!(
        w.deadline(),
        Some(at(360)),
        "due 5 minutes after it was first seen"
    );
    w.committed(committed(3, 1));
    assert_eq!(
        reads(&w.peeks_at(at(120))),
        [(Stream::Events, 1, 1)],
        "an event goes at once; telemetry still waits"
    );
    assert!(w.peeks_at(at(359)).is_empty());
    let due = w.peeks_at(at(360));
    assert_eq!(
        reads(&due),
        [(Stream::Telemetry, 2, 3)],
        "one batch when due"
    );
    assert_eq!(w.deadline(), None, "nothing waits while it is read");
}

#[test]
fn live_telemetry_goes_when_the_batch_is_full_before_the_delay() {
    let t0 = tokio::time::Instant::now();
    let mut w = Window::new(DELAYED, committed(0, 0), (0, 0));
    w.connected();
    w.committed(committed(1, 0));
    let p = w.peeks_at(t0);
    publish(&mut w, &p[0], &samples(1, 1));
    w.committed(committed(5, 0));
    assert!(
        w.peeks_at(t0 + Duration::from_secs(1)).is_empty(),
        "4 of 5 wait"
    );
    w.committed(committed(6, 0));
    assert_eq!(
        reads(&w.peeks_at(t0 + Duration::from_secs(2))),
        [(Stream::Telemetry, 2, 6)],
        "5 unsent = live_batch_max: sent without waiting"
    );
}

#[test]
fn after_a_reconnect_waiting_and_unacknowledged_samples_go_at_once_in_order() {
    let t0 = tokio::time::Instant::now();
    let mut w = Window::new(DELAYED, committed(0, 0), (0, 0));
    w.connected();
    w.committed(committed(1, 0));
    let p = w.peeks_at(t0);
    publish(&mut w, &p[0], &samples(1, 1));
    w.committed(committed(3, 0));
    assert!(w.peeks_at(t0 + Duration::from_secs(10)).is_empty());
    // The link drops before sample 1's PUBACK; 2 and 3 were waiting.
    w.disconnected();
    assert_eq!(w.deadline(), None, "offline: no timer");
    w.connected();
    assert_eq!(
        reads(&w.peeks_at(t0 + Duration::from_secs(20))),
        [(Stream::Telemetry, 1, 3)],
        "re-sent from the frontier, without waiting again"
    );
}

/// A sample with `values`, stored as the outbox stores it.
fn stored(seq: u64, values: &[(&str, f64)]) -> StoredRecord {
    let s = Sample {
        seq,
        ts: DateTime::from_timestamp(1_782_874_800 + seq as i64 * 60, 0).expect("valid"),
        values: values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), shiki_proto::PointValue::Number(*v)))
            .collect(),
    };
    StoredRecord {
        seq,
        body: serde_json::to_vec(&s).expect("json"),
    }
}

fn compact(step: Step) -> (shiki_proto::CompactBatch, Batch) {
    match step {
        Step::Publish { batch, .. } => {
            let text = shiki_proto::json_text(&batch.payload)
                .expect("text")
                .into_owned();
            (
                serde_json::from_slice(&text).expect("a compact batch"),
                batch,
            )
        }
        other => panic!("expected a batch, got {other:?}"),
    }
}

#[test]
fn compact_batches_carry_the_names_first_in_each_session_and_then_refer_to_them() {
    let dict = shiki_proto::PointDictionary::new(vec!["supply_c".into(), "return_c".into()]);
    let mut w = Window::new(CFG, committed(1, 0), (0, 0)).with_dictionary(dict.clone());
    w.connected();
    let p = w.peeks().remove(0);
    let (c, batch) = compact(w.peeked(&p, &[stored(1, &[("supply_c", 7.2)])]));
    assert_eq!(c.d, dict.id());
    assert_eq!(c.n.as_deref(), Some(dict.names()), "first batch: names");
    assert!(batch.with_names);
    w.published(Stream::Telemetry, 1, 1, 1);
    w.names_published();
    w.committed(committed(2, 0));
    let p = w.peeks().remove(0);
    let (c, _) = compact(w.peeked(&p, &[stored(2, &[("supply_c", 7.1), ("return_c", 12.0)])]));
    assert_eq!(c.n, None, "the cloud has the names from the first batch");
    assert_eq!(serde_json::json!(c.r), serde_json::json!([[0, 0, 7.1, 12]]));
    // A sample with a point the catalog does not list: a dictionary of its own, with names.
    w.published(Stream::Telemetry, 2, 2, 1);
    acks_all(&mut w, 1);
    acks_all(&mut w, 2);
    w.committed(committed(3, 0));
    let p = w.peeks().remove(0);
    let (c, batch) = compact(w.peeked(&p, &[stored(3, &[("flow", 1.5)])]));
    assert_ne!(c.d, dict.id());
    assert_eq!(c.n, Some(vec!["flow".to_owned()]));
    assert!(
        !batch.with_names,
        "its own names do not count as the catalog dictionary's"
    );
    // A new session starts with the names again.
    w.disconnected();
    w.connected();
    let p = w.peeks().remove(0);
    let (c, _) = compact(w.peeked(&p, &samples(1, 3)));
    assert!(c.n.is_some());
}
