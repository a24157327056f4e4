//! Shiki cloud: embedded broker, device actors, history store, verification, alerts and
//! the admin API.
//!
//! # Layout
//! - `config`: [`CloudConfig`], TOML with defaults and validation.
//! - `store`: the [`store::Store`] trait and its redb backend (group commit).
//! - `broker`: the embedded rumqttd broker and the cloud's MQTT client options.
//! - `ingest`: MQTT → device actors; device actors → MQTT.
//! - `device`: one [`device::DeviceActor`] per device over a plain state machine, and the
//!   [`device::Registry`].
//! - `notifier`: Slack-compatible webhook alerts.
//! - `api`: the admin API (actix-web) and the [`api::Backend`] trait it calls.
//! - `auth`: bearer tokens, hashing and roles.
//! - `app`: the composition root, [`run`].

pub mod api;

pub mod auth;

pub mod config;
pub mod device;

pub mod notifier;
pub mod store;

pub use config::{CloudConfig, ConfigError};
