//! Cloud configuration: TOML with serde defaults, CLI overrides, validation naming the key.
//!
//! Every key is documented in `deploy/cloud.example.toml` (which a test parses). Loading
//! goes through `shiki_shared::config` (errors name the file and the key; `SHIKI_CLOUD_*`
//! environment variables override keys, then the CLI flags win).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use shiki_cloud_model::shadow::ShadowLimits;

mod cluster;
mod ota;
pub use cluster::ClusterConfig;
pub use ota::OtaConfig;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed, or an environment override does not fit;
    /// the message names the file, the key and the variable.
    #[error(transparent)]
    Load(#[from] shiki_shared::config::ConfigError),
    #[error("config key `{key}` is invalid: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// Environment variables under this prefix override config keys (`__` nests).
pub const ENV_PREFIX: &str = "SHIKI_CLOUD_";

/// The whole `shiki-cloud` configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudConfig {
    /// Directory holding the redb store (`shiki-cloud.redb`).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Topic prefix shared with the edges.
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
    #[serde(default)]
    pub mqtt: MqttConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub verification: VerificationConfig,
    #[serde(default)]
    pub shadow: ShadowConfig,
    #[serde(default)]
    pub notifier: NotifierConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub ota: OtaConfig,
    #[serde(default)]
    pub auth: AuthSection,
    /// `[cluster]`: one node of several sharing the fleet (PostgreSQL and an external
    /// broker required). Unset: this process owns every device.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
}

/// `[auth]`: how people sign in (API tokens need no config), and the lockout of addresses
/// that keep presenting bad tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// `[auth.oidc]`: the identity provider (OpenID Connect); unset: API tokens only.
    #[serde(default)]
    pub oidc: Option<shiki_cloud_api::auth::oidc::OidcConfig>,
    /// Bad tokens from one address within `failed_attempts_window` that lock it out
    /// (429 for every `/api` request, good token or not); 0: never.
    #[serde(default = "default_max_failed_attempts")]
    pub max_failed_attempts: u32,
    #[serde(default = "default_failed_attempts_window", with = "humantime_serde")]
    pub failed_attempts_window: Duration,
    /// How long a locked-out address is refused.
    #[serde(default = "default_lockout", with = "humantime_serde")]
    pub lockout: Duration,
    /// Most addresses remembered (bounded memory under a flood from many addresses).
    #[serde(default = "default_max_tracked_addresses")]
    pub max_tracked_addresses: usize,
}

fn default_max_failed_attempts() -> u32 {
    shiki_cloud_api::auth::FailedAuthLimits::default().max_failures
}
fn default_failed_attempts_window() -> Duration {
    shiki_cloud_api::auth::FailedAuthLimits::default().window
}
fn default_lockout() -> Duration {
    shiki_cloud_api::auth::FailedAuthLimits::default().lockout
}
fn default_max_tracked_addresses() -> usize {
    shiki_cloud_api::auth::FailedAuthLimits::default().max_addresses
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            oidc: None,
            max_failed_attempts: default_max_failed_attempts(),
            failed_attempts_window: default_failed_attempts_window(),
            lockout: default_lockout(),
            max_tracked_addresses: default_max_tracked_addresses(),
        }
    }
}

impl AuthSection {
    /// The API's lockout settings; `None` when `max_failed_attempts` is 0.
    pub fn failed_auth_limits(&self) -> Option<shiki_cloud_api::auth::FailedAuthLimits> {
        (self.max_failed_attempts > 0).then_some(shiki_cloud_api::auth::FailedAuthLimits {
            max_failures: self.max_failed_attempts,
            window: self.failed_attempts_window,
            lockout: self.lockout,
            max_addresses: self.max_tracked_addresses,
        })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(oidc) = &self.oidc {
            oidc.validate().map_err(|e| ConfigError::Invalid {
                key: e.key,
                reason: e.reason,
            })?;
        }
        if self.max_failed_attempts == 0 {
            return Ok(());
        }
        for (key, value) in [
            ("auth.failed_attempts_window", self.failed_attempts_window),
            ("auth.lockout", self.lockout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Invalid {
                    key,
                    reason: "must be above zero (set auth.max_failed_attempts = 0 to turn \
                             the lockout off)"
                        .into(),
                });
            }
        }
        if self.max_tracked_addresses == 0 {
            return Err(ConfigError::Invalid {
                key: "auth.max_tracked_addresses",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./shiki-cloud-data")
}

fn default_prefix() -> String {
    shiki_proto::DEFAULT_PREFIX.to_owned()
}

/// MQTT: the embedded broker (default) or an external broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Where the embedded broker listens (ignored when `url` is set).
    #[serde(default = "default_mqtt_listen")]
    pub listen: SocketAddr,
    /// External broker `mqtt://host:port` or `mqtts://host:port`; when set, no broker is embedded.
    #[serde(default)]
    pub url: Option<String>,
    /// Client id of the cloud's own MQTT session.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// PEM CA bundle that signed the external broker's certificate (mqtts only).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain for mutual TLS (mqtts only).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Username / password for brokers that want them (optional).
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Embedded broker: let an unknown client id connect and register it as a device with
    /// the password it brings (first contact; for a lab). Default: only devices registered
    /// through `POST /api/v1/devices` connect.
    #[serde(default)]
    pub allow_unregistered: bool,
    /// Most unacknowledged QoS 1 messages in flight per connection on the embedded broker.
    #[serde(default = "default_inflight")]
    pub max_inflight: u16,
    /// Acknowledge (PUBACK) each incoming message only after its store commit (true), or on
    /// receipt (false). Unset: true with an external broker, false with the embedded one.
    ///
    /// An external broker keeps the cloud's persistent session apart from the cloud process,
    /// so a message acknowledged only after its commit survives a cloud crash there. The
    /// embedded broker lives and dies with the cloud: it has already acknowledged each
    /// message to its edge and holds it only in memory, so acknowledging after the commit
    /// protects nothing and only throttles ingest (rumqttd allows 100 unacknowledged
    /// messages per session, so at most 100 per commit).
    #[serde(default)]
    pub ack_after_commit: Option<bool>,
}

impl MqttConfig {
    /// Whether the ingest acknowledges after the store commit, for this broker.
    pub fn acks_after_commit(&self, target: &BrokerTarget) -> bool {
        self.ack_after_commit
            .unwrap_or(!matches!(target, BrokerTarget::Embedded(_)))
    }
}

fn default_mqtt_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1883))
}
fn default_client_id() -> String {
    "shiki-cloud".to_owned()
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}
fn default_inflight() -> u16 {
    1000
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            listen: default_mqtt_listen(),
            url: None,
            client_id: default_client_id(),
            keep_alive: default_keep_alive(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            username: None,
            password: None,
            allow_unregistered: false,
            max_inflight: default_inflight(),
            ack_after_commit: None,
        }
    }
}

/// The admin API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default = "default_api_listen")]
    pub listen: SocketAddr,
    /// The base URL gateways reach the API at (a DNS name behind SORACOM, a reverse
    /// proxy): OTA download URLs start with it. Unset: `http://{listen}` (as bound).
    #[serde(default)]
    pub public_url: Option<String>,
    /// Largest request body, in bytes; above it, 413. OTA artifact uploads have their own
    /// limit (`ota.max_artifact_mb`).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// A client must send its whole request head within this, else 408 and the
    /// connection is closed.
    #[serde(default = "default_client_request_timeout", with = "humantime_serde")]
    pub client_request_timeout: Duration,
    /// How long a closing connection may take to shut down after the response.
    #[serde(
        default = "default_client_disconnect_timeout",
        with = "humantime_serde"
    )]
    pub client_disconnect_timeout: Duration,
    /// How long an idle kept-alive connection stays open; 0s: closed after each response.
    #[serde(default = "default_keep_alive_api", with = "humantime_serde")]
    pub keep_alive: Duration,
}

impl ApiConfig {
    /// The HTTP server's connection settings.
    pub fn server_options(&self) -> shiki_cloud_api::ServerOptions {
        shiki_cloud_api::ServerOptions {
            client_request_timeout: self.client_request_timeout,
            client_disconnect_timeout: self.client_disconnect_timeout,
            keep_alive: self.keep_alive,
            ..shiki_cloud_api::ServerOptions::default()
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.public_url {
            ota::check_public_url(url)?;
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::Invalid {
                key: "api.max_body_bytes",
                reason: "must be at least 1 (bytes)".into(),
            });
        }
        for (key, value) in [
            ("api.client_request_timeout", self.client_request_timeout),
            (
                "api.client_disconnect_timeout",
                self.client_disconnect_timeout,
            ),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Invalid {
                    key,
                    reason: "must be above zero: a zero timeout would let a slow client hold \
                             a connection forever"
                        .into(),
                });
            }
        }
        Ok(())
    }

    /// `public_url`, or `http://{bound}` where `bound` is the address the API listens on.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
    }
}

fn default_api_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_body_bytes() -> usize {
    shiki_cloud_api::DEFAULT_MAX_BODY_BYTES
}
fn default_client_request_timeout() -> Duration {
    shiki_cloud_api::ServerOptions::default().client_request_timeout
}
fn default_client_disconnect_timeout() -> Duration {
    shiki_cloud_api::ServerOptions::default().client_disconnect_timeout
}
fn default_keep_alive_api() -> Duration {
    shiki_cloud_api::ServerOptions::default().keep_alive
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: default_api_listen(),
            public_url: None,
            max_body_bytes: default_max_body_bytes(),
            client_request_timeout: default_client_request_timeout(),
            client_disconnect_timeout: default_client_disconnect_timeout(),
            keep_alive: default_keep_alive_api(),
        }
    }
}

/// The history store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Most queued writes committed in one transaction (one fsync per batch).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Page cache of the redb file, in MiB.
    #[serde(default = "default_cache_mb")]
    pub cache_mb: usize,
    /// A PostgreSQL database (`postgres://user[:password]@host[:port]/database`) instead of
    /// the redb file in the data dir. The OTA artifacts' bytes stay in the data dir.
    #[serde(default)]
    pub url: Option<String>,
    /// PostgreSQL only: telemetry older than this is dropped, a whole month at a time
    /// (e.g. `400d`). Unset: everything is kept.
    #[serde(default, with = "humantime_serde")]
    pub retention: Option<std::time::Duration>,
    /// PostgreSQL only: connections in the pool.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
}

fn default_pool_size() -> usize {
    8
}

fn default_cache_mb() -> usize {
    64
}

fn default_max_batch() -> usize {
    4096
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            max_batch: default_max_batch(),
            cache_mb: default_cache_mb(),
            url: None,
            retention: None,
            pool_size: default_pool_size(),
        }
    }
}

/// Verification of desired changes.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationConfig {
    /// Re-checks before a change is declared failed.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Delay before the first re-check; each further one doubles it.
    #[serde(default = "default_first_delay", with = "humantime_serde")]
    pub first_delay: Duration,
}

fn default_attempts() -> u32 {
    5
}
fn default_first_delay() -> Duration {
    Duration::from_secs(2)
}

impl Default for VerificationConfig {
    fn default() -> Self {
        Self {
            attempts: default_attempts(),
            first_delay: default_first_delay(),
        }
    }
}

/// Limits of every device shadow; a desired change that would break them is refused (422),
/// a reported update is ignored with a warning.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowConfig {
    /// Deepest nesting of a value (`{"sp": 7}` is 1 level).
    #[serde(default = "default_max_depth")]
    pub max_depth: usize,
    /// Largest size of desired plus reported, serialised as JSON, in bytes.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
}

fn default_max_depth() -> usize {
    ShadowLimits::DEFAULT.max_depth
}
fn default_max_bytes() -> usize {
    ShadowLimits::DEFAULT.max_bytes
}

impl Default for ShadowConfig {
    fn default() -> Self {
        Self {
            max_depth: default_max_depth(),
            max_bytes: default_max_bytes(),
        }
    }
}

impl ShadowConfig {
    /// The limits the device actors enforce.
    pub fn limits(&self) -> ShadowLimits {
        ShadowLimits {
            max_depth: self.max_depth,
            max_bytes: self.max_bytes,
        }
    }
}

/// Alerts to a Slack-compatible webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    /// Webhook URL; without it alerts are only logged.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// A device offline for longer than this raises an alert.
    #[serde(default = "default_offline_after", with = "humantime_serde")]
    pub offline_after: Duration,
    /// Alerts waiting to be sent; further ones are dropped (and counted) when full.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Attempts per alert.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Delay before the first retry; doubles each time.
    #[serde(default = "default_retry_delay", with = "humantime_serde")]
    pub retry_delay: Duration,
    /// An identical alert within this window is sent once.
    #[serde(default = "default_dedup_window", with = "humantime_serde")]
    pub dedup_window: Duration,
}

fn default_offline_after() -> Duration {
    Duration::from_secs(600)
}
fn default_queue() -> usize {
    256
}
fn default_retries() -> u32 {
    5
}
fn default_retry_delay() -> Duration {
    Duration::from_secs(1)
}
fn default_dedup_window() -> Duration {
    Duration::from_secs(1800)
}

impl Default for NotifierConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            offline_after: default_offline_after(),
            queue: default_queue(),
            retries: default_retries(),
            retry_delay: default_retry_delay(),
            dedup_window: default_dedup_window(),
        }
    }
}

/// Yearly schedule sync: the fleet-wide yearly push and each device's retries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// When to push next year's schedule to every device that has not confirmed it: a
    /// `cron` crate expression (seconds first; a 5-field crontab gets `0` seconds), read in
    /// `timezone`. Default `0 0 0 1 12 *` (1 December 00:00).
    #[serde(default = "default_push_cron")]
    pub yearly_push_cron: String,
    /// IANA time zone of `yearly_push_cron` and of devices whose schedule names none.
    #[serde(default = "default_schedule_tz")]
    pub timezone: String,
    /// Wait after the first unanswered `schedule/set` before pushing again; doubles.
    #[serde(default = "default_first_retry", with = "humantime_serde")]
    pub first_retry: Duration,
    /// Longest wait between pushes.
    #[serde(default = "default_max_retry", with = "humantime_serde")]
    pub max_retry: Duration,
    /// Alert once after this many pushes without an ack.
    #[serde(default = "default_alert_after")]
    pub alert_after_attempts: u32,
}

fn default_push_cron() -> String {
    crate::schedule::DEFAULT_PUSH_CRON.to_owned()
}
fn default_schedule_tz() -> String {
    shiki_shared::schedule::DEFAULT_TIMEZONE.to_owned()
}
fn default_first_retry() -> Duration {
    Duration::from_secs(60)
}
fn default_max_retry() -> Duration {
    Duration::from_secs(3600)
}
fn default_alert_after() -> u32 {
    8
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            yearly_push_cron: default_push_cron(),
            timezone: default_schedule_tz(),
            first_retry: default_first_retry(),
            max_retry: default_max_retry(),
            alert_after_attempts: default_alert_after(),
        }
    }
}

impl ScheduleConfig {
    /// The fleet scheduler's settings.
    pub fn fleet(&self) -> crate::schedule::FleetConfig {
        crate::schedule::FleetConfig {
            push_cron: self.yearly_push_cron.clone(),
            timezone: self.timezone.clone(),
        }
    }

    /// Each device's retry settings.
    pub fn sync(&self) -> crate::schedule::SyncConfig {
        crate::schedule::SyncConfig {
            first_retry: self.first_retry,
            max_retry: self.max_retry,
            alert_after_attempts: self.alert_after_attempts,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        use crate::schedule::FleetConfigError;
        match crate::schedule::FleetScheduler::new(&self.fleet(), chrono::Utc::now()) {
            Ok(_) => {}
            Err(e @ FleetConfigError::Cron { .. }) => {
                return Err(ConfigError::Invalid {
                    key: "schedule.yearly_push_cron",
                    reason: e.to_string(),
                });
            }
            Err(e @ FleetConfigError::TimeZone(_)) => {
                return Err(ConfigError::Invalid {
                    key: "schedule.timezone",
                    reason: e.to_string(),
                });
            }
        }
        if self.first_retry.is_zero() || self.max_retry < self.first_retry {
            return Err(ConfigError::Invalid {
                key: "schedule.first_retry",
                reason: "must be above zero and at most schedule.max_retry".into(),
            });
        }
        if self.alert_after_attempts == 0 {
            return Err(ConfigError::Invalid {
                key: "schedule.alert_after_attempts",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

impl Default for CloudConfig {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            topic_prefix: default_prefix(),
            mqtt: MqttConfig::default(),
            api: ApiConfig::default(),
            store: StoreConfig::default(),
            verification: VerificationConfig::default(),
            shadow: ShadowConfig::default(),
            notifier: NotifierConfig::default(),
            schedule: ScheduleConfig::default(),
            ota: OtaConfig::default(),
            auth: AuthSection::default(),
            cluster: None,
        }
    }
}

/// The broker the cloud talks to, derived from `mqtt.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerTarget {
    /// Start rumqttd in-process on this address and connect to it.
    Embedded(SocketAddr),
    /// Connect to an external broker.
    External { host: String, port: u16, tls: bool },
}

impl CloudConfig {
    /// Reads a TOML file with `SHIKI_CLOUD_*` environment overrides
    /// (`SHIKI_CLOUD_MQTT__URL=mqtts://broker:8883` sets `mqtt.url`; see
    /// `shiki_shared::config`), then validates it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let config: CloudConfig = shiki_shared::config::load(path, ENV_PREFIX)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses and validates TOML text without environment overrides (`path` is only used
    /// in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: CloudConfig =
            shiki_shared::config::from_str_with_env(text, path, ENV_PREFIX, std::iter::empty())?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values serde cannot check.
    pub fn validate(&self) -> Result<(), ConfigError> {
        shiki_proto::Topics::new(&self.topic_prefix).map_err(|e| ConfigError::Invalid {
            key: "topic_prefix",
            reason: e.to_string(),
        })?;
        self.broker()?;
        self.auth.validate()?;
        if self.verification.attempts == 0 {
            return Err(ConfigError::Invalid {
                key: "verification.attempts",
                reason: "must be at least 1".into(),
            });
        }
        for (key, value) in [
            ("shadow.max_depth", self.shadow.max_depth),
            ("shadow.max_bytes", self.shadow.max_bytes),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    reason: "must be at least 1".into(),
                });
            }
        }
        match &self.store.url {
            Some(url) if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) => {
                return Err(ConfigError::Invalid {
                    key: "store.url",
                    reason: format!(
                        "{} is not a PostgreSQL URL: write postgres://user@host:port/database \
                         (or leave store.url out for the redb store in the data dir)",
                        crate::store::redacted_url(url)
                    ),
                });
            }
            None if self.store.retention.is_some() => {
                return Err(ConfigError::Invalid {
                    key: "store.retention",
                    reason: "applies only to the PostgreSQL store: set store.url too, or \
                             remove store.retention"
                        .into(),
                });
            }
            _ => {}
        }
        if self.store.url.is_some() && self.store.pool_size < 2 {
            return Err(ConfigError::Invalid {
                key: "store.pool_size",
                reason: "must be at least 2 (the writer holds one connection)".into(),
            });
        }
        if self
            .store
            .retention
            .is_some_and(|r| r < std::time::Duration::from_secs(31 * 86_400))
        {
            return Err(ConfigError::Invalid {
                key: "store.retention",
                reason: "must be at least 31 days: telemetry is dropped a whole month at a time"
                    .into(),
            });
        }
        if self.store.max_batch == 0 {
            return Err(ConfigError::Invalid {
                key: "store.max_batch",
                reason: "must be at least 1".into(),
            });
        }
        if self.notifier.queue == 0 {
            return Err(ConfigError::Invalid {
                key: "notifier.queue",
                reason: "must be at least 1".into(),
            });
        }
        self.schedule.validate()?;
        self.ota.validate()?;
        if let Some(cluster) = &self.cluster {
            cluster.validate()?;
            if self.store.url.is_none() {
                return Err(ConfigError::Invalid {
                    key: "cluster.node_id",
                    reason: "a cluster shares its state in PostgreSQL: set store.url (or \
                             --store postgres://…) on every node"
                        .into(),
                });
            }
            if matches!(self.broker()?, BrokerTarget::Embedded(_)) {
                return Err(ConfigError::Invalid {
                    key: "cluster.node_id",
                    reason: "the nodes of a cluster share one external broker: set mqtt.url \
                             (or --mqtt-url mqtt://…) on every node"
                        .into(),
                });
            }
        }
        self.api.validate()?;
        if self.mqtt.cert_file.is_some() != self.mqtt.key_file.is_some() {
            return Err(ConfigError::Invalid {
                key: "mqtt.cert_file",
                reason: "mqtt.cert_file and mqtt.key_file must be given together".into(),
            });
        }
        Ok(())
    }

    /// Where MQTT goes: the embedded broker or the one named by `mqtt.url`.
    pub fn broker(&self) -> Result<BrokerTarget, ConfigError> {
        let Some(url) = &self.mqtt.url else {
            return Ok(BrokerTarget::Embedded(self.mqtt.listen));
        };
        let invalid = |reason: String| ConfigError::Invalid {
            key: "mqtt.url",
            reason,
        };
        let (tls, rest, default_port) = if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r, 8883)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r, 1883)
        } else {
            return Err(invalid(format!(
                "{url:?} must start with mqtt:// or mqtts://"
            )));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| invalid(format!("{url:?} has an invalid port {p:?}")))?;
                (h.to_owned(), port)
            }
            None => (rest.to_owned(), default_port),
        };
        if host.is_empty() || host.contains('/') {
            return Err(invalid(format!("{url:?} names no host")));
        }
        Ok(BrokerTarget::External { host, port, tls })
    }

    /// The OTA artifacts dir inside `data_dir`.
    pub fn artifacts_dir(&self) -> PathBuf {
        self.data_dir.join("artifacts")
    }

    /// Path of the redb file inside `data_dir`.
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("shiki-cloud.redb")
    }
}

#[cfg(test)]
mod tests;
