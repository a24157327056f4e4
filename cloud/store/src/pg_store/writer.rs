//! The writer task: it takes queued writes in groups and commits each group in one
//! transaction, a handful of array statements whatever the group's size (one per table),
//! then tells every writer of the group how it went. A lost connection (a PostgreSQL
//! restart) is retried for a few seconds before the group fails; a failed group stores
//! nothing, and the ingest, which acknowledges only after the commit, gets it again.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::{Pool, Transaction};
use serde::Serialize;
use shiki_shared::throttle::Throttle;

use super::cluster::stale_fences;
use super::rollup::Rollup;
use super::schema::{Partitions, month_of};
use super::sql::JsonText;
use crate::counters::{Counters, Tally};
use crate::{Fence, Job, StoreError, Write};

/// Pauses between attempts at a group whose connection failed (then the group fails).
const RETRY_AFTER: [Duration; 4] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// Runs until every sender is gone and the queue is empty.
pub(super) async fn writer_loop(
    pool: Pool,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Job>,
    max_batch: usize,
    c: Arc<Counters>,
    partitions: Arc<Partitions>,
) {
    let mut failure_log = Throttle::new(Duration::from_secs(10));
    while let Some(first) = rx.recv().await {
        let mut n = first.writes.len();
        let mut jobs = vec![first];
        while n < max_batch {
            match rx.try_recv() {
                Ok(job) => {
                    n += job.writes.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let result = commit_with_retry(&pool, &jobs, &c, &partitions).await;
        c.commit_done(started.elapsed(), n);
        match &result {
            Err(e) => {
                c.failed_commits.fetch_add(1, Ordering::Relaxed);
                if let Some(held_back) = failure_log.pass(Instant::now()) {
                    tracing::error!(error = %e, writes = n, failed_commits_not_logged = held_back, "store commit failed");
                }
            }
            Ok(stale) if !stale.is_empty() => {
                c.fenced.fetch_add(stale.len() as u64, Ordering::Relaxed);
                tracing::warn!(fences = ?stale, "writes of shards whose lease this node no longer holds were not stored");
            }
            Ok(_) => {}
        }
        for job in jobs {
            let outcome = match (&result, job.fence) {
                (Ok(stale), Some(fence)) if stale.contains(&fence) => Err(StoreError::Fenced {
                    shard: fence.shard,
                    epoch: fence.epoch,
                }),
                (Ok(_), _) => Ok(()),
                (Err(e), _) => Err(e.clone()),
            };
            let _ = job.ack.send(outcome);
        }
    }
}

/// Why one attempt at a group failed.
enum Failure {
    /// The connection (or the pool) failed: worth another attempt.
    Connection(String),
    /// The statements failed (bad data, a constraint): another attempt would too.
    Statement(String),
}

/// Commits a group; the fences among its jobs' that no longer held (their writes were left
/// out).
async fn commit_with_retry(
    pool: &Pool,
    jobs: &[Job],
    c: &Counters,
    partitions: &Partitions,
) -> Result<Vec<Fence>, StoreError> {
    let batch = Batch::collect(jobs.iter().flat_map(|j| j.writes.iter()))?;
    let mut pauses = RETRY_AFTER.iter();
    loop {
        let failure = match pool.get().await {
            Ok(mut client) => match commit(&mut client, &batch, jobs, partitions).await {
                Ok((tally, stale)) => {
                    c.stored(&tally);
                    return Ok(stale);
                }
                Err(e) if transient(&e) => Failure::Connection(e.to_string()),
                Err(e) => Failure::Statement(e.to_string()),
            },
            Err(e) => Failure::Connection(e.to_string()),
        };
        match (failure, pauses.next()) {
            (Failure::Connection(why), Some(pause)) => {
                tracing::warn!(error = %why, retry_in = ?pause, "store connection failed; retrying the commit");
                tokio::time::sleep(*pause).await;
            }
            (Failure::Connection(why) | Failure::Statement(why), _) => {
                return Err(StoreError::backend("commit", why));
            }
        }
    }
}

/// Whether another attempt may succeed: the connection broke or the server is going down
/// (classes 08 and 57), or the transaction lost a serialization race or a deadlock.
fn transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let c = code.code();
            c.starts_with("08") || c.starts_with("57") || c == "40001" || c == "40P01"
        }
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

/// A group's writes, arranged as one array per statement. Keyed records keep the last
/// write of each key, as applying them in order would.
#[derive(Default)]
struct Batch {
    telemetry: Columns4,
    events: Columns4,
    months: BTreeSet<i32>,
    history: BTreeMap<(String, i64), Vec<u8>>,
    verifications: BTreeMap<(String, i64), Vec<u8>>,
    devices: BTreeMap<String, Vec<u8>>,
    /// `None`: revoked.
    tokens: BTreeMap<String, Option<Vec<u8>>>,
    schedules: BTreeMap<String, Vec<u8>>,
    meta: BTreeMap<String, Vec<u8>>,
    artifacts: BTreeMap<String, Vec<u8>>,
    jobs: BTreeMap<String, Vec<u8>>,
    registry: BTreeMap<String, Vec<u8>>,
}

/// (device, seq, ts, JSON) rows.
#[derive(Default)]
struct Columns4 {
    device: Vec<String>,
    seq: Vec<i64>,
    ts: Vec<DateTime<Utc>>,
    json: Vec<bytes::Bytes>,
}

impl Columns4 {
    fn push(&mut self, device: &str, seq: u64, ts: DateTime<Utc>, json: bytes::Bytes) {
        self.device.push(device.to_owned());
        self.seq.push(i64::try_from(seq).unwrap_or(i64::MAX));
        self.ts.push(ts);
        self.json.push(json);
    }

    fn len(&self) -> usize {
        self.seq.len()
    }
}

/// The one field of a sample's JSON the writer needs: its partition key.
#[derive(serde::Deserialize)]
struct SampleTime {
    ts: DateTime<Utc>,
}

fn json(v: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(v).expect("store records always serialise")
}

fn id(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Batch {
    fn collect<'w>(writes: impl Iterator<Item = &'w Write>) -> Result<Self, StoreError> {
        let mut b = Batch::default();
        for w in writes {
            match w {
                Write::Telemetry { device, samples } => {
                    for s in samples {
                        let SampleTime { ts } =
                            serde_json::from_slice(&s.json).map_err(|e| StoreError::Corrupt {
                                table: "telemetry",
                                reason: format!(
                                    "sample {} of {device} has no readable ts: {e}",
                                    s.seq
                                ),
                            })?;
                        b.months.insert(month_of(ts));
                        b.telemetry.push(device.as_str(), s.seq, ts, s.json.clone());
                    }
                }
                Write::Events { device, events } => {
                    for e in events {
                        b.events.push(device.as_str(), e.seq, e.ts, json(e).into());
                    }
                }
                Write::History(h) => {
                    b.history.insert((h.device.to_string(), id(h.id)), json(h));
                }
                Write::Verification(v) => {
                    b.verifications
                        .insert((v.device.to_string(), id(v.id)), json(v));
                }
                Write::Device { device, snapshot } => {
                    b.devices.insert(device.to_string(), json(snapshot));
                }
                Write::PutToken(t) => {
                    b.tokens.insert(t.hash.clone(), Some(json(t)));
                }
                Write::RevokeToken { hash } => {
                    b.tokens.insert(hash.clone(), None);
                }
                Write::Schedules { device, schedules } => {
                    b.schedules.insert(device.to_string(), json(schedules));
                }
                Write::FleetLastRun(at) => {
                    b.meta
                        .insert(super::read::FLEET_LAST_RUN.to_owned(), json(at));
                }
                Write::PutArtifact(a) => {
                    b.artifacts.insert(a.version.clone(), json(a));
                }
                Write::Job(j) => {
                    b.jobs.insert(j.id.to_string(), json(j));
                }
                Write::PutRegistry(r) => {
                    b.registry.insert(r.id.to_string(), json(r));
                }
            }
        }
        Ok(b)
    }
}

/// Samples, de-duplicated on (device, ts, seq); returns which were stored.
const INSERT_TELEMETRY: &str = "
INSERT INTO shiki.telemetry (device, seq, ts, body)
SELECT * FROM unnest($1::text[], $2::int8[], $3::timestamptz[], $4::jsonb[])
ON CONFLICT DO NOTHING
RETURNING device, seq";

/// Adds a commit's [`Rollup`] to the hourly rows.
const MERGE_ROLLUP: &str = "
INSERT INTO shiki.telemetry_hourly AS h (device, point, hour, n, sum, min, max)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int8[],
                     $5::float8[], $6::float8[], $7::float8[])
ON CONFLICT (device, point, hour) DO UPDATE SET
    n = h.n + EXCLUDED.n,
    sum = h.sum + EXCLUDED.sum,
    min = least(h.min, EXCLUDED.min),
    max = greatest(h.max, EXCLUDED.max)";

const INSERT_EVENTS: &str = "
INSERT INTO shiki.events (device, seq, ts, body)
SELECT * FROM unnest($1::text[], $2::int8[], $3::timestamptz[], $4::jsonb[])
ON CONFLICT DO NOTHING";

async fn commit(
    client: &mut deadpool_postgres::Object,
    all: &Batch,
    jobs: &[Job],
    partitions: &Partitions,
) -> Result<(Tally, Vec<Fence>), tokio_postgres::Error> {
    // Partition DDL outside the transaction: it would lock the parent table until commit.
    partitions
        .ensure(client, all.months.iter().copied())
        .await?;
    let tx = client.transaction().await?;
    let mut fences: Vec<Fence> = jobs.iter().filter_map(|j| j.fence).collect();
    fences.sort_unstable_by_key(|f| (f.shard, f.epoch));
    fences.dedup();
    let stale = stale_fences(&tx, &fences).await?;
    let without_stale;
    let b = if stale.is_empty() {
        all
    } else {
        // A subset of writes that were all collected once cannot fail to collect.
        without_stale = Batch::collect(
            jobs.iter()
                .filter(|j| !j.fence.is_some_and(|f| stale.contains(&f)))
                .flat_map(|j| j.writes.iter()),
        )
        .unwrap_or_default();
        &without_stale
    };
    let mut tally = Tally::default();
    if b.telemetry.len() > 0 {
        let t = &b.telemetry;
        let json: Vec<JsonText<'_>> = t.json.iter().map(|j| JsonText(j)).collect();
        let rows = tx
            .query(INSERT_TELEMETRY, &[&t.device, &t.seq, &t.ts, &json])
            .await?;
        let stored = rows.len();
        tally.samples += stored as u64;
        tally.duplicates += (t.len() - stored) as u64;
        // Only what was stored counts: a replayed sample is in the rollup already.
        let mut rollup = Rollup::default();
        if stored == t.len() {
            for i in 0..t.len() {
                rollup.add(&t.device[i], t.ts[i], &t.json[i]);
            }
        } else {
            let mut fresh: HashSet<(&str, i64)> = rows
                .iter()
                .map(|r| (r.get::<_, &str>(0), r.get::<_, i64>(1)))
                .collect();
            for i in 0..t.len() {
                if fresh.remove(&(t.device[i].as_str(), t.seq[i])) {
                    rollup.add(&t.device[i], t.ts[i], &t.json[i]);
                }
            }
        }
        merge_rollup(&tx, &rollup).await?;
    }
    if b.events.len() > 0 {
        let e = &b.events;
        let json: Vec<JsonText<'_>> = e.json.iter().map(|j| JsonText(j)).collect();
        let stored = tx
            .execute(INSERT_EVENTS, &[&e.device, &e.seq, &e.ts, &json])
            .await?;
        tally.events += stored;
        tally.duplicates += e.len() as u64 - stored;
    }
    upsert_by_device_id(
        &tx,
        "INSERT INTO shiki.history (device, id, ts, body) \
         SELECT d, i, (b ->> 'ts')::timestamptz, b FROM unnest($1::text[], $2::int8[], $3::jsonb[]) AS u(d, i, b) \
         ON CONFLICT (device, id) DO UPDATE SET ts = EXCLUDED.ts, body = EXCLUDED.body",
        &b.history,
    )
    .await?;
    upsert_by_device_id(
        &tx,
        "INSERT INTO shiki.verifications (device, id, body) \
         SELECT * FROM unnest($1::text[], $2::int8[], $3::jsonb[]) \
         ON CONFLICT (device, id) DO UPDATE SET body = EXCLUDED.body",
        &b.verifications,
    )
    .await?;
    upsert_by_key(
        &tx,
        "INSERT INTO shiki.devices (device, snapshot) SELECT * FROM unnest($1::text[], $2::jsonb[]) \
         ON CONFLICT (device) DO UPDATE SET snapshot = EXCLUDED.snapshot",
        b.devices.iter(),
    )
    .await?;
    upsert_by_key(
        &tx,
        "INSERT INTO shiki.tokens (hash, body) SELECT * FROM unnest($1::text[], $2::jsonb[]) \
         ON CONFLICT (hash) DO UPDATE SET body = EXCLUDED.body",
        b.tokens.iter().filter_map(|(k, v)| Some((k, v.as_ref()?))),
    )
    .await?;
    let revoked: Vec<&str> = b
        .tokens
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k.as_str())
        .collect();
    if !revoked.is_empty() {
        tx.execute("DELETE FROM shiki.tokens WHERE hash = ANY($1)", &[&revoked])
            .await?;
    }
    upsert_by_key(
        &tx,
        "INSERT INTO shiki.schedules (device, body) SELECT * FROM unnest($1::text[], $2::jsonb[]) \
         ON CONFLICT (device) DO UPDATE SET body = EXCLUDED.body",
        b.schedules.iter(),
    )
    .await?;
    upsert_by_key(
        &tx,
        "INSERT INTO shiki.meta (key, value) SELECT * FROM unnest($1::text[], $2::jsonb[]) \
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        b.meta.iter(),
    )
    .await?;
    upsert_by_key(
        &tx,
        "INSERT INTO shiki.artifacts (version, uploaded_at, body) \
         SELECT k, (b ->> 'uploaded_at')::timestamptz, b FROM unnest($1::text[], $2::jsonb[]) AS u(k, b) \
         ON CONFLICT (version) DO UPDATE SET uploaded_at = EXCLUDED.uploaded_at, body = EXCLUDED.body",
        b.artifacts.iter(),
    )
    .await?;
    upsert_by_key(
        &tx,
        "INSERT INTO shiki.jobs (id, body) SELECT * FROM unnest($1::text[], $2::jsonb[]) \
         ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body",
        b.jobs.iter(),
    )
    .await?;
    upsert_by_key(
        &tx,
        "INSERT INTO shiki.registry (device, body) SELECT * FROM unnest($1::text[], $2::jsonb[]) \
         ON CONFLICT (device) DO UPDATE SET body = EXCLUDED.body",
        b.registry.iter(),
    )
    .await?;
    tx.commit().await?;
    Ok((tally, stale))
}

/// Merges `rollup` into `shiki.telemetry_hourly`.
async fn merge_rollup(tx: &Transaction<'_>, rollup: &Rollup) -> Result<(), tokio_postgres::Error> {
    if rollup.rows.is_empty() {
        return Ok(());
    }
    let n = rollup.rows.len();
    let (mut device, mut point, mut hour) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut count, mut sum, mut min, mut max) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for ((d, p, h), s) in &rollup.rows {
        device.push(d.as_str());
        point.push(p.as_str());
        hour.push(*h);
        count.push(s.n);
        sum.push(s.sum);
        min.push(s.min);
        max.push(s.max);
    }
    tx.execute(
        MERGE_ROLLUP,
        &[&device, &point, &hour, &count, &sum, &min, &max],
    )
    .await?;
    Ok(())
}

/// Runs `sql` with ($1 keys, $2 JSON) when there is anything to write.
async fn upsert_by_key<'a>(
    tx: &Transaction<'_>,
    sql: &str,
    rows: impl Iterator<Item = (&'a String, &'a Vec<u8>)>,
) -> Result<(), tokio_postgres::Error> {
    let (keys, json): (Vec<&str>, Vec<JsonText<'_>>) =
        rows.map(|(k, v)| (k.as_str(), JsonText(v))).unzip();
    if !keys.is_empty() {
        tx.execute(sql, &[&keys, &json]).await?;
    }
    Ok(())
}

/// Runs `sql` with ($1 devices, $2 ids, $3 JSON) when there is anything to write.
async fn upsert_by_device_id(
    tx: &Transaction<'_>,
    sql: &str,
    rows: &BTreeMap<(String, i64), Vec<u8>>,
) -> Result<(), tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let devices: Vec<&str> = rows.keys().map(|(d, _)| d.as_str()).collect();
    let ids: Vec<i64> = rows.keys().map(|(_, i)| *i).collect();
    let json: Vec<JsonText<'_>> = rows.values().map(|v| JsonText(v)).collect();
    tx.execute(sql, &[&devices, &ids, &json]).await?;
    Ok(())
}
