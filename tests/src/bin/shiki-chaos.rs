//! `shiki-chaos`: the randomized fault campaign of issue #21 (see `shiki_e2e::chaos`). Runs
//! the real cloud, edges and simulated PLCs on loopback, injects faults drawn from a seed
//! for a number of rounds, checks the invariants from outside and prints
//! `rounds N, faults F, samples S, lost 0, duplicated 0` with the seed to replay. Exits 1
//! when an invariant broke, 2 when the campaign could not run.
//!
//! ```sh
//! scripts/chaos                      # 100 rounds, a new seed
//! scripts/chaos --seed 42 --rounds 5 # replay a seed
//! ```

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use shiki_e2e::chaos::{self, Broker, Options};

/// Runs Shiki under random faults and checks that nothing was lost or duplicated.
#[derive(Debug, Parser)]
#[command(name = "shiki-chaos", version)]
struct Args {
    /// Seed of the fault plan (default: from the clock; printed for replay).
    #[arg(long)]
    seed: Option<u64>,
    /// Rounds of faults.
    #[arg(long, default_value_t = 100)]
    rounds: u32,
    /// Edges (each with its own simulated PLC).
    #[arg(long, default_value_t = 3)]
    edges: usize,
    /// Length of a round.
    #[arg(long, default_value = "6s", value_parser = humantime::parse_duration)]
    round: Duration,
    /// How long the final checks wait for backlogs to drain and changes to settle.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    settle_timeout: Duration,
    /// Keep the processes' logs and data in this directory (default: a temporary one,
    /// removed at the end).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The broker: the cloud's `embedded` one (restarted with the cloud), or an external
    /// `mosquitto` with persistence, restarted on its own as a fault too.
    #[arg(long, default_value = "embedded", value_parser = ["embedded", "mosquitto"])]
    broker: String,
    /// Log filter (RUST_LOG syntax); each round's faults are logged at info.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    let opts = Options {
        seed,
        rounds: args.rounds,
        edges: args.edges,
        round: args.round,
        settle_timeout: args.settle_timeout,
        dir: args.dir,
        broker: if args.broker == "mosquitto" {
            Broker::Mosquitto
        } else {
            Broker::Embedded
        },
    };
    tracing::info!(
        seed,
        rounds = opts.rounds,
        edges = opts.edges,
        "chaos campaign"
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: cannot start a runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(chaos::run(&opts)) {
        Ok(report) => {
            let _ = writeln!(std::io::stdout(), "{report}");
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "error: the campaign could not run: {e:#}\nseed {seed} (replay: scripts/chaos \
                 --seed {seed} --rounds {})",
                opts.rounds
            );
            ExitCode::from(2)
        }
    }
}
