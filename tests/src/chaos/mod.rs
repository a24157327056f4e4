//! The fault campaign behind `shiki-chaos` (issue #21): the real processes on loopback — a
//! cloud with its embedded broker and redb, several edges, a simulated PLC per edge behind
//! a [`PlcProxy`], each edge's link behind a cuttable [`TcpProxy`] — and, round after
//! round, faults drawn from a seed ([`plan`]): SIGKILL of an edge at random points (in its
//! group commits, during a backlog drain over a slow link), SIGKILL and restarts of the
//! cloud (and with it the broker), link cuts of seconds and of "hours" (tens of seconds at
//! five samples a second are hours of samples at one a minute), the PLC refusing
//! connections or answering Modbus exceptions, one edge's disk quota filling up; and an
//! operator changing settings meanwhile.
//!
//! At the end every fault is healed and the invariants are checked from outside
//! ([`check`]): each edge's outbox counters (`shiki-edge outbox`, read while it is
//! stopped) against the seqs the cloud serves — none lost beyond the drops the edge
//! reported, none duplicated — every desired change settled (verified, or failed with a
//! reason), and the PLC register, watched directly, following the yearly schedule
//! whenever the edge and its PLC were up, whether or not the link was.

pub mod check;
pub mod plan;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Timelike, Utc};
use serde_json::{Value, json};
use tokio::time::Instant;

use self::check::{ScheduleCheck, StreamCheck, Track};
use self::plan::{Fault, Plan};
use crate::plc_proxy::{PlcFault, PlcProxy};
use crate::{Api, Cloud, Edge, EdgeOptions, PlcSim, TcpProxy, bin_path, wait_for};

/// Holding register 40002 (protocol address 1): `chw_setpoint_c`, raw = value × 10.
const CHW_SETPOINT: u16 = 1;
/// The schedule's two values of `chw_setpoint_c`, raw.
const SCHEDULE_VALUES: [u16; 2] = [75, 85];
/// How long the edge may take to write a schedule transition to the PLC.
const SETTLE: Duration = Duration::from_secs(5);
/// How often the PLC register is read.
const WATCH_EVERY: Duration = Duration::from_millis(250);
/// Telemetry interval of every edge (five samples a second).
const TELEMETRY_INTERVAL: &str = "200ms";
/// The outbox quota of edge 0: a long cut fills it.
const SMALL_QUOTA_KIB: u64 = 16;
/// The documented example configuration, whose `[plc]` section (the default register map)
/// every edge uses.
const EDGE_EXAMPLE: &str = include_str!("../../../deploy/edge.example.toml");

/// The example's `[plc]` section with a 1 s poll and PLC reconnects within 2 s, so an edge
/// notices a recovered PLC within the checks' settle time.
fn plc_section() -> anyhow::Result<String> {
    let start = EDGE_EXAMPLE
        .find("\n[plc]\n")
        .context("deploy/edge.example.toml has no [plc] section")?;
    let end = EDGE_EXAMPLE
        .find("\n[control]\n")
        .context("deploy/edge.example.toml has no [control] section")?;
    let section = &EDGE_EXAMPLE[start..end];
    let mut out = String::with_capacity(section.len());
    for line in section.lines() {
        let key = line.split('=').next().unwrap_or_default().trim();
        match key {
            "poll_interval" => out.push_str("poll_interval = \"1s\""),
            "reconnect_max" => out.push_str("reconnect_max = \"2s\""),
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    Ok(out)
}

/// What a campaign runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    pub rounds: u32,
    pub edges: usize,
    /// Length of a round (faults start in its first half; long ones run past its end).
    pub round: Duration,
    /// How long the final checks wait for the backlogs to drain and changes to settle.
    pub settle_timeout: Duration,
    /// Keep the processes' logs and data here (default: a temporary directory, removed).
    pub dir: Option<PathBuf>,
    pub broker: Broker,
}

/// The broker the campaign runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Broker {
    /// The cloud's embedded broker (restarted with the cloud).
    #[default]
    Embedded,
    /// An external Mosquitto with persistence, restarted on its own as a fault too.
    Mosquitto,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            seed: 1,
            rounds: 100,
            edges: 3,
            round: Duration::from_secs(6),
            settle_timeout: Duration::from_secs(180),
            dir: None,
            broker: Broker::Embedded,
        }
    }
}

/// What a campaign found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub seed: u64,
    pub broker: Broker,
    pub rounds: u32,
    /// Faults injected, by kind (operator changes not counted as faults).
    pub faults: BTreeMap<&'static str, u32>,
    pub telemetry: StreamCheck,
    pub events: StreamCheck,
    pub desired: BTreeMap<String, u32>,
    pub schedule: ScheduleCheck,
    /// `schedule_transition` events the cloud holds twice for the same instant.
    pub transition_events_repeated: u32,
    pub elapsed: Duration,
    /// Every broken invariant, spelled out.
    pub violations: Vec<String>,
}

impl Report {
    pub fn fault_count(&self) -> u32 {
        self.faults.values().sum()
    }

    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "rounds {}, faults {}, samples {}, lost {}, duplicated {}",
            self.rounds,
            self.fault_count(),
            self.telemetry.committed,
            self.telemetry.lost,
            self.telemetry.duplicated
        )?;
        writeln!(
            f,
            "  samples dropped by the edges' quota and reported: {}",
            self.telemetry.dropped
        )?;
        writeln!(
            f,
            "  events {}, lost {}, duplicated {} (dropped and reported {})",
            self.events.committed, self.events.lost, self.events.duplicated, self.events.dropped
        )?;
        let desired: Vec<String> = self
            .desired
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        writeln!(f, "  desired changes: {}", desired.join(", "))?;
        let s = &self.schedule;
        writeln!(
            f,
            "  schedule: {} transitions with edge and PLC up ({} while offline), {} reached \
             the PLC; register checked {} times, {} wrong; transition events repeated {}",
            s.transitions,
            s.offline,
            s.reached,
            s.checked,
            s.wrong.len(),
            self.transition_events_repeated
        )?;
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        writeln!(f, "  faults: {}", faults.join(", "))?;
        writeln!(f, "  took {:.0} s", self.elapsed.as_secs_f64())?;
        for v in &self.violations {
            writeln!(f, "  VIOLATION: {v}")?;
        }
        let broker = match self.broker {
            Broker::Embedded => "",
            Broker::Mosquitto => " --broker mosquitto",
        };
        write!(
            f,
            "seed {} (replay: scripts/chaos --seed {} --rounds {}{broker})",
            self.seed, self.seed, self.rounds
        )
    }
}

/// Runs a campaign; the report says whether the invariants held (an `Err` is a campaign
/// that could not run: a process that would not start, the API unreachable at the end).
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    let started = Instant::now();
    let temp;
    let dir = match &opts.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            temp = crate::temp_dir("chaos")?;
            temp.path().to_owned()
        }
    };
    let mut c = Campaign::start(&dir, opts).await?;
    let mut plan = Plan::new(opts.seed, opts.edges, opts.round);
    if opts.broker == Broker::Mosquitto {
        plan = plan.with_broker_restarts();
    }
    let mut report = Report {
        seed: opts.seed,
        broker: opts.broker,
        rounds: opts.rounds,
        ..Report::default()
    };
    for round in 1..=opts.rounds {
        let faults = plan.round();
        let text: Vec<String> = faults.iter().map(ToString::to_string).collect();
        tracing::info!(round, faults = %text.join("; "), "chaos round");
        for f in faults.iter().filter(|f| f.is_fault()) {
            *report.faults.entry(f.kind()).or_default() += 1;
        }
        c.play(&faults, opts.round).await?;
        c.heal().await?;
    }
    c.finish(opts, &mut report).await?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// One timed step of a round.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    KillEdge(usize),
    StartEdge(usize),
    Cut(usize),
    Restore(usize),
    Slow(usize, Duration),
    KillCloud,
    RestartCloud,
    StartCloud,
    RestartBroker,
    Plc(usize, PlcFault, bool),
    Desired(usize, f64),
}

/// The steps of `faults`, by time.
fn actions(faults: &[Fault]) -> Vec<(Duration, Action)> {
    let mut out = Vec::new();
    let half_second = Duration::from_millis(500);
    for f in faults {
        match *f {
            Fault::EdgeKill { edge, at, down } => {
                out.push((at, Action::KillEdge(edge)));
                out.push((at + down, Action::StartEdge(edge)));
            }
            Fault::KillDuringDrain {
                edge,
                at,
                cut,
                after,
            } => {
                out.push((at, Action::Cut(edge)));
                out.push((at + cut, Action::Slow(edge, Duration::from_millis(150))));
                out.push((at + cut, Action::Restore(edge)));
                out.push((at + cut + after, Action::KillEdge(edge)));
                out.push((
                    at + cut + after + half_second,
                    Action::Slow(edge, Duration::ZERO),
                ));
                out.push((at + cut + after + half_second, Action::StartEdge(edge)));
            }
            Fault::CloudKill { at, down } => {
                out.push((at, Action::KillCloud));
                out.push((at + down, Action::StartCloud));
            }
            Fault::CloudRestart { at } => out.push((at, Action::RestartCloud)),
            Fault::BrokerRestart { at } => out.push((at, Action::RestartBroker)),
            Fault::LinkCut { edge, at, for_ } => {
                out.push((at, Action::Cut(edge)));
                out.push((at + for_, Action::Restore(edge)));
            }
            Fault::PlcRefuses { edge, at, for_ } => {
                out.push((at, Action::Plc(edge, PlcFault::Refuse, true)));
                out.push((at + for_, Action::Plc(edge, PlcFault::Refuse, false)));
            }
            Fault::PlcExceptions { edge, at, for_ } => {
                out.push((at, Action::Plc(edge, PlcFault::Exceptions, true)));
                out.push((at + for_, Action::Plc(edge, PlcFault::Exceptions, false)));
            }
            Fault::Desired { edge, at, value } => out.push((at, Action::Desired(edge, value))),
        }
    }
    out.sort_by_key(|(at, _)| *at);
    out
}

/// The PLC register over time, as the watcher read it.
type Readings = Arc<Mutex<Vec<(DateTime<Utc>, u16)>>>;

/// One gateway: its PLC simulator, the faulty PLC proxy, the cuttable link and the edge.
struct Gateway {
    device: String,
    opts: EdgeOptions,
    edge: Option<Edge>,
    starts: u32,
    link: TcpProxy,
    plc: PlcProxy,
    /// Kept running for the campaign (the watcher reads it directly).
    _sim: PlcSim,
    /// Cuts in force (faults overlap).
    cuts: u32,
    refusals: u32,
    exceptions: u32,
    alive: Track,
    link_up: Track,
    plc_ok: Track,
    observed: Readings,
    watcher: tokio::task::JoinHandle<()>,
    /// Desired versions the operator set that changed the value (each must settle).
    desired: Vec<u64>,
    /// The value the operator last set, and how often it was set again unchanged (no
    /// change, so nothing to verify).
    last_desired: Option<f64>,
    unchanged: u32,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// The cloud process, restarted on the same data directory.
struct CloudProc {
    cloud: Option<Cloud>,
    starts: u32,
    data: PathBuf,
    logs: PathBuf,
    /// An external broker: its address, and the config file naming it.
    external: Option<(SocketAddr, PathBuf)>,
}

impl CloudProc {
    async fn start(&mut self) -> anyhow::Result<(Api, SocketAddr)> {
        self.starts += 1;
        let name = format!("cloud-{}", self.starts);
        let cloud = match &self.external {
            Some((_, config)) => {
                Cloud::start(&name, &self.data, &self.logs, None, Some(config)).await?
            }
            None => {
                let any = SocketAddr::from(([127, 0, 0, 1], 0));
                Cloud::start(&name, &self.data, &self.logs, Some(any), None).await?
            }
        };
        let api = cloud.api.clone();
        let mqtt = match &self.external {
            Some((addr, _)) => *addr,
            None => cloud.mqtt.context("the cloud runs no embedded broker")?,
        };
        self.cloud = Some(cloud);
        Ok((api, mqtt))
    }
}

struct Campaign {
    dir: PathBuf,
    cloud: CloudProc,
    /// The external broker, when the campaign runs one.
    mosquitto: Option<crate::mosquitto::Mosquitto>,
    api: Api,
    gateways: Vec<Gateway>,
    transitions: Vec<(DateTime<Utc>, u16)>,
    /// Operator changes waiting for the cloud to come back.
    queued: Vec<(usize, f64)>,
}

impl Campaign {
    async fn start(dir: &Path, opts: &Options) -> anyhow::Result<Self> {
        let mosquitto = match opts.broker {
            Broker::Embedded => None,
            Broker::Mosquitto => {
                let broker_dir = dir.join("mosquitto");
                std::fs::create_dir_all(&broker_dir)?;
                Some(crate::mosquitto::Mosquitto::start_persistent(&broker_dir).await?)
            }
        };
        let external = match &mosquitto {
            Some(m) => {
                let config = dir.join("cloud.toml");
                std::fs::write(&config, format!("[mqtt]\nurl = {:?}\n", m.url()))?;
                Some((SocketAddr::from(([127, 0, 0, 1], m.port)), config))
            }
            None => None,
        };
        let mut cloud = CloudProc {
            cloud: None,
            starts: 0,
            data: dir.join("cloud-data"),
            logs: dir.to_owned(),
            external,
        };
        let (api, mqtt) = cloud.start().await?;
        let mut gateways = Vec::with_capacity(opts.edges);
        for i in 0..opts.edges {
            let device = format!("chaos-{i}");
            let sim = PlcSim::start(dir).await?;
            let plc = PlcProxy::start(sim.addr).await?;
            let link = TcpProxy::start(mqtt).await?;
            let mut opts =
                EdgeOptions::new(&device, format!("mqtt://{}", link.addr()), Some(plc.addr()))
                    .with_password(api.register_device(&device).await?);
            opts.telemetry_interval = TELEMETRY_INTERVAL;
            // Small backlog batches, one at a time: a drain takes many round trips.
            opts.extra_toml = "[mqtt]\nreconnect_min = \"200ms\"\nreconnect_max = \"1s\"\n\
                               max_inflight_batches = 1\nbacklog_batch_bytes = 16384\n"
                .into();
            opts.extra_toml.push_str(&plc_section()?);
            match i {
                // Edge 0's quota fills during a long cut.
                0 => {
                    opts.extra_toml
                        .push_str(&format!("[outbox]\nquota_kib = {SMALL_QUOTA_KIB}\n"));
                }
                // Edge 1 commits its samples in groups (a kill loses the open group only).
                1 => opts
                    .extra_toml
                    .push_str("[outbox]\ncommit_interval = \"1s\"\n"),
                _ => {}
            }
            let observed = Arc::new(Mutex::new(Vec::new()));
            let watcher = tokio::spawn(watch_register(sim.addr, observed.clone()));
            gateways.push(Gateway {
                device,
                opts,
                edge: None,
                starts: 0,
                link,
                plc,
                _sim: sim,
                cuts: 0,
                refusals: 0,
                exceptions: 0,
                alive: Track::new(false),
                link_up: Track::new(true),
                plc_ok: Track::new(true),
                observed,
                watcher,
                desired: Vec::new(),
                last_desired: None,
                unchanged: 0,
            });
        }
        let mut c = Self {
            dir: dir.to_owned(),
            cloud,
            mosquitto,
            api,
            gateways,
            transitions: Vec::new(),
            queued: Vec::new(),
        };
        for i in 0..c.gateways.len() {
            c.start_edge(i).await?;
        }
        for g in &c.gateways {
            c.api
                .wait_device_ready(&g.device, Duration::from_secs(60))
                .await?;
        }
        c.install_schedules(opts).await?;
        Ok(c)
    }

    /// A yearly schedule on every edge that moves `chw_setpoint_c` between 7.5 and 8.5 °C
    /// every minute for the whole campaign. Its time zone puts the campaign near local
    /// noon, so the day's profile never wraps past midnight.
    async fn install_schedules(&mut self, opts: &Options) -> anyhow::Result<()> {
        let now = Utc::now();
        let shift = 12 - i64::from(now.hour());
        let zone = match shift {
            0 => "Etc/GMT".to_owned(),
            // POSIX signs: Etc/GMT-3 is three hours ahead of UTC.
            s if s > 0 => format!("Etc/GMT-{s}"),
            s => format!("Etc/GMT+{}", -s),
        };
        let offset =
            chrono::FixedOffset::east_opt((shift * 3600) as i32).context("a whole-hour offset")?;
        let per_round = opts.round.as_secs() + 20;
        let minutes = (u64::from(opts.rounds) * per_round / 60 + 10).min(250);
        let first = (now + chrono::Duration::seconds(10))
            .with_second(0)
            .and_then(|t| t.with_nanosecond(0))
            .context("a whole minute")?
            + chrono::Duration::minutes(1);
        let mut entries = Vec::new();
        self.transitions.clear();
        for m in 0..minutes as i64 {
            let at = first + chrono::Duration::minutes(m);
            let raw = SCHEDULE_VALUES[(m % 2) as usize];
            self.transitions.push((at, raw));
            entries.push(json!({
                "time": at.with_timezone(&offset).format("%H:%M").to_string(),
                "settings": { "chw_setpoint_c": f64::from(raw) / 10.0 },
            }));
        }
        let today = now.with_timezone(&offset).date_naive();
        let doc = json!({
            "id": format!("chaos-{}", opts.seed),
            "timezone": zone,
            "valid_from": today.to_string(),
            "valid_to": (today + chrono::Duration::days(1)).to_string(),
            "defaults": { "chw_setpoint_c": 8.0 },
            "profiles": { "day": entries },
            "seasons": [{ "name": "all-year", "from": "01-01", "to": "12-31",
                          "weekday": "day", "saturday": "day", "sunday": "day" }],
        });
        for g in &self.gateways {
            let (status, body) = self
                .api
                .put_schedule(&g.device, Some("current"), &doc)
                .await?;
            anyhow::ensure!(
                matches!(status, 200 | 202),
                "PUT schedule of {}: {status} {body}",
                g.device
            );
            let hash = body["schedule"]["current"]["hash"]
                .as_str()
                .context("no hash in the PUT schedule answer")?
                .to_owned();
            self.api
                .wait_schedule_acked(&g.device, "current", &hash, Duration::from_secs(60))
                .await?;
        }
        Ok(())
    }

    async fn start_edge(&mut self, i: usize) -> anyhow::Result<()> {
        let g = &mut self.gateways[i];
        if g.edge.is_some() {
            return Ok(());
        }
        g.starts += 1;
        let name = format!("{}-{}", g.device, g.starts);
        let edge = Edge::start(&name, &self.dir, &g.opts).await?;
        g.alive.set(Utc::now(), true);
        g.edge = Some(edge);
        Ok(())
    }

    fn kill_edge(&mut self, i: usize) {
        let g = &mut self.gateways[i];
        if let Some(mut edge) = g.edge.take() {
            edge.child.kill9();
            g.alive.set(Utc::now(), false);
        }
    }

    async fn start_cloud(&mut self) -> anyhow::Result<()> {
        if self.cloud.cloud.is_some() {
            return Ok(());
        }
        let (api, mqtt) = self.cloud.start().await?;
        self.api = api;
        for g in &self.gateways {
            g.link.set_upstream(mqtt);
        }
        for (edge, value) in std::mem::take(&mut self.queued) {
            self.desire(edge, value).await?;
        }
        Ok(())
    }

    /// The operator's change through the API (queued while the cloud is down).
    async fn desire(&mut self, i: usize, value: f64) -> anyhow::Result<()> {
        if self.cloud.cloud.is_none() {
            self.queued.push((i, value));
            return Ok(());
        }
        let device = self.gateways[i].device.clone();
        let (status, body) = self
            .api
            .patch_desired(&device, json!({ "hw_setpoint_c": value }), "chaos")
            .await?;
        anyhow::ensure!(status == 200, "PATCH desired of {device}: {status} {body}");
        let version = body["version"]
            .as_u64()
            .with_context(|| format!("no version in the PATCH answer {body}"))?;
        let g = &mut self.gateways[i];
        // Set again to what it was: the cloud records and verifies nothing.
        if g.last_desired == Some(value) {
            g.unchanged += 1;
        } else {
            g.desired.push(version);
        }
        g.last_desired = Some(value);
        Ok(())
    }

    fn set_link(&mut self, i: usize, cut: bool) {
        let g = &mut self.gateways[i];
        if cut {
            g.cuts += 1;
        } else {
            g.cuts = g.cuts.saturating_sub(1);
        }
        if g.cuts > 0 {
            g.link.cut();
        } else {
            g.link.restore();
        }
        g.link_up.set(Utc::now(), g.cuts == 0);
    }

    fn set_plc(&mut self, i: usize, fault: PlcFault, on: bool) {
        let g = &mut self.gateways[i];
        let counter = match fault {
            PlcFault::Refuse => &mut g.refusals,
            PlcFault::Exceptions => &mut g.exceptions,
            PlcFault::None => return,
        };
        if on {
            *counter += 1;
        } else {
            *counter = counter.saturating_sub(1);
        }
        let now = if g.refusals > 0 {
            PlcFault::Refuse
        } else if g.exceptions > 0 {
            PlcFault::Exceptions
        } else {
            PlcFault::None
        };
        g.plc.set(now);
        g.plc_ok.set(Utc::now(), now == PlcFault::None);
    }

    /// Plays one round's faults at their times; returns when the round's time is over
    /// and its last step was taken.
    async fn play(&mut self, faults: &[Fault], round: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        for (at, action) in actions(faults) {
            // The scenario's timing (when a fault strikes), not synchronisation.
            tokio::time::sleep_until(start + at).await;
            match action {
                Action::KillEdge(i) => self.kill_edge(i),
                Action::StartEdge(i) => self.start_edge(i).await?,
                Action::Cut(i) => self.set_link(i, true),
                Action::Restore(i) => self.set_link(i, false),
                Action::Slow(i, d) => self.gateways[i].link.set_delay(d),
                Action::KillCloud => {
                    if let Some(mut cloud) = self.cloud.cloud.take() {
                        cloud.child.kill9();
                    }
                }
                Action::RestartCloud => {
                    if let Some(mut cloud) = self.cloud.cloud.take() {
                        cloud.child.terminate()?;
                    }
                    self.start_cloud().await?;
                }
                Action::StartCloud => self.start_cloud().await?,
                Action::RestartBroker => {
                    if let Some(m) = self.mosquitto.as_mut() {
                        m.restart().await?;
                    }
                }
                Action::Plc(i, fault, on) => self.set_plc(i, fault, on),
                Action::Desired(i, value) => self.desire(i, value).await?,
            }
        }
        tokio::time::sleep_until(start + round).await;
        Ok(())
    }

    /// Ends every fault: links up at full speed, PLCs answering, every process running.
    async fn heal(&mut self) -> anyhow::Result<()> {
        self.start_cloud().await?;
        for i in 0..self.gateways.len() {
            let g = &mut self.gateways[i];
            g.cuts = 0;
            g.link.set_delay(Duration::ZERO);
            if !g.link_up.at(Utc::now()) {
                g.link.restore();
                g.link_up.set(Utc::now(), true);
            }
            g.refusals = 0;
            g.exceptions = 0;
            if g.plc.fault() != PlcFault::None {
                g.plc.set(PlcFault::None);
                g.plc_ok.set(Utc::now(), true);
            }
            self.start_edge(i).await?;
        }
        Ok(())
    }

    /// Reads every edge's outbox counters (stopping it for that), then waits for the
    /// cloud to hold everything and for the changes to settle, and checks.
    async fn finish(&mut self, opts: &Options, report: &mut Report) -> anyhow::Result<()> {
        let edge_bin = bin_path("shiki-edge")?;
        let mut counters = Vec::new();
        for i in 0..self.gateways.len() {
            let g = &mut self.gateways[i];
            if let Some(mut edge) = g.edge.take() {
                edge.child.terminate()?;
                g.alive.set(Utc::now(), false);
            }
            let data = self.dir.join(format!("{}-data", g.device));
            let out = std::process::Command::new(&edge_bin)
                .args(["outbox", "--data-dir"])
                .arg(&data)
                .output()
                .context("running shiki-edge outbox")?;
            anyhow::ensure!(
                out.status.success(),
                "shiki-edge outbox --data-dir {}: {}",
                data.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let stats: Value =
                serde_json::from_slice(&out.stdout).context("shiki-edge outbox printed no JSON")?;
            tracing::info!(device = %g.device, %stats, "edge outbox after the campaign");
            counters.push(stats);
            // Started again to deliver what it still holds.
            self.start_edge(i).await?;
        }
        let checks = wait_for(
            "every committed sample and event in the cloud",
            opts.settle_timeout,
            || async {
                let checks = self.stream_checks(&counters).await.ok()?;
                checks
                    .iter()
                    .all(|(t, e)| t.lost == 0 && e.lost == 0)
                    .then_some(checks)
            },
        )
        .await;
        let checks = match checks {
            Ok(c) => c,
            // Not all there after the timeout: report what is missing.
            Err(_) => self.stream_checks(&counters).await?,
        };
        for (g, (t, e)) in self.gateways.iter().zip(&checks) {
            for (what, c) in [("samples", t), ("events", e)] {
                if !c.complete() {
                    report.violations.push(format!(
                        "{}: {what} committed {}, dropped {}, in the cloud {}: lost {}, \
                         duplicated {}",
                        g.device, c.committed, c.dropped, c.stored, c.lost, c.duplicated
                    ));
                }
            }
            add(&mut report.telemetry, t);
            add(&mut report.events, e);
        }
        self.check_desired(opts, report).await?;
        self.check_schedule(report).await;
        Ok(())
    }

    /// Telemetry and event checks per gateway against the edge's counters.
    async fn stream_checks(
        &self,
        counters: &[Value],
    ) -> anyhow::Result<Vec<(StreamCheck, StreamCheck)>> {
        let mut out = Vec::new();
        for (g, c) in self.gateways.iter().zip(counters) {
            let n = |k: &str| c[k].as_u64().unwrap_or(0);
            let samples = self.telemetry_seqs(&g.device).await?;
            let events: Vec<u64> = self
                .events(&g.device)
                .await?
                .iter()
                .filter_map(|e| e["seq"].as_u64())
                .collect();
            out.push((
                StreamCheck::of(n("last_telemetry_seq"), n("dropped_telemetry"), &samples),
                StreamCheck::of(n("last_event_seq"), n("dropped_events"), &events),
            ));
        }
        Ok(out)
    }

    /// Every stored telemetry seq of `device` (the CSV export: up to 100,000 rows).
    async fn telemetry_seqs(&self, device: &str) -> anyhow::Result<Vec<u64>> {
        let r = self
            .api
            .http()
            .get(self.api.url(&format!(
                "/devices/{device}/telemetry?format=csv&limit=100000"
            )))
            .bearer_auth(crate::stack::ADMIN_TOKEN)
            .send()
            .await?;
        anyhow::ensure!(
            r.status().is_success(),
            "telemetry of {device}: {}",
            r.status()
        );
        let text = r.text().await?;
        Ok(text
            .lines()
            .skip(1)
            .filter_map(|l| l.split(',').next()?.parse().ok())
            .collect())
    }

    async fn events(&self, device: &str) -> anyhow::Result<Vec<Value>> {
        let (status, v) = self
            .api
            .get(&format!("/devices/{device}/events?limit=10000"))
            .await?;
        anyhow::ensure!(status == 200, "events of {device}: {status} {v}");
        Ok(v["events"].as_array().cloned().unwrap_or_default())
    }

    /// Every change the operator made is verified, or failed (or superseded) with a reason.
    async fn check_desired(&self, opts: &Options, report: &mut Report) -> anyhow::Result<()> {
        for g in &self.gateways {
            let settled = wait_for(
                &format!("the desired changes of {} to settle", g.device),
                opts.settle_timeout,
                || async {
                    let history = self.history(&g.device).await.ok()?;
                    let outcomes: Vec<(u64, Value)> = g
                        .desired
                        .iter()
                        .map(|v| (*v, outcome(&history, *v)))
                        .collect();
                    outcomes
                        .iter()
                        .all(|(_, o)| o["outcome"].as_str().is_some_and(|s| s != "pending"))
                        .then_some(outcomes)
                },
            )
            .await;
            let outcomes = match settled {
                Ok(o) => o,
                Err(_) => {
                    let history = self.history(&g.device).await?;
                    g.desired
                        .iter()
                        .map(|v| (*v, outcome(&history, *v)))
                        .collect()
                }
            };
            if g.unchanged > 0 {
                *report.desired.entry("unchanged".into()).or_default() += g.unchanged;
            }
            for (version, o) in outcomes {
                let name = o["outcome"].as_str().unwrap_or("missing").to_owned();
                *report.desired.entry(name.clone()).or_default() += 1;
                match name.as_str() {
                    "verified" => {}
                    "failed" | "superseded" if has_reason(&o) => {}
                    _ => report.violations.push(format!(
                        "{}: hw_setpoint_c v{version} did not settle with a reason: {o}",
                        g.device
                    )),
                }
            }
        }
        Ok(())
    }

    async fn history(&self, device: &str) -> anyhow::Result<Vec<Value>> {
        let (status, v) = self
            .api
            .get(&format!("/devices/{device}/history?limit=10000"))
            .await?;
        anyhow::ensure!(status == 200, "history of {device}: {status} {v}");
        Ok(v["history"].as_array().cloned().unwrap_or_default())
    }

    /// The PLC register followed the schedule whenever edge and PLC were up.
    async fn check_schedule(&self, report: &mut Report) {
        let until = Utc::now();
        for g in &self.gateways {
            let observed = g.observed.lock().map(|o| o.clone()).unwrap_or_default();
            let healthy = g.alive.and(&g.plc_ok);
            let c = ScheduleCheck::of(
                &observed,
                &self.transitions,
                &healthy,
                &g.link_up,
                SETTLE,
                until,
            );
            for (at, value) in &c.missed {
                report.violations.push(format!(
                    "{}: the schedule's transition to {value} at {at} did not reach the PLC \
                     within {SETTLE:?}",
                    g.device
                ));
            }
            if let Some((at, seen, expected)) = c.wrong.first() {
                report.violations.push(format!(
                    "{}: the PLC held {seen} at {at}, the schedule says {expected} ({} such \
                     readings)",
                    g.device,
                    c.wrong.len()
                ));
            }
            let s = &mut report.schedule;
            s.transitions += c.transitions;
            s.offline += c.offline;
            s.reached += c.reached;
            s.checked += c.checked;
            s.wrong.extend(c.wrong);
            s.missed.extend(c.missed);
            // Each transition instant once in the cloud's events.
            if let Ok(events) = self.events(&g.device).await {
                let mut seen: BTreeMap<String, u32> = BTreeMap::new();
                for e in events.iter().filter(|e| e["kind"] == "schedule_transition") {
                    *seen.entry(e["ts"].to_string()).or_default() += 1;
                }
                let repeated: u32 = seen.values().map(|n| n - 1).sum();
                if repeated > 0 {
                    report.violations.push(format!(
                        "{}: {repeated} schedule_transition events repeat an instant",
                        g.device
                    ));
                }
                report.transition_events_repeated += repeated;
            }
        }
    }
}

fn add(total: &mut StreamCheck, c: &StreamCheck) {
    total.committed += c.committed;
    total.dropped += c.dropped;
    total.stored += c.stored;
    total.lost += c.lost;
    total.duplicated += c.duplicated;
}

/// The verification of `hw_setpoint_c` at `version` in a device's history (`null` if
/// none).
fn outcome(history: &[Value], version: u64) -> Value {
    history
        .iter()
        .find(|h| h["side"] == "desired" && h["key"] == "hw_setpoint_c" && h["version"] == version)
        .map(|h| h["verification"].clone())
        .unwrap_or(Value::Null)
}

fn has_reason(v: &Value) -> bool {
    v["reason"].as_str().is_some_and(|r| !r.trim().is_empty())
}

/// Reads the PLC simulator's `chw_setpoint_c` register directly (not through the faulty
/// proxy) every [`WATCH_EVERY`], for the whole campaign.
async fn watch_register(sim: SocketAddr, observed: Readings) {
    use tokio_modbus::prelude::*;
    let mut ctx = None;
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tick.tick().await;
        if ctx.is_none() {
            ctx = tcp::connect(sim).await.ok();
        }
        let Some(c) = ctx.as_mut() else {
            continue;
        };
        match c.read_holding_registers(CHW_SETPOINT, 1).await {
            Ok(Ok(words)) if words.len() == 1 => {
                if let Ok(mut o) = observed.lock() {
                    o.push((Utc::now(), words[0]));
                }
            }
            _ => ctx = None,
        }
    }
}
