//! The ingest benchmark: `rounds` times, the same stream of `n` messages is drained by a
//! bare subscriber and ingested by the cloud (decoded, routed, de-duplicated, committed),
//! bare first in odd rounds and cloud first in even ones. Alternating puts a slow spell of
//! the machine on both sides; the ratio is of the totals.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use rumqttc::QoS;
use shiki_cloud::App;
use shiki_cloud::device::Registry;
use shiki_cloud::store::Store;
use shiki_proto::{Channel, DeviceId, PointValue, Sample, TelemetryBatch, Topics, encode};
use tokio::sync::oneshot;

use super::cpu::{ThreadCpu, add_cpu, cpu_by_thread, cpu_per_message};
use super::shared::{
    Access, bench_config, broker_port, device_client, out, subscriber, temp_dir, topics_of,
    use_external_broker,
};

/// A phase of the ingest bench gives up when its count has not moved for this long.
const STALL_AFTER: Duration = Duration::from_secs(10);

/// Runs the ingest benchmark and prints a line per round, the totals and the CPU per
/// message of every thread in each phase.
pub(super) async fn run(
    n: usize,
    rounds: usize,
    ack_after_commit: Option<bool>,
    mqtt_url: Option<&str>,
    store_url: Option<&str>,
    points: usize,
    through_front: bool,
) -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let mut cfg = bench_config(&dir);
    cfg.mqtt.ack_after_commit = ack_after_commit;
    cfg.store.url = store_url.map(str::to_owned);
    let store_name = if store_url.is_some() {
        "PostgreSQL"
    } else {
        "redb"
    };
    let run = rand::random::<u32>();
    if let Some(url) = mqtt_url {
        use_external_broker(&mut cfg, url, run);
    }
    let target = cfg.broker()?;
    let ack_after_commit = cfg.mqtt.acks_after_commit(&target);
    let topics = topics_of(&cfg)?;
    let app = shiki_cloud::start(cfg).await?;
    let (access, broker) = broker_port(&app, &target);
    // Through the front, each bench device publishes from a connection of its own, with
    // its own registered password (the front lets no client publish for another).
    let front = match (through_front, app.mqtt_addr) {
        (true, Some(addr)) => {
            register_bench_devices(&app).await?;
            Some(addr.port())
        }
        (true, None) => anyhow::bail!("--through-front needs the embedded broker"),
        (false, _) => None,
    };

    // The bare subscriber (prefix the cloud does not subscribe to) counts what it receives.
    let bare_topics = Topics::new(&format!("bench-bare{run}/shiki/v1")).expect("valid prefix");
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let (sub_task, ready) = subscriber(
        device_client("bench-sub", &access),
        bare_topics.all_devices(&Channel::Telemetry),
        move |_, _| {
            counter.fetch_add(1, Ordering::Relaxed);
        },
    );
    let _ = ready.await;

    let mut bench = IngestBench {
        app: &app,
        store: app.store(),
        access,
        broker,
        topics,
        bare_topics,
        received,
        n,
        points,
        store_name,
        front,
        bare_cpu: ThreadCpu::new(),
        cloud_cpu: ThreadCpu::new(),
    };
    let mut totals = Round::default();
    for round in 0..rounds {
        let r = bench.round(round).await;
        totals.bare += r.bare;
        totals.cloud += r.cloud;
        totals.stored += r.stored;
    }
    sub_task.abort();
    bench.report(&totals, rounds, ack_after_commit);
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The two sides of an ingest round.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Bare,
    Cloud,
}

/// Times of one round (or their sums over all rounds).
#[derive(Debug, Default)]
struct Round {
    /// The bare subscriber's phase.
    bare: Duration,
    /// The cloud's phase, until every device actor has its newest sample.
    cloud: Duration,
    /// Samples the cloud stored.
    stored: u64,
    /// From the start of the cloud's phase until the last sample was stored.
    stored_after: Duration,
}

/// A running cloud, the bare subscriber's count, and the CPU each phase used so far.
#[derive(Debug)]
struct IngestBench<'a> {
    app: &'a App,
    store: Arc<dyn Store>,
    /// Where the bench connects and how the figures name the broker.
    access: Access,
    broker: String,
    /// The cloud's topics, and the bare subscriber's.
    topics: Topics,
    bare_topics: Topics,
    /// Messages the bare subscriber received, over all rounds.
    received: Arc<AtomicU64>,
    /// Messages per phase.
    n: usize,
    /// Points per sample.
    points: usize,
    /// The store the figures name (`redb`, `PostgreSQL`).
    store_name: &'static str,
    /// The devices' front's port, when the cloud phase publishes through it.
    front: Option<u16>,
    bare_cpu: ThreadCpu,
    cloud_cpu: ThreadCpu,
}

impl IngestBench<'_> {
    /// Runs both phases of round `round` (from 0) and prints its figures.
    async fn round(&mut self, round: usize) -> Round {
        let n = self.n;
        let first_seq = (round * n / 100) as u64 + 1;
        // Every other round the cloud goes first, so a machine that speeds up or slows
        // down during the run does not always favour the same side.
        let phases = if round.is_multiple_of(2) {
            [Phase::Bare, Phase::Cloud]
        } else {
            [Phase::Cloud, Phase::Bare]
        };
        let mut r = Round::default();
        for phase in phases {
            match phase {
                Phase::Bare => r.bare = self.bare_phase(round, first_seq).await,
                Phase::Cloud => self.cloud_phase(round, first_seq, &mut r).await,
            }
        }
        out(&format!(
            "ingest round {}: bare subscriber {:.0} msg/s, cloud {:.0} msg/s ({} stored, \
             device actors caught up {} ms later), ratio {:.0}%",
            round + 1,
            n as f64 / r.bare.as_secs_f64(),
            r.stored as f64 / r.cloud.as_secs_f64(),
            r.stored,
            (r.cloud - r.stored_after).as_millis(),
            100.0 * r.bare.as_secs_f64() * r.stored as f64 / (r.cloud.as_secs_f64() * n as f64),
        ));
        r
    }

    /// The bare subscriber drains the stream; returns how long that took.
    async fn bare_phase(&mut self, round: usize, first_seq: u64) -> Duration {
        let n = self.n;
        let msgs = stream(&self.bare_topics, n, first_seq, self.points);
        let target = ((round + 1) * n) as u64;
        let cpu0 = cpu_by_thread();
        let t0 = Instant::now();
        let publisher = spawn_publisher(self.access.clone(), msgs);
        let received = &self.received;
        let got = until_done_or_stalled(|| received.load(Ordering::Relaxed), target).await;
        if got < target {
            let got = got - (round * n) as u64;
            out(&stalled(&self.broker, "bare subscriber", got, n));
        }
        let took = t0.elapsed();
        add_cpu(&mut self.bare_cpu, &cpu0, &cpu_by_thread());
        let _ = publisher.send(());
        took
    }

    /// The same stream into the cloud; sets the cloud's figures in `r`.
    async fn cloud_phase(&mut self, round: usize, first_seq: u64, r: &mut Round) {
        let n = self.n;
        let msgs = stream(&self.topics, n, first_seq, self.points);
        let store = &self.store;
        let base = store.stats().samples_stored;
        let (commits0, max0) = (store.stats().commits, store.stats().max_commit_micros);
        let cpu0 = cpu_by_thread();
        let t0 = Instant::now();
        let publisher = match self.front {
            Some(port) => spawn_device_publishers(port, msgs),
            None => spawn_publisher(self.access.clone(), msgs),
        };
        let got = until_done_or_stalled(|| store.stats().samples_stored - base, n as u64).await;
        if got < n as u64 {
            out(&stalled(&self.broker, "cloud", got, n));
        }
        r.stored_after = t0.elapsed();
        // Done when every device actor has its newest sample too: their inputs may still be
        // queued, and that work belongs to this phase.
        let last_seq = first_seq + (n / 100) as u64 - 1;
        while !devices_caught_up(&self.app.registry, last_seq).await && t0.elapsed() < STALL_AFTER {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        r.cloud = t0.elapsed();
        add_cpu(&mut self.cloud_cpu, &cpu0, &cpu_by_thread());
        r.stored = store.stats().samples_stored - base;
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

    /// Prints the rates and ratio over all rounds (`totals`), the store's commits, and the
    /// CPU per message of each phase.
    fn report(&self, totals: &Round, rounds: usize, ack_after_commit: bool) {
        let (n, points, store) = (self.n, self.points, self.store_name);
        let broker = if self.front.is_some() {
            format!(
                "{} (the cloud phase through the devices' front, a connection per device)",
                self.broker
            )
        } else {
            self.broker.clone()
        };
        let cloud_stored = totals.stored;
        let bare_rate = (n * rounds) as f64 / totals.bare.as_secs_f64();
        let ingest_rate = cloud_stored as f64 / totals.cloud.as_secs_f64();
        let s = self.store.stats();
        out(&format!(
            "ingest (ack_after_commit = {ack_after_commit}): {rounds} × {n} telemetry messages of {points} points via {broker}: bare subscriber {bare_rate:.0} msg/s; \
             cloud ingest into {store} {ingest_rate:.0} msg/s ({cloud_stored} stored); ratio {:.0}%; \
             {} commits, mean {:.0} writes/commit, mean commit {:.2} ms",
            100.0 * ingest_rate / bare_rate,
            s.commits,
            (cloud_stored as f64) / (s.commits.max(1) as f64),
            s.total_commit_micros as f64 / 1e3 / s.commits.max(1) as f64
        ));
        out(&format!(
            "ingest CPU, bare subscriber phase: {}",
            cpu_per_message(&self.bare_cpu, n * rounds)
        ));
        out(&format!(
            "ingest CPU, cloud phase: {}",
            cpu_per_message(&self.cloud_cpu, n * rounds)
        ));
    }
}

/// The devices [`stream`] sends as.
pub(super) fn bench_devices() -> Vec<DeviceId> {
    (0..100)
        .map(|i| DeviceId::new(format!("bench-{i:03}")).expect("valid"))
        .collect()
}

/// The points of a sample of the simulated chiller (deploy/edge.example.toml), with a
/// typical value each; a bench sample carries the first N.
fn chiller_values() -> Vec<(&'static str, PointValue)> {
    vec![
        ("supply_c", 7.2.into()),
        ("return_c", 12.1.into()),
        ("outdoor_c", 27.4.into()),
        ("chw_setpoint_c", 7.0.into()),
        ("hw_setpoint_c", 55.0.into()),
        ("demand_limit_pct", 100.0.into()),
        ("gas_m3h", 18.6.into()),
        ("run_hours_h", 12_034.0.into()),
        ("alarm_code", 0.0.into()),
        ("running", true.into()),
        ("run", true.into()),
        ("saving", false.into()),
        ("mode", "cooling".into()),
    ]
}

/// Payloads of `n` single-sample telemetry messages of `points` points spread over 100
/// devices; the first sample of each device has seq `first_seq`.
pub(super) fn stream(
    topics: &Topics,
    n: usize,
    first_seq: u64,
    points: usize,
) -> Vec<(String, Vec<u8>)> {
    let devices = bench_devices();
    let ts = Utc::now();
    let values: std::collections::BTreeMap<String, PointValue> = chiller_values()
        .into_iter()
        .take(points)
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    (0..n)
        .map(|i| {
            let d = &devices[i % devices.len()];
            let batch = TelemetryBatch {
                v: 1,
                backlog: false,
                samples: vec![Sample {
                    seq: first_seq + (i / devices.len()) as u64,
                    ts,
                    values: values.clone(),
                }],
            };
            (
                topics.topic_for(d, &Channel::Telemetry),
                encode(&batch).expect("bench batches encode"),
            )
        })
        .collect()
}

/// The password of every bench device registered for `--through-front`.
const BENCH_DEVICE_PASSWORD: &str = "bench-device-password-0123456789";

/// Registers the bench devices with [`BENCH_DEVICE_PASSWORD`].
async fn register_bench_devices(app: &App) -> anyhow::Result<()> {
    register_devices(app, Some(BENCH_DEVICE_PASSWORD)).await
}

/// Registers the bench devices, with `password` (for the embedded broker's front) or
/// without (an external broker).
pub(super) async fn register_devices(app: &App, password: Option<&str>) -> anyhow::Result<()> {
    use shiki_cloud::store::{RegistryRecord, Write};
    let hash = match password {
        Some(p) => {
            let p = p.to_owned();
            Some(
                tokio::task::spawn_blocking(move || shiki_cloud::auth::hash_device_password(&p))
                    .await?,
            )
        }
        None => None,
    };
    let now = Utc::now();
    let writes = bench_devices()
        .into_iter()
        .map(|id| {
            Write::PutRegistry(Box::new(RegistryRecord {
                id,
                tenant: None,
                password_hash: hash.clone(),
                created_at: now,
                created_by: "bench".into(),
                credentials_at: now,
                retired_at: None,
            }))
        })
        .collect();
    app.store().submit(writes).await?;
    Ok(())
}

/// Publishes `msgs` through the devices' front on `port`, each device's messages from a
/// connection of its own (on one thread and runtime, as [`spawn_publisher`]).
fn spawn_device_publishers(port: u16, msgs: Vec<(String, Vec<u8>)>) -> oneshot::Sender<()> {
    on_publisher_thread(move || async move {
        let mut clients = std::collections::HashMap::new();
        for id in bench_devices() {
            let mut o = rumqttc::MqttOptions::new(id.as_str(), "127.0.0.1", port);
            o.set_credentials(id.as_str(), BENCH_DEVICE_PASSWORD)
                .set_keep_alive(Duration::from_secs(30))
                .set_inflight(100)
                .set_max_packet_size(256 * 1024, 256 * 1024);
            let (c, mut el) = rumqttc::AsyncClient::new(o, 10_000);
            el.set_network_options(shiki_cloud::ingest::nodelay());
            tokio::spawn(async move {
                loop {
                    if el.poll().await.is_err() {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            });
            clients.insert(id.to_string(), c);
        }
        for (topic, payload) in msgs {
            let device = topic.split('/').nth(2).unwrap_or_default();
            let Some(client) = clients.get(device) else {
                continue;
            };
            if client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .is_err()
            {
                break;
            }
        }
    })
}

/// Publishes `msgs` from one client on its own thread and runtime (the devices are not part
/// of the cloud process); runs until the returned sender is dropped or fired.
pub(super) fn spawn_publisher(access: Access, msgs: Vec<(String, Vec<u8>)>) -> oneshot::Sender<()> {
    on_publisher_thread(move || async move {
        let (client, mut el) = device_client("bench-pub", &access);
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
    })
}

/// Runs `publish` on a thread and runtime of its own (the devices are not part of the
/// cloud process), then keeps its connections until the returned sender is dropped or
/// fired.
fn on_publisher_thread<F, Fut>(publish: F) -> oneshot::Sender<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
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
                publish().await;
                let _ = stop_rx.await;
            });
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the bench publisher");
    }
    stop_tx
}

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
