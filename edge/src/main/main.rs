//! `shiki-edge` command line. Thin: parses arguments, installs the TLS provider and the
//! log subscriber, and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

mod bench;
mod link;

use clap::{Args, Parser, Subcommand};
use shiki_edge::{EdgeConfig, Overrides};

/// Shiki gateway agent: polls the PLC, keeps the plant on schedule, buffers every sample
/// on disk and forwards it to the cloud over MQTT.
#[derive(Debug, Parser)]
#[command(name = "shiki-edge", version = shiki_edge::VERSION, propagate_version = true)]
struct Cli {
    /// Log filter, e.g. `info`, `debug`, `shiki_edge=debug,rumqttc=warn` (the environment
    /// variables SHIKI_LOG, then RUST_LOG, win when set).
    #[arg(long, global = true, default_value = "info")]
    log: String,
    /// Log format: `text`, or `json` (one object per line, for log shippers).
    #[arg(long, global = true, env = "SHIKI_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent until SIGTERM or Ctrl-C (then it flushes the outbox and exits).
    Run(RunArgs),
    /// Check a configuration file (with the same overrides as `run`) and exit:
    /// 0 when valid, 2 with a message naming the bad key otherwise.
    CheckConfig(RunArgs),
    /// Serve a simulated absorption chiller/heater over Modbus TCP (the default register
    /// map of deploy/edge.example.toml, or the [plc] map of --config).
    PlcSim(PlcSimArgs),
    /// Print the outbox's counters (pending samples and events, last seqs, drops, bytes)
    /// as JSON, while the agent is stopped.
    Outbox(OutboxArgs),
    /// Measure outbox ingest, disk writes per day, and backlog drain to a broker; with
    /// `--link`, the bytes telemetry costs on a cellular link for each setting.
    Bench(bench::BenchArgs),
}

#[derive(Debug, Args)]
struct OutboxArgs {
    /// The gateway's data directory (holds edge.redb).
    #[arg(long, value_name = "DIR", required_unless_present = "config")]
    data_dir: Option<PathBuf>,
    /// Or its configuration file (its `data_dir`).
    #[arg(long, short, value_name = "FILE", conflicts_with = "data_dir")]
    config: Option<PathBuf>,
}

impl OutboxArgs {
    fn store_path(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.data_dir {
            return Ok(dir.join("edge.redb"));
        }
        let config = self
            .config
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("pass --data-dir or --config"))?;
        Ok(EdgeConfig::load(config)?.store_path())
    }
}

#[derive(Debug, Args)]
struct PlcSimArgs {
    /// Address to listen on, e.g. 127.0.0.1:5020 (port 0 picks a free port and logs it).
    #[arg(long, default_value = "127.0.0.1:5020", value_name = "HOST:PORT")]
    listen: String,
    /// Serve the [plc] point list of this config file instead of the default map.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Outdoor temperature at the start, °C.
    #[arg(long, default_value_t = 30.0)]
    outdoor_c: f64,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Configuration file (TOML); see deploy/edge.example.toml.
    #[arg(long, short, env = "SHIKI_CONFIG", value_name = "FILE")]
    config: PathBuf,
    /// Device id, overriding `device_id`.
    #[arg(long, env = "SHIKI_DEVICE_ID", value_name = "ID")]
    device_id: Option<String>,
    /// Broker URL, `mqtt://host:port` or `mqtts://host:port`, overriding `mqtt.url`.
    #[arg(long, env = "SHIKI_MQTT_URL", value_name = "URL")]
    mqtt_url: Option<String>,
    /// PLC address, `HOST:PORT` for Modbus TCP or a serial device path for RTU.
    #[arg(long, env = "SHIKI_PLC", value_name = "HOST:PORT|DEVICE")]
    plc: Option<String>,
    /// Directory of the local store, overriding `data_dir`.
    #[arg(long, env = "SHIKI_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Time between telemetry samples, e.g. `60s`, `1s`, overriding `telemetry.interval`.
    #[arg(long, env = "SHIKI_TELEMETRY_INTERVAL", value_name = "DURATION", value_parser = humantime::parse_duration)]
    telemetry_interval: Option<Duration>,
}

impl RunArgs {
    fn load(self) -> Result<EdgeConfig, shiki_edge::ConfigError> {
        let mut cfg = EdgeConfig::load(&self.config)?;
        cfg.apply(Overrides {
            device_id: self.device_id,
            mqtt_url: self.mqtt_url,
            plc: self.plc,
            data_dir: self.data_dir,
            telemetry_interval: self.telemetry_interval,
        })?;
        cfg.validate()?;
        Ok(cfg)
    }
}

#[allow(clippy::print_stderr, clippy::print_stdout)]
fn main() -> ExitCode {
    // Trap 1: with `*-no-provider` rustls features, install the provider before any TLS.
    shiki_shared::tls::install_crypto_provider();
    let cli = Cli::parse();
    if let Err(e) = shiki_shared::logging::init(&cli.log, cli.log_format == "json") {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }

    match cli.command {
        Command::CheckConfig(args) => {
            let file = args.config.display().to_string();
            match args.load() {
                Ok(cfg) => {
                    println!("{file}: ok (device {})", cfg.device_id);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run(args) => {
            let cfg = match args.load() {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            match run_binary(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Outbox(args) => {
            let stats = args
                .store_path()
                .and_then(|path| Ok((shiki_edge::outbox::inspect(&path)?, path)));
            match stats {
                Ok((s, path)) => {
                    let json = serde_json::json!({
                        "path": path.display().to_string(),
                        "pending_telemetry": s.pending_telemetry,
                        "pending_events": s.pending_events,
                        "last_telemetry_seq": s.last_telemetry_seq,
                        "last_event_seq": s.last_event_seq,
                        "dropped_telemetry": s.dropped_telemetry,
                        "dropped_events": s.dropped_events,
                        "stored_bytes": s.stored_bytes,
                    });
                    println!("{json:#}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::PlcSim(args) => match plc_sim(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Bench(args) => match actix::System::new().block_on(bench::run(args)) {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// `run`: settles a previous trial (may `exec` the previous binary), runs the agent, and
/// when it stopped for an update, installs it and supervises its trial (`exec`s the new or
/// the previous binary: returns only on error).
fn run_binary(cfg: EdgeConfig) -> anyhow::Result<()> {
    use shiki_edge::ota::trial::{self, BeforeStart, OtaPaths, TRIAL_ENV};
    let paths = OtaPaths(cfg.ota_dir());
    let trial_socket = std::env::var_os(TRIAL_ENV).map(PathBuf::from);
    let mode = match trial::before_start(&paths, shiki_edge::VERSION, trial_socket)? {
        BeforeStart::Run => shiki_edge::RunMode::Binary,
        BeforeStart::Trial(socket) => shiki_edge::RunMode::Trial(socket),
    };
    let exit = actix::System::new().block_on(async move {
        // Register the handlers before anything else so an early SIGTERM is not lost.
        let shutdown = shutdown_signal();
        let clock = shiki_shared::clock::SystemClock::shared();
        shiki_edge::run_agent(cfg, clock, shutdown, mode).await
    })?;
    match exit {
        shiki_edge::Exit::Stopped => Ok(()),
        shiki_edge::Exit::Install(install) => Err(trial::install_and_supervise(&install).into()),
    }
}

fn plc_sim(args: PlcSimArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let map = match &args.config {
        Some(path) => {
            let cfg = EdgeConfig::load(path)?;
            cfg.register_map()?
                .with_context(|| format!("{} has no [plc] section", path.display()))?
        }
        None => shiki_edge::plc_sim::default_map(),
    };
    let options = shiki_edge::plc_sim::SimOptions {
        speed: args.speed,
        outdoor_c: args.outdoor_c,
        ..Default::default()
    };
    // tokio-modbus's TCP server needs the multi-thread runtime.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, points = map.points().len(), "plc-sim listening");
        shiki_edge::plc_sim::serve(listener, map, options, shutdown_signal()).await?;
        Ok(())
    })
}

/// Completes on SIGTERM or Ctrl-C. The SIGTERM handler is registered when this is called
/// (inside a runtime), not when the future is first polled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only"))
        .ok();
    async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        if let Some(mut term) = term {
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
            return;
        }
        let _ = ctrl_c.await;
    }
}
