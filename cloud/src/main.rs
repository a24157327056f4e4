//! `shiki-cloud`: parses the command line and calls [`shiki_cloud::run`], runs the
//! benchmarks of `shiki-cloud bench` (module `bench`, in `main/bench/`), or the release
//! key tools of `shiki-cloud ota` (module `ota`, in `main/ota.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use shiki_cloud::CloudConfig;

#[path = "main/bench/mod.rs"]
mod bench;
#[path = "main/ota.rs"]
mod ota;

/// mimalloc rather than glibc's allocator: the ingest allocates on its thread what the
/// store writer frees on its own (each burst's writes), which glibc serialises on the
/// ingest's arena lock.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Shiki cloud: embedded MQTT broker, one actor per device, settings history and
/// verification, alerts, admin API.
#[derive(Debug, Parser)]
#[command(name = "shiki-cloud", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the cloud until SIGTERM or Ctrl-C (the store is flushed before exit).
    Serve {
        /// TOML configuration file (see deploy/cloud.example.toml); defaults apply without it.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
        /// Directory of the redb store (overrides `data_dir`).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Address of the embedded MQTT broker (overrides `mqtt.listen`).
        #[arg(long, value_name = "HOST:PORT", conflicts_with = "mqtt_url")]
        mqtt_listen: Option<SocketAddr>,
        /// Use an external broker instead of the embedded one: mqtt://host:port or
        /// mqtts://host:port (overrides `mqtt.url`; TLS files come from the config).
        #[arg(long, value_name = "URL")]
        mqtt_url: Option<String>,
        /// Address of the admin API (overrides `api.listen`).
        #[arg(long, value_name = "HOST:PORT")]
        api_listen: Option<SocketAddr>,
    },
    /// Print benchmark figures (device actors resident, ingest rate, verification latency).
    Bench(bench::BenchArgs),
    /// OTA release keys: make one (`keygen`), sign an edge build (`sign`). Offline: no
    /// config, no running cloud.
    Ota(ota::OtaArgs),
}

fn main() -> anyhow::Result<()> {
    // First thing: the TLS provider (rustls is built without a default one).
    shiki_shared::tls::install_crypto_provider();
    let cli = Cli::parse();
    // Logs go to stderr (SHIKI_LOG / RUST_LOG filter); stdout carries only the one-time
    // admin token.
    shiki_shared::logging::init(
        "info,rumqttd=warn,rumqttd::server::broker=off,rumqttc=warn",
        false,
    )
    .context("cannot set up logging")?;
    match cli.command {
        Command::Serve {
            config,
            data_dir,
            mqtt_listen,
            mqtt_url,
            api_listen,
        } => {
            let mut cfg = match &config {
                Some(path) => CloudConfig::load(path)?,
                None => CloudConfig::default(),
            };
            if let Some(d) = data_dir {
                cfg.data_dir = d;
            }
            if let Some(l) = mqtt_listen {
                cfg.mqtt.listen = l;
                cfg.mqtt.url = None;
            }
            if let Some(u) = mqtt_url {
                cfg.mqtt.url = Some(u);
            }
            if let Some(a) = api_listen {
                cfg.api.listen = a;
            }
            cfg.validate()?;
            actix::System::new()
                .block_on(async {
                    // Register the handlers before anything starts, so an early SIGTERM
                    // still shuts down cleanly.
                    let shutdown = shutdown_signal()?;
                    shiki_cloud::run(cfg, shutdown).await?;
                    anyhow::Ok(())
                })
                .context("shiki-cloud failed")?;
        }
        Command::Ota(args) => ota::run(args)?,
        Command::Bench(args) => {
            actix::System::new()
                .block_on(bench::run(args))
                .context("benchmark failed")?;
        }
    }
    Ok(())
}

/// A future resolving on SIGTERM or Ctrl-C; the handlers are registered at once.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
