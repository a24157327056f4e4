//! Library shared by `shiki-edge` and `shiki-cloud`: the yearly schedule engine, the "same
//! value at a point's resolution" rule, configuration loading, the clock, TLS and tracing
//! setup. No actors live here, and nothing only one binary uses (the cloud's shadow model
//! is in `shiki-cloud-model`).
//!
//! ```
//! use shiki_shared::{Clock, TestClock, resolution::same_number};
//!
//! let clock = TestClock::new();
//! let before = clock.now();
//! clock.advance(std::time::Duration::from_secs(60));
//! assert_eq!((clock.now() - before).num_seconds(), 60);
//! assert!(same_number(7.04, 7.0, Some(0.1)));
//! ```
//!
//! # Layout
//! - `schedule`: the yearly schedule model, validation and evaluation (pure functions).
//! - [`config`]: TOML + `SHIKI_*` environment + CLI overrides, errors naming key and file;
//!   [`config::duration`] reads `"10s"`-style durations.
//! - [`ota`]: signed OTA manifests (ed25519): [`ota::Manifest`], [`ota::TrustedKeys`],
//!   [`ota::ReleaseKey`].
//! - [`resolution`]: [`resolution::same_number`], the one "same value at the point's
//!   resolution" rule of both binaries.
//! - [`clock`]: the [`Clock`] trait with system and test clocks, [`clock::ClockWatch`] for
//!   steps and [`clock::plausible`] for readings no set clock shows.
//! - [`logging`]: tracing subscriber setup, called by the binaries only.
//! - [`throttle`]: [`throttle::Throttle`], a log line that repeats as fast as a failure
//!   does goes through at most once per period.
//! - [`tls`]: rustls client/server configurations from PEM files; the ring provider.

pub mod clock;
pub mod config;
pub mod logging;
pub mod ota;
pub mod resolution;
pub mod schedule;
pub mod throttle;
pub mod tls;

pub use clock::{Clock, SharedClock, SystemClock, TestClock};
pub use config::{ConfigError, ENV_PREFIX, Validate};
pub use logging::LoggingError;
pub use tls::{ClientTlsFiles, TlsError, install_crypto_provider};
