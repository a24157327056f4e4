use shiki_proto::{MAX_MESSAGE_BYTES, Sample, TelemetryBatch, decode};

use super::state::{Input, Mode};
use super::*;

const LIVE: u64 = 10;

#[test]
fn mode_transition_table() {
    use Input::*;
    use Mode::*;
    let big = Connected { backlog: 11 };
    let small = Connected { backlog: 10 };
    let table = [
        (Offline, big, DrainingBacklog),
        (Offline, small, Online),
        (Offline, CaughtUp, Offline),
        (Offline, BacklogGrew, Offline),
        (Offline, Disconnected, Offline),
        (Offline, Shutdown, ShuttingDown),
        (Online, big, DrainingBacklog),
        (Online, small, Online),
        (Online, CaughtUp, Online),
        (Online, BacklogGrew, DrainingBacklog),
        (Online, Disconnected, Offline),
        (Online, Shutdown, ShuttingDown),
        (DrainingBacklog, big, DrainingBacklog),
        (DrainingBacklog, small, Online),
        (DrainingBacklog, CaughtUp, Online),
        (DrainingBacklog, BacklogGrew, DrainingBacklog),
        (DrainingBacklog, Disconnected, Offline),
        (DrainingBacklog, Shutdown, ShuttingDown),
        (ShuttingDown, big, ShuttingDown),
        (ShuttingDown, CaughtUp, ShuttingDown),
        (ShuttingDown, Disconnected, ShuttingDown),
    ];
    for (from, input, to) in table {
        assert_eq!(from.next(input, LIVE), to, "{from:?} + {input:?}");
    }
    assert!(Online.sends() && DrainingBacklog.sends());
    assert!(!Offline.sends() && !ShuttingDown.sends());
}

#[test]
fn pkids_map_to_requests_in_order_and_the_frontier_moves_only_when_contiguous() {
    let mut f = InFlight::new(0, 0);
    f.requested(Tag::Control);
    f.requested(Tag::Records {
        stream: Stream::Telemetry,
        from: 1,
        to: 5,
    });
    f.requested(Tag::Records {
        stream: Stream::Telemetry,
        from: 6,
        to: 9,
    });
    f.requested(Tag::Reported { generation: 3 });
    for pkid in [1, 2, 3, 4] {
        f.outgoing(pkid);
    }
    assert_eq!(f.batches(), 2);
    // The second batch is acknowledged first: nothing may be deleted yet.
    assert_eq!(f.puback(3), Acked::Records);
    assert_eq!(f.puback(1), Acked::Nothing);
    assert_eq!(
        f.puback(2),
        Acked::Frontier {
            stream: Stream::Telemetry,
            up_to: 9
        }
    );
    assert_eq!(f.puback(4), Acked::Reported { generation: 3 });
    assert_eq!(f.puback(4), Acked::Nothing, "duplicate puback is ignored");
    assert!(f.idle());
    assert_eq!(f.batches(), 0);
}

#[test]
fn after_a_reset_old_pkids_mean_nothing_and_resent_ranges_still_count() {
    let mut f = InFlight::new(10, 0);
    f.requested(Tag::Records {
        stream: Stream::Events,
        from: 1,
        to: 4,
    });
    f.outgoing(7);
    f.reset();
    assert_eq!(f.puback(7), Acked::Nothing, "pkid of a dead session");
    f.requested(Tag::Records {
        stream: Stream::Events,
        from: 1,
        to: 6,
    });
    f.outgoing(1);
    assert_eq!(
        f.puback(1),
        Acked::Frontier {
            stream: Stream::Events,
            up_to: 6
        }
    );
    assert_eq!(f.frontier(Stream::Telemetry), 10);
}

#[test]
fn dropped_ranges_can_be_skipped_to_move_the_frontier() {
    let mut f = InFlight::new(0, 0);
    f.requested(Tag::Records {
        stream: Stream::Telemetry,
        from: 5,
        to: 8,
    });
    f.outgoing(1);
    assert_eq!(f.puback(1), Acked::Records);
    assert_eq!(
        f.skip(Stream::Telemetry, 1, 4),
        Acked::Frontier {
            stream: Stream::Telemetry,
            up_to: 8
        }
    );
}

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
                ts: chrono::DateTime::from_timestamp(1_700_000_000 + seq as i64 * 60, 0)
                    .expect("valid"),
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
