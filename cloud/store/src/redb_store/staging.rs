//! Staged telemetry: a group commit appends its samples, one chunk per device, as rows at
//! the end of `telemetry_staging` (a few pages per commit, not a B-tree leaf per device);
//! every [`STAGE_MAX`] samples, or when an older sample arrives, the staged chunks move into
//! `telemetry`, merged per device ([`Stager`]). Reads of a device see both.

use redb::{ReadableTable, Table};

use super::chunks::{
    MAX_CHUNK_SAMPLES, Stored, TelemetryTable, decode, encode, encode_into, encoded_len,
    newest_chunked, scan, sort_dedup, store_device,
};
use super::tables::{Order, commit_err, for_each_row};
use crate::StoreError;

/// One device's samples of a group commit, as (seq, JSON).
pub(super) type DeviceSamples<'a> = (&'a str, Vec<(u64, &'a [u8])>);

/// Staged telemetry: `u64` (order of arrival) → the chunks of one group commit, each with
/// its device (see [`split_staged`]).
pub(super) type StagingTable<'txn> = Table<'txn, u64, &'static [u8]>;

/// Staged samples past which a commit also moves the staging table into `telemetry`.
pub(super) const STAGE_MAX: usize = 32_768;

/// First two bytes of a staged row of one group commit, several devices' chunks:
/// `[0xFF 0xFF]`, then per chunk `[device length: u16 LE][device][chunk length: u32 LE]
/// [chunk]`. A row of one device's chunk, as written before group rows, starts with the
/// device id's length (at most 64), so it cannot start like this.
const GROUP_TAG: [u8; 2] = [0xFF, 0xFF];

/// A staged row past this size is closed and the next chunk starts a new one (a backlog of
/// many samples in one commit stays in rows of moderate size).
const GROUP_ROW_MAX: usize = 256 * 1024;

/// Builds the staged rows of one group commit.
#[derive(Debug, Default)]
struct GroupRows {
    rows: Vec<Vec<u8>>,
}

impl GroupRows {
    fn push<B: AsRef<[u8]>>(&mut self, device: &str, samples: &[(u64, B)]) {
        let len = encoded_len(samples);
        let row = match self.rows.last_mut() {
            Some(r) if r.len() + len <= GROUP_ROW_MAX => r,
            _ => {
                self.rows.push(GROUP_TAG.to_vec());
                self.rows.last_mut().expect("just pushed")
            }
        };
        row.extend_from_slice(&(device.len() as u16).to_le_bytes());
        row.extend_from_slice(device.as_bytes());
        row.extend_from_slice(&(len as u32).to_le_bytes());
        encode_into(row, samples);
    }
}

fn corrupt_staged(reason: &str) -> StoreError {
    StoreError::Corrupt {
        table: "telemetry_staging",
        reason: reason.into(),
    }
}

/// Splits a length-prefixed field off `rest`: a little-endian length of `N` bytes, then
/// that many bytes; `what` names the field in the error.
fn prefixed<'a, const N: usize>(
    rest: &'a [u8],
    what: &str,
) -> Result<(&'a [u8], &'a [u8]), StoreError> {
    let missing = || corrupt_staged(&format!("row ends inside {what}"));
    let mut len = [0u8; 8];
    len[..N].copy_from_slice(rest.get(..N).ok_or_else(missing)?);
    let len = u64::from_le_bytes(len) as usize;
    let field = rest.get(N..N.saturating_add(len)).ok_or_else(missing)?;
    Ok((field, &rest[N + len..]))
}

/// The (device, chunk) pairs of a staged row, in the order they were staged.
pub(super) fn split_staged(row: &[u8]) -> Result<Vec<(&str, &[u8])>, StoreError> {
    fn device(rest: &[u8]) -> Result<(&str, &[u8]), StoreError> {
        let (id, rest) = prefixed::<2>(rest, "a device id")?;
        let id = std::str::from_utf8(id).map_err(|_| corrupt_staged("device id is not UTF-8"))?;
        Ok((id, rest))
    }
    let Some(mut rest) = row.strip_prefix(&GROUP_TAG[..]) else {
        // One device's chunk (rows written before group rows).
        return Ok(vec![device(row)?]);
    };
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (id, after) = device(rest)?;
        let (chunk, after) = prefixed::<4>(after, "a chunk")?;
        out.push((id, chunk));
        rest = after;
    }
    Ok(out)
}

/// The writer's telemetry path. Staged samples are always newer than anything of their
/// device in `telemetry`: a sample at or below its device's newest seq (a replay, or a late
/// one) first moves the staging table into `telemetry`, and then goes through
/// [`store_device`].
#[derive(Debug, Default)]
pub(super) struct Stager {
    /// Newest stored seq per device (cache; filled from the tables on first use).
    newest: std::collections::HashMap<String, u64>,
    /// Samples in the staging table (`None`: unknown, counted on next use).
    staged: Option<usize>,
    /// Staged samples past which the staging table is moved (tests set it low).
    pub max_staged: usize,
}

impl Stager {
    pub fn new() -> Self {
        Self {
            max_staged: STAGE_MAX,
            ..Self::default()
        }
    }

    /// Forgets what it cached: after a failed commit the tables are as before it.
    pub fn reset(&mut self) {
        self.newest.clear();
        self.staged = None;
    }

    /// Stores the telemetry of one group commit, grouped by device.
    pub fn store(
        &mut self,
        table: &mut TelemetryTable<'_>,
        staging: &mut StagingTable<'_>,
        by_device: Vec<DeviceSamples<'_>>,
    ) -> Result<Stored, StoreError> {
        let mut done = Stored::default();
        let mut groups = Vec::with_capacity(by_device.len());
        let mut any_older = false;
        for (device, mut samples) in by_device {
            done.duplicates += sort_dedup(&mut samples);
            let newest = self.newest_of(table, staging, device)?;
            any_older |= samples.first().is_some_and(|s| s.0 <= newest);
            groups.push((device, samples));
        }
        if any_older {
            self.unstage(table, staging)?;
            for (device, samples) in groups {
                let newest = samples.last().map_or(0, |s| s.0);
                let d = store_device(table, device, samples)?;
                done.stored += d.stored;
                done.duplicates += d.duplicates;
                let n = self.newest.entry(device.to_owned()).or_insert(0);
                *n = (*n).max(newest);
            }
            return Ok(done);
        }
        let mut staged = self.staged_count(staging)?;
        let mut rows = GroupRows::default();
        for (device, samples) in groups {
            let Some(last) = samples.last().map(|s| s.0) else {
                continue;
            };
            for chunk in samples.chunks(MAX_CHUNK_SAMPLES) {
                rows.push(device, chunk);
            }
            done.stored += samples.len() as u64;
            staged += samples.len();
            match self.newest.get_mut(device) {
                Some(n) => *n = last,
                None => {
                    self.newest.insert(device.to_owned(), last);
                }
            }
        }
        let next = match staging.last().map_err(commit_err)? {
            Some((k, _)) => k.value() + 1,
            None => 0,
        };
        for (key, row) in (next..).zip(rows.rows) {
            staging.insert(key, row.as_slice()).map_err(commit_err)?;
        }
        self.staged = Some(staged);
        if staged >= self.max_staged {
            self.unstage(table, staging)?;
        }
        Ok(done)
    }

    fn staged_count(&mut self, staging: &StagingTable<'_>) -> Result<usize, StoreError> {
        if let Some(n) = self.staged {
            return Ok(n);
        }
        let mut n = 0;
        scan_staged(staging, None, |_, seqs| {
            n += seqs.len();
            Ok(true)
        })?;
        self.staged = Some(n);
        Ok(n)
    }

    fn newest_of(
        &mut self,
        table: &TelemetryTable<'_>,
        staging: &StagingTable<'_>,
        device: &str,
    ) -> Result<u64, StoreError> {
        if let Some(n) = self.newest.get(device) {
            return Ok(*n);
        }
        if self.newest.is_empty() {
            // First use since the start or a failed commit: every staged device's newest
            // seq in one pass over the staging table, not one pass per device.
            scan_staged(staging, None, |dev, seqs| {
                let last = seqs.last().map_or(0, |s| s.0);
                let n = self.newest.entry(dev.to_owned()).or_insert(0);
                *n = (*n).max(last);
                Ok(true)
            })?;
            if let Some(n) = self.newest.get(device) {
                // Staged samples are newer than the device's chunks.
                return Ok(*n);
            }
        }
        let newest = newest_chunked(table, device)?;
        self.newest.insert(device.to_owned(), newest);
        Ok(newest)
    }

    /// Moves every staged chunk into `telemetry`, a device's consecutive chunks merged.
    fn unstage(
        &mut self,
        table: &mut TelemetryTable<'_>,
        staging: &mut StagingTable<'_>,
    ) -> Result<(), StoreError> {
        {
            // Each device's samples, borrowed from the staged rows, in arrival order (which
            // is seq order: a sample at or below its device's newest seq is never staged).
            let staged = staging
                .iter()
                .map_err(commit_err)?
                .map(|row| row.map(|(_, v)| v))
                .collect::<Result<Vec<_>, _>>()
                .map_err(commit_err)?;
            let mut rows: std::collections::BTreeMap<&str, Vec<(u64, &[u8])>> = Default::default();
            for value in &staged {
                for (device, chunk) in split_staged(value.value())? {
                    rows.entry(device)
                        .or_default()
                        .extend(decode_staged(chunk)?);
                }
            }
            for (device, samples) in &rows {
                for chunk in samples.chunks(MAX_CHUNK_SAMPLES) {
                    table
                        .insert((*device, chunk[0].0), encode(chunk).as_slice())
                        .map_err(commit_err)?;
                }
            }
        }
        staging.retain(|_, _| false).map_err(commit_err)?;
        self.staged = Some(0);
        Ok(())
    }
}

/// The samples of a staged chunk (its errors name the staging table).
fn decode_staged(chunk: &[u8]) -> Result<Vec<(u64, &[u8])>, StoreError> {
    decode(0, chunk).map_err(|e| match e {
        StoreError::Corrupt { reason, .. } => corrupt_staged(&reason),
        other => other,
    })
}

/// The staged rows that do not decode, as (key, row, why), in key order.
pub(super) fn damaged_staged(
    staging: &impl ReadableTable<u64, &'static [u8]>,
) -> Result<Vec<(u64, Vec<u8>, StoreError)>, StoreError> {
    let mut damaged = Vec::new();
    for_each_row(staging, "telemetry read", |k, v| {
        let checked = split_staged(v.value()).and_then(|sections| {
            sections
                .iter()
                .try_for_each(|(_, chunk)| decode_staged(chunk).map(drop))
        });
        if let Err(e) = checked {
            damaged.push((k.value(), v.value().to_vec(), e));
        }
        Ok(true)
    })?;
    Ok(damaged)
}

/// Visits staged chunks in arrival order (of one device, or all), decoded, until `visit`
/// returns `false`.
pub(super) fn scan_staged(
    staging: &impl ReadableTable<u64, &'static [u8]>,
    device: Option<&str>,
    mut visit: impl FnMut(&str, &[(u64, &[u8])]) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    for_each_row(staging, "telemetry read", |_, v| {
        for (dev, chunk) in split_staged(v.value())? {
            if device.is_some_and(|d| d != dev) {
                continue;
            }
            if !visit(dev, &decode_staged(chunk)?)? {
                return Ok(false);
            }
        }
        Ok(true)
    })
}

/// Visits every stored sample of `device` (`telemetry`, then the newer staged ones), as
/// (seq, JSON), oldest first, until `visit` returns `false`.
pub(super) fn for_each_sample(
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    staging: &impl ReadableTable<u64, &'static [u8]>,
    device: &str,
    mut visit: impl FnMut(u64, &[u8]) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let mut more = true;
    scan(table, device, Order::OldestFirst, |seq, body| {
        more = visit(seq, body)?;
        Ok(more)
    })?;
    if !more {
        return Ok(());
    }
    scan_staged(staging, Some(device), |_, entries| {
        for (seq, body) in entries {
            if !visit(*seq, body)? {
                return Ok(false);
            }
        }
        Ok(true)
    })
}

/// Visits every stored sample of `device` newest first (the staged ones, then `telemetry`
/// backwards), until `visit` returns `false`.
pub(super) fn for_each_sample_newest_first(
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    staging: &impl ReadableTable<u64, &'static [u8]>,
    device: &str,
    mut visit: impl FnMut(u64, &[u8]) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    // Staging holds the few newest commits; collect them to walk them backwards.
    let mut staged: Vec<(u64, Vec<u8>)> = Vec::new();
    scan_staged(staging, Some(device), |_, entries| {
        staged.extend(entries.iter().map(|(seq, body)| (*seq, body.to_vec())));
        Ok(true)
    })?;
    staged.sort_by_key(|e| std::cmp::Reverse(e.0));
    for (seq, body) in &staged {
        if !visit(*seq, body)? {
            return Ok(());
        }
    }
    scan(table, device, Order::NewestFirst, visit)
}

/// The JSON of the newest stored sample of `device`.
pub(super) fn newest_sample(
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    staging: &impl ReadableTable<u64, &'static [u8]>,
    device: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    let mut newest = None;
    scan_staged(staging, Some(device), |_, entries| {
        if let Some((_, body)) = entries.last() {
            newest = Some(body.to_vec());
        }
        Ok(true)
    })?;
    if newest.is_none() {
        scan(table, device, Order::NewestFirst, |_, body| {
            newest = Some(body.to_vec());
            Ok(false)
        })?;
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_row_holds_each_device_chunk_in_order_and_splits_at_its_size_limit() {
        let a = [(1u64, b"{\"a\":1}".to_vec()), (2, b"{}".to_vec())];
        let b = [(7u64, b"{\"b\":7}".to_vec())];
        let mut rows = GroupRows::default();
        rows.push("gw-a", &a);
        rows.push("gw-b", &b);
        assert_eq!(rows.rows.len(), 1);
        let split = split_staged(&rows.rows[0]).expect("splits");
        assert_eq!(
            split,
            vec![("gw-a", &encode(&a)[..]), ("gw-b", &encode(&b)[..])]
        );

        // A chunk that would take a row past its limit starts the next row.
        let big = [(9u64, vec![b' '; GROUP_ROW_MAX / 2])];
        rows.push("gw-c", &big);
        rows.push("gw-d", &big);
        assert_eq!(rows.rows.len(), 2);
        assert_eq!(split_staged(&rows.rows[1]).expect("splits").len(), 1);

        // A row of one device's chunk, as written before group rows.
        let mut old = 4u16.to_le_bytes().to_vec();
        old.extend_from_slice(b"gw-a");
        old.extend_from_slice(&encode(&a));
        assert_eq!(
            split_staged(&old).expect("splits"),
            vec![("gw-a", &encode(&a)[..])]
        );
    }

    #[test]
    fn a_damaged_staged_row_is_an_error_not_a_panic() {
        let mut rows = GroupRows::default();
        rows.push("gw-a", &[(1u64, b"{}".to_vec())]);
        let row = &rows.rows[0];
        for cut in [3, 6, 9, row.len() - 1] {
            let err = split_staged(&row[..cut]).expect_err("cut row");
            assert!(
                matches!(
                    err,
                    StoreError::Corrupt {
                        table: "telemetry_staging",
                        ..
                    }
                ),
                "{err}"
            );
        }
        let mut bad_id = row.clone();
        bad_id[4] = 0xC3; // first byte of the id: no longer UTF-8
        assert!(split_staged(&bad_id).is_err());
    }
}
