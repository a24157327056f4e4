//! The redb implementation of [`OutboxStore`]: the only code of the edge that touches redb.

use std::path::{Path, PathBuf};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use shiki_proto::{Event, EventKind, Sample, Severity};

use crate::schedule::{StoredSchedule, StoredSchedules};

use super::{
    AUDIT_KEEP, AuditEntry, NewRecord, OutboxError, OutboxStats, OutboxStore, StoredRecord, Stream,
    WriteOp, WriteOutcome,
};

/// Telemetry records by seq; the value is the JSON of a `shiki_proto::Sample`.
const TELEMETRY: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("outbox_telemetry");
/// Event records by seq; the value is the JSON of a `shiki_proto::Event`.
const EVENTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("outbox_events");
/// Counters: last seq per stream, stored bytes, drop counts.
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("outbox_meta");
/// Small documents: persisted desired shadow, latest reported state, pending expiries.
const DOCS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("docs");
/// Local audit log by id; the value is the JSON of an [`AuditEntry`].
const AUDIT: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("audit_log");
/// The yearly schedules by slot (`current`, `next`); the value is the JSON of a
/// [`StoredSchedule`]. Both slots are written in one transaction.
const SCHEDULES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("schedules");
const SLOT_CURRENT: &str = "current";
const SLOT_NEXT: &str = "next";

const LAST_TELEMETRY: &str = "last_seq.telemetry";
const LAST_EVENTS: &str = "last_seq.events";
const STORED_BYTES: &str = "stored_bytes";
const DROPPED_TELEMETRY: &str = "dropped.telemetry";
const DROPPED_EVENTS: &str = "dropped.events";
const AUDIT_LAST: &str = "audit.last";

/// Per-record bookkeeping overhead counted against the quota besides the body.
const RECORD_OVERHEAD: u64 = 16;

/// How the outbox database is opened.
#[derive(Debug, Clone)]
pub struct OutboxOptions {
    /// Bytes of record bodies kept before the oldest are dropped.
    pub quota_bytes: u64,
    /// redb page cache size; bounds the agent's memory.
    pub cache_bytes: usize,
}

impl Default for OutboxOptions {
    fn default() -> Self {
        Self {
            quota_bytes: 256 * 1024 * 1024,
            cache_bytes: 4 * 1024 * 1024,
        }
    }
}

/// The redb-backed outbox. One per database file; a second open fails (redb locks the file).
#[derive(Debug)]
pub struct RedbOutbox {
    db: Database,
    path: PathBuf,
    options: OutboxOptions,
}

fn table_of(stream: Stream) -> TableDefinition<'static, u64, &'static [u8]> {
    match stream {
        Stream::Telemetry => TELEMETRY,
        Stream::Events => EVENTS,
    }
}

fn last_key(stream: Stream) -> &'static str {
    match stream {
        Stream::Telemetry => LAST_TELEMETRY,
        Stream::Events => LAST_EVENTS,
    }
}

fn dropped_key(stream: Stream) -> &'static str {
    match stream {
        Stream::Telemetry => DROPPED_TELEMETRY,
        Stream::Events => DROPPED_EVENTS,
    }
}

impl RedbOutbox {
    /// Opens (or creates) the outbox at `path`.
    pub fn open(path: &Path, options: OutboxOptions) -> Result<Self, OutboxError> {
        let db = Database::builder()
            .set_cache_size(options.cache_bytes)
            .create(path)
            .map_err(|e| OutboxError::Open {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?;
        let this = Self {
            db,
            path: path.to_owned(),
            options,
        };
        // Create every table up front so read transactions never see a missing table.
        let txn = this
            .db
            .begin_write()
            .map_err(|e| OutboxError::storage("open", e))?;
        for def in [TELEMETRY, EVENTS] {
            txn.open_table(def)
                .map_err(|e| OutboxError::storage("open", e))?;
        }
        txn.open_table(META)
            .map_err(|e| OutboxError::storage("open", e))?;
        txn.open_table(DOCS)
            .map_err(|e| OutboxError::storage("open", e))?;
        txn.open_table(AUDIT)
            .map_err(|e| OutboxError::storage("open", e))?;
        txn.open_table(SCHEDULES)
            .map_err(|e| OutboxError::storage("open", e))?;
        txn.commit().map_err(|e| OutboxError::storage("open", e))?;
        Ok(this)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn meta_get(txn: &WriteTransaction, key: &str) -> Result<u64, OutboxError> {
        let meta = txn
            .open_table(META)
            .map_err(|e| OutboxError::storage("read counters", e))?;
        let v = meta
            .get(key)
            .map_err(|e| OutboxError::storage("read counters", e))?
            .map(|g| g.value())
            .unwrap_or(0);
        Ok(v)
    }

    fn meta_set(txn: &WriteTransaction, key: &str, value: u64) -> Result<(), OutboxError> {
        let mut meta = txn
            .open_table(META)
            .map_err(|e| OutboxError::storage("write counters", e))?;
        meta.insert(key, value)
            .map_err(|e| OutboxError::storage("write counters", e))?;
        Ok(())
    }

    fn insert_record(
        txn: &WriteTransaction,
        record: &NewRecord,
        bytes: &mut u64,
    ) -> Result<(Stream, u64), OutboxError> {
        let stream = record.stream();
        let seq = Self::meta_get(txn, last_key(stream))? + 1;
        let body = match record {
            NewRecord::Sample { ts, values } => serde_json::to_vec(&Sample {
                seq,
                ts: *ts,
                values: values.clone(),
            }),
            NewRecord::Event {
                ts,
                kind,
                severity,
                message,
                data,
            } => serde_json::to_vec(&Event {
                seq,
                ts: *ts,
                kind: *kind,
                severity: *severity,
                message: message.clone(),
                data: data.clone(),
            }),
        }
        .map_err(|e| OutboxError::Encode(e.to_string()))?;
        let mut table = txn
            .open_table(table_of(stream))
            .map_err(|e| OutboxError::storage("append", e))?;
        table
            .insert(seq, body.as_slice())
            .map_err(|e| OutboxError::storage("append", e))?;
        *bytes += body.len() as u64 + RECORD_OVERHEAD;
        Self::meta_set(txn, last_key(stream), seq)?;
        Ok((stream, seq))
    }

    /// Deletes records of `stream` while `keep_going(seq)`, oldest first; returns
    /// (count, bytes) removed.
    fn delete_oldest(
        txn: &WriteTransaction,
        stream: Stream,
        mut keep_going: impl FnMut(u64, u64) -> bool,
    ) -> Result<(u64, u64), OutboxError> {
        let mut table = txn
            .open_table(table_of(stream))
            .map_err(|e| OutboxError::storage("delete", e))?;
        let (mut count, mut freed) = (0u64, 0u64);
        loop {
            let first = table
                .first()
                .map_err(|e| OutboxError::storage("delete", e))?
                .map(|(k, v)| (k.value(), v.value().len() as u64));
            let Some((seq, len)) = first else { break };
            if !keep_going(seq, freed) {
                break;
            }
            table
                .remove(seq)
                .map_err(|e| OutboxError::storage("delete", e))?;
            count += 1;
            freed += len + RECORD_OVERHEAD;
        }
        Ok((count, freed))
    }

    /// Writes both schedule slots (an empty slot is removed) inside `txn`.
    fn put_schedules(txn: &WriteTransaction, pair: &StoredSchedules) -> Result<(), OutboxError> {
        let mut table = txn
            .open_table(SCHEDULES)
            .map_err(|e| OutboxError::storage("store schedules", e))?;
        for (slot, doc) in [(SLOT_CURRENT, &pair.current), (SLOT_NEXT, &pair.next)] {
            match doc {
                Some(doc) => {
                    let body =
                        serde_json::to_vec(doc).map_err(|e| OutboxError::Encode(e.to_string()))?;
                    table
                        .insert(slot, body.as_slice())
                        .map_err(|e| OutboxError::storage("store schedules", e))?;
                }
                None => {
                    table
                        .remove(slot)
                        .map_err(|e| OutboxError::storage("store schedules", e))?;
                }
            }
        }
        Ok(())
    }

    /// Drops oldest telemetry, then oldest events, until `bytes` is within the quota, and
    /// records a `DataDropped` event for what it dropped.
    fn enforce_quota(&self, txn: &WriteTransaction, bytes: &mut u64) -> Result<(), OutboxError> {
        let quota = self.options.quota_bytes;
        if *bytes <= quota {
            return Ok(());
        }
        // Free a tenth of the quota at once (plus room for the DataDropped event), so drops
        // and their events come in a few large steps, not one per append.
        let target = quota.saturating_sub(quota / 10 + 512);
        let mut dropped = [0u64; 2];
        for (i, stream) in Stream::ALL.into_iter().enumerate() {
            let excess = bytes.saturating_sub(target);
            if excess == 0 {
                break;
            }
            let (count, freed) = Self::delete_oldest(txn, stream, |_, freed| freed < excess)?;
            *bytes -= freed.min(*bytes);
            dropped[i] = count;
            if count > 0 {
                let total = Self::meta_get(txn, dropped_key(stream))? + count;
                Self::meta_set(txn, dropped_key(stream), total)?;
            }
        }
        if dropped.iter().any(|&c| c > 0) {
            tracing::warn!(
                telemetry = dropped[0],
                events = dropped[1],
                quota_bytes = quota,
                "outbox quota reached: dropped oldest records"
            );
            let event = NewRecord::Event {
                ts: chrono::Utc::now(),
                kind: EventKind::DataDropped,
                severity: Severity::Warning,
                message: format!(
                    "outbox quota of {quota} bytes reached: dropped {} oldest samples and {} oldest events",
                    dropped[0], dropped[1]
                ),
                data: serde_json::json!({
                    "dropped_telemetry": dropped[0],
                    "dropped_events": dropped[1],
                    "quota_bytes": quota,
                }),
            };
            Self::insert_record(txn, &event, bytes)?;
        }
        Ok(())
    }
}

impl OutboxStore for RedbOutbox {
    fn apply(&mut self, ops: &[WriteOp]) -> Result<Vec<WriteOutcome>, OutboxError> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(|e| OutboxError::storage("begin", e))?;
        let durable = ops.iter().any(|op| !matches!(op, WriteOp::Ack { .. }));
        if !durable {
            txn.set_durability(Durability::None)
                .map_err(|e| OutboxError::storage("begin", e))?;
        }
        let mut bytes = Self::meta_get(&txn, STORED_BYTES)?;
        let mut out = Vec::with_capacity(ops.len());
        let mut appended = false;
        for op in ops {
            match op {
                WriteOp::Append(record) => {
                    let (stream, seq) = Self::insert_record(&txn, record, &mut bytes)?;
                    appended = true;
                    out.push(WriteOutcome::Appended { stream, seq });
                }
                WriteOp::Ack { stream, up_to } => {
                    let up_to = *up_to;
                    let (deleted, freed) =
                        Self::delete_oldest(&txn, *stream, |seq, _| seq <= up_to)?;
                    bytes -= freed.min(bytes);
                    out.push(WriteOutcome::Acked { deleted });
                }
                WriteOp::PutDoc { key, value } => {
                    let mut docs = txn
                        .open_table(DOCS)
                        .map_err(|e| OutboxError::storage("store document", e))?;
                    docs.insert(key.as_str(), value.as_slice())
                        .map_err(|e| OutboxError::storage("store document", e))?;
                    out.push(WriteOutcome::Stored);
                }
                WriteOp::Audit(entry) => {
                    let id = Self::meta_get(&txn, AUDIT_LAST)? + 1;
                    let body = serde_json::to_vec(entry)
                        .map_err(|e| OutboxError::Encode(e.to_string()))?;
                    let mut audit = txn
                        .open_table(AUDIT)
                        .map_err(|e| OutboxError::storage("audit", e))?;
                    audit
                        .insert(id, body.as_slice())
                        .map_err(|e| OutboxError::storage("audit", e))?;
                    if id > AUDIT_KEEP {
                        audit
                            .remove(id - AUDIT_KEEP)
                            .map_err(|e| OutboxError::storage("audit", e))?;
                    }
                    drop(audit);
                    Self::meta_set(&txn, AUDIT_LAST, id)?;
                    out.push(WriteOutcome::Audited { id });
                }
                WriteOp::PutSchedules(pair) => {
                    Self::put_schedules(&txn, pair)?;
                    out.push(WriteOutcome::Stored);
                }
            }
        }
        if appended {
            self.enforce_quota(&txn, &mut bytes)?;
        }
        Self::meta_set(&txn, STORED_BYTES, bytes)?;
        txn.commit()
            .map_err(|e| OutboxError::storage("commit", e))?;
        Ok(out)
    }

    fn peek_from(
        &self,
        stream: Stream,
        from: u64,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredRecord>, OutboxError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| OutboxError::storage("read", e))?;
        let table = txn
            .open_table(table_of(stream))
            .map_err(|e| OutboxError::storage("read", e))?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for item in table
            .range(from..)
            .map_err(|e| OutboxError::storage("read", e))?
        {
            let (k, v) = item.map_err(|e| OutboxError::storage("read", e))?;
            let body = v.value();
            if out.len() >= max_count || (!out.is_empty() && bytes + body.len() > max_bytes) {
                break;
            }
            bytes += body.len();
            out.push(StoredRecord {
                seq: k.value(),
                body: body.to_vec(),
            });
        }
        Ok(out)
    }

    fn stats(&self) -> Result<OutboxStats, OutboxError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| OutboxError::storage("read stats", e))?;
        let meta = txn
            .open_table(META)
            .map_err(|e| OutboxError::storage("read stats", e))?;
        let get = |key: &str| -> Result<u64, OutboxError> {
            Ok(meta
                .get(key)
                .map_err(|e| OutboxError::storage("read stats", e))?
                .map(|g| g.value())
                .unwrap_or(0))
        };
        let count = |stream: Stream| -> Result<u64, OutboxError> {
            txn.open_table(table_of(stream))
                .and_then(|t| Ok(t.len()?))
                .map_err(|e| OutboxError::storage("read stats", e))
        };
        Ok(OutboxStats {
            pending_telemetry: count(Stream::Telemetry)?,
            pending_events: count(Stream::Events)?,
            stored_bytes: get(STORED_BYTES)?,
            last_telemetry_seq: get(LAST_TELEMETRY)?,
            last_event_seq: get(LAST_EVENTS)?,
            dropped_telemetry: get(DROPPED_TELEMETRY)?,
            dropped_events: get(DROPPED_EVENTS)?,
        })
    }

    fn get_doc(&self, key: &str) -> Result<Option<Vec<u8>>, OutboxError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| OutboxError::storage("read document", e))?;
        let docs = txn
            .open_table(DOCS)
            .map_err(|e| OutboxError::storage("read document", e))?;
        Ok(docs
            .get(key)
            .map_err(|e| OutboxError::storage("read document", e))?
            .map(|g| g.value().to_vec()))
    }

    fn audit_tail(&self, n: usize) -> Result<Vec<(u64, AuditEntry)>, OutboxError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| OutboxError::storage("read audit log", e))?;
        let audit = txn
            .open_table(AUDIT)
            .map_err(|e| OutboxError::storage("read audit log", e))?;
        let mut out = Vec::new();
        for item in audit
            .range::<u64>(..)
            .map_err(|e| OutboxError::storage("read audit log", e))?
            .rev()
            .take(n)
        {
            let (k, v) = item.map_err(|e| OutboxError::storage("read audit log", e))?;
            if let Ok(entry) = serde_json::from_slice(v.value()) {
                out.push((k.value(), entry));
            }
        }
        out.reverse();
        Ok(out)
    }

    fn load_schedules(&self) -> Result<StoredSchedules, OutboxError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| OutboxError::storage("read schedules", e))?;
        let table = txn
            .open_table(SCHEDULES)
            .map_err(|e| OutboxError::storage("read schedules", e))?;
        let slot = |key: &str| -> Result<Option<StoredSchedule>, OutboxError> {
            let Some(v) = table
                .get(key)
                .map_err(|e| OutboxError::storage("read schedules", e))?
            else {
                return Ok(None);
            };
            serde_json::from_slice(v.value())
                .map(Some)
                .map_err(|e| OutboxError::Storage {
                    op: "read schedules",
                    detail: format!("stored {key} schedule is unreadable: {e}"),
                })
        };
        Ok(StoredSchedules {
            current: slot(SLOT_CURRENT)?,
            next: slot(SLOT_NEXT)?,
        })
    }
}
