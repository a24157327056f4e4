//! `shiki-edge`: the gateway agent. It polls the PLC over Modbus, owns local control within
//! safety limits, runs the yearly schedule, buffers every sample in redb and forwards it
//! over MQTT, and applies desired settings from the device shadow.
//!
//! # Layout
//! - `messages`: the messages actors exchange.
//! - `outbox`: the redb store (outbox, counters, documents) and its group-commit writer.

mod app;
pub mod bench;
pub mod clock;
pub mod config;
pub mod messages;
pub mod outbox;
pub mod shadow;
pub mod telemetry;
pub mod uplink;

pub use app::{RunError, run};
pub use config::{ConfigError, EdgeConfig, Overrides};
