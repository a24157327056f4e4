//! The verification latency benchmark: desired change → delta → a simulated device applies
//! and reports it → verified, with latency percentiles; once back to back, once with the
//! device idle in between.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use rumqttc::QoS;
use serde_json::json;
use shiki_cloud::App;
use shiki_cloud::auth::Role;
use shiki_cloud::device::{DesiredChange, DeviceInput, Registry, Route};
use shiki_cloud::store::Author;
use shiki_proto::{
    Catalog, Channel, Connectivity, DeviceId, ReportedState, ReportedUpdate, ShadowDelta, Status,
    Topics, decode, encode,
};
use tokio::task::JoinHandle;

use super::shared::{
    Access, bench_config, broker_port, device_client, out, subscriber, temp_dir, topics_of,
    use_external_broker,
};

/// When the simulated device last received a delta (taken by whoever measures).
type DeltaSeen = Arc<Mutex<Option<Instant>>>;

/// Runs `changes` desired changes against one simulated device, back to back and then with
/// 100 ms between them, and prints the latency percentiles of each.
pub(super) async fn run(changes: usize, mqtt_url: Option<&str>) -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let mut cfg = bench_config(&dir);
    let broker = match mqtt_url {
        Some(url) => {
            use_external_broker(&mut cfg, url, rand::random::<u32>());
            url.to_owned()
        }
        None => "embedded broker".to_owned(),
    };
    let topics = topics_of(&cfg)?;
    let target = cfg.broker()?;
    let app = shiki_cloud::start(cfg).await?;
    let (access, _) = broker_port(&app, &target);
    let id = DeviceId::new("bench-verify").expect("valid");
    let delta_seen = DeltaSeen::default();
    let device = simulated_device(&access, &topics, &id, delta_seen.clone()).await;
    introduce(&app, &id);
    for gap in [Duration::ZERO, Duration::from_millis(100)] {
        let (lat, to_delta) = measure_changes(&app, &id, changes, gap, &delta_seen).await;
        report_latency(&lat, &to_delta, &broker, gap);
    }
    device.abort();
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A device on the broker that applies every delta at once and reports it, noting in
/// `delta_seen` when each delta arrived; returns once it is subscribed.
async fn simulated_device(
    access: &Access,
    topics: &Topics,
    id: &DeviceId,
    delta_seen: DeltaSeen,
) -> JoinHandle<()> {
    let reported_topic = topics.topic_for(id, &Channel::ShadowReported);
    let (device, ready) = subscriber(
        device_client("bench-verify", access),
        topics.topic_for(id, &Channel::ShadowDelta),
        move |client, p| {
            let Ok(d) = decode::<ShadowDelta>(&p.payload) else {
                return;
            };
            if let Ok(mut g) = delta_seen.lock() {
                *g = Some(Instant::now());
            }
            let r = ReportedUpdate {
                v: 1,
                state: ReportedState { reported: d.state },
                applied_version: Some(d.version),
                settings: Default::default(),
                expired: vec![],
                schedule: None,
                timestamp: Utc::now(),
                client_token: None,
            };
            if let Ok(bytes) = encode(&r) {
                let _ = client.try_publish(reported_topic.clone(), QoS::AtLeastOnce, false, bytes);
            }
        },
    );
    let _ = ready.await;
    device
}

/// Tells the cloud the device is online and has one writable setting, `chw_setpoint`.
fn introduce(app: &App, id: &DeviceId) {
    let status = Status {
        v: 1,
        state: Connectivity::Online,
        software_version: None,
        boot_time: None,
        ts: None,
    };
    let catalog: Catalog = serde_json::from_value(json!({"points": [
        {"name": "chw_setpoint", "role": "setting", "kind": "number", "writable": true,
         "min": 5.0, "max": 15.0, "resolution": 0.1}]}))
    .expect("bench catalog");
    app.registry.do_send(Route {
        device: id.clone(),
        input: DeviceInput::Status(status),
    });
    app.registry.do_send(Route {
        device: id.clone(),
        input: DeviceInput::Catalog(catalog),
    });
}

/// Makes `changes` desired changes, `gap` apart, each waiting until verified (at most
/// 10 s); returns the latencies change → verified and change → delta at the device.
async fn measure_changes(
    app: &App,
    id: &DeviceId,
    changes: usize,
    gap: Duration,
    delta_seen: &Mutex<Option<Instant>>,
) -> (Vec<Duration>, Vec<Duration>) {
    let metrics = app.device_metrics.clone();
    let mut lat = Vec::with_capacity(changes);
    let mut to_delta = Vec::with_capacity(changes);
    for i in 0..changes {
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        let before = metrics.verified.load(std::sync::atomic::Ordering::Relaxed);
        let value = 5.0 + (i % 100) as f64 * 0.1;
        let change = DesiredChange {
            settings: json!({ "chw_setpoint": value })
                .as_object()
                .cloned()
                .unwrap_or_default(),
            expected_version: None,
            until: None,
            comment: None,
        };
        let t0 = Instant::now();
        let author = Author::api_key("bench", Role::Operator);
        if Registry::change_desired(&app.registry, id.clone(), change, author)
            .await
            .is_err()
        {
            continue;
        }
        while metrics.verified.load(std::sync::atomic::Ordering::Relaxed) == before {
            if t0.elapsed() > Duration::from_secs(10) {
                break;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        lat.push(t0.elapsed());
        if let Some(at) = delta_seen.lock().ok().and_then(|mut g| g.take()) {
            to_delta.push(at.saturating_duration_since(t0));
        }
    }
    (lat, to_delta)
}

/// Prints the percentiles of one [`measure_changes`] run.
fn report_latency(lat: &[Duration], to_delta: &[Duration], broker: &str, gap: Duration) {
    let mut lat = lat.to_vec();
    let mut to_delta = to_delta.to_vec();
    lat.sort();
    to_delta.sort();
    let pct = |v: &[Duration], p: f64| {
        let i = ((v.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(v.len().saturating_sub(1));
        v.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    out(&format!(
        "verify ({broker}, {} ms idle between changes): {} desired changes → delta → reported → verified: \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (change → delta at the device: p50 {:.2} ms, p99 {:.2} ms)",
        gap.as_millis(),
        lat.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 1.0),
        pct(&to_delta, 0.5),
        pct(&to_delta, 0.99),
    ));
}
