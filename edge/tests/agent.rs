//! The whole agent in-process (`shiki_edge::run`) against the chiller simulator and a real
//! broker: catalog and telemetry reach the cloud side, a desired change from the cloud is
//! clamped, written to the PLC, read back and reported, and shutdown flushes cleanly.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Subscriber, broker, unique_device};
use shiki_edge::EdgeConfig;
use shiki_edge::plc_sim::{PlcSim, SimOptions, default_map};
use shiki_proto::{
    Catalog, Channel, DeviceId, PointValue, ReportedUpdate, SettingSource, Topics, decode,
};

const WAIT: Duration = Duration::from_secs(20);

#[actix::test]
async fn the_agent_reports_plc_values_and_applies_a_clamped_desired_change() {
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
    let device = unique_device("agent");
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
        telemetry_interval: Some(Duration::from_millis(200)),
    })
    .expect("overrides");
    if let Some(plc) = cfg.plc.as_mut() {
        plc.poll_interval = Duration::from_millis(200);
    }
    cfg.validate().expect("valid");

    let dev = DeviceId::new(device.clone()).expect("id");
    let topics = Topics::default();
    let t = |c: Channel| topics.topic_for(&dev, &c);
    let mut sub = Subscriber::start(
        &device,
        &[
            t(Channel::Telemetry),
            t(Channel::Catalog),
            t(Channel::ShadowReported),
        ],
    )
    .await;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = actix::spawn(shiki_edge::run(cfg, async move {
        let _ = stopped.await;
    }));

    // Catalog (retained) and telemetry with PLC values.
    let (mut catalog, mut sample_values) = (None, None);
    while catalog.is_none() || sample_values.is_none() {
        let m = sub.next(WAIT).await;
        if m.topic.ends_with("/catalog") {
            catalog = Some(decode::<Catalog>(&m.payload).expect("catalog"));
        } else if m.topic.ends_with("/telemetry") {
            // Compact (protocol version 2) by default: the first batch of the session
            // carries its point dictionary; later ones name the catalog's.
            let known = |id: &str| {
                catalog
                    .as_ref()
                    .map(shiki_proto::PointDictionary::from_catalog)
                    .filter(|d| d.id() == id)
            };
            let (b, _) = shiki_proto::decode_telemetry(&m.payload, known).expect("batch");
            assert_eq!(b.v, shiki_proto::COMPACT_VERSION);
            if let Some(s) = b.samples.iter().find(|s| s.values.contains_key("supply_c")) {
                sample_values = Some(s.values.clone());
            }
        }
    }
    let catalog = catalog.expect("catalog");
    let chw = catalog.point("chw_setpoint_c").expect("chw in catalog");
    assert_eq!((chw.min, chw.max), (Some(5.0), Some(12.0)));
    let values = sample_values.expect("values");
    assert!(values.contains_key("return_c"));
    for (name, v) in &values {
        if let PointValue::Number(n) = v {
            let text = n.to_string();
            assert!(
                text.split('.').nth(1).is_none_or(|d| d.len() <= 2),
                "{name} = {text}: not at its resolution"
            );
        }
    }

    // A desired change above the limit: clamped, written, read back, reported.
    let delta = serde_json::json!({
        "v": 1,
        "state": { "chw_setpoint_c": 14.0 },
        "metadata": {},
        "version": 5,
        "timestamp": chrono::Utc::now(),
    });
    sub.client
        .publish(
            t(Channel::ShadowDelta),
            rumqttc::QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&delta).expect("json"),
        )
        .await
        .expect("publish delta");
    let report = loop {
        let m = sub.next(WAIT).await;
        if !m.topic.ends_with("/shadow/reported") {
            continue;
        }
        let r: ReportedUpdate = decode(&m.payload).expect("reported");
        let clamped = r
            .settings
            .get("chw_setpoint_c")
            .is_some_and(|s| s.source == SettingSource::Clamped);
        if r.applied_version == Some(5) && clamped {
            break r;
        }
    };
    assert!(
        report.settings["chw_setpoint_c"]
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("12")),
        "{report:?}"
    );
    assert_eq!(sim.value("chw_setpoint_c"), Some(PointValue::Number(12.0)));

    let _ = stop.send(());
    tokio::time::timeout(WAIT, agent)
        .await
        .expect("agent stops within the timeout")
        .expect("join")
        .expect("run returns Ok");
    sim.stop().await;
}
