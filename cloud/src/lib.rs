//! Shiki cloud: embedded broker, device actors, history store, verification, alerts and
//! the admin API.
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
//! - `store`: the [`store::Store`] trait and its redb backend (group commit).
//! - `broker`: the embedded rumqttd broker and the cloud's MQTT client options.
//! - `ingest`: MQTT → device actors.
//! - `publisher`: [`publisher::MqttPublisher`], device actors → MQTT.
//! - `device`: one [`device::DeviceActor`] per device over a plain state machine
//!   ([`device::DeviceState`]), and the [`device::Registry`].
//! - `notifier`: Slack-compatible webhook alerts.
//! - `schedule`: yearly schedule sync per device, fleet-wide yearly jobs, API DTOs.
//! - `api`: the admin API (actix-web) and the [`api::Backend`] trait it calls.
//! - `auth`: bearer tokens, hashing and roles.
//! - `app`: the composition root: [`start`], [`run`].

pub mod api;
mod app;
pub mod auth;
mod backend_impl;
pub mod bench;
pub mod broker;
pub mod config;
pub mod device;
pub mod ingest;
pub mod notifier;
pub mod publisher;
pub mod schedule;
pub mod store;
#[cfg(test)]
mod test_support;
mod throttle;

pub use app::{App, AppError, run, start};
pub use backend_impl::CloudBackend;
pub use config::{BrokerTarget, CloudConfig, ConfigError};
