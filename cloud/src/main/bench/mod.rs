//! `shiki-cloud bench`: prints benchmark figures to stdout. Build with `--release`; every
//! run uses its own temp dirs and free ports.
//!
//! - `actors` ([`actors`]): N device actors resident through the registry; RSS from
//!   `/proc/self/status`.
//! - `ingest` ([`ingest`]): the same telemetry stream through the embedded broker (or an
//!   external one, `--mqtt-url`), drained first by a bare subscriber, then ingested into the
//!   redb store; both rates, their ratio and the CPU per message of every thread
//!   ([`cpu`]).
//! - `verify` ([`verify`]): desired change → delta → simulated device reports → verified,
//!   latency percentiles.
//!
//! [`shared`] holds what they have in common: the cloud's configuration, temp dirs, MQTT
//! clients standing in for devices, and printing.

mod actors;
mod cpu;
mod ingest;
mod shared;
mod verify;

/// Which benchmark to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    All,
    Actors,
    Ingest,
    Verify,
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
        )
        .await?;
    }
    if matches!(args.only, Which::All | Which::Verify) {
        verify::run(args.changes, args.mqtt_url.as_deref()).await?;
    }
    if matches!(args.only, Which::All | Which::Actors) {
        actors::run(args.devices).await?;
    }
    Ok(())
}
