//! `shiki-edge`: the gateway agent. It polls the PLC over Modbus, owns local control within
//! safety limits, runs the yearly schedule, buffers every sample in redb and forwards it
//! over MQTT, and applies desired settings from the device shadow.
//!
//! # Layout
//! - `messages`: the messages actors exchange.
//! - `register_map`: the `[plc]` config, point codec, read planning and catalog.
//! - `plc_link`: the `PlcLink` actor (one Modbus TCP connection or RTU bus).
//! - `plc_sim`: a Modbus TCP absorption chiller/heater simulator serving the default map.
//! - `control`: the `Control` actor (effective settings, writes, read-back, reports).

pub mod control;
pub mod messages;
pub mod plc_link;
pub mod plc_sim;
pub mod register_map;
#[cfg(test)]
mod test_support;
