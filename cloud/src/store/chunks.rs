//! Telemetry rows in chunks: each row of the `telemetry` table holds several samples of one
//! device, keyed by (device, first seq).
//!
//! One row per sample made every group commit rewrite the newest B-tree leaf of every
//! device in it, once per sample: at ingest rates the store's writer spent ~4 µs of CPU per
//! sample. A commit now writes one row per device for the samples newer than everything
//! stored (the live stream), so the B-tree work is per device and commit, not per sample.
//!
//! Invariant: the chunks of a device cover disjoint seq ranges `[first, last]`, so the only
//! chunk that can hold a seq is the one with the greatest first seq at or below it. A sample
//! at or below the device's newest stored seq (a replay, or one that arrives late) is
//! looked up there: a duplicate is dropped, a missing one is merged into that chunk, or
//! stored as a chunk of its own when it falls between chunks.
//!
//! Value layout: `[CHUNK_TAG][last seq: u64 LE][count: u32 LE]`, then per sample, in seq
//! order, `[seq: u64 LE][len: u32 LE][len bytes of the sample as JSON]`. Rows written before
//! chunks hold one sample as JSON (first byte `{`) and read as a chunk of one.

use redb::{ReadableTable, Table};

use super::StoreError;

/// First byte of a chunk row (a legacy row starts with `{`).
const CHUNK_TAG: u8 = 0x01;
const HEADER: usize = 1 + 8 + 4;
/// Most samples in a chunk written at once; longer runs are split (merging late samples
/// may grow a chunk past it, by at most the gaps it had).
pub(super) const MAX_CHUNK_SAMPLES: usize = 512;

pub(super) type TelemetryTable<'txn> = Table<'txn, (&'static str, u64), &'static [u8]>;

fn corrupt(reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        table: "telemetry",
        reason: reason.into(),
    }
}

/// The samples of one row, in seq order, as (seq, JSON).
pub(super) fn decode(first_seq: u64, value: &[u8]) -> Result<Vec<(u64, &[u8])>, StoreError> {
    match value.first() {
        Some(b'{') => Ok(vec![(first_seq, value)]),
        Some(&CHUNK_TAG) if value.len() >= HEADER => {
            let count = u32::from_le_bytes(value[9..13].try_into().expect("4 bytes")) as usize;
            let mut out = Vec::with_capacity(count);
            let mut rest = &value[HEADER..];
            for _ in 0..count {
                if rest.len() < 12 {
                    return Err(corrupt("chunk ends inside a sample header"));
                }
                let seq = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
                let len = u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes")) as usize;
                let body = rest
                    .get(12..12 + len)
                    .ok_or_else(|| corrupt("chunk ends inside a sample"))?;
                out.push((seq, body));
                rest = &rest[12 + len..];
            }
            Ok(out)
        }
        _ => Err(corrupt("row is neither a chunk nor a sample")),
    }
}

/// The newest seq in a row, without decoding its samples.
pub(super) fn last_seq(first_seq: u64, value: &[u8]) -> Result<u64, StoreError> {
    match value.first() {
        Some(b'{') => Ok(first_seq),
        Some(&CHUNK_TAG) if value.len() >= HEADER => {
            Ok(u64::from_le_bytes(value[1..9].try_into().expect("8 bytes")))
        }
        _ => Err(corrupt("row is neither a chunk nor a sample")),
    }
}

/// A chunk row of `samples` (in seq order, non-empty).
pub(super) fn encode<B: AsRef<[u8]>>(samples: &[(u64, B)]) -> Vec<u8> {
    let bytes: usize = samples.iter().map(|(_, b)| 12 + b.as_ref().len()).sum();
    let mut v = Vec::with_capacity(HEADER + bytes);
    v.push(CHUNK_TAG);
    v.extend_from_slice(&samples.last().map_or(0, |s| s.0).to_le_bytes());
    v.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    for (seq, body) in samples {
        let body = body.as_ref();
        v.extend_from_slice(&seq.to_le_bytes());
        v.extend_from_slice(&(body.len() as u32).to_le_bytes());
        v.extend_from_slice(body);
    }
    v
}

/// What [`store_device`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stored {
    pub stored: u64,
    pub duplicates: u64,
}

/// Stores one device's samples of a commit (`(seq, JSON)`, any order, repeats allowed)
/// exactly once each.
pub(super) fn store_device(
    table: &mut TelemetryTable<'_>,
    device: &str,
    mut samples: Vec<(u64, &[u8])>,
) -> Result<Stored, StoreError> {
    let be = |e: &dyn std::fmt::Display| StoreError::backend("commit", e);
    let mut done = Stored {
        stored: 0,
        duplicates: sort_dedup(&mut samples),
    };
    let newest = newest_chunked(table, device)?;
    let split = samples.partition_point(|s| s.0 <= newest);
    let fresh = samples.split_off(split);
    for (seq, body) in samples {
        if place_older(table, device, seq, body)? {
            done.stored += 1;
        } else {
            done.duplicates += 1;
        }
    }
    for chunk in fresh.chunks(MAX_CHUNK_SAMPLES) {
        table
            .insert((device, chunk[0].0), encode(chunk).as_slice())
            .map_err(|e| be(&e))?;
        done.stored += chunk.len() as u64;
    }
    Ok(done)
}

/// Sorts samples by seq and drops repeats of a seq; returns how many were dropped.
fn sort_dedup(samples: &mut Vec<(u64, &[u8])>) -> u64 {
    samples.sort_by_key(|s| s.0);
    let before = samples.len();
    samples.dedup_by_key(|s| s.0);
    (before - samples.len()) as u64
}

/// The newest seq of `device` in `telemetry` (0: none).
fn newest_chunked(table: &TelemetryTable<'_>, device: &str) -> Result<u64, StoreError> {
    let be = |e: &dyn std::fmt::Display| StoreError::backend("commit", e);
    match table
        .range((device, 0u64)..=(device, u64::MAX))
        .map_err(|e| be(&e))?
        .next_back()
    {
        Some(row) => {
            let (k, v) = row.map_err(|e| be(&e))?;
            last_seq(k.value().1, v.value())
        }
        None => Ok(0),
    }
}

/// Stores a sample at or below the device's newest seq; `false` if it was stored already.
fn place_older(
    table: &mut TelemetryTable<'_>,
    device: &str,
    seq: u64,
    body: &[u8],
) -> Result<bool, StoreError> {
    let be = |e: &dyn std::fmt::Display| StoreError::backend("commit", e);
    let covering = match table
        .range((device, 0u64)..=(device, seq))
        .map_err(|e| be(&e))?
        .next_back()
    {
        Some(row) => {
            let (k, v) = row.map_err(|e| be(&e))?;
            let first = k.value().1;
            let value = v.value();
            (last_seq(first, value)? >= seq).then(|| (first, value.to_vec()))
        }
        None => None,
    };
    let Some((first, value)) = covering else {
        // Between two chunks (or before the first): a chunk of its own keeps them disjoint.
        table
            .insert((device, seq), encode(&[(seq, body)]).as_slice())
            .map_err(|e| be(&e))?;
        return Ok(true);
    };
    let mut entries = decode(first, &value)?;
    let at = match entries.binary_search_by_key(&seq, |e| e.0) {
        Ok(_) => return Ok(false),
        Err(at) => at,
    };
    entries.insert(at, (seq, body));
    // A sample below the chunk's first seq never gets here (the chunk would not cover it),
    // so the key stays the same.
    table
        .insert((device, first), encode(&entries).as_slice())
        .map_err(|e| be(&e))?;
    Ok(true)
}

/// Visits the samples of `device`, as (seq, JSON), in seq order or newest first, until
/// `visit` returns `false`.
pub(super) fn scan(
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    device: &str,
    newest_first: bool,
    mut visit: impl FnMut(u64, &[u8]) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let be = |e: &dyn std::fmt::Display| StoreError::backend("telemetry read", e);
    let range = table
        .range((device, 0u64)..=(device, u64::MAX))
        .map_err(|e| be(&e))?;
    let rows: Box<dyn Iterator<Item = _>> = if newest_first {
        Box::new(range.rev())
    } else {
        Box::new(range)
    };
    for row in rows {
        let (k, v) = row.map_err(|e| be(&e))?;
        let entries = decode(k.value().1, v.value())?;
        if newest_first {
            for (seq, body) in entries.into_iter().rev() {
                if !visit(seq, body)? {
                    return Ok(());
                }
            }
        } else {
            for (seq, body) in entries {
                if !visit(seq, body)? {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_decodes_to_what_was_encoded_and_knows_its_last_seq() {
        let samples = [(3u64, b"{\"a\":1}".to_vec()), (9, b"{}".to_vec())];
        let row = encode(&samples);
        assert_eq!(last_seq(3, &row).expect("last"), 9);
        let back = decode(3, &row).expect("decodes");
        assert_eq!(back, vec![(3, &b"{\"a\":1}"[..]), (9, &b"{}"[..])]);
        // A row from before chunks: one sample, its seq in the key.
        assert_eq!(
            decode(5, b"{\"seq\":5}").expect("legacy"),
            vec![(5, &b"{\"seq\":5}"[..])]
        );
        assert_eq!(last_seq(5, b"{\"seq\":5}").expect("legacy"), 5);
    }

    #[test]
    fn a_damaged_row_is_an_error_not_a_panic() {
        let row = encode(&[(1u64, b"{\"x\":1}".to_vec()), (2, b"{}".to_vec())]);
        for cut in [0, 5, HEADER + 3, row.len() - 1] {
            let err = decode(1, &row[..cut]).expect_err("cut row");
            assert!(
                matches!(
                    err,
                    StoreError::Corrupt {
                        table: "telemetry",
                        ..
                    }
                ),
                "{err}"
            );
        }
        assert!(last_seq(1, &[0x7f, 0, 0]).is_err());
    }
}

/// One device's samples of a group commit, as (seq, JSON).
pub(super) type DeviceSamples<'a> = (&'a str, Vec<(u64, &'a [u8])>);

/// Staged telemetry: `u64` (order of arrival) → `[device length: u16 LE][device][chunk]`.
pub(super) type StagingTable<'txn> = Table<'txn, u64, &'static [u8]>;

/// Staged samples past which a commit also moves the staging table into `telemetry`.
pub(super) const STAGE_MAX: usize = 32_768;

fn staged_row(device: &str, chunk: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + device.len() + chunk.len());
    v.extend_from_slice(&(device.len() as u16).to_le_bytes());
    v.extend_from_slice(device.as_bytes());
    v.extend_from_slice(chunk);
    v
}

/// The device and chunk of a staged row.
pub(super) fn split_staged(row: &[u8]) -> Result<(&str, &[u8]), StoreError> {
    let bad = || StoreError::Corrupt {
        table: "telemetry_staging",
        reason: "row shorter than its device id".into(),
    };
    let len = u16::from_le_bytes(row.get(..2).ok_or_else(bad)?.try_into().expect("2 bytes"));
    let device = row.get(2..2 + len as usize).ok_or_else(bad)?;
    let device = std::str::from_utf8(device).map_err(|_| StoreError::Corrupt {
        table: "telemetry_staging",
        reason: "device id is not UTF-8".into(),
    })?;
    Ok((device, &row[2 + len as usize..]))
}

/// The writer's telemetry path: a group commit appends one staged chunk per device (all at
/// the end of one table, so a commit writes a few pages, not a leaf per device), and every
/// [`STAGE_MAX`] samples the staged chunks move into `telemetry`, merged per device.
///
/// Staged samples are always newer than anything of their device in `telemetry`. A sample
/// at or below its device's newest seq (a replay, or a late one) first moves the staging
/// table into `telemetry`, and then goes through [`store_device`].
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
        let be = |e: &dyn std::fmt::Display| StoreError::backend("commit", e);
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
        let mut key = match staging.last().map_err(|e| be(&e))? {
            Some((k, _)) => k.value() + 1,
            None => 0,
        };
        let mut staged = self.staged_count(staging)?;
        for (device, samples) in groups {
            let Some(last) = samples.last().map(|s| s.0) else {
                continue;
            };
            for chunk in samples.chunks(MAX_CHUNK_SAMPLES) {
                staging
                    .insert(key, staged_row(device, &encode(chunk)).as_slice())
                    .map_err(|e| be(&e))?;
                key += 1;
            }
            done.stored += samples.len() as u64;
            staged += samples.len();
            self.newest.insert(device.to_owned(), last);
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
        let be = |e: &dyn std::fmt::Display| StoreError::backend("commit", e);
        let mut rows: std::collections::BTreeMap<String, Vec<(u64, Vec<u8>)>> = Default::default();
        scan_staged(staging, None, |device, seqs| {
            rows.entry(device.to_owned())
                .or_default()
                .extend(seqs.iter().map(|(s, b)| (*s, b.to_vec())));
            Ok(true)
        })?;
        for (device, samples) in &rows {
            for chunk in samples.chunks(MAX_CHUNK_SAMPLES) {
                table
                    .insert((device.as_str(), chunk[0].0), encode(chunk).as_slice())
                    .map_err(|e| be(&e))?;
            }
        }
        staging.retain(|_, _| false).map_err(|e| be(&e))?;
        self.staged = Some(0);
        Ok(())
    }
}

/// Visits staged chunks in arrival order (of one device, or all), decoded.
pub(super) fn scan_staged(
    staging: &impl ReadableTable<u64, &'static [u8]>,
    device: Option<&str>,
    mut visit: impl FnMut(&str, &[(u64, &[u8])]) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let be = |e: &dyn std::fmt::Display| StoreError::backend("telemetry read", e);
    for row in staging.iter().map_err(|e| be(&e))? {
        let (_, v) = row.map_err(|e| be(&e))?;
        let value = v.value();
        let (dev, chunk) = split_staged(value)?;
        if device.is_some_and(|d| d != dev) {
            continue;
        }
        let entries = decode(0, chunk)?;
        if !visit(dev, &entries)? {
            break;
        }
    }
    Ok(())
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
    scan(table, device, false, |seq, body| {
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
        scan(table, device, true, |_, body| {
            newest = Some(body.to_vec());
            Ok(false)
        })?;
    }
    Ok(newest)
}
