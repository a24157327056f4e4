//! `shiki-demo`: the whole system in one process on loopback — the cloud with its embedded
//! MQTT broker and redb store, and three edges, each polling its own simulated absorption
//! chiller/heater over Modbus TCP. Right after start it loads a yearly schedule for each edge
//! through the admin API: one covering now (valid from today to the end of 2026, cooling
//! with a demand-limit step every few minutes) as `current`, and
//! `deploy/schedule.example.json` (2027) as `next`. Prints the admin API address, the admin
//! token and four `curl` commands to try. Ctrl-C stops everything cleanly.
//!
//! ```sh
//! cargo run --release -p shiki-e2e --bin shiki-demo
//! cargo run --release -p shiki-e2e --bin shiki-demo -- --data-dir ./demo-data
//! ```

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use shiki_edge::{EdgeConfig, Overrides};
use shiki_proto::DeviceId;
use tokio::sync::watch;

/// The documented example configuration: the default register map and control defaults.
const EDGE_EXAMPLE: &str = include_str!("../../../deploy/edge.example.toml");
const DEVICES: usize = 3;
/// The documented yearly schedule (2027), loaded as every edge's `next` schedule.
const SCHEDULE_EXAMPLE: &str = include_str!("../../../deploy/schedule.example.json");
/// Minutes between the demand-limit steps of the demo's current schedule.
const DEMO_STEP_MINUTES: u32 = 6;

/// Runs Shiki's cloud and three edges with simulated chillers on this machine.
#[derive(Debug, Parser)]
#[command(name = "shiki-demo", version)]
struct Args {
    /// Keep data here (cloud store, edge stores, admin token) instead of a temp dir that is
    /// removed on exit.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Admin API address; a free port is picked when this one is taken.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    api_listen: SocketAddr,
    /// Embedded MQTT broker address; a free port is picked when this one is taken.
    #[arg(long, default_value = "127.0.0.1:1883", value_name = "HOST:PORT")]
    mqtt_listen: SocketAddr,
    /// Time between telemetry samples of each edge.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    telemetry_interval: Duration,
    /// Log filter (RUST_LOG syntax).
    #[arg(long, env = "RUST_LOG", default_value = "warn,rumqttd=off")]
    log: String,
}

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match demo(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `wanted` when it can be bound now, else port 0 (the caller learns the real port).
fn usable(wanted: SocketAddr) -> (SocketAddr, bool) {
    match TcpListener::bind(wanted) {
        Ok(_) => (wanted, true),
        Err(_) => (SocketAddr::new(wanted.ip(), 0), false),
    }
}

fn demo(args: Args) -> anyhow::Result<()> {
    let _temp;
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            let t = tempfile::Builder::new().prefix("shiki-demo-").tempdir()?;
            let p = t.path().to_owned();
            _temp = t;
            p
        }
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (sims, sim_thread) = start_simulators(DEVICES, stop_rx.clone())?;
    let result = actix::System::new().block_on(run(&args, &data_dir, &sims, stop_tx, stop_rx));
    let _ = sim_thread.join();
    result
}

/// Resolves when the demo should stop.
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Serves `n` simulated chillers on a multi-thread runtime of their own (tokio-modbus's TCP
/// server needs one; actix arbiters are single-threaded).
fn start_simulators(
    n: usize,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(Vec<SocketAddr>, std::thread::JoinHandle<()>)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut listeners = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..n {
        let l = TcpListener::bind("127.0.0.1:0").context("binding a simulator port")?;
        l.set_nonblocking(true)?;
        addrs.push(l.local_addr()?);
        listeners.push(l);
    }
    let thread = std::thread::Builder::new()
        .name("plc-sim".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for (i, l) in listeners.into_iter().enumerate() {
                    let Ok(listener) = tokio::net::TcpListener::from_std(l) else {
                        continue;
                    };
                    let options = shiki_edge::plc_sim::SimOptions {
                        speed: 10.0,
                        outdoor_c: 28.0 + i as f64 * 2.0,
                        ..Default::default()
                    };
                    let map = shiki_edge::plc_sim::default_map();
                    tasks.push(tokio::spawn(shiki_edge::plc_sim::serve(
                        listener,
                        map,
                        options,
                        stopped(stop.clone()),
                    )));
                }
                for t in tasks {
                    if let Ok(Err(e)) = t.await {
                        tracing::error!(error = %e, "simulator stopped");
                    }
                }
            });
        })?;
    Ok((addrs, thread))
}

fn edge_config(
    i: usize,
    mqtt: SocketAddr,
    plc: SocketAddr,
    data_dir: &Path,
    interval: Duration,
) -> anyhow::Result<EdgeConfig> {
    let mut cfg = EdgeConfig::parse(EDGE_EXAMPLE, "deploy/edge.example.toml")?;
    cfg.apply(Overrides {
        device_id: Some(format!("demo-chiller-{i}")),
        mqtt_url: Some(format!("mqtt://{mqtt}")),
        plc: Some(plc.to_string()),
        data_dir: Some(data_dir.join(format!("edge-{i}"))),
        telemetry_interval: Some(interval),
    })?;
    if let Some(plc) = cfg.plc.as_mut() {
        plc.poll_interval = interval.min(plc.poll_interval);
    }
    // Run the plant, so the simulated temperatures move.
    cfg.control
        .defaults
        .insert("run".into(), serde_json::json!(true));
    cfg.mqtt.reconnect_max = Duration::from_secs(5);
    cfg.validate()?;
    Ok(cfg)
}

async fn run(
    args: &Args,
    data_dir: &Path,
    sims: &[SocketAddr],
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (mqtt_listen, mqtt_default) = usable(args.mqtt_listen);
    let (api_listen, api_default) = usable(args.api_listen);
    let mut cloud_cfg = shiki_cloud::CloudConfig {
        data_dir: data_dir.join("cloud"),
        ..Default::default()
    };
    cloud_cfg.mqtt.listen = mqtt_listen;
    cloud_cfg.api.listen = api_listen;
    let app = shiki_cloud::start(cloud_cfg)
        .await
        .context("starting the cloud")?;
    let mqtt = app.mqtt_addr.context("the embedded broker did not start")?;
    let token = admin_token(app.admin_token.clone(), data_dir)?;

    let mut edges = Vec::new();
    for (i, plc) in sims.iter().enumerate() {
        let mut cfg = edge_config(i + 1, mqtt, *plc, data_dir, args.telemetry_interval)?;
        cfg.mqtt.password = Some(register(&app, &cfg.device_id).await?);
        let stop = stopped(stop_rx.clone());
        let id = cfg.device_id.clone();
        edges.push((
            id,
            actix::spawn(async move { shiki_edge::run(cfg, stop).await }),
        ));
    }

    // Print once every device has sent telemetry, so the curl commands work at once.
    let store = app.store();
    let ids: Vec<DeviceId> = edges.iter().map(|(id, _)| id.clone()).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    loop {
        ticker.tick().await;
        let ready = ids
            .iter()
            .all(|id| matches!(store.last_sample(id), Ok(Some(_))));
        if ready || tokio::time::Instant::now() > deadline {
            break;
        }
    }
    if let Some(token) = &token {
        load_schedules(app.api_addr, token, &ids).await;
    }
    banner(&BannerInfo {
        api: app.api_addr,
        api_default,
        mqtt,
        mqtt_default,
        token: token.as_deref(),
        data_dir,
        temp: args.data_dir.is_none(),
        devices: &ids,
        sims,
    })?;

    shutdown_signal().await;
    let _ = writeln!(
        std::io::stdout(),
        "\nstopping: edges flush their outboxes, then the cloud"
    );
    let _ = stop_tx.send(true);
    for (id, handle) in edges {
        match handle.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(device_id = %id, error = %e, "edge failed"),
            Err(e) => tracing::error!(device_id = %id, error = %e, "edge task failed"),
        }
    }
    app.stop().await;
    let _ = writeln!(std::io::stdout(), "stopped cleanly");
    Ok(())
}

/// A schedule covering now (Asia/Tokyo): cooling at 7.0 °C from today to the end of 2026
/// (at least to tomorrow), the demand limit stepping 100 → 80 → 60 → 80 % every
/// [`DEMO_STEP_MINUTES`] minutes, so the chillers visibly follow it.
fn demo_schedule(now: chrono::DateTime<chrono::Utc>) -> serde_json::Value {
    let tokyo = chrono::FixedOffset::east_opt(9 * 3600).expect("UTC+9");
    let today = now.with_timezone(&tokyo).date_naive();
    let end_of_2026 = chrono::NaiveDate::from_ymd_opt(2026, 12, 31).expect("date");
    let valid_to = end_of_2026.max(today + chrono::Duration::days(1));
    let steps = [100, 80, 60, 80];
    let day: Vec<serde_json::Value> = (0..24 * 60 / DEMO_STEP_MINUTES)
        .map(|i| {
            let m = i * DEMO_STEP_MINUTES;
            serde_json::json!({
                "time": format!("{:02}:{:02}", m / 60, m % 60),
                "settings": { "demand_limit_pct": steps[i as usize % steps.len()] },
            })
        })
        .collect();
    serde_json::json!({
        "id": "demo-now",
        "timezone": "Asia/Tokyo",
        "valid_from": today.to_string(),
        "valid_to": valid_to.to_string(),
        "defaults": { "run": true, "mode": "cooling", "chw_setpoint_c": 7.0,
                      "demand_limit_pct": 100 },
        "profiles": { "demo-day": day },
        "seasons": [{ "name": "all-year", "from": "01-01", "to": "12-31",
                      "weekday": "demo-day", "saturday": "demo-day", "sunday": "demo-day" }],
    })
}

/// Loads the demo schedule (`current`) and the example (`next`) for every device through the
/// admin API, as an operator would. A refusal is reported and the demo goes on.
async fn load_schedules(api: SocketAddr, token: &str, devices: &[DeviceId]) {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client; schedules not loaded");
            return;
        }
    };
    let example: serde_json::Value = match serde_json::from_str(SCHEDULE_EXAMPLE) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "deploy/schedule.example.json does not parse");
            serde_json::Value::Null
        }
    };
    let current = demo_schedule(chrono::Utc::now());
    for id in devices {
        for (slot, doc) in [("current", &current), ("next", &example)] {
            if doc.is_null() {
                continue;
            }
            let url = format!("http://{api}/api/v1/devices/{id}/schedule?slot={slot}");
            let result = http.put(&url).bearer_auth(token).json(doc).send().await;
            match result {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    let _ = writeln!(
                        std::io::stderr(),
                        "warning: the {slot} schedule of {id} was refused: {status} {body}"
                    );
                }
                Err(e) => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "warning: loading the {slot} schedule of {id} failed: {e}"
                    );
                }
            }
        }
    }
}

/// Registers a demo device for the embedded broker (again on each run, with a fresh
/// password) and returns the password.
async fn register(app: &shiki_cloud::App, id: &DeviceId) -> anyhow::Result<String> {
    use shiki_cloud::store::{RegistryRecord, Write};
    let password = shiki_cloud::auth::generate_device_password();
    let hash = {
        let p = password.clone();
        tokio::task::spawn_blocking(move || shiki_cloud::auth::hash_device_password(&p)).await?
    };
    let now = chrono::Utc::now();
    let record = RegistryRecord {
        id: id.clone(),
        tenant: None,
        password_hash: Some(hash),
        created_at: now,
        created_by: "shiki-demo".into(),
        credentials_at: now,
        retired_at: None,
    };
    app.store()
        .submit(vec![Write::PutRegistry(Box::new(record))])
        .await
        .with_context(|| format!("registering {id}"))?;
    Ok(password)
}

/// The admin token to show: `SHIKI_ADMIN_TOKEN`, the one this start created (kept in the
/// data dir so a later run with the same `--data-dir` can show it again), or that kept one.
fn admin_token(created: Option<String>, data_dir: &Path) -> anyhow::Result<Option<String>> {
    if let Ok(t) = std::env::var("SHIKI_ADMIN_TOKEN")
        && !t.is_empty()
    {
        return Ok(Some(t));
    }
    let file = data_dir.join("admin-token");
    if let Some(t) = created {
        // Demo convenience only: a real deployment shows the token once and forgets it.
        std::fs::write(&file, &t).with_context(|| format!("writing {}", file.display()))?;
        return Ok(Some(t));
    }
    Ok(std::fs::read_to_string(&file)
        .ok()
        .map(|t| t.trim().to_owned()))
}

struct BannerInfo<'a> {
    api: SocketAddr,
    api_default: bool,
    mqtt: SocketAddr,
    mqtt_default: bool,
    token: Option<&'a str>,
    data_dir: &'a Path,
    temp: bool,
    devices: &'a [DeviceId],
    sims: &'a [SocketAddr],
}

fn banner(b: &BannerInfo<'_>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let note = |default: bool| {
        if default {
            ""
        } else {
            " (the default port was taken; picked a free one)"
        }
    };
    writeln!(out, "Shiki demo is running.\n")?;
    writeln!(
        out,
        "  admin API     http://{}{}",
        b.api,
        note(b.api_default)
    )?;
    writeln!(
        out,
        "  MQTT broker   mqtt://{}{}",
        b.mqtt,
        note(b.mqtt_default)
    )?;
    let token = b.token.unwrap_or("<unknown: set SHIKI_ADMIN_TOKEN>");
    writeln!(out, "  admin token   {token}")?;
    for (id, sim) in b.devices.iter().zip(b.sims) {
        writeln!(
            out,
            "  edge          {id} -> simulated chiller at modbus://{sim}"
        )?;
    }
    let kept = if b.temp {
        " (temporary; removed on exit)"
    } else {
        ""
    };
    writeln!(out, "  data          {}{kept}", b.data_dir.display())?;
    writeln!(out, "  web page      http://{}/\n", b.api)?;
    let device = b
        .devices
        .first()
        .map(DeviceId::as_str)
        .unwrap_or("demo-chiller-1");
    let auth = format!("-H 'Authorization: Bearer {token}'");
    writeln!(out, "List the devices:")?;
    writeln!(out, "  curl -s {auth} http://{}/api/v1/devices\n", b.api)?;
    writeln!(
        out,
        "Change the chilled water setpoint of {device} to 8.5 °C:"
    )?;
    writeln!(
        out,
        "  curl -s -X PATCH {auth} -H 'Content-Type: application/json' \
         -d '{{\"settings\":{{\"chw_setpoint_c\":8.5}},\"comment\":\"demo\"}}' \
         http://{}/api/v1/devices/{device}/desired\n",
        b.api
    )?;
    writeln!(
        out,
        "Read its history (the change, what the device reported, and the verification):"
    )?;
    writeln!(
        out,
        "  curl -s {auth} http://{}/api/v1/devices/{device}/history\n",
        b.api
    )?;
    writeln!(
        out,
        "Read its yearly schedules (current: demand limit steps every {DEMO_STEP_MINUTES} min; \
         next: 2027) and whether the device has acked them:"
    )?;
    writeln!(
        out,
        "  curl -s {auth} http://{}/api/v1/devices/{device}/schedule\n",
        b.api
    )?;
    writeln!(out, "Ctrl-C stops everything.")?;
    out.flush()
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
