//! The schedule half of the [`DeviceActor`] as a conversation: simulated publisher and
//! notifier, a real redb store in a temp dir, a test clock.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use shiki_proto::{AckResult, Connectivity, DeviceId, PROTOCOL_VERSION, ScheduleAck, ScheduleSet};
use shiki_shared::clock::{Clock, TestClock};
use tokio::sync::mpsc;

use super::{
    DeviceActor, DeviceConfig, DeviceDeps, DeviceInput, DeviceMetrics, DeviceState, Outbound,
    Publish,
};
use crate::notifier::{Alert, AlertKind};
use crate::schedule::{GetScheduleView, PutSchedule, SlotChoice, SyncConfig, SyncStatus};
use crate::store::{self, RedbStore, Store};
use crate::test_support::{collector, status};

async fn recv<M>(rx: &mut mpsc::UnboundedReceiver<M>) -> M {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("message within 5 s")
        .expect("channel open")
}

fn tokyo(local: &str) -> DateTime<Utc> {
    format!("{local}+09:00").parse().expect("test instant")
}

fn doc(id: &str, year: i32) -> Value {
    json!({
        "id": id, "timezone": "Asia/Tokyo",
        "valid_from": format!("{year}-01-01"), "valid_to": format!("{year}-12-31"),
        "profiles": {"work": [{"time": "08:00", "settings": {"run": true}},
                              {"time": "20:00", "settings": {"run": false}}],
                     "off": []},
        "seasons": [{"name": "all", "from": "01-01", "to": "12-31",
                     "weekday": "work", "saturday": "off", "sunday": "off"}]
    })
}

fn ack(
    set: &ScheduleSet,
    result: AckResult,
    reason: Option<&str>,
    at: DateTime<Utc>,
) -> DeviceInput {
    DeviceInput::ScheduleAck(ScheduleAck {
        v: PROTOCOL_VERSION,
        schedule_id: set.schedule_id.clone(),
        hash: set.hash.clone(),
        result,
        reason: reason.map(str::to_owned),
        ts: at,
    })
}

async fn next_set(rx: &mut mpsc::UnboundedReceiver<Publish>) -> ScheduleSet {
    loop {
        if let Outbound::ScheduleSet(set) = recv(rx).await.message {
            return *set;
        }
    }
}

#[actix::test]
async fn device_actor_pushes_on_reconnect_stores_the_ack_and_alerts_on_a_refusal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(RedbStore::open(&dir.path().join("c.redb"), 64).expect("store"));
    let clock = TestClock::at(tokyo("2027-06-01T10:00:00"));
    let (publisher, mut published) = collector::<Publish>();
    let (alerts, mut alerted) = collector::<Alert>();
    let deps = Arc::new(DeviceDeps {
        store: store.clone(),
        publisher,
        alerts,
        clock: clock.shared(),
        cfg: DeviceConfig::default(),
        metrics: Arc::new(DeviceMetrics::default()),
        schedule: SyncConfig::default(),
        jobs: Some(collector().0),
    });
    let id = DeviceId::new("sapporo-01").expect("id");
    let addr = DeviceActor::new(DeviceState::new(id.clone(), deps.cfg), deps).start();

    let put = |id: &str, year| PutSchedule {
        slot: SlotChoice::Auto,
        document: doc(id, year),
        actor: store::Author::Operator("alice".into()),
    };
    let response = addr
        .send(put("sapporo-2027", 2027))
        .await
        .expect("actor alive")
        .expect("accepted");
    assert!(!response.pushed, "device offline: nothing published");

    addr.send(status(Connectivity::Online))
        .await
        .expect("actor alive");
    let set = next_set(&mut published).await;
    assert_eq!(set.schedule_id, "sapporo-2027");
    addr.send(ack(&set, AckResult::Accepted, None, clock.now()))
        .await
        .expect("actor alive");
    let view = addr.send(GetScheduleView).await.expect("actor alive");
    assert!(matches!(
        view.current.as_ref().map(|c| &c.status),
        Some(SyncStatus::Acked { hash, .. }) if *hash == set.hash
    ));
    // The writer commits in order: an empty commit resolves after the actor's writes.
    store.submit(Vec::new()).await.expect("commit");
    let stored = store.schedules(&id).expect("read").expect("stored");
    assert!(matches!(
        stored.current.map(|c| c.status),
        Some(SyncStatus::Acked { .. })
    ));

    // Replacing it with a schedule the edge refuses: failed with the reason, and an alert.
    addr.send(put("sapporo-2027b", 2027))
        .await
        .expect("actor alive")
        .expect("accepted");
    let refused = next_set(&mut published).await;
    addr.send(ack(
        &refused,
        AckResult::Rejected,
        Some("no point `run`"),
        clock.now(),
    ))
    .await
    .expect("actor alive");
    let alert = recv(&mut alerted).await;
    assert_eq!(alert.kind, AlertKind::Schedule);
    assert!(alert.text.contains("no point `run`"), "{}", alert.text);
    let view = addr.send(GetScheduleView).await.expect("actor alive");
    assert!(matches!(
        view.current.map(|c| c.status),
        Some(SyncStatus::Failed { reason, .. }) if reason == "no point `run`"
    ));
}

#[actix::test]
async fn the_registry_stores_the_fleet_last_run_and_every_device_answers_the_yearly_push() {
    use crate::schedule::{FleetJob, FleetJobsDue};
    use crate::store::Write;

    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(RedbStore::open(&dir.path().join("c.redb"), 64).expect("store"));
    let id = DeviceId::new("sapporo-02").expect("id");
    // A known device without any schedule.
    let known = DeviceState::new(id.clone(), DeviceConfig::default());
    store
        .submit(vec![known.snapshot_write()])
        .await
        .expect("seeded");
    let clock = TestClock::at(tokyo("2027-12-01T00:00:05"));
    let (publisher, _published) = collector::<Publish>();
    let (alerts, mut alerted) = collector::<Alert>();
    let deps = DeviceDeps {
        store: store.clone(),
        publisher,
        alerts,
        clock: clock.shared(),
        cfg: DeviceConfig::default(),
        metrics: Arc::new(DeviceMetrics::default()),
        schedule: SyncConfig::default(),
        jobs: Some(collector().0),
    };
    let registry = super::Registry::new(deps).start();
    let last_run = clock.now();
    registry
        .send(FleetJobsDue {
            jobs: vec![FleetJob::YearlyPush {
                at: tokyo("2027-12-01T00:00:00"),
                year: 2028,
            }],
            fleet_tz: chrono_tz::Asia::Tokyo,
            last_run,
        })
        .await
        .expect("registry alive");
    let alert = recv(&mut alerted).await;
    assert_eq!(alert.device, id);
    assert_eq!(alert.kind, AlertKind::Schedule);
    assert!(alert.text.contains("2028"), "{}", alert.text);
    // Writes are committed in order: an empty commit resolves after the registry's.
    store.submit(Vec::<Write>::new()).await.expect("commit");
    assert_eq!(store.fleet_last_run().expect("read"), Some(last_run));
}
