//! `shiki-edge`: the gateway agent. It polls the PLC over Modbus, owns local control within
//! safety limits, runs the yearly schedule, buffers every sample in redb and forwards it
//! over MQTT, and applies desired settings from the device shadow.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = shiki_edge::EdgeConfig::load(std::path::Path::new("edge.toml"))?;
//! config.validate()?;
//! // Inside an actix System: runs until the future completes, then flushes and returns.
//! shiki_edge::run(config, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - `app`: the composition root ([`run`], [`run_with_clock`], [`run_agent`] with a
//!   [`RunMode`]); the only place actors are built and wired.
//! - `backoff`: the capped exponential reconnect backoff of the PLC link and the uplink.
//! - `config`: [`EdgeConfig`] (TOML via `shiki_shared::config`, `SHIKI_*` and flag
//!   overrides, validation naming the key).
//! - `messages`: the messages actors exchange.
//! - `register_map`: the `[plc]` config, point codec, read planning and catalog.
//! - `plc_link`: the `PlcLink` actor (one Modbus TCP connection or RTU bus) over its plain
//!   `LinkState`.
//! - `plc_sim`: a Modbus TCP absorption chiller/heater simulator serving the default map.
//! - `schedule`: the `ScheduleActor` (yearly schedule, current and next, switched offline).
//! - `control`: the `Control` actor (effective settings, writes, read-back, reports).
//! - `telemetry`: samples readings into the outbox at the telemetry interval; records events.
//! - `outbox`: the redb store (outbox, counters, documents, audit log, schedules) and its
//!   group-commit writer; `RedbScheduleStore` for the schedule actor.
//! - `uplink`: the MQTT uplink (rumqttc): its send window (mode, reads, PUBACK tracking)
//!   as plain code, batches spliced from the outbox's stored JSON.
//! - `shadow`: desired document → overrides, Control reports → `shadow/reported`.
//! - `ota`: signed over-the-air updates: the `Ota` actor over its plain `OtaState`, the
//!   resumable download and artifact checks, the install with a trial run and rollback
//!   (`ota::trial`, run by the binary after [`run_agent`] returned [`Exit::Install`]), and
//!   the `Health` actor of a run on trial.
//!
//! `shiki-edge bench` (outbox and uplink figures on a gateway) is part of the binary
//! (`src/main/bench.rs`), not of this library.

mod app;
mod backoff;
pub mod config;
pub mod control;
pub mod messages;
pub mod ota;
pub mod outbox;
pub mod plc_link;
pub mod plc_sim;
pub mod register_map;
pub mod schedule;
pub mod shadow;
pub mod telemetry;
#[cfg(test)]
mod test_support;
pub mod uplink;

pub use app::{Exit, RunError, RunMode, run, run_agent, run_with_clock};

/// This build's version: `SHIKI_BUILD_VERSION` at build time, else the package version
/// (`edge/build.rs`). `--version`, the boot event and `status.software_version` report it.
pub const VERSION: &str = env!("SHIKI_EDGE_VERSION");
pub use config::{ConfigError, EdgeConfig, Overrides};
