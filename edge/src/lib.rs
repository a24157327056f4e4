//! `shiki-edge`: the gateway agent. It polls the PLC over Modbus, owns local control within
//! safety limits, runs the yearly schedule, buffers every sample in redb and forwards it
//! over MQTT, and applies desired settings from the device shadow.
//!
//! # Layout
//! - `messages`: the messages actors exchange.
//! - `schedule`: the Schedule actor (yearly schedule, offline) and its state machine.

pub mod messages;
pub mod schedule;
