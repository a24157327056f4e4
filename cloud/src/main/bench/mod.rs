//! `shiki-cloud bench`: prints benchmark figures to stdout. Build with `--release`; every
//! run uses its own temp dirs and free ports.
//!
//! - `actors` ([`actors`]): N device actors resident through the registry; RSS from
//!   `/proc/self/status`.
//! - `ingest` ([`ingest`]): the same telemetry stream through the embedded broker (or an
//!   external one, `--mqtt-url`), drained first by a bare subscriber, then ingested into the
//!   redb store; both rates, their ratio and the CPU per message of every thread
//!   ([`cpu`]).
//!   With `--postgres`, the same stream goes into a PostgreSQL store too, printed after.
//! - `verify` ([`verify`]): desired change → delta → simulated device reports → verified,
//!   latency percentiles.
//! - `query` ([`query`], needs `--postgres`): a year of 1-minute samples for 20 devices
//!   loaded into PostgreSQL; latency of the queries Grafana and the API run, and bytes per
//!   sample on disk.
//!
//! - `cluster` ([`cluster`], needs `--postgres`): 1 … `--nodes` cloud nodes sharing a
//!   fleet; the ingest rate per node count and the shards that move when a node joins.
//!
//! [`shared`] holds what they have in common: the cloud's configuration, temp dirs, MQTT
//! clients standing in for devices, and printing.

use anyhow::Context as _;

mod actors;
mod cluster;
mod cpu;
mod ingest;
mod query;
mod shared;
mod verify;

/// Which benchmark to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    All,
    Actors,
    Ingest,
    Verify,
    Query,
    Cluster,
}

/// Options of `shiki-cloud bench`: benchmark sizes and the broker to measure through.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Device actors to start for the residency benchmark.
    #[arg(long, default_value_t = 100_000)]
    devices: usize,
    /// Telemetry messages for the ingest benchmark.
    #[arg(long, default_value_t = 200_000)]
    messages: usize,
    /// Desired changes for the verification latency benchmark.
    #[arg(long, default_value_t = 500)]
    changes: usize,
    /// Which benchmark(s) to run.
    #[arg(long, value_enum, default_value = "all")]
    only: Which,
    /// External broker (mqtt://host:port on loopback) for the ingest and verify
    /// benchmarks instead of the embedded one.
    #[arg(long, value_name = "URL")]
    mqtt_url: Option<String>,
    /// Run the ingest benchmark with `mqtt.ack_after_commit = false` (the embedded
    /// broker's default).
    #[arg(long, conflicts_with = "ack_after_commit")]
    ack_on_receipt: bool,
    /// Run the ingest benchmark with `mqtt.ack_after_commit = true` (an external
    /// broker's default; with the embedded one it caps each commit at 100 messages).
    #[arg(long)]
    ack_after_commit: bool,
    /// Ingest rounds; each drains the stream with the bare subscriber and into the
    /// cloud, bare first in odd rounds and cloud first in even ones, so a slow spell of
    /// the machine hits both sides (an even number cancels a steady drift).
    #[arg(long, default_value_t = 8)]
    rounds: usize,
    /// A PostgreSQL server where the bench may create (and then drop) a scratch database,
    /// e.g. postgres://postgres@127.0.0.1:5432/postgres: the ingest bench runs into it
    /// after redb, and the query bench runs.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Ingest bench: the cloud phase publishes through the embedded broker's devices' front,
    /// one registered connection per device (the bare phase still goes to rumqttd).
    #[arg(long)]
    through_front: bool,
    /// Points per telemetry sample in the ingest bench (the simulated chiller has 13).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=13))]
    points: u16,
    /// Devices of the query bench.
    #[arg(long, default_value_t = 20)]
    query_devices: u32,
    /// Days of 1-minute samples per device in the query bench.
    #[arg(long, default_value_t = 365)]
    query_days: u32,
    /// Times each query of the query bench runs.
    #[arg(long, default_value_t = 50)]
    query_runs: usize,
    /// Largest cluster of the cluster bench (it measures 1, 2, … this many nodes).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
}

impl BenchArgs {
    /// `mqtt.ack_after_commit` for the ingest benchmark (`None`: the broker's default).
    fn ack_after_commit(&self) -> Option<bool> {
        match (self.ack_on_receipt, self.ack_after_commit) {
            (true, _) => Some(false),
            (_, true) => Some(true),
            _ => None,
        }
    }
}

/// Runs the selected benchmarks. Must be called inside an actix `System`.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    shiki_shared::tls::install_crypto_provider();
    if matches!(args.only, Which::All | Which::Ingest) {
        let rounds = args.rounds.max(1);
        ingest::run(
            args.messages,
            rounds,
            args.ack_after_commit(),
            args.mqtt_url.as_deref(),
            None,
            usize::from(args.points),
            args.through_front,
        )
        .await?;
        if let Some(server) = &args.postgres {
            let db = shared::ScratchDb::create(server).await?;
            let result = ingest::run(
                args.messages,
                rounds,
                args.ack_after_commit(),
                args.mqtt_url.as_deref(),
                Some(&db.url),
                usize::from(args.points),
                args.through_front,
            )
            .await;
            db.drop_now().await;
            result?;
        }
    }
    if matches!(args.only, Which::All | Which::Query) {
        match &args.postgres {
            Some(server) => {
                let db = shared::ScratchDb::create(server).await?;
                let result = query::run(
                    &db.url,
                    args.query_devices,
                    args.query_days,
                    args.query_runs,
                )
                .await;
                db.drop_now().await;
                result?;
            }
            None if args.only == Which::Query => {
                anyhow::bail!(
                    "the query bench needs a PostgreSQL server: give --postgres postgres://user@host:port/database"
                )
            }
            None => {}
        }
    }
    if args.only == Which::Cluster {
        let server = args.postgres.as_deref().context(
            "the cluster bench needs a PostgreSQL server: give --postgres postgres://user@host:port/database",
        )?;
        cluster::run(server, args.nodes, args.messages).await?;
    }
    if matches!(args.only, Which::All | Which::Verify) {
        verify::run(args.changes, args.mqtt_url.as_deref()).await?;
    }
    if matches!(args.only, Which::All | Which::Actors) {
        actors::run(args.devices).await?;
    }
    Ok(())
}
