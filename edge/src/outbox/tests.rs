use std::collections::BTreeMap;

use proptest::prelude::*;
use shiki_proto::{Event, EventKind, PointValue, Sample, Severity};

use super::*;

fn sample(n: u64) -> NewRecord {
    let mut values = BTreeMap::new();
    values.insert("supply_c".to_owned(), PointValue::Number(n as f64));
    NewRecord::Sample {
        ts: chrono::DateTime::from_timestamp(1_700_000_000 + n as i64, 0).expect("valid ts"),
        values,
    }
}

fn event(n: u64) -> NewRecord {
    NewRecord::Event {
        ts: chrono::DateTime::from_timestamp(1_700_000_000 + n as i64, 0).expect("valid ts"),
        kind: EventKind::Alarm,
        severity: Severity::Critical,
        message: format!("alarm {n}"),
        data: serde_json::Value::Null,
    }
}

fn open(dir: &tempfile::TempDir, quota: u64) -> RedbOutbox {
    RedbOutbox::open(
        &dir.path().join("edge.redb"),
        OutboxOptions {
            quota_bytes: quota,
            cache_bytes: 1 << 20,
        },
    )
    .expect("open outbox")
}

fn all_seqs(store: &RedbOutbox, stream: Stream) -> Vec<u64> {
    store
        .peek_from(stream, 0, usize::MAX, usize::MAX)
        .expect("peek")
        .into_iter()
        .map(|r| r.seq)
        .collect()
}

#[test]
fn seqs_start_at_one_per_stream_and_bodies_carry_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir, u64::MAX);
    let out = store
        .apply(&[
            WriteOp::Append(sample(1)),
            WriteOp::Append(event(1)),
            WriteOp::Append(sample(2)),
        ])
        .expect("append");
    assert_eq!(
        out,
        vec![
            WriteOutcome::Appended {
                stream: Stream::Telemetry,
                seq: 1
            },
            WriteOutcome::Appended {
                stream: Stream::Events,
                seq: 1
            },
            WriteOutcome::Appended {
                stream: Stream::Telemetry,
                seq: 2
            },
        ]
    );
    let recs = store
        .peek_from(Stream::Telemetry, 0, 10, 1 << 20)
        .expect("peek");
    let s: Sample = serde_json::from_slice(&recs[1].body).expect("sample json");
    assert_eq!(s.seq, 2);
    let e = store
        .peek_from(Stream::Events, 0, 10, 1 << 20)
        .expect("peek");
    let e: Event = serde_json::from_slice(&e[0].body).expect("event json");
    assert_eq!((e.seq, e.kind), (1, EventKind::Alarm));
}

#[test]
fn peek_respects_start_count_and_bytes_but_returns_at_least_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir, u64::MAX);
    let ops: Vec<_> = (1..=10).map(|n| WriteOp::Append(sample(n))).collect();
    store.apply(&ops).expect("append");
    let page = store
        .peek_from(Stream::Telemetry, 4, 3, 1 << 20)
        .expect("peek");
    assert_eq!(
        page.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![4, 5, 6]
    );
    let tiny = store.peek_from(Stream::Telemetry, 1, 100, 1).expect("peek");
    assert_eq!(tiny.len(), 1);
    let one = page[0].body.len();
    let two = store
        .peek_from(Stream::Telemetry, 1, 100, 2 * one + 1)
        .expect("peek");
    assert_eq!(two.len(), 2);
}

#[test]
fn ack_deletes_up_to_seq_and_seqs_continue_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = open(&dir, u64::MAX);
        let ops: Vec<_> = (1..=5).map(|n| WriteOp::Append(sample(n))).collect();
        store.apply(&ops).expect("append");
        let out = store
            .apply(&[WriteOp::Ack {
                stream: Stream::Telemetry,
                up_to: 5,
            }])
            .expect("ack");
        assert_eq!(out, vec![WriteOutcome::Acked { deleted: 5 }]);
        // An ack-only commit is lazily durable: make it durable with the next append.
        store.apply(&[WriteOp::Append(event(1))]).expect("append");
    }
    let mut store = open(&dir, u64::MAX);
    assert!(all_seqs(&store, Stream::Telemetry).is_empty());
    let out = store.apply(&[WriteOp::Append(sample(6))]).expect("append");
    assert_eq!(
        out,
        vec![WriteOutcome::Appended {
            stream: Stream::Telemetry,
            seq: 6
        }]
    );
    let stats = store.stats().expect("stats");
    assert_eq!((stats.pending_telemetry, stats.pending_events), (1, 1));
}

#[test]
fn quota_drops_oldest_telemetry_first_and_records_a_data_dropped_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir, 20_000);
    store.apply(&[WriteOp::Append(event(0))]).expect("event");
    for n in 1..=600 {
        store.apply(&[WriteOp::Append(sample(n))]).expect("append");
    }
    let stats = store.stats().expect("stats");
    assert!(stats.stored_bytes <= 20_000, "{stats:?}");
    assert!(stats.dropped_telemetry > 0);
    assert_eq!(stats.dropped_events, 0, "events go last");
    let telemetry = all_seqs(&store, Stream::Telemetry);
    assert_eq!(telemetry.last(), Some(&600), "newest samples kept");
    assert!(
        telemetry.windows(2).all(|w| w[1] == w[0] + 1),
        "drops are oldest-first"
    );
    let events = store
        .peek_from(Stream::Events, 0, usize::MAX, usize::MAX)
        .expect("peek");
    let kinds: Vec<EventKind> = events
        .iter()
        .map(|r| {
            serde_json::from_slice::<Event>(&r.body)
                .expect("event")
                .kind
        })
        .collect();
    assert_eq!(kinds[0], EventKind::Alarm, "the original event survives");
    assert!(kinds.contains(&EventKind::DataDropped));
}

#[test]
fn quota_drops_events_when_no_telemetry_is_left() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir, 3_000);
    for n in 1..=60 {
        store.apply(&[WriteOp::Append(event(n))]).expect("append");
    }
    let stats = store.stats().expect("stats");
    assert!(stats.dropped_events > 0);
    assert!(stats.stored_bytes <= 3_000, "{stats:?}");
}

#[test]
fn documents_persist_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = open(&dir, u64::MAX);
        store
            .apply(&[WriteOp::PutDoc {
                key: "shadow.desired".into(),
                value: b"{\"a\":1}".to_vec(),
            }])
            .expect("put");
    }
    let store = open(&dir, u64::MAX);
    assert_eq!(
        store.get_doc("shadow.desired").expect("get"),
        Some(b"{\"a\":1}".to_vec())
    );
    assert_eq!(store.get_doc("nope").expect("get"), None);
}

#[test]
fn the_audit_log_keeps_the_newest_entries_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = open(&dir, u64::MAX);
        let ops: Vec<_> = (0..AUDIT_KEEP + 5)
            .map(|n| {
                WriteOp::Audit(AuditEntry {
                    ts: chrono::Utc::now(),
                    actor: "cloud".into(),
                    action: "desired_applied".into(),
                    detail: serde_json::json!({ "n": n }),
                })
            })
            .collect();
        store.apply(&ops).expect("audit");
    }
    let store = open(&dir, u64::MAX);
    let tail = store.audit_tail(3).expect("tail");
    let ids: Vec<u64> = tail.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![AUDIT_KEEP + 3, AUDIT_KEEP + 4, AUDIT_KEEP + 5]);
    assert_eq!(tail[2].1.detail["n"], serde_json::json!(AUDIT_KEEP + 4));
    assert_eq!(
        store.audit_tail(usize::MAX).expect("all").len() as u64,
        AUDIT_KEEP
    );
}

#[test]
fn a_second_open_of_the_same_file_is_refused_with_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = open(&dir, u64::MAX);
    let err = RedbOutbox::open(&dir.path().join("edge.redb"), OutboxOptions::default())
        .expect_err("second open must fail");
    assert!(err.to_string().contains("edge.redb"), "{err}");
}

#[tokio::test]
async fn writer_group_commits_concurrent_appends_and_answers_after_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (handle, join) = OutboxHandle::start(open(&dir, u64::MAX)).expect("start");
    let mut committed = handle.committed();
    let futs: Vec<_> = (1..=500).map(|n| handle.append(sample(n))).collect();
    let seqs: Vec<u64> = futures::future::join_all(futs)
        .await
        .into_iter()
        .map(|r| r.expect("append"))
        .collect();
    assert_eq!(seqs, (1..=500).collect::<Vec<_>>());
    committed
        .wait_for(|c| c.telemetry == 500)
        .await
        .expect("watch");
    let page = handle
        .peek_from(Stream::Telemetry, 499, 10, 1 << 20)
        .await
        .expect("peek");
    assert_eq!(page.len(), 2);
    handle.ack(Stream::Telemetry, 250).await.expect("ack");
    // Acknowledgements are deferred; a stats read applies them.
    assert_eq!(handle.stats().await.expect("stats").pending_telemetry, 250);
    handle.ack(Stream::Telemetry, 260).await.expect("ack");
    handle.put_doc("k", b"v".to_vec()).await.expect("put doc");
    assert_eq!(handle.get_doc("k").await.expect("get"), Some(b"v".to_vec()));
    handle.close().await;
    join.join().expect("writer thread");
    let store = open(&dir, u64::MAX);
    assert_eq!(
        store.stats().expect("stats").pending_telemetry,
        240,
        "the last deferred ack is applied at close"
    );
}

#[tokio::test]
async fn held_samples_are_committed_with_the_next_event_or_at_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (handle, join) =
        OutboxHandle::start_with(open(&dir, u64::MAX), std::time::Duration::from_secs(3600))
            .expect("start");
    let first = handle.submit(WriteOp::Append(sample(1)));
    let second = handle.submit(WriteOp::Append(sample(2)));
    // Nothing forces a commit yet; an event does, and takes the held samples along.
    let ev = handle.append(event(1)).await.expect("event");
    assert_eq!(ev, 1);
    assert!(matches!(
        first.await.expect("reply"),
        Ok(WriteOutcome::Appended { seq: 1, .. })
    ));
    assert!(second.await.expect("reply").is_ok());
    let third = handle.submit(WriteOp::Append(sample(3)));
    handle.close().await;
    assert!(matches!(
        third.await.expect("reply"),
        Ok(WriteOutcome::Appended { seq: 3, .. })
    ));
    join.join().expect("writer");
    assert_eq!(
        open(&dir, u64::MAX)
            .stats()
            .expect("stats")
            .last_telemetry_seq,
        3
    );
}

#[tokio::test]
async fn dropping_every_handle_still_commits_held_samples() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (handle, join) =
        OutboxHandle::start_with(open(&dir, u64::MAX), std::time::Duration::from_secs(3600))
            .expect("start");
    let reply = handle.submit(WriteOp::Append(sample(1)));
    drop(handle);
    join.join().expect("writer");
    assert!(matches!(
        reply.await.expect("reply"),
        Ok(WriteOutcome::Appended { seq: 1, .. })
    ));
    assert_eq!(
        open(&dir, u64::MAX)
            .stats()
            .expect("stats")
            .last_telemetry_seq,
        1
    );
}

// ---------------------------------------------------------------------------------------
// Model test: random appends, acks, crashes (drop + reopen) never lose, duplicate or
// reorder records, and seqs continue after a restart without reuse.

#[derive(Debug, Clone)]
enum Op {
    Append(Stream, u8),
    Ack(Stream, u8),
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    let stream = prop_oneof![Just(Stream::Telemetry), Just(Stream::Events)];
    prop_oneof![
        5 => (stream.clone(), 1u8..20).prop_map(|(s, n)| Op::Append(s, n)),
        3 => (stream, any::<u8>()).prop_map(|(s, k)| Op::Ack(s, k)),
        1 => Just(Op::Crash),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn nothing_is_lost_duplicated_or_reordered_across_crashes(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = open(&dir, u64::MAX);
        // The model: pending seqs per stream, last durable seq per stream, and acked
        // seqs whose deletion may be undone by a crash (acks are lazily durable).
        let mut pending: BTreeMap<Stream, Vec<u64>> = BTreeMap::new();
        let mut last: BTreeMap<Stream, u64> = BTreeMap::new();
        let mut unsynced_acks: BTreeMap<Stream, Vec<u64>> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Append(stream, n) => {
                    let recs: Vec<_> = (0..n).map(|i| WriteOp::Append(match stream {
                        Stream::Telemetry => sample(u64::from(i)),
                        Stream::Events => event(u64::from(i)),
                    })).collect();
                    let out = store.apply(&recs).expect("append");
                    for o in out {
                        let WriteOutcome::Appended { stream: s, seq } = o else { panic!("not appended") };
                        let l = last.entry(s).or_insert(0);
                        prop_assert_eq!(seq, *l + 1, "seq continues without gap or reuse");
                        *l = seq;
                        pending.entry(s).or_default().push(seq);
                    }
                    // A durable commit persists earlier lazy acks too.
                    unsynced_acks.clear();
                }
                Op::Ack(stream, k) => {
                    let p = pending.entry(stream).or_default();
                    if p.is_empty() { continue; }
                    let idx = usize::from(k) % p.len();
                    let up_to = p[idx];
                    store.apply(&[WriteOp::Ack { stream, up_to }]).expect("ack");
                    let removed: Vec<u64> = p.drain(..=idx).collect();
                    unsynced_acks.entry(stream).or_default().extend(removed);
                }
                Op::Crash => {
                    drop(store);
                    store = open(&dir, u64::MAX);
                    // Lazily durable acks may come back: they will be re-sent (duplicates the
                    // cloud removes), never lost.
                    for (stream, seqs) in std::mem::take(&mut unsynced_acks) {
                        let p = pending.entry(stream).or_default();
                        let actual = all_seqs(&store, stream);
                        let mut merged: Vec<u64> = seqs.into_iter().filter(|s| actual.contains(s)).collect();
                        merged.extend(p.iter().copied());
                        merged.sort_unstable();
                        *p = merged;
                    }
                }
            }
            for stream in Stream::ALL {
                let expected = pending.get(&stream).cloned().unwrap_or_default();
                prop_assert_eq!(all_seqs(&store, stream), expected);
                let stats = store.stats().expect("stats");
                prop_assert_eq!(stats.last_seq(stream), last.get(&stream).copied().unwrap_or(0));
            }
        }
    }
}
