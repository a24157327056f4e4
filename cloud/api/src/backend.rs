//! The [`Backend`] trait: everything the admin API asks of the rest of the cloud.
//!
//! The API holds an `Arc<dyn Backend>`; the composition root (`app.rs`) implements it on top
//! of the device actors and the store. Tests use an in-memory fake.
//!
//! # Futures
//! Methods return [`LocalBoxFuture`]s (not `Send`): actix-web runs each worker on a
//! single-threaded arbiter, so a handler's future never changes thread, and implementors
//! are free to hold `Rc`s or actix `Request`s across awaits. The trait object itself is
//! `Send + Sync` because actix-web's app factory closure is shared between workers.
//!
//! Arguments are owned so the returned future borrows only `&self`.
//!
//! # Errors
//! Per-device methods return [`BackendError::NotFound`] for a device the cloud has never
//! seen (the API maps it to 404). [`Backend::device`] returns `Ok(None)` instead.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::LocalBoxFuture;
use shiki_cloud_model::Author;
use shiki_proto::DeviceId;
use shiki_shared::schedule::Problem;

use super::types::{
    DeviceSummary, DeviceView, EventRow, HistoryEntry, MetricsSnapshot, NewRegistration, NewToken,
    PatchOutcome, Registration, TelemetryRow, TimeRange, TokenInfo, TokenRecord,
};
use crate::{
    Artifact, ArtifactPut, DesiredChange, JobCreated, JobView, NewJob, PutScheduleResponse,
    ScheduleView, SlotChoice,
};
use shiki_proto::JobId;

/// A future returned by a [`Backend`] method.
pub type BackendFuture<'a, T> = LocalBoxFuture<'a, Result<T, BackendError>>;

/// Shared handle the API is built with.
pub type SharedBackend = Arc<dyn Backend>;

/// Why a backend call failed. Each variant maps to one HTTP status (in brackets).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackendError {
    /// The device (or token) does not exist. \[404\]
    #[error("not found")]
    NotFound,
    /// `expected_version` is stale. \[409, body carries `current`\]
    #[error("version conflict: expected {expected}, current {current}")]
    VersionConflict { expected: u64, current: u64 },
    /// A token with this name exists already. \[409\]
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A desired setting is not acceptable: unknown or read-only point, value of the wrong
    /// type or outside the catalog's limits, no catalog yet. \[422, names the key\]
    #[error("setting {key:?} refused: {reason}")]
    Invalid { key: String, reason: String },
    /// An OTA job cannot be created: unknown artifact version or device, bad rollout
    /// setting. \[422, names the field\]
    #[error("job refused: {key}: {reason}")]
    InvalidJob { key: String, reason: String },
    /// The body is not a schedule document (wrong shape). \[400\]
    #[error("not a schedule document: {0}")]
    MalformedSchedule(String),
    /// The schedule document has errors. \[422, lists every problem with its location\]
    #[error("schedule is invalid: {} problem(s)", problems.len())]
    InvalidSchedule { problems: Vec<Problem> },
    /// The backend cannot answer now (store closed, actor mailbox full, shutting down). \[503\]
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// Anything else that went wrong inside (store error). \[500; message is logged, the
    /// client gets a generic text\]
    #[error("internal error: {0}")]
    Internal(String),
}

/// What the admin API needs from the cloud. Object-safe; see the module docs for the
/// future type and error conventions.
pub trait Backend: Send + Sync + 'static {
    /// Every known device, sorted by id.
    fn list_devices(&self) -> BackendFuture<'_, Vec<DeviceSummary>>;

    /// One device's full state; `Ok(None)` if the device is unknown.
    fn device(&self, id: DeviceId) -> BackendFuture<'_, Option<DeviceView>>;

    /// Applies a desired change for `author`, validating it against the device's catalog;
    /// records one history entry per key (with `patch.comment`) and starts verification.
    /// All keys are applied or none. Errors: `NotFound`, `VersionConflict`, `Invalid`.
    fn patch_desired(
        &self,
        id: DeviceId,
        patch: DesiredChange,
        author: Author,
    ) -> BackendFuture<'_, PatchOutcome>;

    /// Settings changes (desired and reported) in `range`, **newest first**, at most `limit`.
    fn history(
        &self,
        id: DeviceId,
        range: TimeRange,
        limit: usize,
    ) -> BackendFuture<'_, Vec<HistoryEntry>>;

    /// Telemetry samples in `range`, **oldest first** (ascending seq), at most `limit`.
    fn telemetry(
        &self,
        id: DeviceId,
        range: TimeRange,
        limit: usize,
    ) -> BackendFuture<'_, Vec<TelemetryRow>>;

    /// Events in `range`, **oldest first** (ascending seq), at most `limit`.
    fn events(
        &self,
        id: DeviceId,
        range: TimeRange,
        limit: usize,
    ) -> BackendFuture<'_, Vec<EventRow>>;

    /// Stores a new token. `AlreadyExists` if the name is taken.
    fn create_token(&self, token: NewToken) -> BackendFuture<'_, TokenInfo>;

    /// Every token, sorted by name. Never exposes hashes.
    fn list_tokens(&self) -> BackendFuture<'_, Vec<TokenInfo>>;

    /// Deletes the token called `name`. `NotFound` if there is none.
    fn revoke_token(&self, name: String) -> BackendFuture<'_, ()>;

    /// Looks a token up by the lowercase hex SHA-256 of its secret. Called on every API
    /// request, so it should be served from memory.
    fn token_by_hash(&self, hash: String) -> BackendFuture<'_, Option<TokenRecord>>;

    /// Current figures for `/metrics`.
    fn metrics(&self) -> BackendFuture<'_, MetricsSnapshot>;

    /// Validates `document` (against the device's catalog), stores it in `slot`, records
    /// history (`author`) and pushes it to the device. Errors: `NotFound`,
    /// `MalformedSchedule`, `InvalidSchedule`.
    fn put_schedule(
        &self,
        id: DeviceId,
        slot: SlotChoice,
        document: serde_json::Value,
        author: Author,
    ) -> BackendFuture<'_, PutScheduleResponse>;

    /// The device's current and next schedule with their sync status. `NotFound` for an
    /// unknown device.
    fn schedule(&self, id: DeviceId) -> BackendFuture<'_, ScheduleView>;

    /// Records an uploaded OTA artifact (its bytes are in place, its signature checked):
    /// `Created` for a new version; for a known version, `Unchanged` when the sha256 and
    /// size match and `Conflict` otherwise (both with the record stored first, which stays).
    fn put_artifact(&self, artifact: Artifact) -> BackendFuture<'_, ArtifactPut>;

    /// Every OTA artifact, newest upload first.
    fn artifacts(&self) -> BackendFuture<'_, Vec<Artifact>>;
    /// Creates an OTA job for `author`. `Invalid` with key `artifact_version` for a version
    /// no artifact has, with key `devices` for a device the cloud does not know (or listed
    /// twice).
    fn create_job(&self, job: NewJob, author: Author) -> BackendFuture<'_, JobCreated>;

    /// Every job (the API orders them newest first).
    fn list_jobs(&self) -> BackendFuture<'_, Vec<JobView>>;

    /// One job with each device's execution. `NotFound` if there is no such job.
    fn job(&self, id: JobId) -> BackendFuture<'_, JobView>;

    /// Cancels every execution of the job that has not finished (`author` is recorded);
    /// answers the job as it is then. `NotFound` if there is no such job.
    fn cancel_job(&self, id: JobId, author: Author) -> BackendFuture<'_, JobView>;

    /// Registers a device for the embedded broker, or registers a retired one again.
    /// [`BackendError::AlreadyExists`] when it is registered and not retired.
    fn register_device(&self, registration: NewRegistration) -> BackendFuture<'_, Registration>;

    /// Replaces a registered device's password hash (its live connections are closed).
    /// [`BackendError::NotFound`] when it is not registered or retired.
    fn set_device_password(
        &self,
        id: DeviceId,
        password_hash: String,
        at: chrono::DateTime<chrono::Utc>,
    ) -> BackendFuture<'_, Registration>;

    /// The tenant a device belongs to (`None`: none, or not registered).
    fn device_tenant(&self, id: DeviceId) -> BackendFuture<'_, Option<String>>;

    /// Sets (or, with `None`, clears) the tenant of a registered, unretired device.
    /// [`BackendError::NotFound`] when it is not registered or retired.
    fn set_device_tenant(
        &self,
        id: DeviceId,
        tenant: Option<String>,
    ) -> BackendFuture<'_, Registration>;

    /// Retires a device: it may no longer connect (its live connections are closed); its
    /// data is kept. [`BackendError::NotFound`] when it is not registered or retired.
    fn retire_device(
        &self,
        id: DeviceId,
        at: chrono::DateTime<chrono::Utc>,
    ) -> BackendFuture<'_, Registration>;

    /// This process's name among the cluster's nodes (`standalone` outside a cluster).
    fn node_id(&self) -> String {
        "standalone".to_owned()
    }

    /// Where requests for `id` are served: here, unless a cluster node other than this
    /// one owns the device (the API forwards them there).
    fn owner(&self, id: &DeviceId) -> crate::cluster::DeviceOwner {
        let _ = id;
        crate::cluster::DeviceOwner::Here
    }

    /// Where the OTA jobs' requests (`/api/v1/jobs…`) are served: here, unless a cluster
    /// node other than this one drives the jobs (the API forwards them there).
    fn jobs_owner(&self) -> crate::cluster::DeviceOwner {
        crate::cluster::DeviceOwner::Here
    }

    /// The cluster's nodes (outside a cluster, this process alone).
    fn cluster(&self) -> BackendFuture<'_, crate::cluster::ClusterStatus> {
        async move {
            Ok(crate::cluster::ClusterStatus {
                node_id: self.node_id(),
                nodes: Vec::new(),
            })
        }
        .boxed_local()
    }
}
