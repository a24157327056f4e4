//! Edge configuration: TOML with serde defaults, command-line / `SHIKI_*` overrides, and
//! validation whose errors name the key and the file.
//!
//! The documented example is `deploy/edge.example.toml`; a test parses it whole.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use shiki_proto::{DeviceId, Topics};
use shiki_shared::config::{self as shiki_config, ENV_PREFIX};

use crate::control::{ControlConfig, ControlState};
use crate::register_map::{PlcConfig, RegisterMap};

/// Why a configuration was refused. Every variant names the file and, where there is one,
/// the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// Invalid TOML, a key of the wrong type, an unknown key, or a bad `SHIKI_*` override
    /// (the message names the file, the key and the variable).
    #[error(transparent)]
    Parse(#[from] shiki_config::ConfigError),
    #[error("config file {file}: key `{key}` is invalid: {reason}")]
    Invalid {
        file: String,
        key: &'static str,
        reason: String,
    },
}

/// The whole edge configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    /// Device id, `[A-Za-z0-9_-]{1,64}`; used in topics and as the MQTT client id.
    pub device_id: DeviceId,
    /// Directory of the redb store (`edge.redb`).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub mqtt: MqttConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub outbox: OutboxConfig,
    /// PLC link and register map (see the `[plc]` section of the example). Without it
    /// the agent runs without a PLC (telemetry samples are empty), unless `--plc` is given,
    /// which then uses the default map (the one `shiki-edge plc-sim` serves).
    #[serde(default)]
    pub plc: Option<PlcConfig>,
    /// Local control (see the `[control]` section of the example).
    #[serde(default)]
    pub control: ControlConfig,
    /// The yearly schedule (see the `[schedule]` section of the example).
    #[serde(default)]
    pub schedule: ScheduleSection,
    /// Over-the-air updates of this binary (see the `[ota]` section of the example).
    #[serde(default)]
    pub ota: OtaSection,
    /// The file this configuration came from (for error messages).
    #[serde(skip)]
    pub source_file: Option<PathBuf>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/shiki-edge")
}

/// `[mqtt]`: how the edge reaches the broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// `mqtt://host:port` (plain, e.g. SORACOM Beam) or `mqtts://host:port` (TLS).
    pub url: String,
    pub topic_prefix: String,
    /// MQTT client id; defaults to the device id.
    pub client_id: Option<String>,
    /// MQTT user name; defaults to the device id when a password is set.
    pub username: Option<String>,
    /// MQTT password (the cloud's `POST /api/v1/devices` gives it once).
    pub password: Option<String>,
    /// A file holding the MQTT password (its first line), read at each connection, so a
    /// rotated password is picked up without a restart. Not with `mqtt.password`.
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA(s) that signed the broker certificate (mqtts only).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain and private key (mqtts only; both or neither).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// First reconnect delay; doubles per failed attempt up to `reconnect_max`, with jitter.
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// Outbox batches published and not yet acknowledged at once.
    pub max_inflight_batches: usize,
    /// Most samples in one live batch; a larger backlog is sent as backlog batches.
    pub live_batch_max: usize,
    /// Uncompressed bytes of records read per backlog batch before compression; each
    /// publish still stays within the 128 KiB message limit.
    pub backlog_batch_bytes: usize,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            url: "mqtt://127.0.0.1:1883".into(),
            topic_prefix: shiki_proto::DEFAULT_PREFIX.into(),
            client_id: None,
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            keep_alive: Duration::from_secs(60),
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(120),
            max_inflight_batches: 2,
            live_batch_max: 10,
            backlog_batch_bytes: 256 * 1024,
        }
    }
}

/// `[telemetry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Time between samples of every point.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long a live sample may wait to be sent with the next ones (`0s`: each sample is
    /// sent at once). A batch goes when its oldest sample has waited this long or it holds
    /// `mqtt.live_batch_max` samples. Events, alarms and reported state never wait.
    #[serde(with = "humantime_serde")]
    pub batch_max_delay: Duration,
    /// Telemetry payload format: `compact` (protocol version 2, needs a cloud of this
    /// version or newer) or `json` (version 1, what older clouds read).
    pub encoding: TelemetryEncoding,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            batch_max_delay: Duration::ZERO,
            encoding: TelemetryEncoding::Compact,
        }
    }
}

/// `telemetry.encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TelemetryEncoding {
    /// Protocol version 2: point dictionary, deltas (`shiki_proto::encode_compact`).
    #[default]
    Compact,
    /// Protocol version 1: a JSON object per sample with point names.
    Json,
}

/// Smallest `outbox.quota_kib`.
pub const MIN_QUOTA_KIB: u64 = 16;

/// `[outbox]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// Disk quota of buffered records in MiB; past it the oldest telemetry is dropped first.
    pub quota_mib: u64,
    /// The quota in KiB instead, for gateways with little flash (and tests that fill it):
    /// wins over `quota_mib` when set.
    pub quota_kib: Option<u64>,
    /// redb page cache in MiB (bounds memory).
    pub cache_mib: u64,
    /// How long telemetry samples may wait to be committed together (0s: each sample is
    /// committed, and sent, at once). Each durable redb commit writes about 29 KB, so one
    /// sample a minute costs about 41 MB of disk writes a day at 0s and 3 to 4 MB at 15m;
    /// samples not yet committed are lost on a power cut or kill -9, and are sent late by
    /// up to this interval. Events are always committed at once.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            quota_mib: 256,
            quota_kib: None,
            cache_mib: 1,
            commit_interval: Duration::ZERO,
        }
    }
}

impl OutboxConfig {
    /// The quota in bytes: `quota_kib` when set, else `quota_mib`.
    pub fn quota_bytes(&self) -> u64 {
        match self.quota_kib {
            Some(kib) => kib.saturating_mul(1024),
            None => self.quota_mib.saturating_mul(1024 * 1024),
        }
    }
}

/// `[schedule]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleSection {
    /// A schedule document (JSON, e.g. `deploy/schedule.example.json`) installed at
    /// start-up as the current schedule when the store holds none; a path relative to the
    /// working directory. Validated against the register map like a pushed schedule.
    pub file: Option<PathBuf>,
    /// Longest time between two evaluations of the schedule, whatever the next transition
    /// (so a clock step, e.g. NTP after a long power-off, is noticed within it).
    #[serde(with = "humantime_serde")]
    pub max_sleep: Duration,
}

impl Default for ScheduleSection {
    fn default() -> Self {
        Self {
            file: None,
            max_sleep: Duration::from_secs(60),
        }
    }
}

/// `[ota]`: signed updates of `shiki-edge` (downloads go to `<data_dir>/ota/`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtaSection {
    /// Base64 ed25519 public keys of the release keys (`ota.pub`); several for rotation.
    /// Empty: every OTA job is rejected.
    pub public_keys: Vec<String>,
    /// How long a new build has, from its start on trial, to prove healthy (store opened,
    /// broker reached, PLC read) before the previous binary runs again.
    #[serde(with = "humantime_serde")]
    pub health_window: Duration,
}

impl Default for OtaSection {
    fn default() -> Self {
        Self {
            public_keys: Vec::new(),
            health_window: Duration::from_secs(120),
        }
    }
}

/// Scheme, host and port of the broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

/// Parses `mqtt://host[:port]` or `mqtts://host[:port]`.
pub fn parse_broker_url(url: &str) -> Result<BrokerAddr, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else {
        return Err(format!(
            "{url:?} must start with mqtt:// (plain) or mqtts:// (TLS)"
        ));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("{url:?} has an invalid port {p:?}"))?,
        ),
        None => (rest, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(format!("{url:?} has no valid host"));
    }
    Ok(BrokerAddr {
        tls,
        host: host.to_owned(),
        port,
    })
}

/// Top-level keys that `SHIKI_<KEY>[__<SUBKEY>…]` variables may override.
pub const ENV_SECTIONS: &[&str] = &[
    "device_id",
    "data_dir",
    "mqtt",
    "telemetry",
    "outbox",
    "plc",
    "control",
    "schedule",
    "ota",
];

/// Variables of the command-line flags (`--config`, `--device-id`, `--mqtt-url`, `--plc`,
/// `--data-dir`, `--telemetry-interval`): applied as flags, not as config keys.
pub const FLAG_VARS: &[&str] = &[
    "SHIKI_CONFIG",
    "SHIKI_DEVICE_ID",
    "SHIKI_MQTT_URL",
    "SHIKI_PLC",
    "SHIKI_DATA_DIR",
    "SHIKI_TELEMETRY_INTERVAL",
];

fn is_config_var(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
        return false;
    };
    let section = rest
        .split("__")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    !FLAG_VARS.contains(&name) && ENV_SECTIONS.contains(&section.as_str())
}

/// Command-line (or `SHIKI_*` environment) overrides applied on top of the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub device_id: Option<String>,
    pub mqtt_url: Option<String>,
    pub plc: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub telemetry_interval: Option<Duration>,
}

impl EdgeConfig {
    /// Reads and parses `path` with `SHIKI_*` environment overrides (not yet validated:
    /// see [`EdgeConfig::validate`]).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(
            path,
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    /// [`EdgeConfig::load`] with the given environment instead of the process's.
    ///
    /// `SHIKI_MQTT__URL=mqtts://broker:8883` sets `mqtt.url` (`__` separates nesting
    /// levels; see `shiki_shared::config`). Only variables naming a top-level key of this
    /// file are config overrides ([`ENV_SECTIONS`]); the command-line flags' own variables
    /// ([`FLAG_VARS`]) are applied as flags, after the file.
    pub fn load_with_env(
        path: &Path,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        let vars = vars.into_iter().filter(|(name, _)| is_config_var(name));
        let mut cfg: Self = shiki_config::from_str_with_env(&text, path, ENV_PREFIX, vars)?;
        cfg.source_file = Some(path.to_owned());
        Ok(cfg)
    }

    /// Parses TOML text without environment overrides; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        Ok(shiki_config::from_str_with_env(
            text,
            Path::new(file),
            ENV_PREFIX,
            std::iter::empty(),
        )?)
    }

    fn file(&self) -> String {
        self.source_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "<command line>".into())
    }

    fn invalid(&self, key: &'static str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file(),
            key,
            reason: reason.into(),
        }
    }

    /// Applies command-line overrides.
    pub fn apply(&mut self, o: Overrides) -> Result<(), ConfigError> {
        if let Some(id) = o.device_id {
            self.device_id =
                DeviceId::new(id).map_err(|e| self.invalid("device_id", e.to_string()))?;
        }
        if let Some(url) = o.mqtt_url {
            self.mqtt.url = url;
        }
        if let Some(dir) = o.data_dir {
            self.data_dir = dir;
        }
        if let Some(i) = o.telemetry_interval {
            self.telemetry.interval = i;
        }
        if let Some(address) = o.plc {
            let mut plc = self
                .plc
                .take()
                .unwrap_or_else(|| crate::plc_sim::default_map().config().clone());
            plc.address = address;
            self.plc = Some(plc);
        }
        Ok(())
    }

    /// Checks every value; the error names the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let addr = parse_broker_url(&self.mqtt.url).map_err(|r| self.invalid("mqtt.url", r))?;
        Topics::new(&self.mqtt.topic_prefix)
            .map_err(|e| self.invalid("mqtt.topic_prefix", e.to_string()))?;
        if let Some(id) = &self.mqtt.client_id
            && (id.is_empty() || id.len() > 128)
        {
            return Err(self.invalid("mqtt.client_id", "must be 1 to 128 characters"));
        }
        if self.mqtt.cert_file.is_some() != self.mqtt.key_file.is_some() {
            return Err(self.invalid(
                "mqtt.key_file",
                "mqtt.cert_file and mqtt.key_file must be given together",
            ));
        }
        if !addr.tls && (self.mqtt.ca_file.is_some() || self.mqtt.cert_file.is_some()) {
            return Err(self.invalid(
                "mqtt.ca_file",
                "TLS files are set but mqtt.url is plain mqtt://; use mqtts://",
            ));
        }
        if self.mqtt.password.is_some() && self.mqtt.password_file.is_some() {
            return Err(self.invalid(
                "mqtt.password_file",
                "give mqtt.password or mqtt.password_file, not both",
            ));
        }
        if let Some(p) = &self.mqtt.password_file {
            match std::fs::read_to_string(p) {
                Ok(text) if first_line(&text).is_empty() => {
                    return Err(self.invalid(
                        "mqtt.password_file",
                        format!(
                            "{} is empty: write the device's MQTT password in it",
                            p.display()
                        ),
                    ));
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(self.invalid(
                        "mqtt.password_file",
                        format!("cannot read {}: {e}", p.display()),
                    ));
                }
            }
        }
        for (key, path) in [
            ("mqtt.ca_file", &self.mqtt.ca_file),
            ("mqtt.cert_file", &self.mqtt.cert_file),
            ("mqtt.key_file", &self.mqtt.key_file),
        ] {
            if let Some(p) = path
                && !p.is_file()
            {
                return Err(self.invalid(key, format!("file {} does not exist", p.display())));
            }
        }
        if self.mqtt.keep_alive < Duration::from_secs(5)
            || self.mqtt.keep_alive > Duration::from_secs(u64::from(u16::MAX))
        {
            return Err(self.invalid(
                "mqtt.keep_alive",
                "must be 5s to 18h 12m 15s (65535 s, the MQTT maximum)",
            ));
        }
        if self.mqtt.reconnect_min.is_zero() || self.mqtt.reconnect_min > self.mqtt.reconnect_max {
            return Err(self.invalid(
                "mqtt.reconnect_min",
                "must be above zero and not above mqtt.reconnect_max",
            ));
        }
        if !(1..=64).contains(&self.mqtt.max_inflight_batches) {
            return Err(self.invalid("mqtt.max_inflight_batches", "must be 1 to 64"));
        }
        if !(1..=1000).contains(&self.mqtt.live_batch_max) {
            return Err(self.invalid("mqtt.live_batch_max", "must be 1 to 1000"));
        }
        if !(16 * 1024..=16 * 1024 * 1024).contains(&self.mqtt.backlog_batch_bytes) {
            return Err(self.invalid(
                "mqtt.backlog_batch_bytes",
                "must be 16384 to 16777216 bytes",
            ));
        }
        if self.telemetry.interval < Duration::from_millis(100) {
            return Err(self.invalid("telemetry.interval", "must be at least 100ms"));
        }
        if self.telemetry.batch_max_delay > Duration::from_secs(3600) {
            return Err(self.invalid("telemetry.batch_max_delay", "must be at most 1h"));
        }
        let held = self.telemetry.batch_max_delay.as_nanos() / self.telemetry.interval.as_nanos();
        if held > self.mqtt.live_batch_max as u128 {
            return Err(self.invalid(
                "telemetry.batch_max_delay",
                format!(
                    "{} holds {held} samples at telemetry.interval {}, more than \
                     mqtt.live_batch_max ({}): raise mqtt.live_batch_max to at least {held} \
                     or shorten the delay",
                    humantime::format_duration(self.telemetry.batch_max_delay),
                    humantime::format_duration(self.telemetry.interval),
                    self.mqtt.live_batch_max
                ),
            ));
        }
        if self.outbox.quota_mib == 0 {
            return Err(self.invalid("outbox.quota_mib", "must be at least 1"));
        }
        if let Some(kib) = self.outbox.quota_kib
            && kib < MIN_QUOTA_KIB
        {
            return Err(self.invalid(
                "outbox.quota_kib",
                format!(
                    "must be at least {MIN_QUOTA_KIB} (room for a backlog batch and the \
                     data_dropped event); remove it to use outbox.quota_mib"
                ),
            ));
        }
        if !(1..=1024).contains(&self.outbox.cache_mib) {
            return Err(self.invalid("outbox.cache_mib", "must be 1 to 1024"));
        }
        if self.outbox.commit_interval > Duration::from_secs(3600) {
            return Err(self.invalid("outbox.commit_interval", "must be at most 1h"));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(self.invalid("data_dir", "must not be empty"));
        }
        if let Some(map) = self.register_map()? {
            ControlState::new(map, &self.control)
                .map_err(|e| self.invalid("control", e.to_string()))?;
        } else if !self.control.defaults.is_empty() {
            return Err(self.invalid(
                "control.defaults",
                "defaults are set but there is no [plc] point list",
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.schedule.max_sleep)
        {
            return Err(self.invalid("schedule.max_sleep", "must be 1s to 1h"));
        }
        self.schedule_from_file(chrono::Utc::now())?;
        self.trusted_keys()?;
        if !(Duration::from_secs(5)..=Duration::from_secs(3600)).contains(&self.ota.health_window) {
            return Err(self.invalid("ota.health_window", "must be 5s to 1h"));
        }
        Ok(())
    }

    /// The schedule of `schedule.file`, checked against the register map at `now`, as the
    /// pair to store; `None` without the key.
    pub fn schedule_from_file(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<crate::schedule::StoredSchedules>, ConfigError> {
        let Some(file) = &self.schedule.file else {
            return Ok(None);
        };
        let catalog = self.register_map()?.map(|m| m.catalog().points);
        crate::schedule::schedule_from_file(file, catalog.as_deref(), now)
            .map(Some)
            .map_err(|reason| self.invalid("schedule.file", reason))
    }

    /// The validated register map of `[plc]`, if there is one.
    pub fn register_map(&self) -> Result<Option<RegisterMap>, ConfigError> {
        match &self.plc {
            None => Ok(None),
            Some(plc) => RegisterMap::new(plc.clone())
                .map(Some)
                .map_err(|e| self.invalid("plc", e.to_string())),
        }
    }

    pub fn topics(&self) -> Topics {
        Topics::new(&self.mqtt.topic_prefix).unwrap_or_default()
    }

    /// The release keys of `[ota] public_keys`; the error names the bad key by position.
    pub fn trusted_keys(&self) -> Result<shiki_shared::ota::TrustedKeys, ConfigError> {
        shiki_shared::ota::TrustedKeys::parse(&self.ota.public_keys)
            .map_err(|e| self.invalid("ota.public_keys", e.to_string()))
    }

    /// Where OTA downloads, the previous binary and the trial record live.
    pub fn ota_dir(&self) -> PathBuf {
        self.data_dir.join("ota")
    }

    /// The redb file inside `data_dir`.
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("edge.redb")
    }
}

#[cfg(test)]
mod tests;

/// The first line of a password file, without its line ending or surrounding blanks.
pub fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim()
}
