//! The composition root: builds every actor of the agent and wires them with `Recipient`s.
//! Nothing else starts actors or reads the whole configuration.
//!
//! ```text
//! PlcLink ─Readings→ Telemetry ─append→ Outbox(redb) ─committed→ Uplink ⇄ broker
//!                        ↑ RecordEvent                              │ CloudMessage, LinkUp, ReportedDelivered
//!                        │                                          ↓
//!                        Control ←SetOverrides─ Shadow ─PublishReported→ Uplink
//!                          ↑     ─ControlReport→                    │ ScheduleSetReceived
//!                          └─ScheduleSettings─ ScheduleActor ←──────┘
//!                                               │ ─PublishScheduleAck→ Uplink
//!                                               └ RedbScheduleStore (redb `schedules`)
//! ```

use std::future::Future;
use std::sync::Arc;

use actix::prelude::*;
use shiki_proto::{Catalog, Channel, EventKind, PROTOCOL_VERSION, Severity, Status, encode};
use shiki_shared::clock::{Clock, SharedClock, SystemClock};

use crate::config::{ConfigError, EdgeConfig};
use crate::control::{Control, ControlConfigError};
use crate::messages::{ControlReport, Readings, ScheduleSettings, SetOverrides, Stop};
use crate::ota::health::{Health, StoreOpened};
use crate::ota::{Install, Ota, OtaConfig, OtaPaths, OtaPeers, OtaRules, PublishJobUpdate};
use crate::outbox::{
    NewRecord, OutboxError, OutboxHandle, OutboxOptions, RedbOutbox, RedbScheduleStore,
};
use crate::plc_link::PlcLink;
use crate::schedule::{ScheduleActor, ScheduleConfig, SchedulePeers};
use crate::shadow::{DesiredDoc, Shadow, ShadowPeers, load_persisted};
use crate::telemetry::{Telemetry, TelemetryConfig};
use crate::uplink::{
    SHUTDOWN_GRACE, Shutdown, Uplink, UplinkConfig, UplinkPeers, UplinkSetupError,
    initial_frontiers, mqtt_options,
};
use shiki_proto::ExpiredOverride;

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] OutboxError),
    #[error(transparent)]
    Uplink(#[from] UplinkSetupError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Control(#[from] ControlConfigError),
}

/// Stands in for Control when no PLC is configured: logs the overrides it receives.
#[derive(Debug, Default)]
struct LoggingControl;

impl Actor for LoggingControl {
    type Context = Context<Self>;
}

impl Handler<SetOverrides> for LoggingControl {
    type Result = ();
    fn handle(&mut self, msg: SetOverrides, _ctx: &mut Context<Self>) {
        tracing::info!(version = msg.desired_version, keys = ?msg.overrides.keys().collect::<Vec<_>>(), "overrides received (no PLC control configured)");
    }
}

impl Handler<ScheduleSettings> for LoggingControl {
    type Result = ();
    fn handle(&mut self, msg: ScheduleSettings, _ctx: &mut Context<Self>) {
        tracing::info!(schedule = ?msg.schedule, keys = ?msg.settings.keys().collect::<Vec<_>>(), "schedule settings (no PLC control configured)");
    }
}

/// `schedule.file`: installs its schedule as the current one when the store holds none.
async fn install_schedule_file(
    config: &EdgeConfig,
    outbox: &OutboxHandle,
    clock: &SharedClock,
) -> Result<(), RunError> {
    if config.schedule.file.is_none() {
        return Ok(());
    }
    let stored = outbox.load_schedules().await?;
    if stored.current.is_some() || stored.next.is_some() {
        tracing::info!("schedule.file ignored: the store already holds a schedule");
        return Ok(());
    }
    let now = clock.now();
    let Some(pair) = config.schedule_from_file(now)? else {
        return Ok(());
    };
    let (id, hash) = pair
        .current
        .as_ref()
        .map(|c| (c.id.clone(), c.hash.clone()))
        .unwrap_or_default();
    outbox.save_schedules(pair).await?;
    tracing::info!(%id, %hash, "schedule installed from schedule.file");
    outbox
        .append(NewRecord::Event {
            ts: now,
            kind: EventKind::ScheduleChanged,
            severity: Severity::Info,
            message: format!("schedule {id} installed from schedule.file"),
            data: serde_json::json!({ "schedule_id": id, "hash": hash, "slot": "current" }),
        })
        .await?;
    Ok(())
}

/// What [`start_control`] started: where overrides and schedule settings go, and the
/// catalog of points.
struct ControlWiring {
    overrides: Recipient<SetOverrides>,
    settings: Recipient<ScheduleSettings>,
    catalog: Catalog,
}

/// The PLC link and Control for `config`'s `[plc]` map (or a `LoggingControl` without one).
fn start_control(
    config: &EdgeConfig,
    telemetry: Addr<Telemetry>,
    reports: Recipient<ControlReport>,
    health: Option<Recipient<Readings>>,
    clock: SharedClock,
) -> Result<ControlWiring, RunError> {
    Ok(match config.register_map()? {
        Some(map) => {
            // Control's address exists before PlcLink starts, so the first poll reaches it.
            let control_ctx = Context::<Control>::new();
            let control_addr = control_ctx.address();
            let mut plc = PlcLink::new(map.clone(), telemetry.clone().recipient())
                .subscribe(telemetry.clone().recipient())
                .subscribe(control_addr.clone().recipient());
            if let Some(health) = health {
                plc = plc.subscribe(health);
            }
            let plc = plc.start();
            let control = Control::new(
                map.clone(),
                config.control.clone(),
                plc.recipient(),
                telemetry.clone().recipient(),
                clock.clone(),
            )?
            .report_to(reports);
            control_ctx.run(control);
            ControlWiring {
                overrides: control_addr.clone().recipient(),
                settings: control_addr.recipient(),
                catalog: map.catalog(),
            }
        }
        None => {
            tracing::warn!("no [plc] section and no --plc: running without a PLC");
            let empty = Catalog {
                v: PROTOCOL_VERSION,
                points: Vec::new(),
            };
            let logging = LoggingControl.start();
            ControlWiring {
                overrides: logging.clone().recipient(),
                settings: logging.recipient(),
                catalog: empty,
            }
        }
    })
}

/// The uplink's settings from `[mqtt]`.
fn uplink_config(
    config: &EdgeConfig,
    topics: shiki_proto::Topics,
    version: &str,
    boot_time: chrono::DateTime<chrono::Utc>,
) -> UplinkConfig {
    UplinkConfig {
        device_id: config.device_id.clone(),
        topics,
        live_batch_max: config.mqtt.live_batch_max,
        backlog_batch_bytes: config.mqtt.backlog_batch_bytes,
        max_inflight_batches: config.mqtt.max_inflight_batches,
        batch_max_delay: config.telemetry.batch_max_delay,
        compact: config.telemetry.encoding == crate::config::TelemetryEncoding::Compact,
        reconnect_min: config.mqtt.reconnect_min,
        reconnect_max: config.mqtt.reconnect_max,
        software_version: version.to_owned(),
        boot_time,
        shutdown_grace: SHUTDOWN_GRACE,
    }
}

/// Opens `<data_dir>/edge.redb` (creating the directory) and starts its writer thread.
fn open_outbox(
    config: &EdgeConfig,
) -> Result<(OutboxHandle, std::thread::JoinHandle<()>), RunError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| RunError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let store = RedbOutbox::open(
        &config.store_path(),
        OutboxOptions {
            quota_bytes: config.outbox.quota_bytes(),
            cache_bytes: (config.outbox.cache_mib as usize).saturating_mul(1024 * 1024),
        },
    )?;
    Ok(OutboxHandle::start_with(
        store,
        config.outbox.commit_interval,
    )?)
}

/// How this process runs the agent (what OTA may do in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMode {
    /// Inside another program (`shiki_edge::run`): OTA jobs are rejected, since the binary
    /// cannot be replaced and restarted.
    InProcess,
    /// The `shiki-edge` binary: OTA jobs are run; an install stops the agent and returns
    /// [`Exit::Install`] to `main`.
    Binary,
    /// The binary on trial after an install: reports health on this socket (no OTA jobs).
    Trial(std::path::PathBuf),
}

/// Why [`run_agent`] returned.
#[derive(Debug)]
pub enum Exit {
    /// The shutdown future completed (or the trial supervisor said stop).
    Stopped,
    /// A verified update is to be installed: see `ota::trial::install_and_supervise`.
    Install(Install),
}

/// Runs the agent until `shutdown` completes, then publishes `offline`, waits briefly for
/// acknowledgements, flushes the outbox writer and returns. Must run inside an
/// `actix::System` (e.g. `#[actix::main]` or `#[actix::test]`).
pub async fn run(config: EdgeConfig, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    run_with_clock(config, SystemClock::shared(), shutdown).await
}

/// [`run`] with an injected clock (Control, Telemetry and the schedule read it).
pub async fn run_with_clock(
    config: EdgeConfig,
    clock: SharedClock,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    run_agent(config, clock, shutdown, RunMode::InProcess)
        .await
        .map(|_| ())
}

/// The OTA side of the agent for `mode`: the Ota actor (started by the caller with
/// `ota_ctx`) or, on trial, the health actor.
struct OtaWiring {
    ota: Option<Context<Ota>>,
    health: Option<Addr<Health>>,
    installs: tokio::sync::mpsc::UnboundedReceiver<Install>,
    install_tx: tokio::sync::mpsc::UnboundedSender<Install>,
    trial_stop: tokio::sync::oneshot::Receiver<()>,
}

fn ota_wiring(config: &EdgeConfig, mode: &RunMode) -> OtaWiring {
    let (install_tx, installs) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, trial_stop) = tokio::sync::oneshot::channel();
    let (ota, health) = match mode {
        RunMode::Trial(socket) => (
            None,
            Some(Health::start(socket.clone(), config.plc.is_some(), stop_tx)),
        ),
        RunMode::InProcess | RunMode::Binary => (Some(Context::<Ota>::new()), None),
    };
    OtaWiring {
        ota,
        health,
        installs,
        install_tx,
        trial_stop,
    }
}

/// Starts the Ota actor in `ctx` (when this mode runs one); a run on trial reports the
/// trial step of its job through `updates` instead.
fn start_ota(
    config: &EdgeConfig,
    mode: &RunMode,
    ctx: Option<Context<Ota>>,
    updates: Recipient<PublishJobUpdate>,
    install: tokio::sync::mpsc::UnboundedSender<Install>,
    clock: SharedClock,
) -> Option<Addr<Ota>> {
    if matches!(mode, RunMode::Trial(_))
        && let Some(update) = crate::ota::trial_update(&OtaPaths(config.ota_dir()), clock.now())
    {
        updates.do_send(update);
    }
    let ctx = ctx?;
    let rules = OtaRules {
        running_version: crate::VERSION.to_owned(),
        // Validated at start-up (`EdgeConfig::validate`); an unvalidated bad key trusts none.
        keys: config.trusted_keys().unwrap_or_default(),
        installs: *mode == RunMode::Binary,
    };
    let cfg = OtaConfig {
        paths: OtaPaths(config.ota_dir()),
        rules,
        health_window: config.ota.health_window,
        retry: crate::ota::download::Retry::default(),
    };
    let addr = ctx.address();
    ctx.run(Ota::new(cfg, OtaPeers { updates, install }, clock));
    Some(addr)
}

/// Records the boot, installs `schedule.file`, and reads what the actors resume from: the
/// uplink's frontiers and the shadow's persisted state.
async fn recover_store(
    config: &EdgeConfig,
    outbox: &OutboxHandle,
    clock: &SharedClock,
    boot_time: chrono::DateTime<chrono::Utc>,
) -> Result<((u64, u64), (DesiredDoc, Vec<ExpiredOverride>)), RunError> {
    let version = crate::VERSION;
    outbox
        .append(NewRecord::Event {
            ts: boot_time,
            kind: EventKind::Boot,
            severity: Severity::Info,
            message: format!("shiki-edge {version} started"),
            data: serde_json::json!({ "software_version": version }),
        })
        .await?;
    install_schedule_file(config, outbox, clock).await?;
    let frontiers = initial_frontiers(outbox).await?;
    let persisted = load_persisted(outbox).await?;
    let stats = outbox.stats().await?;
    tracing::info!(
        pending_telemetry = stats.pending_telemetry,
        pending_events = stats.pending_events,
        last_telemetry_seq = stats.last_telemetry_seq,
        "outbox opened"
    );
    Ok((frontiers, persisted))
}

/// The Telemetry actor for `[telemetry]` (and the PLC's poll interval).
fn start_telemetry(
    config: &EdgeConfig,
    outbox: &OutboxHandle,
    clock: &SharedClock,
) -> Addr<Telemetry> {
    // Readings missing for three polls (or two samples) are stale: not sampled again.
    let stale_after = config
        .plc
        .as_ref()
        .map(|p| (p.poll_interval * 3).max(config.telemetry.interval * 2));
    Telemetry::new(
        TelemetryConfig {
            interval: config.telemetry.interval,
            stale_after,
        },
        outbox.clone(),
        clock.clone(),
    )
    .start()
}

/// Stops the actors, lets the uplink say `offline` and drain its acknowledgements, then
/// closes the outbox and waits for its writer thread (the store is free afterwards).
async fn stop_agent(
    stops: Vec<Recipient<Stop>>,
    uplink: Addr<Uplink>,
    outbox: OutboxHandle,
    writer: std::thread::JoinHandle<()>,
) {
    for actor in stops {
        actor.do_send(Stop);
    }
    if uplink.send(Shutdown).await.is_err() {
        tracing::warn!("uplink already stopped");
    }
    outbox.close().await;
    let _ = tokio::task::spawn_blocking(move || writer.join()).await;
}

/// Runs the agent in `mode` until `shutdown` completes (→ [`Exit::Stopped`]) or a verified
/// update is ready to install (→ [`Exit::Install`]); either way the actors are stopped and
/// the store is closed first. Must run inside an `actix::System`.
pub async fn run_agent(
    config: EdgeConfig,
    clock: SharedClock,
    shutdown: impl Future<Output = ()>,
    mode: RunMode,
) -> Result<Exit, RunError> {
    let boot_time = clock.now();
    let version = crate::VERSION;
    let (outbox, writer) = open_outbox(&config)?;
    let ota = ota_wiring(&config, &mode);
    if let Some(h) = &ota.health {
        h.do_send(StoreOpened);
    }
    let span = tracing::info_span!("edge", device_id = %config.device_id);
    let _enter = span.enter();

    let (frontiers, (desired, pending_expired)) =
        recover_store(&config, &outbox, &clock, boot_time).await?;

    let topics = config.topics();
    let will = encode(&Status::last_will(version, boot_time)).unwrap_or_default();
    let will_topic = topics.topic_for(&config.device_id, &Channel::Status);
    let inflight = u16::try_from(config.mqtt.max_inflight_batches + 16).unwrap_or(u16::MAX);
    let options = mqtt_options(&config, will_topic, will, inflight)?;

    let shadow_ctx = Context::<Shadow>::new();
    let shadow_addr = shadow_ctx.address();
    let schedule_ctx = Context::<ScheduleActor>::new();
    let schedule_addr = schedule_ctx.address();
    let telemetry = start_telemetry(&config, &outbox, &clock);
    let ControlWiring {
        overrides: control,
        settings: to_control,
        catalog,
    } = start_control(
        &config,
        telemetry.clone(),
        shadow_addr.clone().recipient(),
        ota.health.clone().map(Addr::recipient),
        clock.clone(),
    )?;
    let ota_addr = ota.ota.as_ref().map(Context::address);
    let schedule_catalog = (!catalog.points.is_empty()).then(|| catalog.points.clone());

    let uplink = Uplink::new(
        uplink_config(&config, topics, version, boot_time),
        options,
        outbox.clone(),
        UplinkPeers {
            cloud: shadow_addr.clone().recipient(),
            link_up: shadow_addr.clone().recipient(),
            delivered: shadow_addr.clone().recipient(),
        },
        catalog,
        frontiers,
    )
    .schedule_to(schedule_addr.clone().recipient());
    let uplink = match (&ota_addr, &ota.health) {
        (Some(o), _) => uplink.jobs_to(o.clone().recipient()),
        (None, Some(h)) => uplink.health_to(h.clone().recipient()),
        (None, None) => uplink,
    }
    .start();
    start_ota(
        &config,
        &mode,
        ota.ota,
        uplink.clone().recipient(),
        ota.install_tx,
        clock.clone(),
    );
    schedule_ctx.run(ScheduleActor::new(
        ScheduleConfig {
            max_sleep: config.schedule.max_sleep,
            catalog: schedule_catalog,
        },
        clock.clone(),
        Arc::new(RedbScheduleStore::new(outbox.clone())),
        SchedulePeers {
            control: to_control,
            events: telemetry.clone().recipient(),
            acks: uplink.clone().recipient(),
        },
    ));
    shadow_ctx.run(Shadow::new(
        desired,
        pending_expired,
        outbox.clone(),
        ShadowPeers {
            control,
            uplink: uplink.clone().recipient(),
        },
    ));
    tracing::info!(
        version,
        mqtt = %config.mqtt.url,
        interval = ?config.telemetry.interval,
        batch_max_delay = ?config.telemetry.batch_max_delay,
        encoding = ?config.telemetry.encoding,
        keep_alive = ?config.mqtt.keep_alive,
        "shiki-edge running"
    );

    let (mut installs, trial_stop) = (ota.installs, ota.trial_stop);
    let exit = tokio::select! {
        () = shutdown => Exit::Stopped,
        Ok(()) = trial_stop => Exit::Stopped,
        Some(install) = installs.recv() => Exit::Install(install),
    };
    tracing::info!(install = matches!(exit, Exit::Install(_)), "shutting down");
    let mut stops = vec![
        telemetry.recipient::<Stop>(),
        shadow_addr.recipient(),
        schedule_addr.recipient(),
    ];
    stops.extend(ota_addr.map(Addr::recipient));
    stop_agent(stops, uplink, outbox, writer).await;
    tracing::info!(at = %clock.now(), "outbox flushed; stopped");
    Ok(exit)
}
