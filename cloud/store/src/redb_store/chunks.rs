//! Telemetry rows in chunks: each row of the `telemetry` table holds several samples of one
//! device, keyed by (device, first seq). A group commit writes one row per device for the
//! samples newer than everything stored (the live stream), so the B-tree work is per device
//! and commit, not per sample.
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

use super::tables::{Order, commit_err};
use crate::StoreError;

/// First byte of a chunk row (a legacy row starts with `{`).
const CHUNK_TAG: u8 = 0x01;
const HEADER: usize = 1 + 8 + 4;
/// Most samples in a chunk written at once; longer runs are split (merging late samples
/// may grow a chunk past it, by at most the gaps it had).
pub(crate) const MAX_CHUNK_SAMPLES: usize = 512;

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
    let mut v = Vec::with_capacity(encoded_len(samples));
    encode_into(&mut v, samples);
    v
}

/// The length of [`encode`]'s row.
pub(super) fn encoded_len<B: AsRef<[u8]>>(samples: &[(u64, B)]) -> usize {
    HEADER
        + samples
            .iter()
            .map(|(_, b)| 12 + b.as_ref().len())
            .sum::<usize>()
}

/// Appends the chunk row of `samples` to `v`.
pub(super) fn encode_into<B: AsRef<[u8]>>(v: &mut Vec<u8>, samples: &[(u64, B)]) {
    v.push(CHUNK_TAG);
    v.extend_from_slice(&samples.last().map_or(0, |s| s.0).to_le_bytes());
    v.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    for (seq, body) in samples {
        let body = body.as_ref();
        v.extend_from_slice(&seq.to_le_bytes());
        v.extend_from_slice(&(body.len() as u32).to_le_bytes());
        v.extend_from_slice(body);
    }
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
            .map_err(commit_err)?;
        done.stored += chunk.len() as u64;
    }
    Ok(done)
}

/// Sorts samples by seq and drops repeats of a seq; returns how many were dropped.
pub(super) fn sort_dedup(samples: &mut Vec<(u64, &[u8])>) -> u64 {
    samples.sort_by_key(|s| s.0);
    let before = samples.len();
    samples.dedup_by_key(|s| s.0);
    (before - samples.len()) as u64
}

/// The newest seq of `device` in `telemetry` (0: none).
pub(super) fn newest_chunked(table: &TelemetryTable<'_>, device: &str) -> Result<u64, StoreError> {
    match table
        .range((device, 0u64)..=(device, u64::MAX))
        .map_err(commit_err)?
        .next_back()
    {
        Some(row) => {
            let (k, v) = row.map_err(commit_err)?;
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
    let covering = match table
        .range((device, 0u64)..=(device, seq))
        .map_err(commit_err)?
        .next_back()
    {
        Some(row) => {
            let (k, v) = row.map_err(commit_err)?;
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
            .map_err(commit_err)?;
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
        .map_err(commit_err)?;
    Ok(true)
}

/// Visits the samples of `device`, as (seq, JSON), in seq `order`, until `visit` returns
/// `false`.
pub(super) fn scan(
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    device: &str,
    order: Order,
    mut visit: impl FnMut(u64, &[u8]) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let read_err = |e: redb::StorageError| StoreError::backend("telemetry read", e);
    let range = table
        .range((device, 0u64)..=(device, u64::MAX))
        .map_err(read_err)?;
    let rows: Box<dyn Iterator<Item = _>> = match order {
        Order::OldestFirst => Box::new(range),
        Order::NewestFirst => Box::new(range.rev()),
    };
    for row in rows {
        let (k, v) = row.map_err(read_err)?;
        let mut entries = decode(k.value().1, v.value())?;
        if order == Order::NewestFirst {
            entries.reverse();
        }
        for (seq, body) in entries {
            if !visit(seq, body)? {
                return Ok(());
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
