//! Store tests: de-duplication, ordering, gaps, history with verification outcomes, and
//! persistence across a reopen.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use shiki_proto::{DeviceId, Event, EventKind, Sample, Severity};

use super::*;
use crate::testing::{stored_seqs, stored_seqs_in};

fn dev(s: &str) -> DeviceId {
    DeviceId::new(s).expect("valid test id")
}

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0)
        .single()
        .expect("valid instant")
}

fn sample(seq: u64) -> Sample {
    Sample {
        seq,
        ts: t(seq as i64),
        values: [("supply_temp".to_owned(), (7.0 + seq as f64 / 10.0).into())].into(),
    }
}

fn open(dir: &tempfile::TempDir) -> RedbStore {
    RedbStore::open(&dir.path().join("cloud.redb"), 1024).expect("store opens")
}

fn write(store: &dyn Store, writes: Vec<Write>) {
    store.submit(writes).wait_blocking().expect("commit");
}

/// Where a test's store keeps its data, so that it can be opened again: a redb file or a
/// fresh PostgreSQL database.
enum Harness {
    Redb(tempfile::TempDir),
    Postgres(crate::testing::PgTestDb),
}

impl Harness {
    fn redb() -> Self {
        Harness::Redb(tempfile::tempdir().expect("tempdir"))
    }

    fn postgres() -> Self {
        Harness::Postgres(crate::testing::PgTestDb::create())
    }

    fn open(&self) -> AnyStore {
        match self {
            Harness::Redb(dir) => AnyStore::Redb(open(dir)),
            Harness::Postgres(db) => AnyStore::Postgres(
                PgStore::open(
                    &db.url,
                    &PgOptions {
                        max_batch: 1024,
                        pool_size: 2,
                        retention: None,
                    },
                )
                .expect("store opens"),
            ),
        }
    }
}

/// Either backend, as a [`Store`] that can be closed.
enum AnyStore {
    Redb(RedbStore),
    Postgres(PgStore),
}

impl AnyStore {
    fn close(&self) {
        match self {
            AnyStore::Redb(s) => s.close(),
            AnyStore::Postgres(s) => s.close(),
        }
    }
}

impl std::ops::Deref for AnyStore {
    type Target = dyn Store;

    fn deref(&self) -> &Self::Target {
        match self {
            AnyStore::Redb(s) => s,
            AnyStore::Postgres(s) => s,
        }
    }
}

/// Runs each named test (a `fn(&Harness)`) on a redb store and on a PostgreSQL store.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod redb {
            $(#[test]
            fn $name() {
                super::$name(&super::Harness::redb());
            })*
        }
        mod postgres {
            $(#[test]
            fn $name() {
                super::$name(&super::Harness::postgres());
            })*
        }
    };
}

on_both_backends!(
    replayed_telemetry_is_stored_once_in_seq_order,
    telemetry_queries_by_time_range_and_limit_oldest_first,
    telemetry_and_events_can_be_read_newest_first,
    gaps_in_seq_are_reported,
    late_and_replayed_samples_are_found_in_or_merged_into_their_chunk,
    a_backlog_longer_than_a_chunk_is_split_and_reads_back_in_order,
    events_are_deduplicated_on_their_seq,
    history_is_newest_first_with_verification_outcomes,
    everything_survives_a_reopen_and_ids_keep_increasing,
    schedules_and_the_fleet_last_run_survive_a_reopen,
    artifact_records_are_found_by_version_listed_newest_first_and_survive_a_reopen,
    jobs_survive_a_reopen_with_every_execution_and_author,
    registrations_are_found_by_device_replaced_whole_and_survive_a_reopen,
);

fn replayed_telemetry_is_stored_once_in_seq_order(h: &Harness) {
    let store = h.open();
    let d = dev("gw-1");
    let batch = |seqs: &[u64]| Write::Telemetry {
        device: d.clone(),
        samples: seqs
            .iter()
            .map(|s| SampleRow::encode(&sample(*s)))
            .collect(),
    };
    write(&*store, vec![batch(&[3, 1, 2]), batch(&[2, 3])]);
    write(&*store, vec![batch(&[1, 2, 3, 4])]);
    let got = store.telemetry(&d, &TimeQuery::default()).expect("query");
    assert_eq!(
        got.iter().map(|s| s.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(got[0], sample(1));
    let stats = store.stats();
    assert_eq!(stats.samples_stored, 4);
    assert_eq!(stats.duplicates_dropped, 5);
    // Another device is independent.
    assert!(
        store
            .telemetry(&dev("gw-2"), &TimeQuery::default())
            .expect("q")
            .is_empty()
    );
}

fn telemetry_queries_by_time_range_and_limit_oldest_first(h: &Harness) {
    let store = h.open();
    let d = dev("gw-1");
    write(&*store, vec![telemetry(&d, 1..=10)]);
    let q = TimeQuery {
        from: Some(t(3)),
        to: Some(t(8)),
        limit: Some(4),
        newest_first: false,
    };
    assert_eq!(stored_seqs_in(&*store, &d, &q), vec![3, 4, 5, 6]);
    assert_eq!(
        store.last_sample(&d).expect("last").map(|s| s.seq),
        Some(10)
    );
}

/// The newest N: across the store's older chunks and its newest writes alike.
fn telemetry_and_events_can_be_read_newest_first(h: &Harness) {
    let store = h.open();
    let d = dev("gw-1");
    write(&*store, vec![telemetry(&d, 1..=10)]);
    write(&*store, vec![telemetry(&d, 11..=12)]);
    let newest = |limit, to: Option<i64>| TimeQuery {
        from: None,
        to: to.map(t),
        limit: Some(limit),
        newest_first: true,
    };
    assert_eq!(
        stored_seqs_in(&*store, &d, &newest(4, None)),
        vec![12, 11, 10, 9]
    );
    assert_eq!(
        stored_seqs_in(&*store, &d, &newest(3, Some(8))),
        vec![8, 7, 6]
    );
    let ev = |seq: u64| Event {
        seq,
        ts: t(seq as i64),
        kind: EventKind::Boot,
        severity: Severity::Info,
        message: format!("event {seq}"),
        data: serde_json::Value::Null,
    };
    write(
        &*store,
        vec![Write::Events {
            device: d.clone(),
            events: (1..=5).map(ev).collect(),
        }],
    );
    let got: Vec<u64> = store
        .events(&d, &newest(2, None))
        .expect("events")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(got, vec![5, 4]);
}

fn gaps_in_seq_are_reported(h: &Harness) {
    let store = h.open();
    let d = dev("gw-1");
    write(&*store, vec![telemetry(&d, [2, 3, 6, 7, 10])]);
    assert_eq!(
        store.telemetry_gaps(&d, 10).expect("gaps"),
        vec![
            SeqGap { from: 1, to: 1 },
            SeqGap { from: 4, to: 5 },
            SeqGap { from: 8, to: 9 }
        ]
    );
    assert_eq!(store.telemetry_gaps(&d, 1).expect("gaps").len(), 1);
}

fn telemetry(d: &DeviceId, seqs: impl IntoIterator<Item = u64>) -> Write {
    Write::telemetry(d.clone(), seqs.into_iter().map(sample))
}

/// Samples are kept in chunks (one row per device and commit); a replay or a late sample at
/// or below the newest stored seq is found in, or merged into, the chunk that covers it.
fn late_and_replayed_samples_are_found_in_or_merged_into_their_chunk(h: &Harness) {
    let store = h.open();
    let d = dev("gw-1");
    // One chunk covering 1..=10 with 4 and 7 missing, one covering 20..=22.
    write(&*store, vec![telemetry(&d, [1, 2, 3, 5, 6, 8, 9, 10])]);
    write(&*store, vec![telemetry(&d, [20, 21, 22])]);
    assert_eq!(
        store.telemetry_gaps(&d, 10).expect("gaps"),
        vec![
            SeqGap { from: 4, to: 4 },
            SeqGap { from: 7, to: 7 },
            SeqGap { from: 11, to: 19 }
        ]
    );
    // Replays of stored samples, two late ones inside the first chunk, one between the
    // chunks, one before everything, and new ones.
    write(&*store, vec![telemetry(&d, [9, 4, 21, 15, 7, 1, 23, 24])]);
    let s = store.stats();
    assert_eq!((s.samples_stored, s.duplicates_dropped), (11 + 5, 3));
    assert_eq!(
        stored_seqs(&*store, &d),
        vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20, 21, 22, 23, 24]
    );
    // The merged and the lone samples are found again.
    write(&*store, vec![telemetry(&d, [4, 7, 15, 24])]);
    assert_eq!(store.stats().duplicates_dropped, 3 + 4);
    assert_eq!(
        store.telemetry(&d, &TimeQuery::default()).expect("q")[3],
        sample(4)
    );
    assert_eq!(
        store.telemetry_gaps(&d, 10).expect("gaps"),
        vec![SeqGap { from: 11, to: 14 }, SeqGap { from: 16, to: 19 }]
    );
    assert_eq!(store.last_sample(&d).expect("last"), Some(sample(24)));
}

fn a_backlog_longer_than_a_chunk_is_split_and_reads_back_in_order(h: &Harness) {
    let store = h.open();
    let d = dev("gw-1");
    let n = 3 * redb_store::chunks::MAX_CHUNK_SAMPLES as u64 + 7;
    // Newest first, as a replay might send it, with every sample twice.
    write(
        &*store,
        vec![telemetry(&d, (1..=n).rev()), telemetry(&d, 1..=n)],
    );
    assert_eq!(stored_seqs(&*store, &d), (1..=n).collect::<Vec<_>>());
    assert_eq!(store.stats().duplicates_dropped, n);
    assert!(store.telemetry_gaps(&d, 10).expect("gaps").is_empty());
    let q = TimeQuery {
        from: Some(t(600)),
        to: None,
        limit: Some(3),
        newest_first: false,
    };
    assert_eq!(stored_seqs_in(&*store, &d, &q), vec![600, 601, 602]);
    drop(store);
    let store = h.open();
    write(&*store, vec![telemetry(&d, [n - 1, n, n + 1])]);
    assert_eq!(store.stats().duplicates_dropped, 2);
    assert_eq!(store.last_sample(&d).expect("last"), Some(sample(n + 1)));
}

/// Fresh samples are staged at the end of one table and move into per-device chunks once
/// enough are staged; reads see both, in seq order, and replays are found in either, also
/// after a restart.
#[test]
fn staged_telemetry_reads_back_moves_into_chunks_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cloud.redb");
    let options = StoreOptions {
        max_batch: 1024,
        cache_bytes: 1 << 20,
        max_staged: 10,
        ..StoreOptions::default()
    };
    let open = || RedbStore::open_with(&path, &options).expect("opens");
    let (a, b) = (dev("gw-a"), dev("gw-b"));
    let store = open();
    // 4 + 4 staged; then 4 more pass the limit of 10 and everything moves into chunks.
    write(&store, vec![telemetry(&a, 1..=4), telemetry(&b, 1..=4)]);
    write(&store, vec![telemetry(&a, 5..=8)]);
    write(&store, vec![telemetry(&a, [9]), telemetry(&b, [5])]);
    // Staged again, and never moved before the restart.
    write(&store, vec![telemetry(&a, [10, 11]), telemetry(&b, [7])]);
    assert_eq!(stored_seqs(&store, &a), (1..=11).collect::<Vec<_>>());
    assert_eq!(stored_seqs(&store, &b), vec![1, 2, 3, 4, 5, 7]);
    assert_eq!(
        store.telemetry_gaps(&b, 5).expect("gaps"),
        vec![SeqGap { from: 6, to: 6 }]
    );
    assert_eq!(store.last_sample(&b).expect("last"), Some(sample(7)));
    drop(store);

    let store = open();
    assert_eq!(stored_seqs(&store, &a), (1..=11).collect::<Vec<_>>());
    assert_eq!(store.last_sample(&a).expect("last"), Some(sample(11)));
    // A replay of staged and chunked samples, and the missing 6 of b, arriving late.
    write(
        &store,
        vec![telemetry(&a, [3, 11, 12]), telemetry(&b, [7, 6])],
    );
    let s = store.stats();
    assert_eq!((s.samples_stored, s.duplicates_dropped), (2, 3));
    assert_eq!(stored_seqs(&store, &a), (1..=12).collect::<Vec<_>>());
    assert_eq!(stored_seqs(&store, &b), (1..=7).collect::<Vec<_>>());
    assert!(store.telemetry_gaps(&b, 5).expect("gaps").is_empty());
    let q = TimeQuery {
        from: Some(t(4)),
        to: Some(t(10)),
        limit: Some(5),
        newest_first: false,
    };
    assert_eq!(stored_seqs_in(&store, &a, &q), vec![4, 5, 6, 7, 8]);
}

fn events_are_deduplicated_on_their_seq(h: &Harness) {
    let store = h.open();
    let d = dev("gw-1");
    let ev = |seq| Event {
        seq,
        ts: t(seq as i64),
        kind: EventKind::Alarm,
        severity: Severity::Critical,
        message: format!("alarm {seq}"),
        data: serde_json::Value::Null,
    };
    let w = || Write::Events {
        device: d.clone(),
        events: vec![ev(1), ev(2)],
    };
    write(&*store, vec![w(), w()]);
    let got = store.events(&d, &TimeQuery::default()).expect("events");
    assert_eq!(got.len(), 2);
    assert_eq!(store.stats().events_stored, 2);
}

fn history(store: &dyn Store, d: &DeviceId, ts: i64, key: &str, vid: Option<u64>) -> HistoryEntry {
    HistoryEntry {
        id: store.next_id(),
        device: d.clone(),
        ts: t(ts),
        actor: Author::api_key("ops", shiki_cloud_model::Role::Operator),
        side: Side::Desired,
        key: key.into(),
        old: json!(null),
        new: json!(7.5),
        version: 1,
        comment: Some("cold snap".into()),
        verification_id: vid,
    }
}

fn history_is_newest_first_with_verification_outcomes(h: &Harness) {
    let store = h.open();
    let d = dev("gw-1");
    let vid = store.next_id();
    let mut v = VerificationRecord {
        id: vid,
        device: d.clone(),
        key: "sp".into(),
        requested: json!(7.5),
        version: 1,
        started: t(1),
        attempts: 0,
        next_check: Some(t(3)),
        outcome: VerificationOutcome::Pending,
    };
    let h1 = history(&*store, &d, 1, "sp", Some(vid));
    let h2 = history(&*store, &d, 2, "mode", None);
    write(
        &*store,
        vec![
            Write::Verification(Box::new(v.clone())),
            Write::History(Box::new(h1.clone())),
            Write::History(Box::new(h2.clone())),
        ],
    );
    v.outcome = VerificationOutcome::Verified { at: t(2) };
    v.next_check = None;
    write(&*store, vec![Write::Verification(Box::new(v.clone()))]);
    let items = store.history(&d, &TimeQuery::default()).expect("history");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].entry, h2);
    assert_eq!(items[1].entry, h1);
    assert_eq!(items[1].verification.as_ref(), Some(&v));
    let only_first = store
        .history(
            &d,
            &TimeQuery {
                to: Some(t(1)),
                ..TimeQuery::default()
            },
        )
        .expect("history");
    assert_eq!(only_first.len(), 1);
}

fn everything_survives_a_reopen_and_ids_keep_increasing(h: &Harness) {
    let d = dev("gw-1");
    let last_id;
    {
        let store = h.open();
        let h = history(&*store, &d, 1, "sp", None);
        last_id = h.id;
        let snap = DeviceSnapshot {
            last_event_seq: 4,
            ..DeviceSnapshot::default()
        };
        write(
            &*store,
            vec![
                Write::Telemetry {
                    device: d.clone(),
                    samples: vec![SampleRow::encode(&sample(1))],
                },
                Write::History(Box::new(h)),
                Write::Device {
                    device: d.clone(),
                    snapshot: Box::new(snap),
                },
                Write::PutToken(Box::new(TokenRecord {
                    hash: "ab".into(),
                    name: "ops".into(),
                    role: shiki_cloud_model::Role::Operator,
                    created: t(0),
                    created_by: "bootstrap".into(),
                    tenant: None,
                })),
            ],
        );
        // Queued but unawaited writes are committed on close.
        drop(store.submit(vec![Write::Telemetry {
            device: d.clone(),
            samples: vec![SampleRow::encode(&sample(2))],
        }]));
        store.close();
        assert!(matches!(
            store.submit(vec![]).wait_blocking(),
            Err(StoreError::Closed)
        ));
    }
    let store = h.open();
    assert_eq!(
        store.telemetry(&d, &TimeQuery::default()).expect("q").len(),
        2
    );
    assert_eq!(
        store.history(&d, &TimeQuery::default()).expect("h").len(),
        1
    );
    assert_eq!(
        store.device(&d).expect("dev").map(|s| s.last_event_seq),
        Some(4)
    );
    assert_eq!(store.devices().expect("devices"), vec![d]);
    assert_eq!(
        store.token("ab").expect("token").map(|t| t.name),
        Some("ops".into())
    );
    assert!(store.next_id() > last_id);
    write(&*store, vec![Write::RevokeToken { hash: "ab".into() }]);
    assert!(store.tokens().expect("tokens").is_empty());
}

#[test]
fn a_second_open_of_the_same_file_fails_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = open(&dir);
    let err = RedbStore::open(&dir.path().join("cloud.redb"), 16).expect_err("second open");
    assert!(err.to_string().contains("cloud.redb"), "{err}");
}

fn schedules_and_the_fleet_last_run_survive_a_reopen(h: &Harness) {
    use shiki_cloud_model::schedule::{DeviceSchedules, SlotSync, StoredSchedule, SyncStatus};
    let d = dev("gw-1");
    let schedules = DeviceSchedules {
        current: Some(SlotSync {
            schedule: StoredSchedule {
                id: "2027".into(),
                hash: "ab".repeat(32),
                document: json!({"id": "2027"}),
                timezone: "Asia/Tokyo".into(),
                valid_from: chrono::NaiveDate::from_ymd_opt(2027, 1, 1).expect("date"),
                valid_to: chrono::NaiveDate::from_ymd_opt(2027, 12, 31).expect("date"),
                start: t(0),
                end: t(1000),
                set_by: "api-key:ops".into(),
                set_at: t(1),
            },
            status: SyncStatus::Acked {
                hash: "ab".repeat(32),
                at: t(2),
            },
        }),
        next: None,
    };
    {
        let store = h.open();
        assert_eq!(store.schedules(&d).expect("read"), None);
        assert_eq!(store.fleet_last_run().expect("read"), None);
        write(
            &*store,
            vec![
                Write::Schedules {
                    device: d.clone(),
                    schedules: Box::new(schedules.clone()),
                },
                Write::FleetLastRun(t(5)),
            ],
        );
    }
    let store = h.open();
    assert_eq!(store.schedules(&d).expect("read"), Some(schedules));
    assert_eq!(store.fleet_last_run().expect("read"), Some(t(5)));
}

/// A staged row that does not decode would fail every commit carrying telemetry: the writer
/// moves it to `telemetry_quarantine` (bytes as they were), counts it and commits the batch
/// it failed; the rest of the staged telemetry stays readable.
#[test]
fn a_damaged_staged_row_is_quarantined_and_the_commit_that_met_it_goes_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let (a, b) = (dev("gw-a"), dev("gw-b"));
    write(&store, vec![telemetry(&a, 1..=3), telemetry(&b, [1])]);
    let garbage = [0xFF, 0xFF, 4, 0, b'g', b'w', b'-', b'a', 99, 0, 0, 0, 1];
    store.put_staged_row(1_000, &garbage);
    // A late sample of b moves the staging table into chunks, which reads every row.
    write(&store, vec![telemetry(&b, [0]), telemetry(&a, [4])]);
    let s = store.stats();
    assert_eq!(s.quarantined_rows, 1);
    assert_eq!(
        s.failed_commits, 0,
        "the batch went through on the second try"
    );
    assert_eq!(store.quarantined(), vec![(0, garbage.to_vec())]);
    assert_eq!(stored_seqs(&store, &a), vec![1, 2, 3, 4]);
    assert_eq!(stored_seqs(&store, &b), vec![0, 1]);

    // Found at start-up too, before any commit.
    let other = [0x03, 0x00, b'g'];
    store.put_staged_row(2_000, &other);
    drop(store);
    let store = open(&dir);
    assert_eq!(store.stats().quarantined_rows, 1);
    assert_eq!(
        store.quarantined(),
        vec![(0, garbage.to_vec()), (1, other.to_vec())]
    );
    assert_eq!(stored_seqs(&store, &a), vec![1, 2, 3, 4]);
    write(&store, vec![telemetry(&a, [5])]);
    assert_eq!(store.last_sample(&a).expect("last"), Some(sample(5)));
}

fn artifact_records_are_found_by_version_listed_newest_first_and_survive_a_reopen(h: &Harness) {
    let record = |version: &str, at: i64| ArtifactRecord {
        version: version.into(),
        sha256: format!("{at:064x}"),
        size: 1000 + at as u64,
        signature: "c2ln".into(),
        uploaded_at: t(at),
        uploaded_by: "release-bot".into(),
    };
    {
        let store = h.open();
        assert_eq!(store.artifact("0.2.0").expect("read"), None);
        assert!(store.artifacts().expect("read").is_empty());
        write(
            &*store,
            ["0.2.0", "0.3.0", "0.2.1"]
                .iter()
                .zip([10, 30, 20])
                .map(|(v, at)| Write::PutArtifact(Box::new(record(v, at))))
                .collect(),
        );
    }
    let store = h.open();
    assert_eq!(
        store.artifact("0.2.1").expect("read"),
        Some(record("0.2.1", 20))
    );
    assert_eq!(store.artifact("0.2").expect("read"), None);
    let versions: Vec<String> = store
        .artifacts()
        .expect("read")
        .into_iter()
        .map(|a| a.version)
        .collect();
    assert_eq!(versions, ["0.3.0", "0.2.1", "0.2.0"]);
}

fn jobs_survive_a_reopen_with_every_execution_and_author(h: &Harness) {
    let mut executing = ExecutionRecord::queued(dev("plant-01"));
    executing.status = ExecutionStatus::InProgress;
    executing.progress = 40;
    executing.step = Some(shiki_proto::JobStep::Downloading);
    executing.started_at = Some(t(10));
    executing.last_activity = Some(t(20));
    let mut failed = ExecutionRecord::queued(dev("plant-02"));
    failed.status = ExecutionStatus::RolledBack;
    failed.reason = Some("health check: PLC not read within 120 s".into());
    failed.finished_at = Some(t(30));
    let job = |id: &str, at| JobRecord {
        id: shiki_proto::JobId::new(id).expect("valid job id"),
        artifact: JobArtifact {
            version: "0.2.0".into(),
            sha256: "ab".repeat(32),
            size: 1234,
            signature: "c2ln".into(),
        },
        created_at: t(at),
        created_by: Author::api_key("ops", shiki_cloud_model::Role::Operator),
        rollout: Rollout::default(),
        executions: vec![executing.clone(), failed.clone()],
        canceled_by: None,
    };
    let first = job("ota-1", 1);
    let mut second = job("ota-2", 2);
    second.canceled_by = Some(Author::Operator("alice".into()));
    {
        let store = h.open();
        write(&*store, vec![Write::Job(Box::new(first.clone()))]);
        write(&*store, vec![Write::Job(Box::new(second.clone()))]);
        // Replaced whole, by id.
        let mut again = first.clone();
        again.executions[0].progress = 60;
        write(&*store, vec![Write::Job(Box::new(again))]);
        store.close();
    }
    let store = h.open();
    let jobs = store.jobs().expect("jobs read");
    let mut expected = first;
    expected.executions[0].progress = 60;
    assert_eq!(jobs, vec![expected, second]);
}

fn registrations_are_found_by_device_replaced_whole_and_survive_a_reopen(h: &Harness) {
    let record = |id: &str, tenant: Option<&str>| RegistryRecord {
        id: dev(id),
        tenant: tenant.map(str::to_owned),
        password_hash: Some(format!("$argon2id$v=19$m=19456,t=2,p=1${id}")),
        created_at: t(1),
        created_by: "admin".into(),
        credentials_at: t(1),
        retired_at: None,
    };
    {
        let store = h.open();
        assert_eq!(store.registered(&dev("plant-01")).expect("read"), None);
        write(
            &*store,
            vec![
                Write::PutRegistry(Box::new(record("plant-02", None))),
                Write::PutRegistry(Box::new(record("plant-01", Some("acme")))),
            ],
        );
        let mut retired = record("plant-02", None);
        retired.password_hash = None;
        retired.retired_at = Some(t(9));
        write(&*store, vec![Write::PutRegistry(Box::new(retired))]);
        store.close();
    }
    let store = h.open();
    assert_eq!(
        store.registered(&dev("plant-01")).expect("read"),
        Some(record("plant-01", Some("acme")))
    );
    let all = store.registry().expect("list");
    assert_eq!(
        all.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["plant-01", "plant-02"]
    );
    assert_eq!(all[1].retired_at, Some(t(9)));
    assert_eq!(all[1].password_hash, None);
}
