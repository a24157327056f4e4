//! The register map: which Modbus registers hold which named point, how to decode them,
//! and the safety limits of writable points.
//!
//! A [`PlcConfig`] is the `[plc]` section of the edge config (see `deploy/edge.example.toml`);
//! [`RegisterMap::new`] validates its points and is the only way to get a map, so every map
//! in the program is valid. The map is pure: it encodes and decodes values
//! ([`PointConfig::decode`], [`PointConfig::encode`]), plans grouped reads
//! ([`RegisterMap::plan_reads`]) and describes itself to the cloud ([`RegisterMap::catalog`]).
//!
//! # Addresses
//! `address` is the 0-based protocol address, as it travels in the Modbus frame. PLC
//! documentation often uses the 1-based "Modicon" convention instead: holding register
//! `40001` is protocol address 0 of the holding table, input register `30012` is input
//! address 11, coil `00001` is coil address 0, discrete input `10001` is discrete address 0.
//! Messages and events show both ([`RegisterKind::describe`]: "holding register 40012").

mod codec;
mod plan;
mod table;
#[cfg(test)]
mod tests;
mod validate;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shiki_proto::{Catalog, PROTOCOL_VERSION, PointInfo, PointRole, ValueKind};

pub use codec::{CodecError, Limited, Raw};
pub use plan::{MAX_READ_BITS, MAX_READ_REGISTERS, ReadRequest, plan_reads};
pub use table::points_table;
use validate::validate;

/// Default unit id (Modbus slave address) of a PLC.
pub const DEFAULT_UNIT_ID: u8 = 1;
/// Default largest gap (unmapped registers or bits) a grouped read may span.
pub const DEFAULT_MAX_GAP: u16 = 8;

/// The `[plc]` config section: where the PLC is, how to talk to it, and its points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlcConfig {
    /// `host:port` for Modbus TCP, or a serial device path (`/dev/ttyUSB0`, `COM3`) for RTU.
    pub address: String,
    /// Serial line settings, used only for RTU.
    #[serde(default)]
    pub serial: SerialConfig,
    /// Unit id (slave address) used by points that do not name their own.
    #[serde(default = "default_unit_id")]
    pub unit_id: u8,
    /// How often every point is read.
    #[serde(default = "default_poll_interval", with = "duration")]
    pub poll_interval: Duration,
    /// Time allowed for one Modbus request (and for connecting).
    #[serde(default = "default_request_timeout", with = "duration")]
    pub request_timeout: Duration,
    /// First reconnect delay after the link is lost; doubles up to `reconnect_max`.
    #[serde(default = "default_reconnect_min", with = "duration")]
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    #[serde(default = "default_reconnect_max", with = "duration")]
    pub reconnect_max: Duration,
    /// Largest run of unmapped registers (or bits) one grouped read may span.
    #[serde(default = "default_max_gap")]
    pub max_gap: u16,
    /// The point list.
    #[serde(default)]
    pub points: Vec<PointConfig>,
}

/// Serial line settings for Modbus RTU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SerialConfig {
    pub baud_rate: u32,
    /// `none`, `even` or `odd`.
    pub parity: Parity,
    /// 7 or 8.
    pub data_bits: u8,
    /// 1 or 2.
    pub stop_bits: u8,
}

impl Default for SerialConfig {
    fn default() -> Self {
        Self {
            baud_rate: 9600,
            parity: Parity::None,
            data_bits: 8,
            stop_bits: 1,
        }
    }
}

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parity {
    None,
    Even,
    Odd,
}

/// Where the PLC is, derived from [`PlcConfig::address`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Modbus TCP `host:port`.
    Tcp(String),
    /// Modbus RTU on a serial device.
    Rtu(String),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
            Endpoint::Rtu(p) => write!(f, "rtu:{p}"),
        }
    }
}

impl PlcConfig {
    /// TCP when the address looks like `host:port`, RTU when it is a device path.
    pub fn endpoint(&self) -> Endpoint {
        let a = self.address.trim();
        if a.starts_with('/') || a.to_ascii_uppercase().starts_with("COM") {
            Endpoint::Rtu(a.to_owned())
        } else {
            Endpoint::Tcp(a.trim_start_matches("tcp://").to_owned())
        }
    }

    /// Parse the `[plc]` table out of a whole edge config file (other sections ignored).
    pub fn from_config_toml(text: &str) -> Result<Self, MapError> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| MapError::Parse(e.to_string()))?;
        let plc = table
            .remove("plc")
            .ok_or_else(|| MapError::Parse("missing [plc] section".into()))?;
        plc.try_into()
            .map_err(|e: toml::de::Error| MapError::Parse(format!("[plc]: {e}")))
    }
}

fn default_unit_id() -> u8 {
    DEFAULT_UNIT_ID
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_reconnect_min() -> Duration {
    Duration::from_secs(1)
}
fn default_reconnect_max() -> Duration {
    Duration::from_secs(60)
}
fn default_max_gap() -> u16 {
    DEFAULT_MAX_GAP
}

/// Durations as humantime strings ("10s", "1m 30s").
pub(crate) mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
    }
}

/// The four Modbus data tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterKind {
    /// Read/write 16-bit registers (4xxxx).
    Holding,
    /// Read-only 16-bit registers (3xxxx).
    Input,
    /// Read/write bits (0xxxx).
    Coil,
    /// Read-only bits (1xxxx).
    Discrete,
}

impl RegisterKind {
    /// Bits (coil, discrete) rather than 16-bit registers.
    pub fn is_bit(self) -> bool {
        matches!(self, RegisterKind::Coil | RegisterKind::Discrete)
    }

    /// Whether the protocol allows writing this table.
    pub fn is_writable(self) -> bool {
        matches!(self, RegisterKind::Holding | RegisterKind::Coil)
    }

    /// For people: the table and the 1-based Modicon number, e.g. "holding register 40012"
    /// for protocol address 11.
    pub fn describe(self, address: u16) -> String {
        let (label, prefix) = match self {
            RegisterKind::Holding => ("holding register", 4),
            RegisterKind::Input => ("input register", 3),
            RegisterKind::Coil => ("coil", 0),
            RegisterKind::Discrete => ("discrete input", 1),
        };
        let n = u32::from(address) + 1;
        if n <= 9999 {
            format!("{label} {prefix}{n:04}")
        } else {
            format!("{label} {prefix}{n:05}")
        }
    }
}

/// How a point's value sits in its registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    /// A u16 raw value mapped to labels by `options`.
    Enum,
}

/// Order of the two registers of a 32-bit value. Bytes within a register are always big-endian
/// (Modbus); `big` puts the high word first (ABCD), `little` the low word first (CDAB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WordOrder {
    #[default]
    Big,
    Little,
}

/// What to do with a requested value outside a writable point's `min`/`max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutOfRange {
    /// Write the nearest limit instead, and report "clamped to …".
    #[default]
    Clamp,
    /// Do not write; the PLC keeps its value and the report says "refused".
    Refuse,
}

/// One named point (`[[plc.points]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointConfig {
    pub name: String,
    pub kind: RegisterKind,
    /// 0-based protocol address (holding register 40001 is address 0).
    pub address: u16,
    #[serde(rename = "type")]
    pub data_type: DataType,
    /// For 32-bit types.
    #[serde(default)]
    pub word_order: WordOrder,
    /// Engineering value = raw × scale + offset.
    #[serde(default = "one")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// A setting the edge may write (holding registers and coils only).
    #[serde(default)]
    pub writable: bool,
    /// Safety limits of a writable numeric point, in engineering units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default)]
    pub on_out_of_range: OutOfRange,
    /// Overrides `[plc].unit_id` for this point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_id: Option<u8>,
    /// Enum labels and their raw register values, e.g. `{ cooling = 0, heating = 1 }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, u16>,
    /// Smallest meaningful step; defaults to `scale` (integer types) or exact-ish for f32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<f64>,
    /// For people (docs/points.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn one() -> f64 {
    1.0
}

/// Why a register map (or a config file's `[plc]` section) is not usable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MapError {
    #[error("cannot parse plc config: {0}")]
    Parse(String),
    #[error("point {point:?}: {reason}")]
    InvalidPoint { point: String, reason: String },
    #[error("point name {0:?} is used twice")]
    DuplicateName(String),
    #[error("points {first:?} and {second:?} overlap at unit {unit_id} {register}")]
    Overlap {
        first: String,
        second: String,
        unit_id: u8,
        register: String,
    },
    #[error("[plc] {key}: {reason}")]
    InvalidSetting { key: &'static str, reason: String },
}

/// A validated point list with the link settings. Cheap to clone.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterMap {
    config: PlcConfig,
}

impl RegisterMap {
    /// Validate a `[plc]` section.
    pub fn new(config: PlcConfig) -> Result<Self, MapError> {
        validate(&config)?;
        Ok(Self { config })
    }

    /// Parse and validate the `[plc]` section of a whole config file.
    pub fn from_config_toml(text: &str) -> Result<Self, MapError> {
        Self::new(PlcConfig::from_config_toml(text)?)
    }

    pub fn config(&self) -> &PlcConfig {
        &self.config
    }

    pub fn points(&self) -> &[PointConfig] {
        &self.config.points
    }

    pub fn point(&self, name: &str) -> Option<&PointConfig> {
        self.config.points.iter().find(|p| p.name == name)
    }

    /// The unit id a point is read and written with.
    pub fn unit_id_of(&self, point: &PointConfig) -> u8 {
        point.unit_id.unwrap_or(self.config.unit_id)
    }

    /// Writable points (settings).
    pub fn settings(&self) -> impl Iterator<Item = &PointConfig> {
        self.config.points.iter().filter(|p| p.writable)
    }

    /// Grouped reads covering every point (see [`plan_reads`]).
    pub fn plan_reads(&self) -> Vec<ReadRequest> {
        plan_reads(
            &self.config.points,
            self.config.unit_id,
            self.config.max_gap,
        )
    }

    /// The point list as the cloud sees it.
    pub fn catalog(&self) -> Catalog {
        Catalog {
            v: PROTOCOL_VERSION,
            points: self.config.points.iter().map(PointConfig::info).collect(),
        }
    }
}

impl PointConfig {
    /// Registers (or bits) the point occupies.
    pub fn width(&self) -> u16 {
        match self.data_type {
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            _ => 1,
        }
    }

    /// Enum labels ordered by raw value.
    pub fn option_labels(&self) -> Vec<String> {
        let mut v: Vec<(&String, &u16)> = self.options.iter().collect();
        v.sort_by_key(|(_, raw)| **raw);
        v.into_iter().map(|(l, _)| l.clone()).collect()
    }

    /// Catalog entry.
    pub fn info(&self) -> PointInfo {
        let kind = match self.data_type {
            DataType::Bool => ValueKind::Bool,
            DataType::Enum => ValueKind::Enum,
            _ => ValueKind::Number,
        };
        let numeric = kind == ValueKind::Number;
        PointInfo {
            name: self.name.clone(),
            role: if self.writable {
                PointRole::Setting
            } else {
                PointRole::Reading
            },
            kind,
            unit: self.unit.clone(),
            writable: self.writable,
            min: self.min.filter(|_| numeric),
            max: self.max.filter(|_| numeric),
            resolution: self.resolution().filter(|_| numeric),
            options: self.option_labels(),
        }
    }

    /// For people: "holding register 40012".
    pub fn register(&self) -> String {
        self.kind.describe(self.address)
    }
}
