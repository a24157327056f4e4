//! Library shared by `shiki-edge` and `shiki-cloud`: the shadow model, the yearly schedule
//! engine, configuration loading, the clock, TLS and tracing setup. No actors live here.
//!
//! ```
//! use serde_json::json;
//! use shiki_shared::{Clock, DesiredChange, Shadow, TestClock};
//!
//! let clock = TestClock::new();
//! let mut shadow = Shadow::default();
//! let settings = json!({"chw_setpoint_c": 7.0}).as_object().cloned().unwrap();
//! shadow.apply_desired(DesiredChange::new(settings), clock.now()).unwrap();
//! let delta = shadow.delta_message(clock.now()).unwrap();
//! assert_eq!(delta.version, 1);
//! ```
//!
//! # Layout
//! - [`shadow`]: desired/reported/delta, versions, metadata, limits (pure functions).
//! - `schedule`: the yearly schedule model, validation and evaluation (pure functions).
//! - [`config`]: TOML + `SHIKI_*` environment + CLI overrides, errors naming key and file;
//!   [`config::duration`] reads `"10s"`-style durations.
//! - [`resolution`]: [`resolution::same_number`], the one "same value at the point's
//!   resolution" rule of both binaries.
//! - [`clock`]: the [`Clock`] trait with system and test clocks.
//! - [`logging`]: tracing subscriber setup, called by the binaries only.
//! - [`tls`]: rustls client/server configurations from PEM files; the ring provider.

pub mod clock;
pub mod config;
pub mod logging;
pub mod resolution;
pub mod schedule;
pub mod shadow;
pub mod tls;

pub use clock::{Clock, SharedClock, SystemClock, TestClock};
pub use config::{ConfigError, ENV_PREFIX, Validate};
pub use logging::LoggingError;
pub use shadow::{
    DesiredChange, DesiredOutcome, KeyChange, ReportedOutcome, Shadow, ShadowError, ShadowLimits,
    values_match,
};
pub use tls::{ClientTlsFiles, TlsError, install_crypto_provider};
