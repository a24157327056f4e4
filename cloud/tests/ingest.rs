//! Ingest end to end: the whole cloud in-process, a raw rumqttc client playing the device,
//! against the embedded broker and against Mosquitto (127.0.0.1:1883).

mod common;

use std::time::Duration;

use chrono::Utc;
use common::{FakeDevice, eventually};
use serde_json::json;
use shiki_cloud::device::{DesiredChange, Registry};
use shiki_cloud::ingest::DropReason;
use shiki_cloud::store::{Author, Side, TimeQuery, VerificationOutcome};
use shiki_cloud::{App, CloudConfig};
use shiki_proto::{
    Catalog, Channel, Connectivity, DeviceId, ReportedState, ReportedUpdate, Sample, ShadowDelta,
    ShadowDocument, ShadowGet, Status, TelemetryBatch, Topics, decode,
};

fn config(dir: &tempfile::TempDir) -> CloudConfig {
    let mut c = CloudConfig {
        data_dir: dir.path().to_owned(),
        ..CloudConfig::default()
    };
    c.mqtt.listen = "127.0.0.1:0".parse().expect("addr");
    c.api.listen = "127.0.0.1:0".parse().expect("addr");
    c.mqtt.client_id = format!("shiki-cloud-test-{}", rand::random::<u32>());
    c.verification.first_delay = Duration::from_millis(300);
    // Fake devices register on first contact.
    c.mqtt.allow_unregistered = true;
    c
}

fn batch(seqs: &[u64]) -> TelemetryBatch {
    TelemetryBatch {
        v: 1,
        backlog: false,
        samples: seqs
            .iter()
            .map(|&seq| Sample {
                seq,
                ts: Utc::now(),
                values: [("supply_temp".to_owned(), (7.0 + seq as f64).into())].into(),
            })
            .collect(),
    }
}

fn catalog() -> Catalog {
    serde_json::from_value(json!({"points": [
        {"name": "chw_setpoint", "role": "setting", "kind": "number", "writable": true,
         "min": 5.0, "max": 15.0, "resolution": 0.1},
        {"name": "supply_temp", "role": "reading", "kind": "number", "resolution": 0.1}
    ]}))
    .expect("catalog")
}

fn online() -> Status {
    Status {
        v: 1,
        state: Connectivity::Online,
        software_version: Some("0.1.0".into()),
        boot_time: None,
        ts: None,
    }
}

async fn samples(app: &App, id: &DeviceId, n: usize) -> Vec<u64> {
    let store = app.store();
    eventually(&format!("{n} samples of {id}"), || {
        let got = store
            .telemetry(id, &TimeQuery::default())
            .expect("query")
            .iter()
            .map(|s| s.seq)
            .collect::<Vec<_>>();
        async move { (got.len() >= n).then_some(got) }
    })
    .await
}

/// The scenario both brokers run.
async fn scenario(app: &App, topics: &Topics, host: &str, port: u16) {
    let mut dev = FakeDevice::connect("gw-1", topics, host, port).await;
    let other = FakeDevice::connect("gw-2", topics, host, port).await;
    dev.send(Channel::Status, &online()).await;
    dev.send(Channel::Catalog, &catalog()).await;

    // Duplicated and out-of-order telemetry lands once, in seq order.
    dev.send(Channel::Telemetry, &batch(&[1, 2, 3])).await;
    dev.send(Channel::Telemetry, &batch(&[3, 2])).await;
    dev.send(Channel::Telemetry, &batch(&[5, 4])).await;
    dev.send(Channel::Telemetry, &batch(&[1, 5])).await;
    // Malformed payloads and a bad device id are refused without harm.
    dev.send_raw(Channel::Telemetry, b"{not json".to_vec())
        .await;
    dev.send_raw(Channel::ShadowReported, b"[1,2,3]".to_vec())
        .await;
    // On the embedded broker the devices' front stops a publish outside the device's own
    // topics before it reaches the ingest (tests/tests/broker_isolation.rs); through
    // Mosquitto (no ACL on 1883) the ingest drops it.
    let external = port == 1883;
    if external {
        dev.client
            .publish(
                format!("{}/bad.id/telemetry", topics.prefix()),
                rumqttc::QoS::AtLeastOnce,
                false,
                b"{}".to_vec(),
            )
            .await
            .expect("publish");
    }
    other.send(Channel::Telemetry, &batch(&[1])).await;
    dev.send(Channel::Telemetry, &batch(&[6])).await;

    let id = dev.id.clone();
    assert_eq!(samples(app, &id, 6).await, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(samples(app, &other.id, 1).await, vec![1]);
    let stats = app.ingest_stats.clone();
    eventually("drops counted", || {
        let s = stats.clone();
        async move {
            (s.dropped_count(DropReason::Malformed) >= 2
                && (!external || s.dropped_count(DropReason::InvalidDeviceId) >= 1))
                .then_some(())
        }
    })
    .await;
    // 4 replayed samples were dropped (more if the broker redelivered a message).
    let store = app.store();
    eventually("duplicates counted", || {
        let d = store.stats().duplicates_dropped;
        async move { (d >= 4).then_some(()) }
    })
    .await;
    assert_eq!(samples(app, &id, 6).await.len(), 6);

    // shadow/get is answered with the document.
    dev.send(
        Channel::ShadowGet,
        &ShadowGet {
            v: 1,
            client_token: Some("boot".into()),
        },
    )
    .await;
    let doc: ShadowDocument = decode(&dev.expect(Channel::ShadowDocument).await).expect("doc");
    assert_eq!(doc.client_token.as_deref(), Some("boot"));
    assert_eq!(doc.version, 0);

    // A desired change produces a delta; a matching report verifies it.
    let change = DesiredChange {
        settings: json!({"chw_setpoint": 7.5})
            .as_object()
            .cloned()
            .expect("map"),
        expected_version: Some(0),
        until: None,
        comment: Some("test".into()),
    };
    let version = Registry::change_desired(
        &app.registry,
        id.clone(),
        change,
        Author::api_key("ops", shiki_cloud::auth::Role::Operator),
    )
    .await
    .expect("accepted");
    assert_eq!(version, 1);
    let delta: ShadowDelta = decode(&dev.expect(Channel::ShadowDelta).await).expect("delta");
    assert_eq!(delta.version, 1);
    assert_eq!(delta.state["chw_setpoint"], json!(7.5));
    dev.send(
        Channel::ShadowReported,
        &ReportedUpdate {
            v: 1,
            state: ReportedState {
                reported: json!({"chw_setpoint": 7.52})
                    .as_object()
                    .cloned()
                    .expect("map"),
            },
            applied_version: Some(1),
            settings: Default::default(),
            expired: vec![],
            schedule: None,
            timestamp: Utc::now(),
            client_token: None,
        },
    )
    .await;
    let store = app.store();
    let item = eventually("verified history entry", || {
        let h = store.history(&id, &TimeQuery::default()).expect("history");
        async move {
            h.into_iter().find(|i| {
                i.entry.side == Side::Desired
                    && matches!(
                        i.verification.as_ref().map(|v| &v.outcome),
                        Some(VerificationOutcome::Verified { .. })
                    )
            })
        }
    })
    .await;
    assert_eq!(item.entry.key, "chw_setpoint");
    assert_eq!(item.entry.comment.as_deref(), Some("test"));
    let view = Registry::view(&app.registry, id.clone())
        .await
        .expect("registry")
        .expect("known");
    assert!(view.online);
    assert!(view.delta.is_empty());
    assert_eq!(view.last_seq, 6);
}

#[actix_rt::test]
async fn ingest_through_the_embedded_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir);
    let app = shiki_cloud::start(cfg).await.expect("cloud starts");
    let addr = app.mqtt_addr.expect("embedded broker");
    scenario(&app, &Topics::default(), "127.0.0.1", addr.port()).await;
    app.stop().await;
}

#[actix_rt::test]
async fn ingest_through_mosquitto() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    // A unique prefix keeps this test apart from anything else on the shared broker.
    cfg.topic_prefix = format!("test{}/shiki/v1", rand::random::<u32>());
    cfg.mqtt.url = Some("mqtt://127.0.0.1:1883".into());
    let topics = Topics::new(&cfg.topic_prefix).expect("prefix");
    let app = shiki_cloud::start(cfg).await.expect("cloud starts");
    assert!(app.mqtt_addr.is_none());
    scenario(&app, &topics, "127.0.0.1", 1883).await;
    app.stop().await;
}

#[actix_rt::test]
async fn state_survives_a_restart_of_the_cloud() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = DeviceId::new("gw-9").expect("id");
    {
        let app = shiki_cloud::start(config(&dir))
            .await
            .expect("cloud starts");
        let port = app.mqtt_addr.expect("embedded").port();
        let dev = FakeDevice::connect("gw-9", &Topics::default(), "127.0.0.1", port).await;
        dev.send(Channel::Status, &online()).await;
        dev.send(Channel::Catalog, &catalog()).await;
        dev.send(Channel::Telemetry, &batch(&[1, 2])).await;
        samples(&app, &id, 2).await;
        let reg = app.registry.clone();
        eventually("catalog known", || {
            let reg = reg.clone();
            let id = id.clone();
            async move {
                Registry::view(&reg, id)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|v| v.catalog)
            }
        })
        .await;
        let change = DesiredChange {
            settings: json!({"chw_setpoint": 9.0})
                .as_object()
                .cloned()
                .expect("map"),
            expected_version: None,
            until: None,
            comment: None,
        };
        Registry::change_desired(
            &app.registry,
            id.clone(),
            change,
            Author::Operator("alice".into()),
        )
        .await
        .expect("accepted");
        app.stop().await;
    }
    let app = shiki_cloud::start(config(&dir))
        .await
        .expect("cloud restarts");
    let view = Registry::view(&app.registry, id.clone())
        .await
        .expect("registry")
        .expect("restored");
    assert_eq!(view.version, 1);
    assert_eq!(view.desired["chw_setpoint"], json!(9.0));
    assert_eq!(view.last_seq, 2);
    assert_eq!(view.pending_verifications.len(), 1);
    assert!(view.catalog.is_some());
    app.stop().await;
}
