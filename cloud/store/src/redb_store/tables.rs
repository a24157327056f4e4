//! The tables of the redb file, how records are encoded in them, and the reads the queries
//! share. Record tables hold JSON; the telemetry tables hold chunks ([`super::chunks`]).

use std::borrow::Borrow;

use redb::{
    AccessGuard, Database, Key, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable,
    TableDefinition, Value,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shiki_proto::DeviceId;

use crate::StoreError;

/// Chunks of a device's samples, keyed by (device, first seq).
pub(super) const TELEMETRY: TableDefinition<'static, (&str, u64), &[u8]> =
    TableDefinition::new("telemetry");
/// Telemetry of recent group commits, before it moves into [`TELEMETRY`] (see
/// [`super::staging::Stager`]).
pub(super) const STAGING: TableDefinition<'static, u64, &[u8]> =
    TableDefinition::new("telemetry_staging");
/// Staged rows that did not decode, moved aside (raw bytes) so they do not block every
/// telemetry commit; key: order of quarantine.
pub(super) const QUARANTINE: TableDefinition<'static, u64, &[u8]> =
    TableDefinition::new("telemetry_quarantine");
pub(super) const EVENTS: JsonTable<(&str, u64)> = JsonTable::new("events");
pub(super) const HISTORY: JsonTable<(&str, u64)> = JsonTable::new("history");
pub(super) const VERIFICATIONS: JsonTable<(&str, u64)> = JsonTable::new("verifications");
pub(super) const DEVICES: JsonTable<&str> = JsonTable::new("devices");
pub(super) const TOKENS: JsonTable<&str> = JsonTable::new("tokens");
/// Device id → its `DeviceSchedules`.
pub(super) const SCHEDULES: JsonTable<&str> = JsonTable::new("schedules");
/// OTA artifact version → its `ArtifactRecord`.
pub(super) const ARTIFACTS: JsonTable<&str> = JsonTable::new("artifacts");
/// Process-wide values by name, e.g. [`FLEET_LAST_RUN`].
pub(super) const META: JsonTable<&str> = JsonTable::new("meta");
pub(super) const FLEET_LAST_RUN: &str = "fleet.last_run";
/// Job id → its `JobRecord` (with every device's execution).
pub(super) const JOBS: JsonTable<&str> = JsonTable::new("jobs");
/// Device registrations (`RegistryRecord`) by device id.
pub(super) const REGISTRY: JsonTable<&str> = JsonTable::new("registry");

/// Creates the tables that do not exist yet, so reads never meet a missing table.
pub(super) fn create_all(db: &Database) -> Result<(), redb::Error> {
    let wtx = db.begin_write()?;
    for def in [TELEMETRY, EVENTS.def, HISTORY.def, VERIFICATIONS.def] {
        wtx.open_table(def)?;
    }
    for table in [DEVICES, TOKENS, SCHEDULES, META, ARTIFACTS, JOBS, REGISTRY] {
        wtx.open_table(table.def)?;
    }
    for def in [STAGING, QUARANTINE] {
        wtx.open_table(def)?;
    }
    wtx.commit()?;
    Ok(())
}

/// The greatest history or verification id stored (0: none).
pub(super) fn max_id(db: &Database) -> Result<u64, StoreError> {
    let op = "open";
    let rtx = db.begin_read().map_err(|e| StoreError::backend(op, e))?;
    let mut max = 0;
    for table in [HISTORY, VERIFICATIONS] {
        for_each_row(&table.open(&rtx, op)?, op, |k, _| {
            max = max.max(k.value().1);
            Ok(true)
        })?;
    }
    Ok(max)
}

pub(super) fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("store records always serialise")
}

pub(super) fn from_json<T: DeserializeOwned>(
    table: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table,
        reason: e.to_string(),
    })
}

/// A failure of the backend in a group commit.
pub(super) fn commit_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::backend("commit", e)
}

/// Opens `def` for reading; a failure is one of `op`.
pub(super) fn open<K: Key + 'static, V: Value + 'static>(
    rtx: &ReadTransaction,
    def: TableDefinition<'static, K, V>,
    op: &'static str,
) -> Result<ReadOnlyTable<K, V>, StoreError> {
    rtx.open_table(def).map_err(|e| StoreError::backend(op, e))
}

/// Visits the rows of `table` in key order until `visit` returns `false`; a failure to read
/// one is one of `op`.
pub(super) fn for_each_row<K: Key + 'static, V: Value + 'static>(
    table: &impl ReadableTable<K, V>,
    op: &'static str,
    mut visit: impl FnMut(AccessGuard<'_, K>, AccessGuard<'_, V>) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    for row in table.iter().map_err(|e| StoreError::backend(op, e))? {
        let (k, v) = row.map_err(|e| StoreError::backend(op, e))?;
        if !visit(k, v)? {
            break;
        }
    }
    Ok(())
}

/// A table of JSON records, with the name [`StoreError::Corrupt`] gives when one does not
/// decode.
pub(super) struct JsonTable<K: Key + 'static> {
    pub def: TableDefinition<'static, K, &'static [u8]>,
    name: &'static str,
}

impl<K: Key + 'static> JsonTable<K> {
    const fn new(name: &'static str) -> Self {
        Self {
            def: TableDefinition::new(name),
            name,
        }
    }

    /// Opens the table for reading; a failure is one of `op`.
    pub fn open(
        &self,
        rtx: &ReadTransaction,
        op: &'static str,
    ) -> Result<ReadOnlyTable<K, &'static [u8]>, StoreError> {
        open(rtx, self.def, op)
    }

    /// Decodes one of its records.
    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, StoreError> {
        from_json(self.name, bytes)
    }

    /// The record under `key` in the table, opened by [`JsonTable::open`].
    pub fn lookup<'k, T: DeserializeOwned>(
        &self,
        table: &ReadOnlyTable<K, &'static [u8]>,
        key: impl Borrow<K::SelfType<'k>>,
        op: &'static str,
    ) -> Result<Option<T>, StoreError> {
        table
            .get(key)
            .map_err(|e| StoreError::backend(op, e))?
            .map(|g| self.decode(g.value()))
            .transpose()
    }

    /// The record under `key`.
    pub fn get<'k, T: DeserializeOwned>(
        &self,
        rtx: &ReadTransaction,
        key: impl Borrow<K::SelfType<'k>>,
        op: &'static str,
    ) -> Result<Option<T>, StoreError> {
        self.lookup(&self.open(rtx, op)?, key, op)
    }

    /// Every record, in key order.
    pub fn all<T: DeserializeOwned>(
        &self,
        rtx: &ReadTransaction,
        op: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for_each_row(&self.open(rtx, op)?, op, |_, v| {
            out.push(self.decode(v.value())?);
            Ok(true)
        })?;
        Ok(out)
    }
}

/// The order of a scan over one device's rows (by seq or id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Order {
    OldestFirst,
    NewestFirst,
}

impl JsonTable<(&'static str, u64)> {
    /// The records of one device (keyed by (device, u64)) that `keep` accepts, at most
    /// `limit`, in key `order`.
    pub fn scan_device<T: DeserializeOwned>(
        &self,
        rtx: &ReadTransaction,
        op: &'static str,
        device: &DeviceId,
        order: Order,
        mut keep: impl FnMut(&T) -> bool,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let table = self.open(rtx, op)?;
        let read_err = |e: redb::StorageError| StoreError::backend("read", e);
        let range = table
            .range((device.as_str(), 0u64)..=(device.as_str(), u64::MAX))
            .map_err(read_err)?;
        let rows: Box<dyn Iterator<Item = _>> = match order {
            Order::OldestFirst => Box::new(range),
            Order::NewestFirst => Box::new(range.rev()),
        };
        for row in rows {
            let (_, v) = row.map_err(read_err)?;
            let item: T = self.decode(v.value())?;
            if keep(&item) {
                out.push(item);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}
