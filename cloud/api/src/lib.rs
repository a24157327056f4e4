//! The admin API (actix-web): devices, desired changes, history, telemetry, events, tokens,
//! OTA artifacts (signed uploads, signed download URLs), the OpenAPI document, `/healthz`,
//! `/metrics` and the operator web page.
//!
//! ```no_run
//! # async fn demo(backend: shiki_cloud_api::SharedBackend) -> Result<(), Box<dyn std::error::Error>> {
//! use shiki_cloud_api::{ApiConfig, ApiState};
//! let state = ApiState::new(backend, ApiConfig::default())?;
//! let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
//! shiki_cloud_api::server(listener, state, &shiki_cloud_api::ServerOptions::default())?.await?;
//! # Ok(()) }
//! ```
//!
//! # Routes and roles
//! | route | role |
//! |---|---|
//! | `GET /api/v1/devices`, `GET /api/v1/devices/{id}` | viewer |
//! | `GET /api/v1/devices/{id}/history` (`?format=csv`), `/telemetry`, `/events` | viewer |
//! | `GET /api/v1/devices/{id}/telemetry/series` (min/avg/max per bucket) | viewer |
//! | `PATCH /api/v1/devices/{id}/desired`, `PUT /api/v1/devices/{id}/schedule` | operator |
//! | `GET /api/v1/devices/{id}/schedule` | viewer |
//! | `POST /api/v1/jobs`, `POST /api/v1/jobs/{id}/cancel` | operator |
//! | `GET /api/v1/jobs` (newest first), `GET /api/v1/jobs/{id}` | viewer |
//! | `GET/POST /api/v1/tokens`, `DELETE /api/v1/tokens/{name}` | admin |
//! | `PUT /api/v1/artifacts/{version}` (raw bytes, `Shiki-Signature`) | admin |
//! | `GET /api/v1/artifacts` | viewer |
//! | `GET /ota/v1/artifacts/{sha256}?expires=…&sig=…` | none: the signed URL ([`UrlSigner`]) |
//! | `GET /api/v1/openapi.json` | viewer (everything under `/api` needs a token) |
//! | `GET /healthz`, `GET /` (web page and its assets) | none |
//! | `GET /metrics` | none by default; viewer when [`ApiConfig::metrics_require_token`] |
//!
//! # Layout
//! - [`auth`]: bearer tokens, hashing, roles, the middleware and extractors.
//! - `backend`: the [`Backend`] trait the API calls; `types`: the DTOs.
//! - `error`: [`ApiError`] and the extractor error handlers; `body_limit`: the request body
//!   limit (413).
//! - [`artifacts`]: OTA artifact uploads, files and signed download URLs ([`UrlSigner`]).
//! - `job_types`: the DTOs of the job routes.
//! - `devices`, `jobs`, `tokens`, `ops`: handlers; `params`: query parsing; `csv`, `prometheus`:
//!   output formats; `openapi.json` and `web/`: embedded documents.

pub mod artifacts;
pub mod auth;
mod backend;
mod body_limit;
pub mod cluster;
mod csv;
mod devices;
mod error;
mod job_types;
mod jobs;
mod ops;
mod params;
mod prometheus;
mod schedule;
mod series;
mod stats;
mod tokens;
mod types;

#[cfg(any(test, feature = "test-support"))]
pub mod testing;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use actix_web::{
    App, Error, HttpServer,
    body::MessageBody,
    dev::{ServiceFactory, ServiceRequest, ServiceResponse},
    http::header,
    middleware::{Compress, DefaultHeaders, from_fn},
    web,
};
use chrono::{DateTime, Utc};

pub use artifacts::url::{URL_KEY_FILE, UrlKeyError, UrlRefused, write_new_secret};
pub use artifacts::{
    Artifact, ArtifactPut, Artifacts, ArtifactsConfig, SIGNATURE_HEADER, UrlSigner,
};
pub use backend::{Backend, BackendError, BackendFuture, SharedBackend};
pub use error::{ApiError, BODY_LIMIT_KEY, DEFAULT_MAX_BODY_BYTES};
pub use job_types::{
    JobCreated, JobDeviceView, JobExecutionStatus, JobView, NewJob, NewJobRequest,
};
pub use jobs::MAX_JOB_DEVICES;
pub use params::{DEFAULT_LIMIT, MAX_LIMIT};
pub use shiki_cloud_model::schedule::SlotChoice;
pub use shiki_cloud_model::shadow::DesiredChange;
pub use types::{
    AuthorKind, AuthorView, DeviceSummary, DeviceView, EventRow, HistoryEntry, KeyVerification,
    LatencySummary, MetricsSnapshot, NewRegistration, NewToken, PatchOutcome, PutScheduleResponse,
    Registration, ScheduleView, ShadowSide, SlotView, TelemetryRow, TimeRange, TokenInfo,
    TokenRecord, Verification, VerificationOutcome,
};

use auth::{
    AuthConfig, AuthConfigError, Authenticator, FailedAuthLimiter, FailedAuthLimits, require_token,
};
use stats::ApiStats;

/// Admin API settings (a plain struct the composition root fills from the config file).
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Authentication settings (`SHIKI_ADMIN_TOKEN`).
    pub auth: AuthConfig,
    /// When true, `/metrics` needs a viewer token (Prometheus `authorization` scrape
    /// setting); by default it is open like `/healthz`, since it carries only fleet-wide
    /// counts, no device data.
    pub metrics_require_token: bool,
    /// Largest request body accepted, in bytes (`api.max_body_bytes`); above it, 413. OTA
    /// artifact uploads have their own limit ([`ArtifactsConfig::max_bytes`]).
    pub max_body_bytes: usize,
    /// Lock an address out after this many failed authentications (`[auth]`
    /// `max_failed_attempts` …); `None`: never.
    pub failed_auth: Option<FailedAuthLimits>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            auth: AuthConfig::default(),
            metrics_require_token: false,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            failed_auth: Some(FailedAuthLimits::default()),
        }
    }
}

/// How the HTTP server treats connections (the `[api]` timeouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerOptions {
    /// Worker threads (at least 1).
    pub workers: usize,
    /// A client must send the whole request head within this (`api.client_request_timeout`),
    /// else 408 and the connection is closed: a client trickling its headers holds no
    /// connection for long.
    pub client_request_timeout: std::time::Duration,
    /// After the response, how long a closing connection may take to shut down
    /// (`api.client_disconnect_timeout`).
    pub client_disconnect_timeout: std::time::Duration,
    /// How long an idle kept-alive connection stays open (`api.keep_alive`; zero: closed
    /// after each response).
    pub keep_alive: std::time::Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            workers: 2,
            client_request_timeout: std::time::Duration::from_secs(5),
            client_disconnect_timeout: std::time::Duration::from_secs(1),
            keep_alive: std::time::Duration::from_secs(5),
        }
    }
}

/// A clock, injected so tests control "now".
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Everything the handlers share; cheap to clone (one per worker).
#[derive(Clone)]
pub struct ApiState {
    pub(crate) backend: SharedBackend,
    pub(crate) auth: Authenticator,
    pub(crate) metrics_require_token: bool,
    pub(crate) stats: Arc<ApiStats>,
    pub(crate) clock: Clock,
    /// OTA artifact storage; `None` until [`ApiState::with_artifacts`] (its routes answer 503).
    pub(crate) artifacts: Option<Arc<Artifacts>>,
    /// Largest request body ([`ApiConfig::max_body_bytes`]).
    pub(crate) max_body_bytes: usize,
    /// Locks out addresses that keep failing to authenticate.
    pub(crate) failed_auth: Option<Arc<FailedAuthLimiter>>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("auth", &self.auth)
            .field("metrics_require_token", &self.metrics_require_token)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// Validates `config` (the admin token) and builds the state, with the system clock.
    pub fn new(backend: SharedBackend, config: ApiConfig) -> Result<Self, AuthConfigError> {
        Ok(ApiState {
            backend,
            auth: Authenticator::new(&config.auth)?,
            metrics_require_token: config.metrics_require_token,
            stats: Arc::new(ApiStats::default()),
            clock: Arc::new(Utc::now),
            artifacts: None,
            max_body_bytes: config.max_body_bytes,
            failed_auth: config
                .failed_auth
                .map(|limits| Arc::new(FailedAuthLimiter::new(limits))),
        })
    }

    /// Serves OTA artifacts from `artifacts` (see [`artifacts`]).
    pub fn with_artifacts(mut self, artifacts: Artifacts) -> Self {
        self.artifacts = Some(Arc::new(artifacts));
        self
    }

    /// The artifact storage, or 503 when none is set up.
    pub(crate) fn artifact_storage(&self) -> Result<&Artifacts, ApiError> {
        self.artifacts.as_deref().ok_or_else(|| {
            ApiError::Unavailable("OTA artifact storage is not set up in this API".into())
        })
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The authenticator, e.g. for [`auth::bootstrap_admin`].
    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    /// The backend the API calls.
    pub fn backend(&self) -> &SharedBackend {
        &self.backend
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }
}

/// Registers every route, the shared state and the extractor error handlers on `cfg`.
/// Usable inside a bigger `App` (`App::new().configure(|c| api::configure(c, state))`);
/// the app-wide JSON 404 for unknown routes outside `/api` is set by [`app`].
pub fn configure(cfg: &mut web::ServiceConfig, state: ApiState) {
    let max_body = state.max_body_bytes;
    cfg.app_data(web::Data::new(state))
        .app_data(error::json_config(max_body))
        .app_data(error::query_config())
        .app_data(error::path_config())
        .configure(ops::configure_public)
        .configure(artifacts::configure_public)
        .configure(auth::oidc::web::configure)
        .service(
            web::scope("/api")
                .wrap(from_fn(require_token))
                // Device data and tokens must not linger in browser or proxy caches.
                .wrap(
                    DefaultHeaders::new()
                        .add((header::CACHE_CONTROL, "no-store"))
                        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff")),
                )
                // Outermost: a device owned by another cluster node is served there.
                .wrap(from_fn(cluster::forward))
                .service(
                    web::scope("/v1")
                        .configure(devices::configure)
                        .configure(schedule::configure)
                        .configure(jobs::configure)
                        .configure(tokens::configure)
                        .configure(artifacts::configure_api)
                        .configure(ops::configure_api)
                        .configure(cluster::configure),
                )
                .default_service(web::to(ops::not_found)),
        );
}

/// The whole admin API as an `App`: routes, gzip, request counting, the body limit and
/// JSON 404s.
pub fn app(
    state: ApiState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = Error,
        InitError = (),
    >,
> {
    App::new()
        .configure(|cfg| configure(cfg, state))
        .default_service(web::to(ops::not_found))
        .wrap(from_fn(body_limit::limit_body))
        .wrap(from_fn(stats::count))
        .wrap(Compress::default())
}

/// An HTTP server for the admin API on an already bound listener (bind port 0 in tests).
/// The returned server runs when awaited; stop it through its handle.
pub fn server(
    listener: std::net::TcpListener,
    state: ApiState,
    options: &ServerOptions,
) -> std::io::Result<actix_web::dev::Server> {
    let keep_alive = if options.keep_alive.is_zero() {
        actix_http::KeepAlive::Disabled
    } else {
        actix_http::KeepAlive::Timeout(options.keep_alive)
    };
    Ok(HttpServer::new(move || app(state.clone()))
        .workers(options.workers.max(1))
        .client_request_timeout(options.client_request_timeout)
        .client_disconnect_timeout(options.client_disconnect_timeout)
        .keep_alive(keep_alive)
        .disable_signals()
        .listen(listener)?
        .run())
}
