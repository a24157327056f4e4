//! Shiki cloud: the composition root and the actors (embedded broker, ingest, device
//! actors, verification, schedule sync, alerts). Its parts live in crates of their own,
//! re-exported here under the names the actors use: the device model
//! (`shiki-cloud-model`), the store ([`store`], `shiki-cloud-store`) and the HTTP surface
//! ([`api`] and [`auth`], `shiki-cloud-api`).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = shiki_cloud::CloudConfig::default();
//! config.data_dir = "/var/lib/shiki-cloud".into();
//! actix::System::new().block_on(shiki_cloud::run(config, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! }))?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - `config`: [`CloudConfig`], TOML with defaults and validation.
//! - [`store`] (crate `shiki-cloud-store`): the [`store::Store`] trait and its redb backend.
//! - `broker`: the embedded rumqttd broker and the cloud's MQTT client options.
//! - `ingest`: MQTT → device actors.
//! - `publisher`: [`publisher::MqttPublisher`], device actors → MQTT.
//! - `device`: one [`device::DeviceActor`] per device over a plain state machine
//!   ([`device::DeviceState`]), and the [`device::Registry`].
//! - `notifier`: Slack-compatible webhook alerts.
//! - `schedule`: yearly schedule sync per device, fleet-wide yearly jobs.
//! - `ota`: OTA jobs: the [`ota::JobsActor`] over the [`ota::Jobs`] state machine.
//! - [`api`] (crate `shiki-cloud-api`): the admin API and the [`api::Backend`] trait it
//!   calls; [`auth`]: bearer tokens, hashing and roles. `backend_impl` implements
//!   [`api::Backend`] over the actors and the store ([`CloudBackend`]), its job half in
//!   `backend_jobs`.
//! - `cluster`: several processes sharing a fleet: shard leases in PostgreSQL, fenced
//!   writes, each shard's MQTT session, the coordinator.
//! - `app`: the composition root: [`start`], [`run`].

mod app;
mod backend_impl;
mod backend_jobs;
mod backend_registry;
#[cfg(test)]
mod backend_tests;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod device;
pub mod ingest;
pub mod notifier;
pub mod ota;
pub mod publisher;
pub mod schedule;
#[cfg(test)]
mod test_support;

pub use app::{App, AppError, run, start};
pub use backend_impl::CloudBackend;
pub use config::{BrokerTarget, CloudConfig, ConfigError};
/// The admin API crate and its auth module, under the names the composition root uses.
pub use shiki_cloud_api::{self as api, auth};
/// The store crate, under the name the actors use.
pub use shiki_cloud_store as store;
