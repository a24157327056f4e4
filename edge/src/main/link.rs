//! `shiki-edge bench --link`: what the edge's telemetry costs on a cellular link.
//!
//! Two parts:
//! - **encodings**: the same simulated chiller samples (the 13 points of the default register
//!   map, `plc-sim`'s model, one sample a minute) encoded every candidate way, per batch
//!   size: JSON as before #22, JSON at the points' resolution, each gzip-compressed when
//!   smaller, CBOR (ciborium) of the same, and the compact batch (point dictionary, deltas).
//! - **link**: for each setting, a live uplink (the real `Uplink` actor, outbox and batch
//!   code) publishes through a byte-counting TCP proxy to the broker, while a subscriber at
//!   the broker checks that every seq arrives, in order. Time is compressed: a sample a
//!   `--link-tick-ms` stands for a sample a minute, with times a minute apart, and
//!   `batch_max_delay` is scaled the same way. The proxy counts MQTT bytes (payload and
//!   framing) both ways; connection setup is measured separately. A second run of each
//!   setting cuts the link for 7 sample intervals in the middle and checks again that no
//!   sample is lost or reordered. Per device-day figures add keep-alive pings (rumqttc sends
//!   one every keep-alive, whatever else is sent) and estimate TCP/IP headers (see
//!   [`TCP_IP_HEADER`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::prelude::*;
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use shiki_proto::{
    Catalog, Channel, DeviceId, PointDictionary, PointValue, Sample, Topics, decode,
    decode_telemetry, encode_compact, encode_compressed,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use shiki_edge::config::parse_broker_url;
use shiki_edge::outbox::{NewRecord, Stream, WriteOp};
use shiki_edge::plc_sim::default_map;
use shiki_edge::register_map::{DataType, RegisterMap};
use shiki_edge::telemetry::truncate_ts;
use shiki_edge::uplink::{Shutdown, Uplink, UplinkConfig, UplinkPeers};

use crate::bench::{BenchArgs, Sink, open};

/// Bytes of IPv4 (20) and TCP with the timestamp option (32) headers on each segment.
/// Estimated per publish: its segment up, the PUBACK's segment down, the TCP ACK of the
/// PUBACK up (the broker's ACK of the publish rides on the PUBACK); per ping the same three.
pub const TCP_IP_HEADER: u64 = 52;
const SEGMENTS_PER_EXCHANGE: u64 = 3;
const SAMPLES_PER_DAY: u64 = 1440;
const SECONDS_PER_DAY: u64 = 86_400;

/// A setting of the link benchmark.
#[derive(Debug, Clone, Copy)]
struct Setting {
    label: &'static str,
    /// Samples as the edge made them before #22 (raw scale arithmetic, nanosecond times).
    legacy: bool,
    compact: bool,
    /// `batch_max_delay` in sample intervals (minutes).
    delay_minutes: u32,
}

const SETTINGS: [Setting; 6] = [
    Setting {
        label: "before #22: v1 JSON, raw values, ns times, 0s",
        legacy: true,
        compact: false,
        delay_minutes: 0,
    },
    Setting {
        label: "encoding=json (v1, rounded), 0s",
        legacy: false,
        compact: false,
        delay_minutes: 0,
    },
    Setting {
        label: "encoding=compact, 0s",
        legacy: false,
        compact: true,
        delay_minutes: 0,
    },
    Setting {
        label: "encoding=compact, 1m",
        legacy: false,
        compact: true,
        delay_minutes: 1,
    },
    Setting {
        label: "encoding=compact, 5m",
        legacy: false,
        compact: true,
        delay_minutes: 5,
    },
    Setting {
        label: "encoding=compact, 15m",
        legacy: false,
        compact: true,
        delay_minutes: 15,
    },
];

// ---------------------------------------------------------------------------------------
// simulated samples

/// `n` samples of the simulated chiller, one a minute from `start`, as the edge makes them
/// now (values decoded at their resolution, times in whole seconds) or, with `legacy`, as
/// it made them before (scale arithmetic as is, the clock's nanoseconds).
pub(crate) fn simulated_samples(n: u64, legacy: bool) -> Vec<Sample> {
    let map = default_map();
    let mut model = shiki_edge::plc_sim::SimModel::new(map.clone(), 31.0);
    model.set_value("run", &PointValue::Bool(true));
    let start = DateTime::from_timestamp(1_782_874_800, 0).unwrap_or_default();
    (1..=n)
        .map(|seq| {
            model.step(60.0);
            let values = map
                .points()
                .iter()
                .filter_map(|p| {
                    let v = model.value(&p.name)?;
                    Some((
                        p.name.clone(),
                        if legacy {
                            legacy_value(&map, &p.name, v)
                        } else {
                            v
                        },
                    ))
                })
                .collect();
            // The sampling timer fires a little after each minute; the old edge kept the
            // clock's nanoseconds.
            let jitter = Duration::from_nanos(3_000_000 + (seq * 7_919_111) % 900_000_000);
            let taken = start + chrono::Duration::seconds(seq as i64 * 60) + jitter;
            let ts = if legacy {
                taken
            } else {
                truncate_ts(taken, Duration::from_secs(1))
            };
            Sample { seq, ts, values }
        })
        .collect()
}

/// The value the edge decoded before #22: `raw × scale + offset` as computed, and an f32
/// widened as is.
fn legacy_value(map: &RegisterMap, name: &str, v: PointValue) -> PointValue {
    let (Some(p), PointValue::Number(x)) = (map.point(name), &v) else {
        return v;
    };
    if p.data_type == DataType::F32 {
        return PointValue::Number(f64::from(*x as f32));
    }
    let raw = ((x - p.offset) / p.scale).round();
    PointValue::Number(raw * p.scale + p.offset)
}

// ---------------------------------------------------------------------------------------
// encodings

#[derive(serde::Serialize)]
struct Envelope<'a> {
    v: u32,
    backlog: bool,
    samples: &'a [Sample],
}

fn gzip_if_smaller(bytes: Vec<u8>) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let gz = enc
        .write_all(&bytes)
        .and_then(|()| enc.finish())
        .unwrap_or_default();
    if !gz.is_empty() && gz.len() < bytes.len() {
        gz
    } else {
        bytes
    }
}

fn cbor<T: serde::Serialize>(v: &T) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).context("cbor")?;
    Ok(out)
}

/// Bytes per sample of each encoding for batches of `size` samples.
fn encoding_row(
    samples: &[Sample],
    legacy: &[Sample],
    dict: &PointDictionary,
    size: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut totals = [0usize; 7];
    for (chunk, old) in samples.chunks(size).zip(legacy.chunks(size)) {
        let env = |s| Envelope {
            v: 1,
            backlog: false,
            samples: s,
        };
        let compact_json = shiki_proto::compact_json(chunk, dict, false, false)?;
        let compact_value: serde_json::Value = serde_json::from_slice(&compact_json)?;
        let sizes = [
            serde_json::to_vec(&env(old))?.len(),
            encode_compressed(&env(old))?.len(),
            encode_compressed(&env(chunk))?.len(),
            cbor(&env(chunk))?.len(),
            gzip_if_smaller(cbor(&env(chunk))?).len(),
            encode_compact(chunk, dict, false, false)?.len(),
            gzip_if_smaller(cbor(&compact_value)?).len(),
        ];
        for (t, s) in totals.iter_mut().zip(sizes) {
            *t += s;
        }
    }
    let n = samples.len() as f64;
    Ok(totals.iter().map(|t| *t as f64 / n).collect())
}

fn encodings(out: &mut String) -> anyhow::Result<()> {
    let samples = simulated_samples(1440, false);
    let legacy = simulated_samples(1440, true);
    let dict = PointDictionary::from_catalog(&default_map().catalog());
    writeln!(
        out,
        "encodings: payload bytes per sample, one simulated day of the 13-point chiller at 1/min\n\
         (gz: gzip when smaller; compact by id: without the dictionary's names, as live batches)"
    )?;
    writeln!(
        out,
        "| samples per batch | JSON before #22 | JSON before, gz | JSON rounded, gz | CBOR | CBOR, gz | compact (v2), gz | compact as CBOR, gz |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|")?;
    for size in [1usize, 5, 15, 60, 1440] {
        let row = encoding_row(&samples, &legacy, &dict, size)?;
        let cells: Vec<String> = row.iter().map(|b| format!("{b:.1}")).collect();
        writeln!(out, "| {size} | {} |", cells.join(" | "))?;
    }
    let names = shiki_proto::compact_json(&samples[..1], &dict, true, false)?.len()
        - shiki_proto::compact_json(&samples[..1], &dict, false, false)?.len();
    writeln!(
        out,
        "the dictionary's names add {names} B (uncompressed) to a batch that carries them"
    )?;
    let one = shiki_proto::compact_json(&samples[..1], &dict, false, false)?;
    writeln!(
        out,
        "a live compact batch of one sample ({} B): {}\n",
        one.len(),
        String::from_utf8_lossy(&one)
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// the byte-counting proxy

/// A TCP proxy counting the bytes it forwards each way; `cut` closes every connection and
/// refuses new ones until `restore`.
#[derive(Debug)]
struct CountingProxy {
    addr: SocketAddr,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
    link: watch::Sender<bool>,
}

impl CountingProxy {
    async fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (link, rx) = watch::channel(true);
        let up = Arc::new(AtomicU64::new(0));
        let down = Arc::new(AtomicU64::new(0));
        let (u, d) = (up.clone(), down.clone());
        actix::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !*rx.borrow() {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                actix::spawn(pipe(cr, sw, u.clone(), rx.clone()));
                actix::spawn(pipe(sr, cw, d.clone(), rx.clone()));
            }
        });
        Ok(Self {
            addr,
            up,
            down,
            link,
        })
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.up.load(Ordering::Relaxed),
            self.down.load(Ordering::Relaxed),
        )
    }

    fn cut(&self) {
        let _ = self.link.send(false);
    }

    fn restore(&self) {
        let _ = self.link.send(true);
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    count: Arc<AtomicU64>,
    mut link: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    count.fetch_add(n as u64, Ordering::Relaxed);
                    if to.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            },
            changed = link.changed() => {
                if changed.is_err() || !*link.borrow() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// the subscriber

/// What the subscriber saw: telemetry publishes, samples in arrival order, and whether the
/// device's catalog arrived.
#[derive(Debug, Default)]
struct Seen {
    publishes: u64,
    seqs: Vec<u64>,
}

async fn subscribe(
    broker: &shiki_edge::config::BrokerAddr,
    device: &DeviceId,
    topics: &Topics,
) -> anyhow::Result<(AsyncClient, mpsc::UnboundedReceiver<Option<Vec<u64>>>)> {
    let mut opts = MqttOptions::new(format!("{device}-sub"), broker.host.clone(), broker.port);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = AsyncClient::new(opts, 16);
    let telemetry = topics.topic_for(device, &Channel::Telemetry);
    let catalog = topics.topic_for(device, &Channel::Catalog);
    client.subscribe(&telemetry, QoS::AtLeastOnce).await?;
    client.subscribe(&catalog, QoS::AtLeastOnce).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    actix::spawn(async move {
        let mut dicts: BTreeMap<String, PointDictionary> = BTreeMap::new();
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == catalog => {
                    if let Ok(c) = decode::<Catalog>(&p.payload) {
                        let d = PointDictionary::from_catalog(&c);
                        dicts.insert(d.id().to_owned(), d);
                    }
                    let _ = tx.send(None);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let decoded = decode_telemetry(&p.payload, |id| dicts.get(id).cloned());
                    match decoded {
                        Ok((batch, carried)) => {
                            if let Some(d) = carried {
                                dicts.insert(d.id().to_owned(), d);
                            }
                            let _ = tx.send(Some(batch.samples.iter().map(|s| s.seq).collect()));
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "bench subscriber: undecodable telemetry");
                            let _ = tx.send(Some(Vec::new()));
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "bench subscriber disconnected");
                    break;
                }
            }
        }
    });
    Ok((client, rx))
}

impl Seen {
    fn take(&mut self, msg: Option<Vec<u64>>) {
        if let Some(seqs) = msg {
            self.publishes += 1;
            self.seqs.extend(seqs);
        }
    }

    /// Every seq `1..=n` arrived and the first arrivals are in order; answers duplicates.
    fn check(&self, n: u64) -> anyhow::Result<u64> {
        let mut next = 1;
        let mut dupes = 0;
        for &s in &self.seqs {
            if s == next {
                next += 1;
            } else if s < next {
                dupes += 1;
            } else {
                anyhow::bail!("seq {s} arrived before seq {next}: lost or reordered");
            }
        }
        anyhow::ensure!(next > n, "only seqs up to {} of {n} arrived", next - 1);
        Ok(dupes)
    }
}

// ---------------------------------------------------------------------------------------
// one run

/// What one run measured.
#[derive(Debug, Default, Clone, Copy)]
struct Measured {
    samples: u64,
    publishes: u64,
    /// MQTT bytes while sampling (after the connection was set up).
    up: u64,
    down: u64,
    /// MQTT bytes of the connection set-up (CONNECT … catalog, their acks).
    setup_up: u64,
    setup_down: u64,
    dupes: u64,
}

/// Waits until the proxy's counts stop moving for `quiet`.
async fn settle(proxy: &CountingProxy, quiet: Duration) -> (u64, u64) {
    let mut last = proxy.counts();
    loop {
        tokio::time::sleep(quiet).await;
        let now = proxy.counts();
        if now == last {
            return now;
        }
        last = now;
    }
}

async fn run_setting(
    args: &BenchArgs,
    base: &Path,
    index: usize,
    setting: Setting,
    samples: &[Sample],
    cut: bool,
) -> anyhow::Result<Measured> {
    let broker = parse_broker_url(&args.mqtt_url).map_err(anyhow::Error::msg)?;
    let upstream = tokio::net::lookup_host((broker.host.as_str(), broker.port))
        .await?
        .next()
        .context("broker address")?;
    let proxy = CountingProxy::start(upstream).await?;
    let device = DeviceId::new(format!(
        "link-{}-{index}-{}",
        std::process::id(),
        u8::from(cut)
    ))?;
    let topics = Topics::default();
    let (sub, mut seen_rx) = subscribe(&broker, &device, &topics).await?;
    let tick = Duration::from_millis(args.link_tick_ms);
    let (outbox, join) = open(base, &format!("link-{index}-{}.redb", u8::from(cut)))?;

    let mut cfg =
        shiki_edge::config::EdgeConfig::parse(&format!("device_id = \"{device}\""), "bench")?;
    cfg.mqtt.url = format!("mqtt://{}", proxy.addr);
    // No pings inside the measured window; they are added per keep-alive below.
    cfg.mqtt.keep_alive = Duration::from_secs(3600);
    let will = shiki_proto::encode(&shiki_proto::Status::last_will("bench", Utc::now()))?;
    let options = shiki_edge::uplink::mqtt_options(
        &cfg,
        topics.topic_for(&device, &Channel::Status),
        will,
        64,
    )?;
    let catalog = default_map().catalog();
    let sink = Sink.start();
    let uplink = Uplink::new(
        UplinkConfig {
            device_id: device.clone(),
            topics: topics.clone(),
            live_batch_max: (setting.delay_minutes as usize + 1).max(cfg.mqtt.live_batch_max),
            backlog_batch_bytes: cfg.mqtt.backlog_batch_bytes,
            max_inflight_batches: cfg.mqtt.max_inflight_batches,
            batch_max_delay: tick * setting.delay_minutes,
            compact: setting.compact,
            reconnect_min: tick,
            reconnect_max: tick * 2,
            software_version: "bench".into(),
            boot_time: Utc::now(),
            shutdown_grace: Duration::from_secs(2),
        },
        options,
        outbox.clone(),
        UplinkPeers::all(sink),
        catalog,
        (0, 0),
    )
    .start();

    // Connection set-up: until the catalog reached the subscriber and the link is quiet.
    let mut seen = Seen::default();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), seen_rx.recv()).await {
            Ok(Some(None)) => break,
            Ok(Some(other)) => seen.take(other),
            _ => anyhow::bail!("the edge's catalog did not reach the broker within 10 s"),
        }
    }
    let (setup_up, setup_down) = settle(&proxy, tick.max(Duration::from_millis(100))).await;

    let n = samples.len() as u64;
    let mut interval = tokio::time::interval(tick);
    let mut appended = Vec::with_capacity(samples.len());
    for (i, s) in samples.iter().enumerate() {
        interval.tick().await;
        if cut && i as u64 == n / 2 {
            proxy.cut();
        }
        if cut && i as u64 == n / 2 + 7 {
            proxy.restore();
        }
        appended.push(outbox.submit(WriteOp::Append(NewRecord::Sample {
            ts: s.ts,
            values: s.values.clone(),
        })));
        while let Ok(msg) = seen_rx.try_recv() {
            seen.take(msg);
        }
    }
    for rx in appended {
        rx.await.context("outbox writer gone")??;
    }
    // Until every sample arrived and the outbox is empty (all acknowledged).
    let wait = tick * (setting.delay_minutes + 20) + Duration::from_secs(20);
    tokio::time::timeout(wait, async {
        while seen.check(n).is_err() {
            match seen_rx.recv().await {
                Some(msg) => seen.take(msg),
                None => return,
            }
        }
    })
    .await
    .with_context(|| {
        format!(
            "{}: not every sample arrived within {wait:?}",
            setting.label
        )
    })?;
    let dupes = seen.check(n)?;
    loop {
        if outbox.stats().await?.pending_telemetry == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (up, down) = settle(&proxy, tick.max(Duration::from_millis(100))).await;
    let _ = uplink.send(Shutdown).await;
    let _ = sub.disconnect().await;
    let last = outbox.stats().await?.last_seq(Stream::Telemetry);
    anyhow::ensure!(last == n, "outbox holds seq {last}, expected {n}");
    outbox.close().await;
    let _ = join.join();
    Ok(Measured {
        samples: n,
        publishes: seen.publishes,
        up: up - setup_up,
        down: down - setup_down,
        setup_up,
        setup_down,
        dupes,
    })
}

/// Per device-day figures at one sample a minute with `keep_alive`.
fn per_day(m: &Measured, keep_alive: Duration) -> (u64, u64, u64) {
    let pings = SECONDS_PER_DAY / keep_alive.as_secs().max(1);
    let scale = |x: u64| x * SAMPLES_PER_DAY / m.samples.max(1);
    let up = scale(m.up) + pings * 2;
    let down = scale(m.down) + pings * 2;
    let exchanges = scale(m.publishes) + pings;
    let wire = up + down + exchanges * SEGMENTS_PER_EXCHANGE * TCP_IP_HEADER;
    (up, down, wire)
}

pub(crate) async fn run(args: &BenchArgs, base: &Path, out: &mut String) -> anyhow::Result<()> {
    encodings(out)?;
    let n = args.link_samples;
    writeln!(
        out,
        "link: {n} samples per run through a byte-counting proxy to {} (a sample every {} ms \
         standing for one a minute); MQTT bytes = payload + MQTT framing, counted by the proxy",
        args.mqtt_url, args.link_tick_ms
    )?;
    writeln!(
        out,
        "| setting | publishes per sample | up B/sample | down B/sample | MQTT up+down per day (keep-alive 60s) | share of before #22 | with TCP/IP per day, keep-alive 60s / 5m / 20m | per 30 days with TCP/IP, keep-alive 60s / 5m / 20m | link cut |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|")?;
    let mut baseline = None;
    let mut setups = Vec::new();
    let keep_alives = [60u64, 300, 1200].map(Duration::from_secs);
    for (i, setting) in SETTINGS.into_iter().enumerate() {
        let samples = simulated_samples(n, setting.legacy);
        let m = run_setting(args, base, i, setting, &samples, false).await?;
        let c = run_setting(args, base, i, setting, &samples, true).await?;
        let (up, down, _) = per_day(&m, keep_alives[0]);
        let wire = keep_alives.map(|k| per_day(&m, k).2);
        let mqtt = up + down;
        let base_day = *baseline.get_or_insert(mqtt);
        let day: Vec<String> = wire
            .iter()
            .map(|w| format!("{:.1}", *w as f64 / 1e3))
            .collect();
        let month: Vec<String> = wire
            .iter()
            .map(|w| format!("{:.2}", *w as f64 * 30.0 / 1e6))
            .collect();
        writeln!(
            out,
            "| {} | {:.2} | {:.1} | {:.1} | {:.1} kB | {:.1} % | {} kB | {} MB | none lost or reordered, {} duplicates |",
            setting.label,
            m.publishes as f64 / m.samples as f64,
            m.up as f64 / m.samples as f64,
            m.down as f64 / m.samples as f64,
            mqtt as f64 / 1000.0,
            100.0 * mqtt as f64 / base_day as f64,
            day.join(" / "),
            month.join(" / "),
            c.dupes
        )?;
        setups.push((setting.label, m.setup_up, m.setup_down));
    }
    writeln!(
        out,
        "per day: 1440 samples; pings 2 B each way per keep-alive; TCP/IP estimate {TCP_IP_HEADER} B \
         (IPv4 + TCP with timestamps) x {SEGMENTS_PER_EXCHANGE} segments per publish and per ping"
    )?;
    for (label, up, down) in setups {
        writeln!(
            out,
            "connection set-up ({label}): {up} B up, {down} B down (CONNECT, SUBSCRIBE, status, catalog, shadow/get and their acks)"
        )?;
    }
    Ok(())
}
