//! What acknowledging after the commit buys with an external broker (Mosquitto on
//! 127.0.0.1:1883): a message the cloud received but could not store is not acknowledged,
//! so the broker redelivers it to the cloud's next session; acknowledged on receipt, it is
//! gone.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use shiki_proto::{Channel, DeviceId, Event, Sample, TelemetryBatch, Topics, encode};
use tokio::sync::mpsc;

use super::*;
use crate::schedule::DeviceSchedules;
use crate::store::{
    DeviceSnapshot, HistoryItem, RedbStore, SeqGap, StoreError, StoreStats, TimeQuery, TokenRecord,
    VerificationRecord,
};

/// A store whose every commit fails (a full disk, say).
#[derive(Debug)]
struct FailingStore;

fn down<T>() -> Result<T, StoreError> {
    Err(StoreError::backend("commit", "disk full"))
}

impl Store for FailingStore {
    fn submit(&self, _: Vec<Write>) -> Commit {
        Commit::ready(down())
    }
    fn next_id(&self) -> u64 {
        1
    }
    fn telemetry(&self, _: &DeviceId, _: &TimeQuery) -> Result<Vec<Sample>, StoreError> {
        down()
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
    fn stats(&self) -> StoreStats {
        StoreStats::default()
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
        if let DeviceInput::Telemetry(samples) = msg.input {
            for s in samples {
                let _ = self.0.send(s.seq);
            }
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
    let (tx, rx) = mpsc::unbounded_channel();
    let ingest = Ingest::start(
        Ingest::client_for(options(client_id, ack_after_commit)),
        topics.clone(),
        store,
        Seen(tx).start().recipient(),
        Arc::new(IngestStats::default()),
        ack_after_commit,
        false,
    );
    (ingest, rx)
}

/// Publishes one sample as the device (QoS 1, waits for the broker's PUBACK).
async fn publish(topics: &Topics, device: &DeviceId, seq: u64) {
    let (client, mut el) = AsyncClient::new(
        MqttOptions::new(format!("dev-{}", rand::random::<u32>()), "127.0.0.1", 1883),
        10,
    );
    let batch = TelemetryBatch {
        v: 1,
        backlog: false,
        samples: vec![Sample {
            seq,
            ts: Utc::now(),
            values: [("supply_temp".to_owned(), 7.0.into())].into(),
        }],
    };
    client
        .publish(
            topics.topic_for(device, &Channel::Telemetry),
            QoS::AtLeastOnce,
            false,
            encode(&batch).expect("encodes"),
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

    let (first, mut seen) = start(
        &client_id,
        &topics,
        Arc::new(FailingStore),
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
    first.stop().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(RedbStore::open(&dir.path().join("cloud.redb"), 64).expect("opens"));
    let (second, mut seen) = start(&client_id, &topics, store.clone(), ack_after_commit);
    publish(&topics, &device, 2).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let stored = loop {
        assert!(tokio::time::Instant::now() < deadline, "seq 2 never stored");
        let _ = next(&mut seen, Duration::from_millis(50)).await;
        let stored: Vec<u64> = store
            .telemetry(&device, &TimeQuery::default())
            .expect("reads")
            .iter()
            .map(|s| s.seq)
            .collect();
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
