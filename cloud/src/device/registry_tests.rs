//! The [`Directory`] the ingest routes through: one actor per device, started on first
//! contact, inputs in the order they were routed; and what the registry actor answers from
//! it.

use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use shiki_proto::{Connectivity, DeviceId, Sample};
use shiki_shared::clock::TestClock;

use super::{
    DeviceConfig, DeviceCount, DeviceDeps, DeviceInput, DeviceMetrics, Directory, GetView,
    ListDevices, LookupDevice, Registry, Router, SampleJson,
};
use crate::schedule::SyncConfig;
use crate::store::{RedbStore, Store};
use crate::test_support::{collector, status};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-24T05:00:00Z")
        .expect("valid")
        .to_utc()
}

fn deps(store: Arc<RedbStore>) -> DeviceDeps {
    DeviceDeps {
        store,
        publisher: collector().0,
        alerts: collector().0,
        clock: TestClock::at(now()).shared(),
        cfg: DeviceConfig::default(),
        metrics: Arc::new(DeviceMetrics::default()),
        schedule: SyncConfig::default(),
        jobs: Some(collector().0),
    }
}

fn telemetry(seq: u64) -> DeviceInput {
    DeviceInput::Telemetry(
        SampleJson::of(&Sample {
            seq,
            ts: now(),
            values: [("supply_temp".to_owned(), 7.0.into())].into(),
        })
        .expect("encodes"),
    )
}

fn id(s: &str) -> DeviceId {
    DeviceId::new(s).expect("valid id")
}

/// A new device's inputs, routed back to back before its actor ever ran, reach one actor
/// and in order: online, samples, then offline leaves it offline with the newest sample.
#[actix::test]
async fn routed_inputs_reach_one_actor_per_device_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(RedbStore::open(&dir.path().join("c.redb"), 64).expect("store"));
    let directory = Directory::new(deps(store));
    let router: &dyn Router = directory.as_ref();
    for device in ["plant-a", "plant-b"] {
        router.route(id(device), status(Connectivity::Online));
    }
    for seq in 1..=500 {
        for device in ["plant-a", "plant-b"] {
            router.route(id(device), telemetry(seq));
        }
    }
    router.route(id("plant-a"), status(Connectivity::Offline));
    assert_eq!(directory.len(), 2);

    let a = directory.get_known(&id("plant-a")).expect("known");
    let view = a.send(GetView).await.expect("actor alive");
    assert!(!view.online, "the last input routed was offline");
    assert_eq!(view.last_seq, 500);
    let last = view.last_telemetry.expect("newest sample kept");
    assert_eq!(last.seq, 500);
    assert_eq!(last.values["supply_temp"], 7.0.into());
    let b = directory.get_known(&id("plant-b")).expect("known");
    assert!(b.send(GetView).await.expect("alive").online);
}

/// The registry answers from the same directory: a device the ingest started is listed and
/// counted; an unknown one is not started by asking for it.
#[actix::test]
async fn the_registry_sees_the_devices_the_ingest_started() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(RedbStore::open(&dir.path().join("c.redb"), 64).expect("store"));
    let directory = Directory::new(deps(store.clone()));
    let registry = Registry::with_directory(directory.clone()).start();
    directory.route(id("plant-a"), telemetry(3));

    assert_eq!(registry.send(DeviceCount).await.expect("alive"), 1);
    let listed = registry.send(ListDevices).await.expect("alive");
    assert_eq!(
        listed.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>(),
        ["plant-a"]
    );
    assert!(
        registry
            .send(LookupDevice(id("nobody")))
            .await
            .expect("alive")
            .is_none()
    );
    assert_eq!(directory.len(), 1, "asking did not start an actor");

    // The first contact was stored: a new directory over the same store restores it.
    store.submit(Vec::new()).await.expect("commit");
    let restarted = Directory::new(deps(store));
    let again = restarted
        .get_known(&id("plant-a"))
        .expect("known from the store");
    assert_eq!(again.send(GetView).await.expect("alive").id, id("plant-a"));
}
