//! Conversation tests of the uplink against a real broker (Mosquitto on 127.0.0.1:1883, or
//! `SHIKI_TEST_BROKER`), through a TCP proxy the test owns so it can cut the link.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use common::{Proxy, SeqLog, Subscriber, broker, unique_device};
use shiki_edge::config::EdgeConfig;
use shiki_edge::messages::{CloudMessage, ControlReport, LinkUp, ReportedDelivered, SetOverrides};
use shiki_edge::outbox::{Committed, OutboxHandle, OutboxOptions, RedbOutbox, Stream};
use shiki_edge::shadow::{DesiredDoc, MalformedCount, Shadow, ShadowPeers};
use shiki_edge::telemetry::{SampleNow, Telemetry, TelemetryConfig};
use shiki_edge::uplink::{Shutdown, Uplink, UplinkConfig, UplinkPeers, mqtt_options};
use shiki_proto::{
    Catalog, Channel, Connectivity, DeviceId, PROTOCOL_VERSION, ReportedUpdate, Status, Topics,
    decode,
};
use shiki_shared::clock::SystemClock;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug)]
struct Sink;
impl Actor for Sink {
    type Context = Context<Self>;
}
impl Handler<CloudMessage> for Sink {
    type Result = ();
    fn handle(&mut self, _: CloudMessage, _: &mut Context<Self>) {}
}
impl Handler<LinkUp> for Sink {
    type Result = ();
    fn handle(&mut self, _: LinkUp, _: &mut Context<Self>) {}
}
impl Handler<ReportedDelivered> for Sink {
    type Result = ();
    fn handle(&mut self, _: ReportedDelivered, _: &mut Context<Self>) {}
}

/// Stands in for Control: forwards what it receives to the test.
#[derive(Debug)]
struct FakeControl(mpsc::UnboundedSender<SetOverrides>);
impl Actor for FakeControl {
    type Context = Context<Self>;
}
impl Handler<SetOverrides> for FakeControl {
    type Result = ();
    fn handle(&mut self, m: SetOverrides, _: &mut Context<Self>) {
        let _ = self.0.send(m);
    }
}

struct Edge {
    device: DeviceId,
    outbox: OutboxHandle,
    uplink: Addr<Uplink>,
    _dir: tempfile::TempDir,
}

fn uplink_config(device: &DeviceId) -> UplinkConfig {
    UplinkConfig {
        device_id: device.clone(),
        topics: Topics::default(),
        live_batch_max: 10,
        backlog_batch_bytes: 64 * 1024,
        max_inflight_batches: 4,
        batch_max_delay: Duration::ZERO,
        compact: false,
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_millis(400),
        software_version: "9.9.9-test".into(),
        boot_time: chrono::Utc::now(),
        shutdown_grace: Duration::from_secs(2),
    }
}

fn options(device: &DeviceId, url: &str) -> rumqttc::MqttOptions {
    let mut cfg = EdgeConfig::parse(&format!("device_id = \"{device}\""), "test").expect("cfg");
    cfg.mqtt.url = url.to_owned();
    cfg.mqtt.keep_alive = Duration::from_secs(5);
    let will =
        shiki_proto::encode(&Status::last_will("9.9.9-test", chrono::Utc::now())).expect("will");
    mqtt_options(
        &cfg,
        Topics::default().topic_for(device, &Channel::Status),
        will,
        32,
    )
    .expect("options")
}

fn start_edge(name: &str, url: &str, peers: Option<UplinkPeers>) -> Edge {
    start_edge_with(name, url, peers, OutboxOptions::default())
}

fn start_edge_with(
    name: &str,
    url: &str,
    peers: Option<UplinkPeers>,
    options_: OutboxOptions,
) -> Edge {
    let device = DeviceId::new(unique_device(name)).expect("id");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbOutbox::open(&dir.path().join("edge.redb"), options_).expect("open");
    let (outbox, _join) = OutboxHandle::start(store).expect("start");
    let peers = peers.unwrap_or_else(|| {
        let sink = Sink.start();
        UplinkPeers::all(sink)
    });
    let uplink = Uplink::new(
        uplink_config(&device),
        options(&device, url),
        outbox.clone(),
        peers,
        Catalog {
            v: PROTOCOL_VERSION,
            points: Vec::new(),
        },
        (0, 0),
    )
    .start();
    Edge {
        device,
        outbox,
        uplink,
        _dir: dir,
    }
}

async fn wait_committed(outbox: &OutboxHandle, f: impl Fn(&Committed) -> bool) {
    let mut w = outbox.committed();
    tokio::time::timeout(WAIT, w.wait_for(|c| f(c)))
        .await
        .expect("committed within the timeout")
        .expect("watch");
}

/// Reads telemetry until `last` distinct seqs were seen; status messages go to `statuses`,
/// `shadow/get` requests are counted in `gets`.
async fn collect_until(
    sub: &mut Subscriber,
    log: &mut SeqLog,
    statuses: &mut Vec<Status>,
    last: u64,
) -> usize {
    let mut gets = 0;
    while log.distinct() < last as usize {
        let m = sub.next(WAIT).await;
        if m.topic.ends_with("/telemetry") {
            log.add_batch(&m.payload);
        } else if m.topic.ends_with("/status") {
            statuses.push(decode(&m.payload).expect("status decodes"));
        } else if m.topic.ends_with("/shadow/get") {
            let _: shiki_proto::ShadowGet = decode(&m.payload).expect("shadow/get decodes");
            gets += 1;
        }
    }
    gets
}

#[actix::test]
async fn every_sample_arrives_once_in_order_across_a_link_cut() {
    let proxy = Proxy::start(broker(), Duration::ZERO, true).await;
    let edge = start_edge("cut", &proxy.url(), None);
    let topics = Topics::default();
    let mut sub = Subscriber::start(
        edge.device.as_str(),
        &[
            topics.topic_for(&edge.device, &Channel::Telemetry),
            topics.topic_for(&edge.device, &Channel::Status),
            topics.topic_for(&edge.device, &Channel::ShadowGet),
        ],
    )
    .await;
    let telemetry = Telemetry::new(
        TelemetryConfig {
            interval: Duration::from_secs(3600),
            stale_after: None,
        },
        edge.outbox.clone(),
        Arc::new(SystemClock),
    )
    .start();
    let (mut log, mut statuses) = (SeqLog::default(), Vec::new());

    // Live: samples arrive as they are taken.
    for _ in 0..10 {
        telemetry.send(SampleNow).await.expect("sample");
    }
    collect_until(&mut sub, &mut log, &mut statuses, 10).await;
    assert!(
        statuses.iter().any(|s| s.state == Connectivity::Online
            && s.software_version.as_deref() == Some("9.9.9-test")),
        "online status with version: {statuses:?}"
    );

    // Cut: sampling goes on into the outbox; the broker publishes the Last Will.
    proxy.cut();
    for _ in 0..300 {
        telemetry.send(SampleNow).await.expect("sample");
    }
    wait_committed(&edge.outbox, |c| c.telemetry == 310).await;
    while !statuses.iter().any(|s| s.state == Connectivity::Offline) {
        let m = sub.next(WAIT).await;
        if m.topic.ends_with("/status") {
            statuses.push(decode(&m.payload).expect("status"));
        } else if m.topic.ends_with("/telemetry") {
            log.add_batch(&m.payload);
        }
    }

    // Restore: the backlog drains oldest first while new samples keep coming.
    proxy.restore();
    for _ in 0..20 {
        telemetry.send(SampleNow).await.expect("sample");
    }
    let gets = collect_until(&mut sub, &mut log, &mut statuses, 330).await;
    let dups = log.assert_exactly_once_in_order(330);
    assert!(
        gets >= 1,
        "the edge asks for its shadow document after reconnecting"
    );
    assert!(
        log.backlog_batches >= 1,
        "the backlog went as backlog batches"
    );
    assert!(
        log.publishes < 330 / 2,
        "backlog is batched: {} publishes",
        log.publishes
    );

    // Every PUBACKed record leaves the outbox.
    let mut pending = u64::MAX;
    for _ in 0..100 {
        pending = edge.outbox.stats().await.expect("stats").pending_telemetry;
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        pending, 0,
        "outbox empty after acknowledgements ({dups} duplicates)"
    );
    edge.uplink.send(Shutdown).await.expect("shutdown");
    edge.outbox.close().await;
}

#[actix::test]
async fn a_broker_that_is_down_at_start_gets_the_backlog_when_it_comes_up() {
    let proxy = Proxy::start(broker(), Duration::ZERO, false).await;
    let edge = start_edge("late", &proxy.url(), None);
    let mut sub = Subscriber::start(
        edge.device.as_str(),
        &[Topics::default().topic_for(&edge.device, &Channel::Telemetry)],
    )
    .await;
    for n in 0..50u64 {
        edge.outbox
            .append(shiki_edge::outbox::NewRecord::Sample {
                ts: chrono::Utc::now(),
                values: [("n".to_owned(), shiki_proto::PointValue::Number(n as f64))].into(),
            })
            .await
            .expect("append");
    }
    proxy.restore();
    let (mut log, mut statuses) = (SeqLog::default(), Vec::new());
    collect_until(&mut sub, &mut log, &mut statuses, 50).await;
    log.assert_exactly_once_in_order(50);
    edge.uplink.send(Shutdown).await.expect("shutdown");
    let _ = edge.outbox.stats().await.expect("stats");
    assert_eq!(
        edge.outbox
            .peek_from(Stream::Telemetry, 0, 100, 1 << 20)
            .await
            .expect("peek")
            .len(),
        0
    );
}

#[actix::test]
async fn shadow_applies_cloud_documents_and_publishes_reports_with_expiries() {
    let (host, port) = broker();
    let url = format!("mqtt://{host}:{port}");
    let (tx, mut overrides_rx) = mpsc::unbounded_channel();
    let control = FakeControl(tx).start();
    let shadow_ctx = Context::<Shadow>::new();
    let shadow_addr = shadow_ctx.address();
    let edge = start_edge(
        "shadow",
        &url,
        Some(UplinkPeers {
            cloud: shadow_addr.clone().recipient(),
            link_up: shadow_addr.clone().recipient(),
            delivered: shadow_addr.clone().recipient(),
        }),
    );
    let topics = Topics::default();
    let mut sub = Subscriber::start(
        edge.device.as_str(),
        &[
            topics.topic_for(&edge.device, &Channel::ShadowGet),
            topics.topic_for(&edge.device, &Channel::ShadowReported),
        ],
    )
    .await;
    shadow_ctx.run(Shadow::new(
        DesiredDoc::default(),
        Vec::new(),
        edge.outbox.clone(),
        ShadowPeers {
            control: control.recipient(),
            uplink: edge.uplink.clone().recipient(),
        },
    ));
    // The edge asks for its document on connect (the subscriber may have missed the first
    // request if it subscribed late, so the test answers whenever it is subscribed).
    let doc_topic = topics.topic_for(&edge.device, &Channel::ShadowDocument);
    let golden = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../proto/examples/shadow-document.json"),
    )
    .expect("golden");
    // A malformed message first: dropped and counted, nothing crashes.
    sub.client
        .publish(
            doc_topic.clone(),
            rumqttc::QoS::AtLeastOnce,
            false,
            b"{not json".to_vec(),
        )
        .await
        .expect("publish");
    sub.client
        .publish(doc_topic, rumqttc::QoS::AtLeastOnce, false, golden)
        .await
        .expect("publish");
    let o = tokio::time::timeout(WAIT, overrides_rx.recv())
        .await
        .expect("overrides within the timeout")
        .expect("control");
    assert_eq!(o.desired_version, 12);
    assert!(o.overrides["chw_setpoint_c"].until.is_some());
    assert_eq!(shadow_addr.send(MalformedCount).await.expect("count"), 1);

    // Persisted for a reboot without link.
    let persisted = shiki_edge::shadow::load_persisted(&edge.outbox)
        .await
        .expect("load");
    assert_eq!(persisted.0.version, 12);

    let expired = shiki_proto::ExpiredOverride {
        key: "chw_setpoint_c".into(),
        at: chrono::Utc::now(),
        desired_version: 12,
    };
    shadow_addr
        .send(ControlReport {
            ts: chrono::Utc::now(),
            reported: BTreeMap::from([("chw_setpoint_c".to_owned(), serde_json::json!(7.0))]),
            settings: BTreeMap::new(),
            applied_version: Some(12),
            expired: vec![expired.clone()],
            schedule: None,
        })
        .await
        .expect("report");
    let report: ReportedUpdate = loop {
        let m = sub.next(WAIT).await;
        if m.topic.ends_with("/shadow/reported") {
            break decode(&m.payload).expect("reported decodes");
        }
    };
    assert_eq!(report.applied_version, Some(12));
    assert_eq!(report.expired, vec![expired]);
    edge.uplink.send(Shutdown).await.expect("shutdown");
}

#[actix::test]
async fn quota_drops_reach_the_cloud_as_an_event_and_the_newest_samples_survive() {
    let proxy = Proxy::start(broker(), Duration::ZERO, false).await;
    let edge = start_edge_with(
        "quota",
        &proxy.url(),
        None,
        OutboxOptions {
            quota_bytes: 20_000,
            cache_bytes: 1 << 20,
        },
    );
    let topics = Topics::default();
    let mut sub = Subscriber::start(
        edge.device.as_str(),
        &[
            topics.topic_for(&edge.device, &Channel::Telemetry),
            topics.topic_for(&edge.device, &Channel::Events),
        ],
    )
    .await;
    let rxs: Vec<_> = (0..1000u64)
        .map(|n| {
            edge.outbox.submit(shiki_edge::outbox::WriteOp::Append(
                shiki_edge::outbox::NewRecord::Sample {
                    ts: chrono::Utc::now(),
                    values: [("n".to_owned(), shiki_proto::PointValue::Number(n as f64))].into(),
                },
            ))
        })
        .collect();
    for rx in rxs {
        rx.await.expect("reply").expect("append");
    }
    let stats = edge.outbox.stats().await.expect("stats");
    assert!(stats.dropped_telemetry > 0, "{stats:?}");
    proxy.restore();

    let (mut log, mut dropped_event) = (SeqLog::default(), None);
    while dropped_event.is_none() || log.received.last() != Some(&1000) {
        let m = sub.next(WAIT).await;
        if m.topic.ends_with("/events") {
            let b: shiki_proto::EventBatch = decode(&m.payload).expect("events");
            if let Some(e) = b
                .events
                .into_iter()
                .find(|e| e.kind == shiki_proto::EventKind::DataDropped)
            {
                dropped_event = Some(e);
            }
        } else {
            log.add_batch(&m.payload);
        }
    }
    let e = dropped_event.expect("event");
    assert!(
        e.data["dropped_telemetry"].as_u64().unwrap_or(0) > 0,
        "{e:?}"
    );
    let first = log.received[0];
    assert!(first > 1, "oldest samples were dropped");
    let expected: Vec<u64> = (first..=1000).collect();
    assert_eq!(
        log.received, expected,
        "the survivors arrive once, in order"
    );
    let mut pending = u64::MAX;
    for _ in 0..100 {
        pending = edge.outbox.stats().await.expect("stats").pending_telemetry;
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        pending, 0,
        "the dropped gap does not hold the acknowledgements back"
    );
    edge.uplink.send(Shutdown).await.expect("shutdown");
}

#[actix::test]
async fn a_schedule_ack_made_while_offline_is_published_when_the_link_comes_up() {
    use shiki_edge::schedule::PublishScheduleAck;
    use shiki_proto::{AckResult, ScheduleAck};

    let proxy = Proxy::start(broker(), Duration::ZERO, false).await;
    let edge = start_edge("ack-offline", &proxy.url(), None);
    let mut sub = Subscriber::start(
        edge.device.as_str(),
        &[Topics::default().topic_for(&edge.device, &Channel::ScheduleAck)],
    )
    .await;
    let ack = |hash: &str| ScheduleAck {
        v: PROTOCOL_VERSION,
        schedule_id: "tokyo-2027".into(),
        hash: hash.into(),
        result: AckResult::Accepted,
        reason: None,
        ts: chrono::Utc::now(),
    };
    // Two acks for the same schedule while the link is down: only the latest is kept.
    for hash in ["old", "new"] {
        edge.uplink
            .send(PublishScheduleAck(ack(hash)))
            .await
            .expect("uplink takes the ack");
    }
    proxy.restore();
    let m = sub.next(WAIT).await;
    let got: ScheduleAck = decode(&m.payload).expect("ack decodes");
    assert_eq!(
        (got.schedule_id.as_str(), got.hash.as_str()),
        ("tokyo-2027", "new")
    );
    edge.uplink.send(Shutdown).await.expect("shutdown");
}

/// Stands in for the schedule actor.
#[derive(Debug)]
struct FakeSchedule(mpsc::UnboundedSender<shiki_edge::schedule::ScheduleSetReceived>);
impl Actor for FakeSchedule {
    type Context = Context<Self>;
}
impl Handler<shiki_edge::schedule::ScheduleSetReceived> for FakeSchedule {
    type Result = ();
    fn handle(&mut self, m: shiki_edge::schedule::ScheduleSetReceived, _: &mut Context<Self>) {
        let _ = self.0.send(m);
    }
}

#[actix::test]
async fn schedule_set_reaches_the_schedule_actor_and_malformed_ones_are_counted_and_dropped() {
    use shiki_edge::uplink::MalformedSchedules;

    let (host, port) = broker();
    let url = format!("mqtt://{host}:{port}");
    let device = DeviceId::new(unique_device("sched-set")).expect("id");
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        RedbOutbox::open(&dir.path().join("edge.redb"), OutboxOptions::default()).expect("open");
    let (outbox, _join) = OutboxHandle::start(store).expect("start");
    let topics = Topics::default();
    let mut sub = Subscriber::start(
        device.as_str(),
        &[topics.topic_for(&device, &Channel::ShadowGet)],
    )
    .await;
    let sink = Sink.start();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let uplink = Uplink::new(
        uplink_config(&device),
        options(&device, &url),
        outbox,
        UplinkPeers::all(sink),
        Catalog {
            v: PROTOCOL_VERSION,
            points: Vec::new(),
        },
        (0, 0),
    )
    .schedule_to(FakeSchedule(tx).start().recipient())
    .start();
    // The uplink subscribes before it sends shadow/get.
    sub.next(WAIT).await;

    let set_topic = topics.topic_for(&device, &Channel::ScheduleSet);
    let valid = serde_json::json!({
        "v": 1, "schedule_id": "tokyo-2027", "hash": "abc", "slot": "next",
        "document": {"id": "tokyo-2027"}
    });
    for payload in [
        b"not json".to_vec(),
        serde_json::to_vec(&serde_json::json!({"schedule_id": 7})).expect("json"),
        serde_json::to_vec(&valid).expect("json"),
    ] {
        sub.client
            .publish(set_topic.clone(), rumqttc::QoS::AtLeastOnce, false, payload)
            .await
            .expect("publish");
    }
    // Delivered in order: once the valid one arrived, both malformed ones were handled.
    let got = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("schedule/set forwarded within the timeout")
        .expect("fake schedule actor");
    assert_eq!(
        (got.0.schedule_id.as_str(), got.0.slot),
        ("tokyo-2027", shiki_proto::ScheduleSlot::Next)
    );
    assert_eq!(uplink.send(MalformedSchedules).await.expect("count"), 2);
    assert!(
        rx.try_recv().is_err(),
        "malformed messages are not forwarded"
    );
    uplink.send(Shutdown).await.expect("shutdown");
}

#[actix::test]
async fn a_record_that_can_never_be_sent_is_reported_as_dropped_and_the_rest_flows() {
    let proxy = Proxy::start(broker(), Duration::ZERO, true).await;
    let edge = start_edge("oversize", &proxy.url(), None);
    let topics = Topics::default();
    let mut sub = Subscriber::start(
        edge.device.as_str(),
        &[topics.topic_for(&edge.device, &Channel::Events)],
    )
    .await;
    // Hex digits of a pseudo-random sequence: gzip cannot fit 400 KB of them in 128 KiB.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let huge: String = (0..400_000)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            char::from_digit(((x >> 60) & 0xf) as u32, 16).expect("hex digit")
        })
        .collect();
    let event = |message: String| shiki_edge::outbox::NewRecord::Event {
        ts: chrono::Utc::now(),
        kind: shiki_proto::EventKind::Alarm,
        severity: shiki_proto::Severity::Info,
        message,
        data: serde_json::Value::Null,
    };
    let huge_seq = edge.outbox.append(event(huge)).await.expect("append");
    let small_seq = edge
        .outbox
        .append(event("after the huge one".to_owned()))
        .await
        .expect("append");

    let (mut dropped, mut small_seen) = (None, false);
    while dropped.is_none() || !small_seen {
        let m = sub.next(WAIT).await;
        let b: shiki_proto::EventBatch = decode(&m.payload).expect("events");
        for e in b.events {
            assert_ne!(e.seq, huge_seq, "the oversized record was never published");
            if e.kind == shiki_proto::EventKind::DataDropped {
                dropped = Some(e);
            } else if e.seq == small_seq {
                small_seen = true;
            }
        }
    }
    let e = dropped.expect("dropped event");
    assert_eq!(e.data["from_seq"].as_u64(), Some(huge_seq), "{e:?}");
    assert_eq!(e.data["skipped"].as_u64(), Some(1), "{e:?}");
    assert_eq!(e.data["reason"], "exceeds the message limit", "{e:?}");
    edge.uplink.send(Shutdown).await.expect("shutdown");
}

/// `telemetry.batch_max_delay`: after the first sample of a session (sent at once), a
/// sample waits for the delay and then goes by the uplink's own timer, with no later sample
/// to wake it; an event recorded meanwhile does not wait. Compact batches throughout.
#[actix::test]
async fn a_waiting_sample_goes_at_its_deadline_and_events_do_not_wait() {
    const DELAY: Duration = Duration::from_millis(600);
    let device = DeviceId::new(unique_device("delay")).expect("id");
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        RedbOutbox::open(&dir.path().join("edge.redb"), OutboxOptions::default()).expect("open");
    let (outbox, _join) = OutboxHandle::start(store).expect("start");
    let sink = Sink.start();
    let (host, port) = broker();
    let mut cfg = uplink_config(&device);
    cfg.batch_max_delay = DELAY;
    cfg.compact = true;
    let catalog: Catalog = serde_json::from_value(serde_json::json!({"v": 1, "points": [
        {"name": "supply_c", "role": "reading", "kind": "number", "resolution": 0.1}
    ]}))
    .expect("catalog");
    let topics = Topics::default();
    let mut sub = Subscriber::start(
        device.as_str(),
        &[
            topics.topic_for(&device, &Channel::Telemetry),
            topics.topic_for(&device, &Channel::Events),
        ],
    )
    .await;
    let _uplink = Uplink::new(
        cfg,
        options(&device, &format!("mqtt://{host}:{port}")),
        outbox.clone(),
        UplinkPeers::all(sink),
        catalog,
        (0, 0),
    )
    .start();
    let telemetry = Telemetry::new(
        TelemetryConfig {
            interval: Duration::from_secs(3600),
            stale_after: None,
        },
        outbox.clone(),
        Arc::new(SystemClock),
    )
    .start();
    let mut log = SeqLog::default();
    telemetry.send(SampleNow).await.expect("sample");
    while log.distinct() < 1 {
        let m = sub.next(WAIT).await;
        if m.topic.ends_with("/telemetry") {
            log.add_batch(&m.payload);
        }
    }
    assert_eq!(
        log.dictionaries.len(),
        1,
        "the first batch carries the names"
    );

    telemetry.send(SampleNow).await.expect("sample");
    let waiting_since = tokio::time::Instant::now();
    telemetry
        .send(shiki_edge::messages::RecordEvent {
            ts: chrono::Utc::now(),
            kind: shiki_proto::EventKind::Alarm,
            severity: shiki_proto::Severity::Critical,
            message: "alarm 7".into(),
            data: serde_json::Value::Null,
        })
        .await
        .expect("event");
    let mut event_at = None;
    while log.distinct() < 2 {
        let m = sub.next(WAIT).await;
        if m.topic.ends_with("/events") {
            event_at.get_or_insert(waiting_since.elapsed());
        } else if m.topic.ends_with("/telemetry") {
            log.add_batch(&m.payload);
        }
    }
    let sample_at = waiting_since.elapsed();
    assert!(
        sample_at >= DELAY - Duration::from_millis(50),
        "the sample waited for the delay ({sample_at:?})"
    );
    let event_at = event_at.expect("the alarm arrived before the waiting sample");
    assert!(
        event_at < sample_at,
        "the alarm did not wait ({event_at:?} vs {sample_at:?})"
    );
    assert_eq!(log.assert_exactly_once_in_order(2), 0);
}
