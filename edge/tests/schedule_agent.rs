//! The whole agent in-process against the chiller simulator and a real broker, with the
//! cloud played by a test MQTT client: a schedule pushed on `schedule/set` is acked by hash,
//! its transition a few seconds ahead is written to the PLC, and the reported state names
//! the active schedule; a schedule that fails validation is rejected and the old one keeps
//! running; a malformed `schedule/set` is dropped without harm; `schedule.file` is
//! installed at start; a transition during a link cut still reaches the PLC and its event
//! reaches the cloud afterwards. No sleeps: every step waits for the message (or register
//! value) it expects, with a deadline.

mod common;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveTime, SubsecRound, TimeDelta, Utc};
use common::{Proxy, Subscriber, broker, unique_device};
use serde_json::{Value, json};
use shiki_edge::EdgeConfig;
use shiki_edge::plc_sim::{PlcSim, SimOptions, default_map};
use shiki_proto::{
    AckResult, Channel, DeviceId, PROTOCOL_VERSION, PointValue, ReportedUpdate, ScheduleAck,
    ScheduleSet, ScheduleSlot, SettingSource, Topics, decode,
};
use shiki_shared::schedule::ScheduleDocument;

const WAIT: Duration = Duration::from_secs(30);

/// A one-setting schedule valid yesterday..tomorrow: `before` from 00:00:00 local, `after`
/// from `at` (local wall time of that instant). The zone is UTC, or Asia/Tokyo (UTC+9, no
/// DST) when `at` is too close to midnight UTC for both entries to fall on today.
fn schedule(id: &str, at: DateTime<Utc>, before: f64, after: f64) -> Value {
    let near_midnight = |offset: i32| {
        let tz = FixedOffset::east_opt(offset).expect("offset");
        let local = at.with_timezone(&tz);
        let early = local.time() < NaiveTime::from_hms_opt(0, 2, 0).expect("time");
        (early, local)
    };
    let (zone, local) = match near_midnight(0) {
        (false, local) => ("UTC", local),
        (true, _) => ("Asia/Tokyo", near_midnight(9 * 3600).1),
    };
    let day = local.date_naive();
    json!({
        "id": id, "timezone": zone,
        "valid_from": (day - TimeDelta::days(1)).to_string(),
        "valid_to": (day + TimeDelta::days(1)).to_string(),
        "profiles": {
            "p": [
                {"time": "00:00:00", "settings": {"chw_setpoint_c": before}},
                {"time": local.format("%H:%M:%S").to_string(), "settings": {"chw_setpoint_c": after}}
            ]
        },
        "seasons": [{"name": "all", "from": "01-01", "to": "12-31",
                     "weekday": "p", "saturday": "p", "sunday": "p"}]
    })
}

fn set_message(document: Value) -> (ScheduleSet, String) {
    let parsed = ScheduleDocument::from_value(&document).expect("test schedule parses");
    let hash = parsed.hash();
    let msg = ScheduleSet {
        v: PROTOCOL_VERSION,
        schedule_id: parsed.id.clone(),
        hash: hash.clone(),
        slot: ScheduleSlot::Current,
        document,
    };
    (msg, hash)
}

struct Rig {
    sim: PlcSim,
    sub: Subscriber,
    topic: Box<dyn Fn(Channel) -> String>,
    stop: tokio::sync::oneshot::Sender<()>,
    joined: tokio::sync::oneshot::Receiver<Result<(), shiki_edge::RunError>>,
    _dir: tempfile::TempDir,
}

async fn start(name: &str) -> Rig {
    start_with(name, |_, _| {}).await
}

/// Starts the simulator and the agent; `tweak` may change the config (given the data dir's
/// parent, for extra files).
async fn start_with(name: &str, tweak: impl FnOnce(&mut EdgeConfig, &Path)) -> Rig {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("SHIKI_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind sim");
    let sim = PlcSim::start(
        listener,
        default_map(),
        SimOptions {
            tick: Duration::from_millis(100),
            ..SimOptions::default()
        },
    )
    .expect("sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let device = unique_device(name);
    let (host, port) = broker();
    let mut cfg = EdgeConfig::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/edge.example.toml"),
    )
    .expect("example");
    cfg.apply(shiki_edge::Overrides {
        device_id: Some(device.clone()),
        mqtt_url: Some(format!("mqtt://{host}:{port}")),
        plc: Some(sim.addr().to_string()),
        data_dir: Some(dir.path().join("data")),
        telemetry_interval: Some(Duration::from_millis(500)),
    })
    .expect("overrides");
    if let Some(plc) = cfg.plc.as_mut() {
        plc.poll_interval = Duration::from_millis(200);
    }
    tweak(&mut cfg, dir.path());
    cfg.validate().expect("valid");

    let dev = DeviceId::new(device.clone()).expect("id");
    let topics = Topics::default();
    let topic: Box<dyn Fn(Channel) -> String> = Box::new(move |c| topics.topic_for(&dev, &c));
    let sub = Subscriber::start(
        &device,
        &[
            topic(Channel::ShadowReported),
            topic(Channel::ScheduleAck),
            topic(Channel::ShadowGet),
            topic(Channel::Events),
        ],
    )
    .await;
    let mut sub = sub;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (done, joined) = tokio::sync::oneshot::channel();
    actix::spawn(async move {
        let r = shiki_edge::run(cfg, async move {
            let _ = stopped.await;
        })
        .await;
        let _ = done.send(r);
    });
    // The agent subscribes before it sends shadow/get: from then on a push reaches it.
    while !sub.next(WAIT).await.topic.ends_with("/shadow/get") {}
    Rig {
        sim,
        sub,
        topic,
        stop,
        joined,
        _dir: dir,
    }
}

impl Rig {
    async fn push(&self, payload: Vec<u8>) {
        self.sub
            .client
            .publish(
                (self.topic)(Channel::ScheduleSet),
                rumqttc::QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .expect("publish schedule/set");
    }

    async fn next_ack(&mut self) -> ScheduleAck {
        loop {
            let m = self.sub.next(WAIT).await;
            if m.topic.ends_with("/schedule/ack") {
                return decode(&m.payload).expect("schedule ack decodes");
            }
        }
    }

    /// The first report whose chw_setpoint_c comes from the schedule with `value`.
    async fn report_with(&mut self, id: &str, value: f64) -> ReportedUpdate {
        loop {
            let m = self.sub.next(WAIT).await;
            if !m.topic.ends_with("/shadow/reported") {
                continue;
            }
            let r: ReportedUpdate = decode(&m.payload).expect("reported decodes");
            let from_schedule = r
                .settings
                .get("chw_setpoint_c")
                .is_some_and(|s| s.source == SettingSource::Schedule);
            let holds = r.state.reported.get("chw_setpoint_c") == Some(&json!(value));
            if from_schedule && holds && r.schedule.as_ref().is_some_and(|s| s.id == id) {
                return r;
            }
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.joined)
            .await
            .expect("agent stops within the timeout")
            .expect("agent task")
            .expect("run returns Ok");
        self.sim.stop().await;
    }
}

#[actix::test]
async fn a_pushed_schedule_is_acked_and_its_transition_reaches_the_plc() {
    let mut rig = start("sched").await;
    // Schedule times have whole seconds.
    let at = (Utc::now() + TimeDelta::seconds(6)).trunc_subsecs(0);
    let (msg, hash) = set_message(schedule("e2e-a", at, 8.0, 9.5));
    rig.push(serde_json::to_vec(&msg).expect("json")).await;

    let ack = rig.next_ack().await;
    assert_eq!(
        (ack.schedule_id.as_str(), ack.result, ack.hash.as_str()),
        ("e2e-a", AckResult::Accepted, hash.as_str()),
        "{ack:?}"
    );
    // In force now: 8.0 from 00:00 today, reported with the active schedule.
    let before = rig.report_with("e2e-a", 8.0).await;
    assert_eq!(
        before.schedule.as_ref().map(|s| s.hash.as_str()),
        Some(hash.as_str())
    );
    // The transition a few seconds ahead is applied by the edge's own timer.
    let after = rig.report_with("e2e-a", 9.5).await;
    assert!(Utc::now() >= at, "applied before its time: {after:?}");
    assert_eq!(
        rig.sim.value("chw_setpoint_c"),
        Some(PointValue::Number(9.5))
    );
    rig.stop().await;
}

#[actix::test]
async fn a_rejected_schedule_is_acked_rejected_and_the_old_one_keeps_running() {
    let mut rig = start("sched-rej").await;
    let (good, good_hash) = set_message(schedule(
        "e2e-good",
        Utc::now() - TimeDelta::seconds(30),
        8.0,
        10.5,
    ));
    rig.push(serde_json::to_vec(&good).expect("json")).await;
    assert_eq!(rig.next_ack().await.result, AckResult::Accepted);
    rig.report_with("e2e-good", 10.5).await;

    // Malformed: logged, counted and dropped; the agent carries on.
    rig.push(b"{\"not\": \"a schedule\"}".to_vec()).await;
    // Out of the point's limits (5.0..12.0): refused with the reason.
    let (bad, bad_hash) = set_message(schedule(
        "e2e-bad",
        Utc::now() + TimeDelta::seconds(3),
        6.0,
        99.0,
    ));
    rig.push(serde_json::to_vec(&bad).expect("json")).await;
    let ack = rig.next_ack().await;
    assert_eq!(
        (ack.schedule_id.as_str(), ack.result, ack.hash.as_str()),
        ("e2e-bad", AckResult::Rejected, bad_hash.as_str()),
        "{ack:?}"
    );
    assert!(
        ack.reason
            .as_deref()
            .is_some_and(|r| r.contains("chw_setpoint_c")),
        "{ack:?}"
    );
    // Pushing the good one again (the cloud's retry) is acked again with its hash: it is
    // still the installed schedule, and the PLC still holds its value.
    rig.push(serde_json::to_vec(&good).expect("json")).await;
    let again = rig.next_ack().await;
    assert_eq!(
        (
            again.schedule_id.as_str(),
            again.result,
            again.hash.as_str()
        ),
        ("e2e-good", AckResult::Accepted, good_hash.as_str())
    );
    assert_eq!(
        rig.sim.value("chw_setpoint_c"),
        Some(PointValue::Number(10.5))
    );
    rig.stop().await;
}

#[actix::test]
async fn schedule_file_is_installed_at_start_when_the_store_has_none() {
    let document = schedule("from-file", Utc::now() - TimeDelta::seconds(30), 8.0, 11.0);
    let hash = ScheduleDocument::from_value(&document)
        .expect("parses")
        .hash();
    let mut rig = start_with("sched-file", |cfg, dir| {
        let file = dir.join("schedule.json");
        std::fs::write(&file, serde_json::to_vec(&document).expect("json")).expect("write");
        cfg.schedule.file = Some(file);
    })
    .await;
    let report = rig.report_with("from-file", 11.0).await;
    assert_eq!(report.schedule.map(|s| s.hash), Some(hash));
    assert_eq!(
        rig.sim.value("chw_setpoint_c"),
        Some(PointValue::Number(11.0))
    );
    rig.stop().await;
}

/// Waits (with a deadline) until the simulator's register holds `value`; the link is cut,
/// so no report can be observed instead.
async fn plc_reaches(sim: &PlcSim, point: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut every = tokio::time::interval(Duration::from_millis(50));
    while sim.value(point) != Some(PointValue::Number(value)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{point} never reached {value}: {:?}",
            sim.value(point)
        );
        every.tick().await;
    }
}

#[actix::test]
async fn a_transition_during_a_link_cut_is_applied_and_its_event_arrives_afterwards() {
    let proxy = Proxy::start(broker(), Duration::ZERO, true).await;
    let url = proxy.url();
    let mut rig = start_with("sched-cut", |cfg, _| cfg.mqtt.url = url).await;
    let at = (Utc::now() + TimeDelta::seconds(5)).trunc_subsecs(0);
    let (msg, _) = set_message(schedule("e2e-cut", at, 8.0, 6.5));
    rig.push(serde_json::to_vec(&msg).expect("json")).await;
    assert_eq!(rig.next_ack().await.result, AckResult::Accepted);
    rig.report_with("e2e-cut", 8.0).await;

    proxy.cut();
    // The edge runs the schedule on its own clock: the PLC changes while offline.
    plc_reaches(&rig.sim, "chw_setpoint_c", 6.5).await;
    assert!(Utc::now() >= at);
    proxy.restore();
    // The transition event was committed offline and arrives once the link is back, and
    // the shadow re-publishes the report the PLC holds now.
    let (mut event_seen, mut report_seen) = (false, false);
    while !(event_seen && report_seen) {
        let m = rig.sub.next(WAIT).await;
        if m.topic.ends_with("/events") {
            let batch: shiki_proto::EventBatch = decode(&m.payload).expect("event batch");
            event_seen |= batch
                .events
                .iter()
                .any(|e| e.kind == shiki_proto::EventKind::ScheduleTransition && e.ts == at);
        } else if m.topic.ends_with("/shadow/reported") {
            let r: ReportedUpdate = decode(&m.payload).expect("reported decodes");
            report_seen |= r.state.reported.get("chw_setpoint_c") == Some(&json!(6.5))
                && r.schedule.is_some_and(|s| s.id == "e2e-cut");
        }
    }
    rig.stop().await;
}
