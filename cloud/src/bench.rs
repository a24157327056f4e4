//! Benchmarks behind `shiki-cloud bench` (figures printed to stdout).

/// Which benchmark to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    All,
    Actors,
    Ingest,
    Verify,
}

/// Benchmark sizes.
#[derive(Debug, Clone, Copy)]
pub struct BenchOptions {
    pub devices: usize,
    pub messages: usize,
    pub changes: usize,
    pub only: Which,
}

/// Runs the selected benchmarks.
pub async fn run(_opts: BenchOptions) -> Result<(), crate::AppError> {
    Ok(())
}
