//! Benchmarks behind `shiki-cloud bench` (figures printed to stdout). Build with
//! `--release`; every run uses its own temp dirs and free ports.
//!
//! - `actors`: N device actors resident through the registry; RSS from `/proc/self/status`.
//! - `ingest`: the same telemetry stream through the embedded broker (or an external one,
//!   `--mqtt-url`), drained first by a bare subscriber, then ingested into the redb store;
//!   both rates and their ratio.
//! - `verify`: desired change → delta → simulated device reports → verified, latency
//!   percentiles.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;
use shiki_proto::{
    Catalog, Channel, Connectivity, DeviceId, ReportedState, ReportedUpdate, Sample, ShadowDelta,
    Status, TelemetryBatch, Topics, decode, encode,
};

use crate::device::{DesiredChange, DeviceCount, DeviceInput, Registry, Route, SampleJson};
use crate::store::Author;
use crate::{AppError, CloudConfig};

/// Which benchmark to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    All,
    Actors,
    Ingest,
    Verify,
}

/// Benchmark sizes.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub devices: usize,
    pub messages: usize,
    pub changes: usize,
    pub only: Which,
    /// External broker for the `ingest` and `verify` benchmarks (default: the embedded one).
    pub mqtt_url: Option<String>,
    /// `mqtt.ack_after_commit` for the ingest benchmark (`None`: the default for the
    /// embedded broker, on receipt).
    pub ack_after_commit: Option<bool>,
    /// Ingest rounds (bare subscriber, then cloud, each round).
    pub rounds: usize,
}

fn out(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn bench_config(dir: &std::path::Path) -> CloudConfig {
    let mut c = CloudConfig {
        data_dir: dir.to_owned(),
        ..CloudConfig::default()
    };
    c.mqtt.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    c.api.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    c.mqtt.client_id = format!("shiki-cloud-bench-{}", rand::random::<u32>());
    c
}

fn temp_dir() -> Result<std::path::PathBuf, AppError> {
    let d = std::env::temp_dir().join(format!("shiki-bench-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&d).map_err(|e| crate::store::StoreError::Open {
        path: d.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(d)
}

/// Runs the selected benchmarks.
pub async fn run(opts: BenchOptions) -> Result<(), AppError> {
    shiki_shared::tls::install_crypto_provider();
    if matches!(opts.only, Which::All | Which::Ingest) {
        ingest(
            opts.messages,
            opts.rounds,
            opts.ack_after_commit,
            opts.mqtt_url.clone(),
        )
        .await?;
    }
    if matches!(opts.only, Which::All | Which::Verify) {
        verify(opts.changes, opts.mqtt_url.clone()).await?;
    }
    if matches!(opts.only, Which::All | Which::Actors) {
        actors(opts.devices).await?;
    }
    Ok(())
}

async fn actors(n: usize) -> Result<(), AppError> {
    let dir = temp_dir()?;
    let app = crate::start(bench_config(&dir)).await?;
    let before = rss_mb();
    let started = Instant::now();
    let sample = SampleJson::of(&Sample {
        seq: 1,
        ts: Utc::now(),
        values: [("supply_temp".to_owned(), 7.0.into())].into(),
    })
    .expect("a sample of numbers encodes");
    for i in 0..n {
        let device = DeviceId::new(format!("dev-{i:07}")).expect("generated ids are valid");
        app.registry.do_send(Route {
            device,
            input: DeviceInput::Telemetry(sample.clone()),
        });
    }
    let count = app.registry.send(DeviceCount).await.unwrap_or(0);
    let spawn = started.elapsed();
    // One round trip to every actor.
    let rt = Instant::now();
    let devices = app
        .registry
        .send(crate::device::ListDevices)
        .await
        .unwrap_or_default();
    for chunk in devices.chunks(10_000) {
        let _ =
            futures::future::join_all(chunk.iter().map(|(_, a)| a.send(crate::device::GetView)))
                .await;
    }
    let round_trip = rt.elapsed();
    let after = rss_mb();
    out(&format!(
        "actors: {count} device actors resident; started in {:.0} ms, one round trip each in {:.0} ms; \
         RSS {after:.1} MB total ({before:.1} MB before, {:.0} bytes per actor)",
        spawn.as_secs_f64() * 1e3,
        round_trip.as_secs_f64() * 1e3,
        (after - before) * 1024.0 * 1024.0 / count.max(1) as f64
    ));
    drop(devices);
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn device_client(id: &str, port: u16) -> (AsyncClient, rumqttc::EventLoop) {
    let mut o = MqttOptions::new(format!("{id}-{}", rand::random::<u32>()), "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30))
        .set_inflight(1000)
        .set_max_packet_size(256 * 1024, 256 * 1024);
    let (c, mut el) = AsyncClient::new(o, 10_000);
    el.set_network_options(crate::ingest::nodelay());
    (c, el)
}

/// Payloads of `n` single-sample telemetry messages spread over 100 devices; the first
/// sample of each device has seq `first_seq`.
fn stream(topics: &Topics, n: usize, first_seq: u64) -> Vec<(String, Vec<u8>)> {
    let devices = bench_devices();
    let ts = Utc::now();
    (0..n)
        .map(|i| {
            let d = &devices[i % devices.len()];
            let batch = TelemetryBatch {
                v: 1,
                backlog: false,
                samples: vec![Sample {
                    seq: first_seq + (i / devices.len()) as u64,
                    ts,
                    values: [
                        ("supply_temp".to_owned(), 7.0.into()),
                        ("return_temp".to_owned(), 12.0.into()),
                    ]
                    .into(),
                }],
            };
            (
                topics.topic_for(d, &Channel::Telemetry),
                encode(&batch).expect("bench batches encode"),
            )
        })
        .collect()
}

/// A phase of the ingest bench gives up when its count has not moved for this long.
const STALL_AFTER: Duration = Duration::from_secs(10);

/// Polls `count` until it reaches `target` or stops moving for [`STALL_AFTER`]; returns the
/// last count.
async fn until_done_or_stalled(count: impl Fn() -> u64, target: u64) -> u64 {
    let (mut last, mut moved) = (count(), Instant::now());
    while last < target && moved.elapsed() < STALL_AFTER {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let now = count();
        if now != last {
            (last, moved) = (now, Instant::now());
        }
    }
    last
}

/// What a phase that stalled prints.
fn stalled(broker: &str, who: &str, got: u64, n: usize) -> String {
    format!(
        "ingest: the {who} got {got} of {n} messages and then nothing for {}s: {broker} dropped \
         the rest (Mosquitto keeps at most max_queued_messages per client, 1000 by default; \
         deploy/mosquitto/mosquitto.conf sets 1000000)",
        STALL_AFTER.as_secs()
    )
}

/// The two sides of an ingest round.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Bare,
    Cloud,
}

/// Whether the actor of every bench device has seen telemetry up to `last_seq`.
async fn devices_caught_up(registry: &actix::Addr<Registry>, last_seq: u64) -> bool {
    for id in bench_devices() {
        match Registry::view(registry, id).await {
            Ok(Some(v)) if v.last_seq >= last_seq => {}
            _ => return false,
        }
    }
    true
}

/// The devices [`stream`] sends as.
fn bench_devices() -> Vec<DeviceId> {
    (0..100)
        .map(|i| DeviceId::new(format!("bench-{i:03}")).expect("valid"))
        .collect()
}

/// Publishes `msgs` from one client on its own thread and runtime (the devices are not part
/// of the cloud process); runs until the returned sender is dropped or fired.
fn spawn_publisher(port: u16, msgs: Vec<(String, Vec<u8>)>) -> tokio::sync::oneshot::Sender<()> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("bench-publisher".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let (client, mut el) = device_client("bench-pub", port);
                tokio::spawn(async move {
                    loop {
                        if el.poll().await.is_err() {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                });
                for (topic, payload) in msgs {
                    if client
                        .publish(topic, QoS::AtLeastOnce, false, payload)
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                let _ = stop_rx.await;
            });
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the bench publisher");
    }
    stop_tx
}

/// CPU time each thread of this process has used so far, summed by thread name
/// (`/proc/self/task/*/schedstat`, nanoseconds on CPU). Empty where `/proc` is missing.
fn cpu_by_thread() -> ThreadCpu {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| {
                s.split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
            });
        if let Some(ns) = ns {
            *out.entry(name.trim().to_owned()).or_insert(0) += ns;
        }
    }
    out
}

type ThreadCpu = std::collections::BTreeMap<String, u64>;

/// Adds the CPU each thread used between two [`cpu_by_thread`] readings to `acc`.
fn add_cpu(acc: &mut ThreadCpu, before: &ThreadCpu, after: &ThreadCpu) {
    for (k, v) in after {
        *acc.entry(k.clone()).or_insert(0) += v.saturating_sub(before.get(k).copied().unwrap_or(0));
    }
}

/// CPU used per message, in total and by thread, busiest first (`name 3.1`, µs/msg).
fn cpu_per_message(used: &ThreadCpu, messages: usize) -> String {
    let mut used: Vec<(&String, u64)> = used
        .iter()
        .map(|(k, v)| (k, *v))
        .filter(|(_, v)| *v > 0)
        .collect();
    used.sort_by_key(|u| std::cmp::Reverse(u.1));
    let total: u64 = used.iter().map(|(_, v)| v).sum();
    let per = |ns: u64| ns as f64 / 1e3 / messages.max(1) as f64;
    let mut s = format!("{:.1} µs/msg:", per(total));
    for (name, ns) in used.iter().filter(|(_, v)| per(*v) >= 0.05) {
        s.push_str(&format!(" {name} {:.1}", per(*ns)));
    }
    s
}

/// The ingest benchmark: `rounds` times, the same stream of `n` messages is drained by a
/// bare subscriber and ingested by the cloud (decoded, routed, de-duplicated, committed),
/// bare first in odd rounds and cloud first in even ones. Alternating puts a slow spell of
/// the machine on both sides; the ratio is of the totals.
async fn ingest(
    n: usize,
    rounds: usize,
    ack_after_commit: Option<bool>,
    mqtt_url: Option<String>,
) -> Result<(), AppError> {
    let dir = temp_dir()?;
    let mut cfg = bench_config(&dir);
    cfg.mqtt.ack_after_commit = ack_after_commit;
    let run = rand::random::<u32>();
    if let Some(url) = &mqtt_url {
        // A shared broker: prefixes of this run only.
        cfg.mqtt.url = Some(url.clone());
        cfg.topic_prefix = format!("bench{run}/shiki/v1");
    }
    let target = cfg.broker()?;
    let ack_after_commit = cfg.mqtt.acks_after_commit(&target);
    let topics = Topics::new(&cfg.topic_prefix).map_err(|e| crate::ConfigError::Invalid {
        key: "topic_prefix",
        reason: e.to_string(),
    })?;
    let app = crate::start(cfg).await?;
    let (port, broker) = match (app.mqtt_addr, target) {
        (Some(a), _) => (a.port(), "the embedded broker".to_owned()),
        (None, crate::BrokerTarget::External { port, host, .. }) => {
            (port, format!("{host}:{port}"))
        }
        (None, _) => (1883, "127.0.0.1:1883".to_owned()),
    };

    // The bare subscriber (prefix the cloud does not subscribe to) counts what it receives.
    let bare_topics = Topics::new(&format!("bench-bare{run}/shiki/v1")).expect("valid prefix");
    let (sub, mut el) = device_client("bench-sub", port);
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = received.clone();
    let filter = bare_topics.all_devices(&Channel::Telemetry);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let sub_task = actix::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = sub.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(_))) => {
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    });
    let _ = ready_rx.await;

    let store = app.store();
    let (mut bare_time, mut cloud_time, mut cloud_stored) = (Duration::ZERO, Duration::ZERO, 0u64);
    let (mut bare_cpu, mut cloud_cpu) = (ThreadCpu::new(), ThreadCpu::new());
    for round in 0..rounds {
        let first_seq = (round * n / 100) as u64 + 1;
        // Every other round the cloud goes first, so a machine that speeds up or slows
        // down during the run does not always favour the same side.
        let phases = if round % 2 == 0 {
            [Phase::Bare, Phase::Cloud]
        } else {
            [Phase::Cloud, Phase::Bare]
        };
        let (mut bare, mut cloud, mut stored) = (Duration::ZERO, Duration::ZERO, 0u64);
        let mut stored_after = Duration::ZERO;
        for phase in phases {
            match phase {
                Phase::Bare => {
                    // The bare subscriber drains the stream.
                    let msgs = stream(&bare_topics, n, first_seq);
                    let target = (round + 1) * n;
                    let cpu0 = cpu_by_thread();
                    let t0 = Instant::now();
                    let publisher = spawn_publisher(port, msgs);
                    let got = until_done_or_stalled(
                        || received.load(std::sync::atomic::Ordering::Relaxed),
                        target as u64,
                    )
                    .await;
                    if got < target as u64 {
                        out(&stalled(
                            &broker,
                            "bare subscriber",
                            got - (round * n) as u64,
                            n,
                        ));
                    }
                    bare = t0.elapsed();
                    add_cpu(&mut bare_cpu, &cpu0, &cpu_by_thread());
                    let _ = publisher.send(());
                }
                Phase::Cloud => {
                    // The same stream into the cloud.
                    let msgs = stream(&topics, n, first_seq);
                    let base = store.stats().samples_stored;
                    let (commits0, max0) = (store.stats().commits, store.stats().max_commit_micros);
                    let cpu0 = cpu_by_thread();
                    let t0 = Instant::now();
                    let publisher = spawn_publisher(port, msgs);
                    let got =
                        until_done_or_stalled(|| store.stats().samples_stored - base, n as u64)
                            .await;
                    if got < n as u64 {
                        out(&stalled(&broker, "cloud", got, n));
                    }
                    stored_after = t0.elapsed();
                    // Done when every device actor has its newest sample too: their inputs
                    // may still be queued, and that work belongs to this phase.
                    let last_seq = first_seq + (n / 100) as u64 - 1;
                    while !devices_caught_up(&app.registry, last_seq).await
                        && t0.elapsed() < STALL_AFTER
                    {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    cloud = t0.elapsed();
                    add_cpu(&mut cloud_cpu, &cpu0, &cpu_by_thread());
                    stored = store.stats().samples_stored - base;
                    let s = store.stats();
                    if s.max_commit_micros > max0 {
                        out(&format!(
                            "ingest round {}: longest commit so far {:.1} ms ({} commits this round)",
                            round + 1,
                            s.max_commit_micros as f64 / 1e3,
                            s.commits - commits0
                        ));
                    }
                    let _ = publisher.send(());
                }
            }
        }
        out(&format!(
            "ingest round {}: bare subscriber {:.0} msg/s, cloud {:.0} msg/s ({stored} stored, \
             device actors caught up {} ms later), ratio {:.0}%",
            round + 1,
            n as f64 / bare.as_secs_f64(),
            stored as f64 / cloud.as_secs_f64(),
            (cloud - stored_after).as_millis(),
            100.0 * bare.as_secs_f64() * stored as f64 / (cloud.as_secs_f64() * n as f64),
        ));
        bare_time += bare;
        cloud_time += cloud;
        cloud_stored += stored;
    }
    sub_task.abort();
    let bare_rate = (n * rounds) as f64 / bare_time.as_secs_f64();
    let ingest_rate = cloud_stored as f64 / cloud_time.as_secs_f64();
    let s = store.stats();
    out(&format!(
        "ingest (ack_after_commit = {ack_after_commit}): {rounds} × {n} telemetry messages via {broker}: bare subscriber {bare_rate:.0} msg/s; \
         cloud ingest into redb {ingest_rate:.0} msg/s ({cloud_stored} stored); ratio {:.0}%; \
         {} commits, mean {:.0} writes/commit, mean commit {:.2} ms",
        100.0 * ingest_rate / bare_rate,
        s.commits,
        (cloud_stored as f64) / (s.commits.max(1) as f64),
        s.total_commit_micros as f64 / 1e3 / s.commits.max(1) as f64
    ));
    out(&format!(
        "ingest CPU, bare subscriber phase: {}",
        cpu_per_message(&bare_cpu, n * rounds)
    ));
    out(&format!(
        "ingest CPU, cloud phase: {}",
        cpu_per_message(&cloud_cpu, n * rounds)
    ));
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn verify(changes: usize, mqtt_url: Option<String>) -> Result<(), AppError> {
    let dir = temp_dir()?;
    let mut cfg = bench_config(&dir);
    let broker = match &mqtt_url {
        Some(url) => {
            cfg.mqtt.url = Some(url.clone());
            cfg.topic_prefix = format!("bench{}/shiki/v1", rand::random::<u32>());
            url.clone()
        }
        None => "embedded broker".to_owned(),
    };
    let topics = Topics::new(&cfg.topic_prefix).map_err(|e| crate::ConfigError::Invalid {
        key: "topic_prefix",
        reason: e.to_string(),
    })?;
    let target = cfg.broker()?;
    let app = crate::start(cfg).await?;
    let port = match (app.mqtt_addr, target) {
        (Some(a), _) => a.port(),
        (None, crate::BrokerTarget::External { port, .. }) => port,
        (None, _) => 1883,
    };
    let id = DeviceId::new("bench-verify").expect("valid");
    let (client, mut el) = device_client("bench-verify", port);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let delta_topic = topics.topic_for(&id, &Channel::ShadowDelta);
    let reported_topic = topics.topic_for(&id, &Channel::ShadowReported);
    let c2 = client.clone();
    let delta_seen = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let delta_seen2 = delta_seen.clone();
    // The simulated device: applies every delta at once and reports it.
    let device = actix::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = c2.try_subscribe(delta_topic.clone(), QoS::AtLeastOnce);
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Ok(d) = decode::<ShadowDelta>(&p.payload) {
                        if let Ok(mut g) = delta_seen2.lock() {
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
                            let _ = c2.try_publish(
                                reported_topic.clone(),
                                QoS::AtLeastOnce,
                                false,
                                bytes,
                            );
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    });
    let _ = ready_rx.await;
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
    for gap in [Duration::ZERO, Duration::from_millis(100)] {
        let (lat, to_delta) = measure_changes(&app, &id, changes, gap, &delta_seen).await;
        report_latency(&lat, &to_delta, &broker, gap);
    }
    device.abort();
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn measure_changes(
    app: &crate::App,
    id: &DeviceId,
    changes: usize,
    gap: Duration,
    delta_seen: &std::sync::Mutex<Option<Instant>>,
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
        let author = Author::api_key("bench", crate::auth::Role::Operator);
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
