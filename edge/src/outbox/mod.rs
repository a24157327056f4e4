//! Store-and-forward outbox: every sample and event gets a per-device `seq` and is committed
//! durably to redb before anything is sent; it is deleted only after the broker's PUBACK.
//!
//! All redb access of the edge sits in `store` behind the [`OutboxStore`] trait. Actors use
//! the cloneable async [`OutboxHandle`], which talks to one writer thread (`writer`) that
//! group-commits everything queued into one durable transaction (one fsync per batch) and
//! only then answers.
//!
//! Quota: when the stored bytes pass the configured quota, the oldest telemetry is dropped
//! first and events last; each drop is counted and recorded as a `DataDropped` event in the
//! same transaction. Nothing else ever drops data.

mod schedules;
mod store;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use shiki_proto::{EventKind, PointValue, Severity};

pub use schedules::RedbScheduleStore;
pub use store::{OutboxOptions, RedbOutbox};
pub use writer::{Committed, OutboxHandle};

/// The two sequences of the outbox; each has its own `seq` counter starting at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    Telemetry,
    Events,
}

impl Stream {
    pub const ALL: [Stream; 2] = [Stream::Telemetry, Stream::Events];

    pub fn name(self) -> &'static str {
        match self {
            Stream::Telemetry => "telemetry",
            Stream::Events => "events",
        }
    }
}

impl std::fmt::Display for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A record to append; the outbox assigns its `seq`.
#[derive(Debug, Clone, PartialEq)]
pub enum NewRecord {
    Sample {
        ts: DateTime<Utc>,
        values: BTreeMap<String, PointValue>,
    },
    Event {
        ts: DateTime<Utc>,
        kind: EventKind,
        severity: Severity,
        message: String,
        data: serde_json::Value,
    },
}

impl NewRecord {
    pub fn stream(&self) -> Stream {
        match self {
            NewRecord::Sample { .. } => Stream::Telemetry,
            NewRecord::Event { .. } => Stream::Events,
        }
    }
}

/// A stored record: its `seq` and its JSON body (a `shiki_proto::Sample` or `Event`,
/// `seq` included), ready to be put in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub seq: u64,
    pub body: Vec<u8>,
}

/// One write of a group commit.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    Append(NewRecord),
    /// Delete every record of `stream` with `seq <= up_to` (after PUBACK).
    Ack {
        stream: Stream,
        up_to: u64,
    },
    /// Store a small document (persisted desired shadow, latest report, ...).
    PutDoc {
        key: String,
        value: Vec<u8>,
    },
    /// Append to the local audit log (the newest [`AUDIT_KEEP`] entries are kept).
    Audit(AuditEntry),
    /// Replace both schedule slots (current and next) in one transaction.
    PutSchedules(crate::schedule::StoredSchedules),
}

/// Entries the local audit log keeps.
pub const AUDIT_KEEP: u64 = 10_000;

/// One line of the local audit log: what changed on this gateway, when and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditEntry {
    pub ts: DateTime<Utc>,
    /// Who caused it: `cloud`, `schedule`, `device`, `operator`.
    pub actor: String,
    /// What happened, e.g. `desired_applied`, `override_expired`.
    pub action: String,
    #[serde(default)]
    pub detail: serde_json::Value,
}

/// What one [`WriteOp`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Appended { stream: Stream, seq: u64 },
    Acked { deleted: u64 },
    Stored,
    Audited { id: u64 },
}

/// Counters of the outbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxStats {
    pub pending_telemetry: u64,
    pub pending_events: u64,
    /// Bytes of record bodies held (the quota applies to this).
    pub stored_bytes: u64,
    /// Last seq assigned per stream (0 before the first record).
    pub last_telemetry_seq: u64,
    pub last_event_seq: u64,
    pub dropped_telemetry: u64,
    pub dropped_events: u64,
}

impl OutboxStats {
    pub fn last_seq(&self, stream: Stream) -> u64 {
        match stream {
            Stream::Telemetry => self.last_telemetry_seq,
            Stream::Events => self.last_event_seq,
        }
    }
}

/// Why an outbox operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboxError {
    #[error("cannot open outbox database {path}: {detail}")]
    Open { path: String, detail: String },
    #[error("outbox {op} failed: {detail}")]
    Storage { op: &'static str, detail: String },
    #[error("outbox record could not be encoded: {0}")]
    Encode(String),
    #[error("outbox record {stream} seq {seq} is corrupt: {detail}")]
    Corrupt {
        stream: Stream,
        seq: u64,
        detail: String,
    },
    #[error("the outbox writer thread has stopped")]
    WriterGone,
}

impl OutboxError {
    pub(crate) fn storage(op: &'static str, e: impl Into<redb::Error>) -> Self {
        OutboxError::Storage {
            op,
            detail: e.into().to_string(),
        }
    }
}

/// The counters of the outbox at `path` (`<data_dir>/edge.redb`) while no agent runs:
/// what `shiki-edge outbox` prints for a field engineer (and the fault campaign compares
/// with what the cloud stored). Refuses a missing file instead of creating one, and names
/// the running agent when the file is locked.
pub fn inspect(path: &std::path::Path) -> Result<OutboxStats, OutboxError> {
    if !path.exists() {
        return Err(OutboxError::Open {
            path: path.display().to_string(),
            detail: "no outbox here: pass the gateway's data_dir (--data-dir) or its config \
                     (--config)"
                .into(),
        });
    }
    let store = RedbOutbox::open(path, OutboxOptions::default()).map_err(|e| match e {
        OutboxError::Open { path, detail } if detail.contains("already open") => {
            OutboxError::Open {
                path,
                detail: format!(
                    "{detail}: a running shiki-edge holds it; stop the agent first \
                     (systemctl stop shiki-edge)"
                ),
            }
        }
        other => other,
    })?;
    store.stats()
}

/// The storage the writer thread drives. One implementation: [`RedbOutbox`].
pub trait OutboxStore: Send + 'static {
    /// Applies all `ops` in one transaction: durable (fsync) when it appends or stores a
    /// document, otherwise (acks only) lazily durable with the next durable commit — a lost
    /// ack only causes a re-send, which the cloud de-duplicates.
    fn apply(&mut self, ops: &[WriteOp]) -> Result<Vec<WriteOutcome>, OutboxError>;
    /// Records of `stream` with `seq >= from`, oldest first, at most `max_count` and about
    /// `max_bytes` of bodies (always at least one record if any exists).
    fn peek_from(
        &self,
        stream: Stream,
        from: u64,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredRecord>, OutboxError>;
    fn stats(&self) -> Result<OutboxStats, OutboxError>;
    fn get_doc(&self, key: &str) -> Result<Option<Vec<u8>>, OutboxError>;
    /// The newest `n` audit entries, oldest first, with their ids.
    fn audit_tail(&self, n: usize) -> Result<Vec<(u64, AuditEntry)>, OutboxError>;
    /// Both stored schedule slots (both `None` when nothing was ever stored).
    fn load_schedules(&self) -> Result<crate::schedule::StoredSchedules, OutboxError>;
}
