//! Serde helpers for durations written as humantime strings (`"10s"`, `"1m 30s"`,
//! `"250ms"`). Use with `#[serde(with = "shiki_shared::config::duration")]`, or
//! `duration::option` for an `Option<Duration>`.
//!
//! ```
//! use std::time::Duration;
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Plc {
//!     #[serde(with = "shiki_shared::config::duration")]
//!     poll_interval: Duration,
//! }
//! let plc: Plc = shiki_shared::config::from_str(r#"poll_interval = "1m 30s""#).unwrap();
//! assert_eq!(plc.poll_interval, Duration::from_secs(90));
//! ```

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// Parses a humantime duration; the error says what was wrong and shows an example. Fits
/// clap's `value_parser` for command-line flags.
///
/// # Errors
/// When `text` is not a duration with units, such as `"ten"` or `"10"`.
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!(
            "invalid duration {text:?}: {e} (write a number and a unit, e.g. \"10s\" or \"1m\")"
        )
    })
}

/// Formats a duration as humantime does (`"1m 30s"`).
pub fn format(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// Serialises a duration as a humantime string.
///
/// # Errors
/// Only the serializer's own errors.
pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*duration))
}

/// Deserialises a humantime string into a duration.
///
/// # Errors
/// When the value is not a string or not a duration with units.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(DurationVisitor)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration with a unit, such as \"10s\" or \"1m\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "invalid duration {v}: a duration needs a unit and quotes, e.g. \"{v}s\""
        )))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "invalid duration {v}: a duration needs a unit and quotes, e.g. \"{v}s\""
        )))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "invalid duration {v}: a duration needs a unit and quotes, e.g. \"{v}s\""
        )))
    }
}

/// The same for `Option<Duration>` (use with `#[serde(default, with = "...::option")]`).
pub mod option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises `Some` as a humantime string and `None` as nothing (TOML has no null).
    ///
    /// # Errors
    /// Only the serializer's own errors.
    pub fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(d) => super::serialize(d, serializer),
            None => serializer.serialize_none(),
        }
    }

    /// Deserialises an optional humantime string.
    ///
    /// # Errors
    /// When the value is present but not a duration with units.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super")] Duration);
        Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|Wrapped(d)| d))
    }
}
