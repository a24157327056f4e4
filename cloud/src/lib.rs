//! placeholder
//!
//! # Layout
//! - `schedule`: yearly schedule sync per device, fleet-wide yearly jobs, API DTOs.

pub mod schedule;
