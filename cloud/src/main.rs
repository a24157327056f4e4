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
        /// Store in PostgreSQL instead of the redb file in the data dir:
        /// postgres://user[:password]@host[:port]/database (overrides `store.url`).
        #[arg(long, value_name = "URL", env = "SHIKI_STORE_URL")]
        store: Option<String>,
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
        /// Run as this node of a cluster sharing the fleet (overrides `cluster.node_id`;
        /// needs --store postgres://… and --mqtt-url; see docs/operations.md).
        #[arg(long, value_name = "NAME")]
        node_id: Option<String>,
    },
    /// Print benchmark figures (device actors resident, ingest rate, verification latency).
    Bench(bench::BenchArgs),
    /// OTA release keys: make one (`keygen`), sign an edge build (`sign`). Offline: no
    /// config, no running cloud.
    Ota(ota::OtaArgs),
    /// The PostgreSQL store: migrate it, or let Grafana's role read it.
    Db(DbArgs),
}

#[derive(Debug, clap::Args)]
struct DbArgs {
    /// The database: postgres://user[:password]@host[:port]/database.
    #[arg(long, value_name = "URL", env = "SHIKI_STORE_URL", global = true)]
    store: Option<String>,
    #[command(subcommand)]
    command: DbCommand,
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Apply the migrations this binary carries (serve does it at start too) and print the
    /// schema version.
    Migrate,
    /// Let an existing role read the `grafana` schema's views, and nothing else
    /// (docs/grafana.md). Create the role first: CREATE ROLE grafana_reader LOGIN PASSWORD '…'.
    GrantGrafana {
        /// The role Grafana's data source logs in as.
        role: String,
    },
}

fn main() -> anyhow::Result<()> {
    // First thing: the TLS provider (rustls is built without a default one).
    shiki_shared::tls::install_crypto_provider();
    let cli = Cli::parse();
    // Logs go to stderr (SHIKI_LOG / RUST_LOG filter); stdout carries only the one-time
    // admin token.
    shiki_shared::logging::init(
        "info,rumqttd=warn,rumqttd::server::broker=off,rumqttc=warn,tokio_postgres=warn,refinery_core=warn",
        false,
    )
    .context("cannot set up logging")?;
    match cli.command {
        Command::Serve {
            config,
            data_dir,
            store,
            mqtt_listen,
            mqtt_url,
            api_listen,
            node_id,
        } => {
            let mut cfg = match &config {
                Some(path) => CloudConfig::load(path)?,
                None => CloudConfig::default(),
            };
            if let Some(d) = data_dir {
                cfg.data_dir = d;
            }
            if let Some(url) = store {
                cfg.store.url = Some(url);
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
            if let Some(id) = node_id {
                match &mut cfg.cluster {
                    Some(c) => c.node_id = id,
                    None => cfg.cluster = Some(shiki_cloud::config::ClusterConfig::node(&id)),
                }
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
        Command::Db(args) => db(args)?,
        Command::Bench(args) => {
            actix::System::new()
                .block_on(bench::run(args))
                .context("benchmark failed")?;
        }
    }
    Ok(())
}

/// `shiki-cloud db …`.
fn db(args: DbArgs) -> anyhow::Result<()> {
    use shiki_cloud::store::{PgOptions, PgStore};
    let url = args.store.context(
        "which database? give --store postgres://user@host:port/database (or SHIKI_STORE_URL)",
    )?;
    let store = PgStore::open(&url, &PgOptions::default())?;
    match args.command {
        DbCommand::Migrate => {
            tracing::info!(
                schema_version = shiki_cloud::store::SCHEMA_VERSION,
                "store schema is up to date"
            );
        }
        DbCommand::GrantGrafana { role } => {
            store.grant_grafana(&role)?;
            tracing::info!(%role, "role can read schema grafana (and nothing else)");
        }
    }
    store.close();
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
