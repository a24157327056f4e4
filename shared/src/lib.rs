//! Library shared by `shiki-edge` and `shiki-cloud`: the shadow model, the yearly schedule
//! engine, configuration loading, the clock, TLS and tracing setup. No actors live here.
//!
//! # Layout
//! - `shadow`: desired/reported/delta, versions, metadata, limits (pure functions).
//! - `schedule`: the yearly schedule model, validation and evaluation (pure functions).
//! - `config`: TOML + `SHIKI_*` environment + CLI overrides, errors naming key and file.
//! - `clock`: the [`clock::Clock`] trait with system and test clocks.
//! - `logging`: tracing subscriber setup, called by the binaries only.

pub mod clock;
pub mod config;
pub mod logging;
pub mod schedule;
pub mod shadow;
pub mod tls;
