//! What acknowledging after the commit buys with an external broker (Mosquitto on
//! 127.0.0.1:1883): a message the cloud received but could not store is not acknowledged,
//! so the broker redelivers it to the cloud's next session (or connection: the ingest
//! reconnects after a failed commit); acknowledged on receipt, it is gone. And a burst beyond every queue, through a Mosquitto without an in-flight limit and
//! a slow store, is all stored and acknowledged.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use shiki_proto::{Channel, DeviceId, Event, Sample, TelemetryBatch, Topics, encode};
use tokio::sync::mpsc;

use super::*;
use crate::device::Route;
use crate::schedule::DeviceSchedules;
use crate::store::{
    DeviceSnapshot, HistoryItem, RedbStore, SeqGap, StoreError, StoreStats, TimeQuery, TokenRecord,
    VerificationRecord,
};
use crate::test_support::stored_seqs;

fn down<T>() -> Result<T, StoreError> {
    Err(StoreError::backend("commit", "disk full"))
}

/// The store the ingest writes to in these tests.
#[derive(Debug)]
enum TestStore {
    /// Every commit fails (a full disk, say).
    Failing,
    /// The first `failures` commits fail, then a redb store works (a disk that was full).
    FailingFirst {
        failures: std::sync::atomic::AtomicUsize,
        inner: Arc<RedbStore>,
    },
    /// A redb store whose commits finish only once the gate opens (a slow disk).
    Gated {
        inner: Arc<RedbStore>,
        gate: tokio::sync::watch::Receiver<bool>,
    },
}

impl Store for TestStore {
    fn submit(&self, writes: Vec<Write>) -> Commit {
        if let TestStore::FailingFirst { failures, inner } = self {
            let failed = failures
                .fetch_update(
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                    |n| n.checked_sub(1),
                )
                .is_ok();
            return if failed {
                Commit::ready(down())
            } else {
                inner.submit(writes)
            };
        }
        let TestStore::Gated { inner, gate } = self else {
            return Commit::ready(down());
        };
        let commit = inner.submit(writes);
        let mut gate = gate.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        actix::spawn(async move {
            let _ = gate.wait_for(|open| *open).await;
            let _ = tx.send(commit.await);
        });
        Commit::waiting(rx)
    }
    fn next_id(&self) -> u64 {
        1
    }
    fn telemetry(&self, d: &DeviceId, q: &TimeQuery) -> Result<Vec<Sample>, StoreError> {
        match self {
            TestStore::Gated { inner, .. } | TestStore::FailingFirst { inner, .. } => {
                inner.telemetry(d, q)
            }
            TestStore::Failing => down(),
        }
    }
    fn last_sample(&self, _: &DeviceId) -> Result<Option<Sample>, StoreError> {
        down()
    }
    fn telemetry_gaps(&self, _: &DeviceId, _: usize) -> Result<Vec<SeqGap>, StoreError> {
        down()
    }
    fn events(&self, _: &DeviceId, _: &TimeQuery) -> Result<Vec<Event>, StoreError> {
        down()
    }
    fn history(&self, _: &DeviceId, _: &TimeQuery) -> Result<Vec<HistoryItem>, StoreError> {
        down()
    }
    fn verifications(&self, _: &DeviceId) -> Result<Vec<VerificationRecord>, StoreError> {
        down()
    }
    fn device(&self, _: &DeviceId) -> Result<Option<DeviceSnapshot>, StoreError> {
        down()
    }
    fn devices(&self) -> Result<Vec<DeviceId>, StoreError> {
        down()
    }
    fn token(&self, _: &str) -> Result<Option<TokenRecord>, StoreError> {
        down()
    }
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        down()
    }
    fn schedules(&self, _: &DeviceId) -> Result<Option<DeviceSchedules>, StoreError> {
        down()
    }
    fn fleet_last_run(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        down()
    }
    fn artifact(&self, _: &str) -> Result<Option<crate::store::ArtifactRecord>, StoreError> {
        down()
    }
    fn artifacts(&self) -> Result<Vec<crate::store::ArtifactRecord>, StoreError> {
        down()
    }
    fn jobs(&self) -> Result<Vec<crate::store::JobRecord>, StoreError> {
        down()
    }
    fn registered(&self, _: &DeviceId) -> Result<Option<crate::store::RegistryRecord>, StoreError> {
        down()
    }
    fn registry(&self) -> Result<Vec<crate::store::RegistryRecord>, StoreError> {
        down()
    }
    fn stats(&self) -> StoreStats {
        match self {
            TestStore::Gated { inner, .. } | TestStore::FailingFirst { inner, .. } => inner.stats(),
            TestStore::Failing => StoreStats::default(),
        }
    }
}

/// Stands in for the registry: passes on the seq of every routed sample.
struct Seen(mpsc::UnboundedSender<u64>);

impl Actor for Seen {
    type Context = Context<Self>;
}

impl actix::Handler<Route> for Seen {
    type Result = ();
    fn handle(&mut self, msg: Route, _: &mut Self::Context) {
        if let DeviceInput::Telemetry(s) = msg.input {
            let _ = self.0.send(s.seq());
        }
    }
}

fn options(client_id: &str, manual_acks: bool) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", 1883);
    o.set_clean_session(false).set_manual_acks(manual_acks);
    o
}

fn start(
    client_id: &str,
    topics: &Topics,
    store: Arc<dyn Store>,
    ack_after_commit: bool,
) -> (Ingest, mpsc::UnboundedReceiver<u64>) {
    start_with(
        options(client_id, ack_after_commit),
        topics,
        store,
        ack_after_commit,
    )
}

fn start_with(
    options: MqttOptions,
    topics: &Topics,
    store: Arc<dyn Store>,
    ack_after_commit: bool,
) -> (Ingest, mpsc::UnboundedReceiver<u64>) {
    let (ingest, rx, _) = start_counting(options, topics, store, ack_after_commit);
    (ingest, rx)
}

/// As [`start_with`], with the ingest's counters.
fn start_counting(
    options: MqttOptions,
    topics: &Topics,
    store: Arc<dyn Store>,
    ack_after_commit: bool,
) -> (Ingest, mpsc::UnboundedReceiver<u64>, Arc<IngestStats>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let stats = Arc::new(IngestStats::default());
    let ingest = Ingest::start(
        Ingest::client_for(options),
        topics.clone(),
        store,
        Arc::new(Seen(tx).start().recipient::<Route>()),
        stats.clone(),
        ack_after_commit,
        None,
    );
    (ingest, rx, stats)
}

/// Publishes one sample as the device (QoS 1, waits for the broker's PUBACK).
async fn publish(topics: &Topics, device: &DeviceId, seq: u64) {
    publish_range(1883, topics, device, seq..=seq).await;
}

/// A telemetry batch of one sample taken now, encoded.
fn sample_now(seq: u64) -> Vec<u8> {
    let batch = TelemetryBatch {
        v: 1,
        backlog: false,
        samples: vec![Sample {
            seq,
            ts: Utc::now(),
            values: [("supply_temp".to_owned(), 7.0.into())].into(),
        }],
    };
    encode(&batch).expect("encodes")
}

/// Publishes one message per seq as the device, each acknowledged by the broker.
async fn publish_range(
    port: u16,
    topics: &Topics,
    device: &DeviceId,
    seqs: std::ops::RangeInclusive<u64>,
) {
    let mut o = MqttOptions::new(format!("dev-{}", rand::random::<u32>()), "127.0.0.1", port);
    o.set_inflight(1000);
    let (client, mut el) = AsyncClient::new(o, 1000);
    let n = seqs.clone().count();
    let topic = topics.topic_for(device, &Channel::Telemetry);
    let sender = tokio::spawn(async move {
        for seq in seqs {
            client
                .publish(topic.clone(), QoS::AtLeastOnce, false, sample_now(seq))
                .await
                .expect("queued");
        }
        client
    });
    tokio::time::timeout(Duration::from_secs(60), async {
        let mut acked = 0;
        while acked < n {
            match el.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => panic!("device cannot reach Mosquitto: {e}"),
            }
        }
    })
    .await
    .expect("broker acknowledges the device");
    let client = sender.await.expect("sender");
    let _ = client.disconnect().await;
}

/// The next routed seq, if one arrives within `wait`.
async fn next(rx: &mut mpsc::UnboundedReceiver<u64>, wait: Duration) -> Option<u64> {
    tokio::time::timeout(wait, rx.recv()).await.ok().flatten()
}

/// The cloud receives seq 1 while its store is down, restarts with a working store, and
/// the device then sends seq 2. Returns the seqs stored once seq 2 is.
async fn store_down_then_restart(ack_after_commit: bool) -> Vec<u64> {
    let topics = Topics::new(&format!("test{}/shiki/v1", rand::random::<u32>())).expect("prefix");
    let client_id = format!("shiki-cloud-ack-{}", rand::random::<u32>());
    let device = DeviceId::new("gw-ack").expect("valid id");

    let (first, mut seen, stats) = start_counting(
        options(&client_id, ack_after_commit),
        &topics,
        Arc::new(TestStore::Failing),
        ack_after_commit,
    );
    // The session subscribes after it connects: until a sample comes through, the broker
    // has no one to route it to, so send seq 1 again (the store de-duplicates repeats).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "seq 1 never reached the cloud"
        );
        publish(&topics, &device, 1).await;
        if next(&mut seen, Duration::from_millis(200)).await == Some(1) {
            break;
        }
    }
    // Counted (for /metrics) once the failed commit reaches the acker.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats.unstored_total() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failed commit was never counted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.stop().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(RedbStore::open(&dir.path().join("cloud.redb"), 64).expect("opens"));
    let (second, mut seen) = start(&client_id, &topics, store.clone(), ack_after_commit);
    publish(&topics, &device, 2).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let stored = loop {
        assert!(tokio::time::Instant::now() < deadline, "seq 2 never stored");
        let _ = next(&mut seen, Duration::from_millis(50)).await;
        let stored = stored_seqs(store.as_ref(), &device);
        if stored.contains(&2) {
            break stored;
        }
    };
    second.stop().await;
    stored
}

#[actix_rt::test]
async fn after_commit_a_message_that_could_not_be_stored_is_redelivered() {
    assert_eq!(store_down_then_restart(true).await, vec![1, 2]);
}

#[actix_rt::test]
async fn on_receipt_a_message_that_could_not_be_stored_is_lost() {
    assert_eq!(store_down_then_restart(false).await, vec![2]);
}

/// Acknowledging after the commit, a message whose commit failed is redelivered once the
/// store works again, without a restart: the ingest reconnects so that the broker resends
/// what it was not acknowledged.
#[actix_rt::test]
async fn after_commit_a_failed_commit_is_redelivered_while_the_cloud_runs_on() {
    let topics = Topics::new(&format!("test{}/shiki/v1", rand::random::<u32>())).expect("prefix");
    let client_id = format!("shiki-cloud-heal-{}", rand::random::<u32>());
    let device = DeviceId::new("gw-heal").expect("valid id");
    let dir = tempfile::tempdir().expect("tempdir");
    let redb = Arc::new(RedbStore::open(&dir.path().join("cloud.redb"), 64).expect("opens"));
    let store = Arc::new(TestStore::FailingFirst {
        failures: std::sync::atomic::AtomicUsize::new(1),
        inner: redb.clone(),
    });
    let (ingest, mut seen, stats) = start_counting(options(&client_id, true), &topics, store, true);
    // Until the session has subscribed, nothing reaches the cloud: send seq 1 until it does.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while next(&mut seen, Duration::from_millis(200)).await != Some(1) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "seq 1 never reached the cloud"
        );
        publish(&topics, &device, 1).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stored = stored_seqs(redb.as_ref(), &device);
        if stored == [1] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "seq 1 never stored after its failed commit; stored {stored:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stats.unstored_total(), 1, "the first commit failed");
    ingest.stop().await;
}

/// A Mosquitto of the test's own with no in-flight limit (`max_inflight_messages 0`), so
/// everything the cloud has not acknowledged rides at once. Killed on drop.
struct OwnMosquitto {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for OwnMosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn own_mosquitto() -> OwnMosquitto {
    let dir = tempfile::tempdir().expect("tempdir");
    for _ in 0..10 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\n\
                 max_inflight_messages 0\nmax_queued_messages 0\n"
            ),
        )
        .expect("config written");
        let mut child = std::process::Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mosquitto is installed (.ci/run installs it)");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break; // port taken meanwhile: try another
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return OwnMosquitto {
                    child,
                    port,
                    _dir: dir,
                };
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("mosquitto did not start");
}

/// Acknowledging after the commit, a burst larger than the ingest's queue and the client's
/// request channel (kept small here) arrives while the disk is slow and the broker has no
/// in-flight limit: everything is stored and acknowledged once the disk catches up. It
/// guards against the poll loop waiting for the acker while the acker waits for the event
/// loop, though it does not provoke that stall deterministically.
#[actix_rt::test]
async fn a_burst_beyond_every_queue_is_stored_and_acknowledged_after_a_slow_commit() {
    const N: u64 = 20_000;
    let broker = own_mosquitto().await;
    let topics = Topics::default();
    let device = DeviceId::new("gw-burst").expect("valid id");
    let dir = tempfile::tempdir().expect("tempdir");
    let inner = Arc::new(RedbStore::open(&dir.path().join("cloud.redb"), 4096).expect("opens"));
    let (open, gate) = tokio::sync::watch::channel(false);
    let store = Arc::new(TestStore::Gated {
        inner: inner.clone(),
        gate,
    });
    let mut o = MqttOptions::new("shiki-cloud-burst", "127.0.0.1", broker.port);
    o.set_clean_session(false)
        .set_manual_acks(true)
        .set_request_channel_capacity(16);
    let (ingest, mut seen) = start_with(o, &topics, store, true);
    // Subscribed once a sample comes through.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cloud never subscribed"
        );
        publish_range(broker.port, &topics, &device, 1..=1).await;
        if next(&mut seen, Duration::from_millis(200)).await == Some(1) {
            break;
        }
    }
    publish_range(broker.port, &topics, &device, 1..=N).await;
    let _ = open.send(true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stored = inner.stats().samples_stored;
        if stored == N {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {stored} of {N} samples stored: the session stalled"
        );
        let _ = next(&mut seen, Duration::from_millis(50)).await;
    }
    ingest.stop().await;
}

fn batch_of(seqs: impl IntoIterator<Item = u64>) -> TelemetryBatch {
    TelemetryBatch {
        v: 1,
        backlog: false,
        samples: seqs
            .into_iter()
            .map(|seq| Sample {
                seq,
                ts: DateTime::<Utc>::from_timestamp(1_700_000_000 + seq as i64, 0).expect("ts"),
                values: [
                    ("supply_temp".to_owned(), (7.0 + seq as f64).into()),
                    ("running".to_owned(), true.into()),
                ]
                .into(),
            })
            .collect(),
    }
}

/// The store gets each sample's JSON as it arrived, which decodes to the sample; the device
/// actor gets the newest sample, whatever the order in the batch.
#[test]
fn telemetry_rows_keep_each_samples_text_and_pick_the_newest() {
    let batch = batch_of([4, 9, 2]);
    let payload = Bytes::from(encode(&batch).expect("encodes"));
    let (rows, newest) = telemetry_rows(&payload).expect("decodes");
    assert_eq!(
        rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![4, 9, 2]
    );
    for (row, sample) in rows.iter().zip(&batch.samples) {
        let back: Sample = serde_json::from_slice(&row.json).expect("row decodes");
        assert_eq!(&back, sample);
    }
    let newest = newest.expect("a newest sample");
    assert_eq!(newest.seq(), 9);
    assert_eq!(newest.decode().as_ref(), batch.samples.get(1));
    // Rows are slices of the payload, not copies.
    let inside = payload.as_ptr_range();
    assert!(rows.iter().all(|r| inside.contains(&r.json.as_ptr())));
    let (rows, newest) = telemetry_rows(&Bytes::from_static(
        br#"{"v":1,"backlog":true,"samples":[]}"#,
    ))
    .expect("empty batch");
    assert!(rows.is_empty() && newest.is_none());
}

/// Backlog replays arrive gzip-compressed.
#[test]
fn compressed_telemetry_gives_the_same_rows_as_plain() {
    let batch = batch_of(1..=1000);
    let gz = shiki_proto::encode_compressed(&batch).expect("encodes");
    assert_eq!(
        &gz[..2],
        &[0x1f, 0x8b],
        "the batch is big enough to be compressed"
    );
    let plain = serde_json::to_vec(&batch).expect("json");
    let from_gz = telemetry_rows(&gz.into()).expect("compressed decodes");
    let from_plain = telemetry_rows(&plain.into()).expect("plain decodes");
    assert_eq!(from_gz, from_plain);
    assert_eq!(from_gz.0.len(), 1000);
}

/// One bad sample refuses the whole message (nothing of it is stored).
#[test]
fn a_batch_with_a_malformed_sample_is_refused() {
    for payload in [
        &br#"{"samples":[{"seq":1,"ts":"2026-01-01T00:00:00Z","values":{}},{"seq":"two","ts":"2026-01-01T00:00:00Z","values":{}}]}"#[..],
        br#"{"samples":[{"seq":1,"ts":"yesterday","values":{}}]}"#,
        br#"{"samples":[{"seq":1,"ts":"2026-01-01T00:00:00Z","values":{"x":[1]}}]}"#,
        br#"{"samples":{}}"#,
        br#"{"samples":[1]}"#,
        br#"{"samples":[],"samples":[]}"#,
        br#"{"samples":[]} trailing"#,
        br#"[[]]"#,
        br#"{"v":1}"#,
        b"\x1f\x8bnot gzip",
    ] {
        let err = telemetry_rows(&Bytes::copy_from_slice(payload)).expect_err("refused");
        assert!(
            matches!(
                err,
                shiki_proto::CodecError::Malformed(_) | shiki_proto::CodecError::BadCompression(_)
            ),
            "{err}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// compact telemetry (protocol version 2)

fn golden(name: &str) -> Bytes {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../proto/examples")
        .join(name);
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// A compact batch is stored as the JSON of each sample, exactly what the version-1 batch
/// of the same samples stores; an old edge's payload still gives its rows.
#[test]
fn compact_and_json_golden_batches_store_the_same_samples() {
    let (json_rows, json_newest) = telemetry_rows(&golden("telemetry.json")).expect("v1");
    let (rows, newest, carried) =
        rows_any(&golden("telemetry-compact.json"), |_| None).expect("v2");
    assert!(carried.is_some(), "the dictionary it carried, to remember");
    let decode = |rows: &[crate::store::SampleRow]| -> Vec<Sample> {
        rows.iter()
            .map(|r| serde_json::from_slice(&r.json).expect("row decodes"))
            .collect()
    };
    assert_eq!(decode(&rows), decode(&json_rows));
    assert_eq!(
        newest.map(|n| n.decode()),
        json_newest.map(|n| n.decode()),
        "the device actor gets the same newest sample"
    );
    let gz = shiki_proto::encode_compact(
        &decode(&rows),
        carried.as_ref().expect("carried"),
        true,
        true,
    )
    .expect("encodes");
    let (again, _, _) = rows_any(&Bytes::from(gz), |_| None).expect("v2 backlog");
    assert_eq!(decode(&again), decode(&rows));
}

/// A batch that names its dictionary by id is read with one learned from an earlier batch,
/// from the device's `catalog`, or from the catalog the store holds (after a restart).
#[test]
fn a_dictionary_by_id_is_found_learned_from_the_catalog_or_in_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redb = Arc::new(RedbStore::open(&dir.path().join("c.redb"), 64).expect("store"));
    let store: Arc<dyn Store> = redb.clone();
    let device = DeviceId::new("gw-1").expect("id");
    let by_id = golden("telemetry-compact-by-id.json");
    let (_, _, carried) = rows_any(&golden("telemetry-compact.json"), |_| None).expect("v2");
    let dict = carried.expect("carried");

    let fresh = Dictionaries::default();
    let err =
        rows_any(&by_id, |id| fresh.find(&store, &device, id)).expect_err("nothing known yet");
    assert!(
        matches!(err, shiki_proto::CompactError::UnknownDictionary(ref id) if id == dict.id()),
        "{err}"
    );

    fresh.learn(&device, dict.clone());
    let (rows, _, _) = rows_any(&by_id, |id| fresh.find(&store, &device, id)).expect("learned");
    assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [1043, 1044]);
    let other = DeviceId::new("gw-2").expect("id");
    assert!(
        fresh.find(&store, &other, dict.id()).is_none(),
        "dictionaries are per device"
    );

    // The catalog whose point order is the dictionary, as stored by the device actor.
    let catalog = shiki_proto::Catalog {
        v: 1,
        points: dict
            .names()
            .iter()
            .map(|name| shiki_proto::PointInfo {
                name: name.clone(),
                role: shiki_proto::PointRole::Reading,
                kind: shiki_proto::ValueKind::Number,
                unit: None,
                writable: false,
                min: None,
                max: None,
                resolution: None,
                options: vec![],
            })
            .collect(),
    };
    let snapshot = DeviceSnapshot {
        catalog: Some(catalog),
        ..DeviceSnapshot::default()
    };
    redb.submit(vec![Write::Device {
        device: device.clone(),
        snapshot: Box::new(snapshot),
    }])
    .wait_blocking()
    .expect("stored");
    let after_restart = Dictionaries::default();
    let (rows, _, _) = rows_any(&by_id, |id| after_restart.find(&store, &device, id))
        .expect("from the stored catalog");
    assert_eq!(rows.len(), 2);
}

/// A fleet with one point list keeps one copy of its names, whatever the number of devices.
#[test]
fn devices_with_the_same_point_list_share_one_dictionary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(RedbStore::open(&dir.path().join("c.redb"), 64).expect("store"));
    let dicts = Dictionaries::default();
    let names = || vec!["supply_c".to_owned(), "return_c".to_owned()];
    let (a, b) = (
        DeviceId::new("gw-a").expect("id"),
        DeviceId::new("gw-b").expect("id"),
    );
    dicts.learn(&a, shiki_proto::PointDictionary::new(names()));
    dicts.learn(&b, shiki_proto::PointDictionary::new(names()));
    let id = shiki_proto::PointDictionary::new(names()).id().to_owned();
    let (da, db) = (
        dicts.find(&store, &a, &id).expect("a's"),
        dicts.find(&store, &b, &id).expect("b's"),
    );
    assert_eq!(da, db);
    assert!(
        std::ptr::eq(da.names().as_ptr(), db.names().as_ptr()),
        "one copy"
    );
}

/// The embedded broker's front, rumqttd behind it and an ingest on `store`, as the cloud
/// wires them; returns the front's address (keep the broker and front alive).
fn embedded(
    topics: &Topics,
    store: Arc<dyn Store>,
    dir: &std::path::Path,
) -> (
    crate::broker::EmbeddedBroker,
    crate::broker::DeviceFront,
    Ingest,
    mpsc::UnboundedReceiver<u64>,
) {
    let password = crate::broker::internal_password();
    let broker =
        crate::broker::EmbeddedBroker::start_on_free_port(100, Some(&password)).expect("rumqttd");
    let receipts = Arc::new(crate::broker::Receipts::default());
    let registry = RedbStore::open(&dir.join("registry.redb"), 16).expect("registry store");
    let front = crate::broker::DeviceFront::start(
        "127.0.0.1:0".parse().expect("addr"),
        crate::broker::FrontConfig {
            upstream: broker.addr(),
            internal_password: password.clone(),
            topics: topics.clone(),
            allow_unregistered: true,
            max_packet: 1 << 20,
            receipts: receipts.clone(),
        },
        Arc::new(registry),
        Arc::default(),
    )
    .expect("front");
    let mut o = MqttOptions::new("shiki-cloud-front-test", "127.0.0.1", broker.addr().port());
    o.set_clean_session(false)
        .set_credentials("shiki-cloud-front-test", password);
    let (tx, rx) = mpsc::unbounded_channel();
    let ingest = Ingest::start(
        Ingest::client_for(o),
        topics.clone(),
        store,
        Arc::new(Seen(tx).start().recipient::<Route>()),
        Arc::new(IngestStats::default()),
        false,
        Some(receipts),
    );
    (broker, front, ingest, rx)
}

/// What a device on the front sees.
#[derive(Debug, Clone, PartialEq)]
enum DeviceSaw {
    Connected,
    PubAck(u16),
    Lost(String),
}

/// A device on the front: publishes samples and reports connects, PUBACKs and losses.
struct FrontDevice {
    client: AsyncClient,
    topic: String,
    events: mpsc::UnboundedReceiver<DeviceSaw>,
    _poll: tokio::task::JoinHandle<()>,
}

impl FrontDevice {
    /// Connects (retrying while the front refuses: the ingest has not subscribed yet).
    async fn connect(front: std::net::SocketAddr, topics: &Topics, device: &DeviceId) -> Self {
        let mut o = MqttOptions::new(device.as_str(), "127.0.0.1", front.port());
        o.set_credentials(device.as_str(), "device-password-1")
            .set_clean_session(false);
        let (client, mut el) = AsyncClient::new(o, 100);
        let (tx, events) = mpsc::unbounded_channel();
        let poll = tokio::spawn(async move {
            loop {
                let ev = match el.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(a))) => {
                        DeviceSaw::PubAck(a.pkid)
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                        DeviceSaw::Connected
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        // Not a synchronisation: the reconnect backoff of this test device.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        DeviceSaw::Lost(e.to_string())
                    }
                };
                let _ = tx.send(ev);
            }
        });
        let mut dev = Self {
            client,
            topic: topics.topic_for(device, &Channel::Telemetry),
            events,
            _poll: poll,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            assert!(tokio::time::Instant::now() < deadline, "never connected");
            if dev.next(Duration::from_secs(10)).await == Some(DeviceSaw::Connected) {
                return dev;
            }
        }
    }

    async fn send(&self, seq: u64) {
        self.client
            .publish(self.topic.clone(), QoS::AtLeastOnce, false, sample_now(seq))
            .await
            .expect("queued");
    }

    /// The next event within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<DeviceSaw> {
        tokio::time::timeout(wait, self.events.recv())
            .await
            .ok()
            .flatten()
    }
}

#[actix_rt::test]
async fn the_embedded_broker_acknowledges_a_sample_only_once_it_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let topics = Topics::new("shiki/v1").expect("topics");
    let device = DeviceId::new("gw-front").expect("id");
    let (gate_tx, gate) = tokio::sync::watch::channel(true);
    let inner = Arc::new(RedbStore::open(&dir.path().join("c.redb"), 16).expect("store"));
    let store = Arc::new(TestStore::Gated {
        inner: inner.clone(),
        gate,
    });
    let (_broker, front, _ingest, mut seen) = embedded(&topics, store, dir.path());
    let mut dev = FrontDevice::connect(front.addr(), &topics, &device).await;
    dev.send(1).await;
    assert_eq!(next(&mut seen, Duration::from_secs(10)).await, Some(1));
    assert!(matches!(
        dev.next(Duration::from_secs(10)).await,
        Some(DeviceSaw::PubAck(_))
    ));

    // A slow disk: the ingest has seq 2 (it routed it) but its commit waits.
    gate_tx.send_replace(false);
    dev.send(2).await;
    assert_eq!(next(&mut seen, Duration::from_secs(10)).await, Some(2));
    assert_eq!(
        dev.next(Duration::from_millis(500)).await,
        None,
        "no PUBACK before the commit: a cloud killed now must not have acknowledged seq 2"
    );

    gate_tx.send_replace(true);
    let ack = dev.next(Duration::from_secs(10)).await;
    assert!(
        matches!(ack, Some(DeviceSaw::PubAck(_))),
        "PUBACK after the commit: {ack:?}"
    );
    assert_eq!(stored_seqs(&*inner, &device), vec![1, 2]);
}

#[actix_rt::test]
async fn a_sample_the_cloud_could_not_store_is_sent_again_by_the_device() {
    let dir = tempfile::tempdir().expect("tempdir");
    let topics = Topics::new("shiki/v1").expect("topics");
    let device = DeviceId::new("gw-front-fail").expect("id");
    let inner = Arc::new(RedbStore::open(&dir.path().join("c.redb"), 16).expect("store"));
    // The first commit fails (a full disk), later ones work.
    let store = Arc::new(TestStore::FailingFirst {
        failures: std::sync::atomic::AtomicUsize::new(1),
        inner: inner.clone(),
    });
    let (_broker, front, _ingest, mut seen) = embedded(&topics, store, dir.path());
    let mut dev = FrontDevice::connect(front.addr(), &topics, &device).await;
    dev.send(1).await;
    assert_eq!(next(&mut seen, Duration::from_secs(10)).await, Some(1));
    // Sent once; its commit fails. The front closes the connection instead of
    // acknowledging, the device's session sends seq 1 again, the second commit stores it.
    let lost = dev.next(Duration::from_secs(10)).await;
    assert!(matches!(lost, Some(DeviceSaw::Lost(_))), "{lost:?}");
    assert_eq!(
        next(&mut seen, Duration::from_secs(10)).await,
        Some(1),
        "sent again"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stored_seqs(&*inner, &device) != vec![1] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "seq 1 was never stored"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// [`telemetry_rows_any`] at the current time, without the implausible-time count.
fn rows_any(
    payload: &Bytes,
    known: impl FnOnce(&str) -> Option<shiki_proto::PointDictionary>,
) -> Result<telemetry::TelemetryRows, shiki_proto::CompactError> {
    telemetry_rows_any(payload, known, Utc::now()).map(|(rows, _)| rows)
}

/// Publishes one payload on the device's telemetry topic (QoS 1, waits for the PUBACK).
async fn publish_payload(topics: &Topics, device: &DeviceId, payload: Vec<u8>) {
    let o = MqttOptions::new(format!("dev-{}", rand::random::<u32>()), "127.0.0.1", 1883);
    let (client, mut el) = AsyncClient::new(o, 10);
    client
        .publish(
            topics.topic_for(device, &Channel::Telemetry),
            QoS::AtLeastOnce,
            false,
            payload,
        )
        .await
        .expect("queued");
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match el.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => break,
                Ok(_) => {}
                Err(e) => panic!("device cannot reach Mosquitto: {e}"),
            }
        }
    })
    .await
    .expect("broker acknowledges the device");
    let _ = client.disconnect().await;
}

/// A gateway whose RTC reset to 1970 after a power cut (and whose clock stayed unset past
/// the edge's hold) stamps samples 1970: they are stored like any other, under their seq,
/// and counted for `/metrics` (`shiki_ingest_implausible_time_total`; the device is named
/// in the log), never dropped silently (issue #21).
#[actix_rt::test]
async fn a_sample_stamped_1970_is_stored_under_its_seq_and_counted() {
    let topics = Topics::new(&format!("test{}/shiki/v1", rand::random::<u32>())).expect("prefix");
    let device = DeviceId::new("gw-rtc-reset").expect("valid id");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(RedbStore::open(&dir.path().join("cloud.redb"), 64).expect("opens"));
    let client_id = format!("shiki-cloud-clock-{}", rand::random::<u32>());
    let (ingest, mut seen, stats) =
        start_counting(options(&client_id, true), &topics, store.clone(), true);
    let rtc = DateTime::<Utc>::UNIX_EPOCH + chrono::TimeDelta::seconds(60);
    let batch = TelemetryBatch {
        v: 1,
        backlog: false,
        samples: vec![
            Sample {
                seq: 1,
                ts: rtc,
                values: [("supply_temp".to_owned(), 7.0.into())].into(),
            },
            Sample {
                seq: 2,
                ts: Utc::now(),
                values: [("supply_temp".to_owned(), 7.1.into())].into(),
            },
        ],
    };
    let payload = encode(&batch).expect("encodes");
    // Until the session has subscribed nobody receives it: send again until it arrives.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the batch never reached the cloud"
        );
        publish_payload(&topics, &device, payload.clone()).await;
        if next(&mut seen, Duration::from_millis(200)).await == Some(2) {
            break;
        }
    }
    // Counted as it arrived: one implausible sample in each batch received.
    assert!(stats.implausible_time_total() >= 1);
    assert_eq!(stats.implausible_time_total() * 2, stats.samples_received());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stored_seqs(store.as_ref(), &device) != vec![1, 2] {
        assert!(tokio::time::Instant::now() < deadline, "never stored");
        let _ = next(&mut seen, Duration::from_millis(50)).await;
    }
    let kept = store
        .telemetry(&device, &TimeQuery::default())
        .expect("reads");
    assert_eq!(kept.first().map(|s| (s.seq, s.ts)), Some((1, rtc)));
    ingest.stop().await;
}

/// Version-2 (compact) batches are judged alike.
#[test]
fn implausible_sample_times_are_counted_in_either_protocol_version() {
    let now = Utc::now();
    let mut batch = batch_of([1, 2, 3]);
    batch.samples[0].ts = DateTime::<Utc>::UNIX_EPOCH;
    batch.samples[1].ts = now + chrono::TimeDelta::days(400);
    batch.samples[2].ts = now;
    let plain = Bytes::from(encode(&batch).expect("encodes"));
    let (_, odd) = telemetry_rows_any(&plain, |_| None, now).expect("decodes");
    assert_eq!(
        (odd.count, odd.first),
        (2, Some((1, DateTime::<Utc>::UNIX_EPOCH)))
    );
    let dict = shiki_proto::PointDictionary::new(vec!["running".into(), "supply_temp".into()]);
    let compact = shiki_proto::encode_compact(&batch.samples, &dict, true, false).expect("compact");
    let (_, odd) = telemetry_rows_any(&Bytes::from(compact), |_| None, now).expect("decodes");
    assert_eq!(odd.count, 2);
}
