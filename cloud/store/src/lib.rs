//! The cloud's store: the [`Store`] trait the actors and the admin API use, its record
//! types (the persistence schema), and its two backends: [`RedbStore`], the embedded
//! default, and [`PgStore`] (PostgreSQL, which Grafana reads too).
//!
//! Writes are queued ([`Store::submit`]) and committed in groups by one writer; the returned
//! [`Commit`] resolves after the group's transaction is durable. Reads are direct.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use shiki_cloud_store::{RedbStore, Store, Write};
//!
//! let dir = tempfile::tempdir()?;
//! let store = RedbStore::open(&dir.path().join("cloud.redb"), 4096)?;
//! let at = chrono::Utc::now();
//! store.submit(vec![Write::FleetLastRun(at)]).wait_blocking()?;
//! assert_eq!(store.fleet_last_run()?, Some(at));
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - `types`: the records ([`Write`], [`DeviceSnapshot`], [`HistoryEntry`], …);
//! - `jobs`: OTA job records ([`JobRecord`] with each device's [`ExecutionRecord`]);
//! - `legacy`: stored formats of older versions, read into today's records;
//! - `redb_store`: [`RedbStore`], its tables, writer thread, reads, and telemetry chunks
//!   and staging;
//! - `pg_store`: [`PgStore`], its migrations and partitions, writer task and reads;
//! - `counters`: what both writers count;
//! - `testing` (feature `test-support`): helpers for tests of the store's users.

mod counters;
mod jobs;
mod legacy;
#[cfg(test)]
mod legacy_tests;
mod pg_store;
#[cfg(test)]
mod pg_tests;
mod redb_store;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
#[cfg(test)]
mod tests;
mod types;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pub use jobs::{ExecutionRecord, ExecutionStatus, JobArtifact, JobRecord, Rollout};
pub use pg_store::{
    ClusterDb, ClusterSnapshot, JOBS_LEASE, LeaseRow, NodeRow, PgOptions, PgStore, SCHEMA_VERSION,
    redacted as redacted_url,
};
pub use redb_store::{RedbStore, StoreOptions};
pub use shiki_cloud_model::Author;
pub use types::{
    ArtifactRecord, DeviceSnapshot, FailureReason, HistoryEntry, HistoryItem, RegistryRecord,
    SampleRow, SeqGap, Side, StoreStats, TimeQuery, TokenRecord, VerificationOutcome,
    VerificationRecord, Write,
};

use chrono::{DateTime, Utc};
use shiki_proto::{DeviceId, Event, Sample};

use shiki_cloud_model::schedule::DeviceSchedules;

/// Why a store operation failed. Cloneable: one commit failure is reported to every writer
/// of the group.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("store {op} failed: {reason}")]
    Backend { op: &'static str, reason: String },
    #[error("stored record in {table} could not be decoded: {reason}")]
    Corrupt { table: &'static str, reason: String },
    #[error("the store is shut down")]
    Closed,
    /// A write that depends on a lease (a device's owner on the device's shard, the jobs'
    /// driver on [`JOBS_LEASE`]) made after the lease passed to another node (a cluster;
    /// see [`Fence`]): nothing of it was stored.
    #[error(
        "fenced: the {} at epoch {epoch} is no longer held; another node owns {} now",
        lease_name(*shard),
        if *shard == JOBS_LEASE { "the OTA jobs" } else { "its devices" }
    )]
    Fenced { shard: u32, epoch: i64 },
}

/// How an error names a lease: a shard's, or the jobs'.
fn lease_name(shard: u32) -> String {
    if shard == JOBS_LEASE {
        "jobs lease".to_owned()
    } else {
        format!("lease on shard {shard}")
    }
}

impl StoreError {
    /// A failure of the backend in operation `op` ("telemetry read", "commit", …).
    pub fn backend(op: &'static str, e: impl std::fmt::Display) -> Self {
        StoreError::Backend {
            op,
            reason: e.to_string(),
        }
    }
}

/// A node's proof that it owns a shard of the fleet's devices (a cluster of cloud
/// processes on PostgreSQL, ADR `docs/adr/cluster-leases.md`): the shard and the epoch of
/// the lease it holds. A write submitted with [`Store::submit_fenced`] is stored only if
/// the shard's lease still has this epoch when its transaction commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fence {
    pub shard: u32,
    pub epoch: i64,
}

/// The storage the cloud actors use. Object-safe; shared as `Arc<dyn Store>`.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Queues writes; they are committed together with others in one transaction.
    /// Telemetry and events are de-duplicated on (device, seq).
    fn submit(&self, writes: Vec<Write>) -> Commit;
    /// Queues writes that only the owner of a device may make (its shadow, verifications,
    /// schedules, history): they are stored only if `fence` still holds at commit, else
    /// the commit fails with [`StoreError::Fenced`] and nothing of them is stored. A store
    /// without leases (redb: one process) has nothing to check.
    fn submit_fenced(&self, fence: Fence, writes: Vec<Write>) -> Commit {
        let _ = fence;
        self.submit(writes)
    }
    /// A fresh id for history and verification records (unique, increasing).
    fn next_id(&self) -> u64;
    /// Samples of a device, oldest first.
    fn telemetry(&self, device: &DeviceId, q: &TimeQuery) -> Result<Vec<Sample>, StoreError>;
    /// The newest stored sample of a device.
    fn last_sample(&self, device: &DeviceId) -> Result<Option<Sample>, StoreError>;
    /// Missing sequence numbers between 1 and the highest stored seq (at most `max` gaps).
    fn telemetry_gaps(&self, device: &DeviceId, max: usize) -> Result<Vec<SeqGap>, StoreError>;
    /// Events of a device, oldest first.
    fn events(&self, device: &DeviceId, q: &TimeQuery) -> Result<Vec<Event>, StoreError>;
    /// Settings history of a device, newest first, each with its verification outcome.
    fn history(&self, device: &DeviceId, q: &TimeQuery) -> Result<Vec<HistoryItem>, StoreError>;
    /// Every verification record of a device (pending ones included), oldest first.
    fn verifications(&self, device: &DeviceId) -> Result<Vec<VerificationRecord>, StoreError>;
    /// The saved state of one device.
    fn device(&self, device: &DeviceId) -> Result<Option<DeviceSnapshot>, StoreError>;
    /// Every device the store knows.
    fn devices(&self) -> Result<Vec<DeviceId>, StoreError>;
    /// The API token with this hash.
    fn token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Every API token (without revoked ones).
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    /// A device's yearly schedules and their sync status (`None`: never set).
    fn schedules(&self, device: &DeviceId) -> Result<Option<DeviceSchedules>, StoreError>;
    /// When the fleet's yearly jobs were last evaluated (`None`: never).
    fn fleet_last_run(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// The OTA artifact of `version` (`None`: no such version uploaded). OTA jobs look
    /// their artifact up here; the bytes are at `<data_dir>/artifacts/sha256/<sha256>`.
    fn artifact(&self, version: &str) -> Result<Option<ArtifactRecord>, StoreError>;
    /// Every OTA artifact, newest upload first (ties: by version).
    fn artifacts(&self) -> Result<Vec<ArtifactRecord>, StoreError>;
    /// Every OTA job, in job id order.
    fn jobs(&self) -> Result<Vec<JobRecord>, StoreError>;
    /// A device's registration (`None`: never registered).
    fn registered(&self, device: &DeviceId) -> Result<Option<RegistryRecord>, StoreError>;
    /// Every registration (retired ones too), by device id.
    fn registry(&self) -> Result<Vec<RegistryRecord>, StoreError>;
    /// Counters for metrics.
    fn stats(&self) -> StoreStats;
    /// Commits everything queued and stops the writer; later writes fail with
    /// [`StoreError::Closed`]. Blocks until done.
    fn close(&self) {}
}

/// One submission to a backend's writer: its writes and whom to tell when they are
/// committed.
pub(crate) struct Job {
    pub writes: Vec<Write>,
    /// Stored only while this lease holds (PostgreSQL in a cluster).
    pub fence: Option<Fence>,
    pub ack: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

/// Hands `writes` to a writer through `send` (false: the writer is gone) and returns the
/// commit to wait on.
pub(crate) fn submit_with(
    writes: Vec<Write>,
    fence: Option<Fence>,
    send: impl FnOnce(Job) -> bool,
) -> Commit {
    let (ack, rx) = tokio::sync::oneshot::channel();
    if send(Job { writes, fence, ack }) {
        Commit::waiting(rx)
    } else {
        Commit::ready(Err(StoreError::Closed))
    }
}

/// Resolves when the writes it was returned for are committed (or failed).
#[derive(Debug)]
pub struct Commit(CommitInner);

#[derive(Debug)]
enum CommitInner {
    Waiting(tokio::sync::oneshot::Receiver<Result<(), StoreError>>),
    Ready(Option<Result<(), StoreError>>),
}

impl Commit {
    /// A commit that resolves with what the writer sends on `rx` (closed: [`StoreError::Closed`]).
    pub fn waiting(rx: tokio::sync::oneshot::Receiver<Result<(), StoreError>>) -> Self {
        Commit(CommitInner::Waiting(rx))
    }

    /// An already finished commit.
    pub fn ready(result: Result<(), StoreError>) -> Self {
        Commit(CommitInner::Ready(Some(result)))
    }

    /// Blocks the calling (non-async) thread until the commit finishes.
    pub fn wait_blocking(self) -> Result<(), StoreError> {
        match self.0 {
            CommitInner::Waiting(rx) => rx.blocking_recv().unwrap_or(Err(StoreError::Closed)),
            CommitInner::Ready(r) => r.unwrap_or(Err(StoreError::Closed)),
        }
    }
}

impl Future for Commit {
    type Output = Result<(), StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            CommitInner::Waiting(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(StoreError::Closed))),
            CommitInner::Ready(r) => Poll::Ready(r.take().unwrap_or(Err(StoreError::Closed))),
        }
    }
}
