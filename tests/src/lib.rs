//! Helpers for the end-to-end tests: the real binaries as child processes, a TCP proxy the
//! test can cut or slow down, an admin API client, test certificates, a Mosquitto the test
//! configures, an MQTT probe, and waiting on observed conditions with deadlines.
//!
//! The binaries are found next to the test executable (`target/<profile>/shiki-edge`);
//! `scripts/check` builds them before the tests run, and [`bin_path`] builds them with cargo
//! when they are missing. The crate also holds the `shiki-demo` binary.
//!
//! # Layout
//! - `process`: [`Child`] (log file, SIGTERM, SIGKILL, killed on drop), [`bin_path`].
//! - `proxy`: [`TcpProxy`] (cut, restore, slow link).
//! - [`stack`]: [`PlcSim`], [`Cloud`], [`Edge`] as processes; [`Api`]; Modbus reads.
//! - [`pki`]: rcgen CA, server and client certificates.
//! - [`mosquitto`]: a Mosquitto of the test's own: TLS with client certificates and an ACL
//!   file, or plain.
//! - [`probe`]: an MQTT client recording what it receives.
//! - [`grafana`]: the provisioned Grafana dashboards, their SQL expanded as Grafana's
//!   PostgreSQL data source expands it, and the checks Grafana makes of the answers.
//! - [`plc_proxy`]: [`PlcProxy`](plc_proxy::PlcProxy), a Modbus TCP proxy that can refuse
//!   connections or answer exceptions.
//! - [`chaos`]: the randomized fault campaign of `shiki-chaos` (issue #21).
//! - [`ota`]: edge binaries to update (copies, stamped builds), release keys through
//!   the cloud's CLI, artifacts and jobs through the API.
//!
//! The tests themselves are in `tests/tests/`, one file (one process) per scenario.

pub mod chaos;
pub mod grafana;
pub mod idp;
pub mod mosquitto;
pub mod ota;
pub mod pki;
pub mod plc_proxy;
pub mod probe;
mod process;
mod proxy;
pub mod stack;

pub use process::{Child, bin_path, free_port};
pub use proxy::TcpProxy;
pub use stack::{Api, Cloud, Edge, EdgeOptions, PlcSim, assert_contiguous, read_holding, temp_dir};

use std::future::Future;
use std::time::Duration;

/// Polls `check` until it returns `Some`, or fails after `timeout` naming `what`.
/// The poll interval is short; the test waits on a condition, never on a fixed delay.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Installs ring as rustls' process-wide crypto provider (idempotent).
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
