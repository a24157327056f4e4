//! `shiki-edge bench`: prints the figures of the outbox and the uplink on this machine.
//!
//! - ingest: durable appends per second with group commit (all callers waiting on commit);
//! - disk: bytes written per simulated day at one sample per minute (`/proc/self/io`
//!   `write_bytes`), each sample committed and then acknowledged as when online;
//! - drain: a 30-day backlog (43,200 samples) drained to a real broker, counting publishes
//!   at a subscriber that checks every seq arrives in order.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use actix::prelude::*;
use anyhow::Context as _;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use shiki_proto::{
    Catalog, Channel, DeviceId, PROTOCOL_VERSION, PointValue, TelemetryBatch, Topics, decode,
};

use shiki_edge::config::parse_broker_url;
use shiki_edge::messages::{CloudMessage, LinkUp, ReportedDelivered};
use shiki_edge::outbox::{NewRecord, OutboxHandle, OutboxOptions, RedbOutbox, Stream, WriteOp};
use shiki_edge::uplink::{Shutdown, Uplink, UplinkConfig, UplinkPeers};

/// Options of `shiki-edge bench`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BenchArgs {
    /// Broker for the drain benchmark.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub mqtt_url: String,
    /// Samples appended in the ingest benchmark.
    #[arg(long, default_value_t = 100_000)]
    pub samples: u64,
    /// Samples in the drained backlog (30 days at one per minute).
    #[arg(long, default_value_t = 43_200)]
    pub backlog: u64,
    /// Scratch directory (on the disk being measured; not tmpfs). Default: current dir.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Samples committed together in the disk benchmark (simulates `outbox.commit_interval`
    /// of that many minutes; 1 = every sample at once).
    #[arg(long, default_value_t = 1)]
    pub commit_every: u64,
    /// Skip the drain benchmark (no broker needed).
    #[arg(long)]
    pub skip_drain: bool,
    /// Only fill the outbox of this data directory with `--fill-samples` samples (to
    /// measure `shiki-edge run` with a full outbox), then exit.
    #[arg(long, value_name = "DATA_DIR")]
    pub fill: Option<PathBuf>,
    #[arg(long, default_value_t = 1_000_000)]
    pub fill_samples: u64,
    /// Only measure the cellular link: bytes per sample and per device-day, up and down,
    /// for each telemetry setting, through a byte-counting proxy to `--mqtt-url` (and the
    /// payload size of each encoding). See docs/operations.md section 8.
    #[arg(long)]
    pub link: bool,
    /// Samples per `--link` run (each setting runs twice: steady, and with a link cut).
    #[arg(long, default_value_t = 120)]
    pub link_samples: u64,
    /// Real milliseconds standing for one minute of sampling in `--link`.
    #[arg(long, default_value_t = 40)]
    pub link_tick_ms: u64,
}

async fn fill(dir: &Path, samples: u64) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let (outbox, join) = open(dir, "edge.redb")?;
    let start = Instant::now();
    let mut n = 0;
    while n < samples {
        let end = (n + 10_000).min(samples);
        let rxs: Vec<_> = (n..end)
            .map(|i| outbox.submit(WriteOp::Append(sample(i))))
            .collect();
        for rx in rxs {
            rx.await??;
        }
        n = end;
    }
    let stats = outbox.stats().await?;
    outbox.close().await;
    let _ = join.join();
    Ok(format!(
        "filled {} with {samples} samples in {:.1} s: {} pending, {} B stored, {} dropped",
        dir.display(),
        start.elapsed().as_secs_f64(),
        stats.pending_telemetry,
        stats.stored_bytes,
        stats.dropped_telemetry
    ))
}

fn sample(n: u64) -> NewRecord {
    let values: BTreeMap<String, PointValue> = [
        ("supply_c", PointValue::Number(7.0 + (n % 10) as f64 * 0.1)),
        ("return_c", PointValue::Number(12.0 + (n % 7) as f64 * 0.1)),
        ("outdoor_c", PointValue::Number(27.4)),
        ("running", PointValue::Bool(true)),
        ("alarm_code", PointValue::Number(0.0)),
        ("gas_m3h", PointValue::Number(18.6 + (n % 5) as f64 * 0.1)),
        ("mode", PointValue::Text("cooling".into())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    NewRecord::Sample {
        ts: chrono::DateTime::from_timestamp(1_780_000_000 + n as i64 * 60, 0).unwrap_or_default(),
        values,
    }
}

fn proc_field(file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

pub(crate) fn open(
    dir: &Path,
    name: &str,
) -> anyhow::Result<(OutboxHandle, std::thread::JoinHandle<()>)> {
    let store = RedbOutbox::open(&dir.join(name), OutboxOptions::default())?;
    Ok(OutboxHandle::start(store)?)
}

/// Runs every benchmark and returns the report.
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<String> {
    if let Some(dir) = &args.fill {
        return fill(dir, args.fill_samples).await;
    }
    let base = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("."))
        .join(format!("shiki-bench-{}", std::process::id()));
    std::fs::create_dir_all(&base).with_context(|| format!("create {}", base.display()))?;
    let result = if args.link {
        let mut out = String::new();
        crate::link::run(&args, &base, &mut out).await.map(|()| out)
    } else {
        run_in(&args, &base).await
    };
    let _ = std::fs::remove_dir_all(&base);
    result
}

async fn run_in(args: &BenchArgs, base: &Path) -> anyhow::Result<String> {
    let mut out = String::new();

    // ingest
    let (outbox, join) = open(base, "ingest.redb")?;
    let start = Instant::now();
    let futs: Vec<_> = (0..args.samples)
        .map(|n| outbox.append(sample(n)))
        .collect();
    for r in futures::future::join_all(futs).await {
        r?;
    }
    let secs = start.elapsed().as_secs_f64();
    writeln!(
        out,
        "ingest: {} durable samples in {:.2} s = {:.0} samples/s (group commit, all callers waiting for commit)",
        args.samples,
        secs,
        args.samples as f64 / secs
    )?;
    outbox.close().await;
    let _ = join.join();

    // disk bytes per day
    let (outbox, join) = open(base, "disk.redb")?;
    let before = proc_field("/proc/self/io", "write_bytes:").unwrap_or(0);
    let start = Instant::now();
    let group = args.commit_every.max(1);
    for minute in (0..1440).step_by(group as usize) {
        let rxs: Vec<_> = (minute..(minute + group).min(1440))
            .map(|n| outbox.submit(WriteOp::Append(sample(n))))
            .collect();
        let mut last = 0;
        for rx in rxs {
            if let shiki_edge::outbox::WriteOutcome::Appended { seq, .. } = rx.await?? {
                last = seq;
            }
        }
        outbox.ack(Stream::Telemetry, last).await?;
    }
    outbox.close().await;
    let _ = join.join();
    let after = proc_field("/proc/self/io", "write_bytes:").unwrap_or(0);
    let per_day = after.saturating_sub(before);
    writeln!(
        out,
        "disk: {:.2} MB written per simulated day (1440 samples, committed durably {} at a time, then acknowledged; run took {:.1} s; {} B per sample)",
        per_day as f64 / 1e6,
        group,
        start.elapsed().as_secs_f64(),
        per_day / 1440
    )?;
    let file_size = std::fs::metadata(base.join("disk.redb"))
        .map(|m| m.len())
        .unwrap_or(0);
    writeln!(out, "disk: redb file size after the day: {file_size} B")?;

    if !args.skip_drain {
        drain(args, base, &mut out).await?;
    }
    if let Some(rss) = proc_field("/proc/self/status", "VmRSS:") {
        writeln!(out, "rss: {rss} kB (bench process, at the end)")?;
    }
    Ok(out)
}

#[derive(Debug)]
pub(crate) struct Sink;
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

/// Counts the telemetry publishes (and their bytes) until every seq `1..=total` arrived in
/// order; answers when the last one did. `ready` fires at the SUBACK.
async fn receive_in_order(
    mut sub_loop: rumqttc::EventLoop,
    total: u64,
    ready: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<(u64, u64, Instant)> {
    let mut ready = Some(ready);
    let (mut next, mut publishes, mut bytes) = (1u64, 0u64, 0u64);
    loop {
        match sub_loop.poll().await.context("subscriber")? {
            Event::Incoming(Packet::SubAck(_)) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
            }
            Event::Incoming(Packet::Publish(p)) => {
                publishes += 1;
                bytes += p.payload.len() as u64;
                let batch: TelemetryBatch = decode(&p.payload).context("bad batch")?;
                for s in batch.samples {
                    if s.seq == next {
                        next += 1;
                    } else if s.seq > next {
                        anyhow::bail!("gap: expected seq {next}, got {}", s.seq);
                    }
                }
                if next > total {
                    return Ok((publishes, bytes, Instant::now()));
                }
            }
            _ => {}
        }
    }
}

async fn drain(args: &BenchArgs, base: &Path, out: &mut String) -> anyhow::Result<()> {
    let device = DeviceId::new(format!("bench-{}", std::process::id()))?;
    let topics = Topics::default();
    let (outbox, join) = open(base, "drain.redb")?;
    let ops: Vec<_> = (0..args.backlog)
        .map(|n| WriteOp::Append(sample(n)))
        .collect();
    for chunk in ops.chunks(5000) {
        let rxs: Vec<_> = chunk.iter().map(|op| outbox.submit(op.clone())).collect();
        for rx in rxs {
            rx.await??;
        }
    }

    // Subscriber first, so it sees every publish.
    let addr = parse_broker_url(&args.mqtt_url).map_err(anyhow::Error::msg)?;
    let mut sub_opts = MqttOptions::new(format!("{device}-sub"), addr.host.clone(), addr.port);
    sub_opts.set_max_packet_size(1 << 20, 1 << 20);
    let (sub, sub_loop) = AsyncClient::new(sub_opts, 16);
    sub.subscribe(
        topics.topic_for(&device, &Channel::Telemetry),
        QoS::AtLeastOnce,
    )
    .await?;
    let total = args.backlog;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<anyhow::Result<(u64, u64, Instant)>>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    actix::spawn(async move {
        let _ = done_tx.send(receive_in_order(sub_loop, total, ready_tx).await);
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .context("subscriber did not get SUBACK within 10 s")?
        .ok();

    let mut cfg: shiki_edge::config::EdgeConfig =
        shiki_edge::config::EdgeConfig::parse(&format!("device_id = \"{device}\""), "bench")?;
    cfg.mqtt.url = args.mqtt_url.clone();
    let will = shiki_proto::encode(&shiki_proto::Status::last_will("bench", chrono::Utc::now()))?;
    let options = shiki_edge::uplink::mqtt_options(
        &cfg,
        topics.topic_for(&device, &Channel::Status),
        will,
        64,
    )?;
    let sink = Sink.start();
    let start = Instant::now();
    let uplink = Uplink::new(
        UplinkConfig {
            device_id: device.clone(),
            topics,
            live_batch_max: cfg.mqtt.live_batch_max,
            backlog_batch_bytes: cfg.mqtt.backlog_batch_bytes,
            max_inflight_batches: cfg.mqtt.max_inflight_batches,
            batch_max_delay: std::time::Duration::ZERO,
            compact: false,
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(2),
            software_version: "bench".into(),
            boot_time: chrono::Utc::now(),
            shutdown_grace: Duration::from_secs(2),
        },
        options,
        outbox.clone(),
        UplinkPeers::all(sink),
        Catalog {
            v: PROTOCOL_VERSION,
            points: Vec::new(),
        },
        (0, 0),
    )
    .start();
    let (publishes, bytes, at) = tokio::time::timeout(Duration::from_secs(120), done_rx)
        .await
        .context("backlog not drained within 120 s")???;
    let secs = at.duration_since(start).as_secs_f64();
    // Wait until the acknowledgements have emptied the outbox.
    let mut pending = u64::MAX;
    for _ in 0..200 {
        pending = outbox.stats().await?.pending_telemetry;
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    writeln!(
        out,
        "drain: {} samples in {:.2} s over {} publishes ({:.1} KiB on the wire, {:.0} samples per publish); outbox left: {}",
        args.backlog,
        secs,
        publishes,
        bytes as f64 / 1024.0,
        args.backlog as f64 / publishes.max(1) as f64,
        pending
    )?;
    let _ = uplink.send(Shutdown).await;
    let _ = sub.disconnect().await;
    outbox.close().await;
    let _ = join.join();
    Ok(())
}
