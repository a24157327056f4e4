//! What several cloud processes share in PostgreSQL (ADR `docs/adr/cluster-leases.md`):
//! the nodes' heartbeats, one lease per shard of devices with its fencing epoch, the check
//! of a group's fences inside its transaction, and blocks of record ids.
//!
//! Every time here is the database's (`now()`), so the nodes' clocks never have to agree.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Pool, Transaction};

use crate::{Fence, StoreError};

/// The lease of the cluster's OTA jobs (ADR `docs/adr/cluster-ota-jobs.md`): a row of
/// `shiki.shard_leases` beside the shards' (migration V4), claimed, renewed, released and
/// checked by fenced writes like theirs. Far above any `cluster.shards` (at most 4096).
pub const JOBS_LEASE: u32 = 2_147_483_647;

/// Ids taken from the database per block (the sequence's increment, migration V3).
pub(super) const ID_BLOCK: u64 = 1024;

/// One node as the others see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub node_id: String,
    pub api_url: String,
    pub started_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub devices: u32,
    pub leases: u32,
}

/// One shard's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub shard: u32,
    /// `None`: released, never claimed.
    pub owner: Option<String>,
    pub epoch: i64,
    pub expires_at: DateTime<Utc>,
}

/// The whole table at one instant of the database's clock.
#[derive(Debug, Clone)]
pub struct ClusterSnapshot {
    pub now: DateTime<Utc>,
    pub nodes: Vec<NodeRow>,
    pub leases: Vec<LeaseRow>,
}

impl ClusterSnapshot {
    /// Whether `node` counts as alive: its heartbeat is younger than the lease time `ttl`
    /// (a node that wrote none for longer holds no lease that has not expired).
    pub fn is_live(&self, node: &NodeRow, ttl: Duration) -> bool {
        node.last_seen > self.now - chrono::Duration::from_std(ttl).unwrap_or_default()
    }
}

/// The cluster tables of a [`super::PgStore`]; cheap to clone. Its calls run on the store's
/// runtime, so any runtime may await them.
#[derive(Debug, Clone)]
pub struct ClusterDb {
    pub(super) pool: Pool,
    pub(super) handle: tokio::runtime::Handle,
}

fn ttl_secs(ttl: Duration) -> f64 {
    ttl.as_secs_f64()
}

fn shard_i32(shard: u32) -> i32 {
    i32::try_from(shard).unwrap_or(i32::MAX)
}

impl ClusterDb {
    async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + Send + 'static,
    {
        let pool = self.pool.clone();
        self.handle
            .spawn(async move {
                let client = pool.get().await.map_err(|e| StoreError::backend(op, e))?;
                f(client).await.map_err(|e| StoreError::backend(op, e))
            })
            .await
            .map_err(|e| StoreError::backend(op, format!("task: {e}")))?
    }

    /// Makes sure shards `0..shards` have a lease row (a new cluster, or more shards).
    pub async fn ensure_shards(&self, shards: u32) -> Result<(), StoreError> {
        let n = shard_i32(shards);
        self.run("cluster shards", move |c| async move {
            c.execute(
                "INSERT INTO shiki.shard_leases (shard) SELECT generate_series(0, $1 - 1) \
                 ON CONFLICT DO NOTHING",
                &[&n],
            )
            .await
            .map(drop)
        })
        .await
    }

    /// Writes this node's row (`last_seen` = the database's now) with what it owns.
    pub async fn heartbeat(
        &self,
        node_id: &str,
        api_url: &str,
        started_at: DateTime<Utc>,
        devices: u32,
        leases: u32,
    ) -> Result<(), StoreError> {
        let (node, url) = (node_id.to_owned(), api_url.to_owned());
        let (devices, leases) = (
            i32::try_from(devices).unwrap_or(i32::MAX),
            i32::try_from(leases).unwrap_or(i32::MAX),
        );
        self.run("cluster heartbeat", move |c| async move {
            c.execute(
                "INSERT INTO shiki.cluster_nodes (node_id, api_url, started_at, last_seen, devices, leases) \
                 VALUES ($1, $2, $3, now(), $4, $5) \
                 ON CONFLICT (node_id) DO UPDATE SET api_url = EXCLUDED.api_url, \
                   started_at = EXCLUDED.started_at, last_seen = now(), \
                   devices = EXCLUDED.devices, leases = EXCLUDED.leases",
                &[&node, &url, &started_at, &devices, &leases],
            )
            .await
            .map(drop)
        })
        .await
    }

    /// Every node and every lease, with the database's now.
    pub async fn snapshot(&self) -> Result<ClusterSnapshot, StoreError> {
        self.run("cluster snapshot", |c| async move {
            let now: DateTime<Utc> = c.query_one("SELECT now()", &[]).await?.get(0);
            let nodes = c
                .query(
                    "SELECT node_id, api_url, started_at, last_seen, devices, leases \
                     FROM shiki.cluster_nodes ORDER BY node_id",
                    &[],
                )
                .await?
                .iter()
                .map(|r| NodeRow {
                    node_id: r.get(0),
                    api_url: r.get(1),
                    started_at: r.get(2),
                    last_seen: r.get(3),
                    devices: u32::try_from(r.get::<_, i32>(4)).unwrap_or(0),
                    leases: u32::try_from(r.get::<_, i32>(5)).unwrap_or(0),
                })
                .collect();
            let leases = c
                .query(
                    "SELECT shard, owner, epoch, greatest(expires_at, 'epoch'::timestamptz) \
                     FROM shiki.shard_leases ORDER BY shard",
                    &[],
                )
                .await?
                .iter()
                .map(|r| LeaseRow {
                    shard: u32::try_from(r.get::<_, i32>(0)).unwrap_or(0),
                    owner: r.get(1),
                    epoch: r.get(2),
                    expires_at: r.get(3),
                })
                .collect();
            Ok(ClusterSnapshot { now, nodes, leases })
        })
        .await
    }

    /// Claims `shard` for `node` if its lease is free or expired; its new epoch, or `None`
    /// when another node holds it.
    pub async fn claim(
        &self,
        shard: u32,
        node: &str,
        ttl: Duration,
    ) -> Result<Option<i64>, StoreError> {
        let (shard, node, ttl) = (shard_i32(shard), node.to_owned(), ttl_secs(ttl));
        self.run("lease claim", move |c| async move {
            Ok(c.query_opt(
                "UPDATE shiki.shard_leases \
                 SET owner = $2, epoch = epoch + 1, expires_at = now() + make_interval(secs => $3) \
                 WHERE shard = $1 AND (owner IS NULL OR expires_at <= now()) \
                 RETURNING epoch",
                &[&shard, &node, &ttl],
            )
            .await?
            .map(|r| r.get(0)))
        })
        .await
    }

    /// Renews every lease `node` holds at these epochs and that has not expired; the shards
    /// renewed (a shard missing from the answer is lost).
    pub async fn renew(
        &self,
        node: &str,
        held: &[Fence],
        ttl: Duration,
    ) -> Result<Vec<u32>, StoreError> {
        let node = node.to_owned();
        let shards: Vec<i32> = held.iter().map(|f| shard_i32(f.shard)).collect();
        let epochs: Vec<i64> = held.iter().map(|f| f.epoch).collect();
        let ttl = ttl_secs(ttl);
        self.run("lease renewal", move |c| async move {
            Ok(c.query(
                "UPDATE shiki.shard_leases l \
                 SET expires_at = now() + make_interval(secs => $4) \
                 FROM unnest($2::int4[], $3::int8[]) AS h(shard, epoch) \
                 WHERE l.shard = h.shard AND l.epoch = h.epoch AND l.owner = $1 \
                   AND l.expires_at > now() \
                 RETURNING l.shard",
                &[&node, &shards, &epochs, &ttl],
            )
            .await?
            .iter()
            .map(|r| u32::try_from(r.get::<_, i32>(0)).unwrap_or(0))
            .collect())
        })
        .await
    }

    /// Gives a lease up (another node may claim it at once).
    pub async fn release(&self, node: &str, fence: Fence) -> Result<bool, StoreError> {
        let (node, shard, epoch) = (node.to_owned(), shard_i32(fence.shard), fence.epoch);
        self.run("lease release", move |c| async move {
            Ok(c.execute(
                "UPDATE shiki.shard_leases SET owner = NULL, expires_at = '-infinity' \
                 WHERE shard = $1 AND owner = $2 AND epoch = $3",
                &[&shard, &node, &epoch],
            )
            .await?
                == 1)
        })
        .await
    }

    /// Removes the row of a node that stops cleanly (the others stop counting it at once).
    pub async fn leave(&self, node: &str) -> Result<(), StoreError> {
        let node = node.to_owned();
        self.run("cluster leave", move |c| async move {
            c.execute(
                "DELETE FROM shiki.cluster_nodes WHERE node_id = $1",
                &[&node],
            )
            .await
            .map(drop)
        })
        .await
    }
}

/// Which of `fences` no longer hold: the shards' rows are read `FOR SHARE` in the group's
/// transaction, so a claim by another node (an UPDATE of the row) waits for this commit,
/// and a write checked here cannot land after the next owner has read the state.
pub(super) async fn stale_fences(
    tx: &Transaction<'_>,
    fences: &[Fence],
) -> Result<Vec<Fence>, tokio_postgres::Error> {
    if fences.is_empty() {
        return Ok(Vec::new());
    }
    let mut shards: Vec<i32> = fences.iter().map(|f| shard_i32(f.shard)).collect();
    shards.sort_unstable();
    shards.dedup();
    let current: HashMap<i32, i64> = tx
        .query(
            "SELECT shard, epoch FROM shiki.shard_leases WHERE shard = ANY($1) \
             ORDER BY shard FOR SHARE",
            &[&shards],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(fences
        .iter()
        .filter(|f| current.get(&shard_i32(f.shard)) != Some(&f.epoch))
        .copied()
        .collect())
}

/// Record ids handed out from blocks taken from `shiki.record_ids`.
#[derive(Debug, Default)]
pub(super) struct IdBlocks {
    /// (next id, end of the block): empty when equal.
    block: Mutex<(u64, u64)>,
}

impl IdBlocks {
    /// The next id; `take` fetches the first id of a fresh block when this one is used up.
    pub(super) fn next(&self, take: impl FnOnce() -> Result<u64, StoreError>) -> u64 {
        let mut b = self
            .block
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if b.0 == b.1 {
            match take() {
                Ok(first) => *b = (first, first + ID_BLOCK),
                Err(e) => {
                    // Unique without the database: microseconds since 1970 × the block
                    // size lies far above the sequence's values.
                    let micros = u64::try_from(Utc::now().timestamp_micros()).unwrap_or(0);
                    let first = micros.saturating_mul(ID_BLOCK);
                    tracing::error!(error = %e, first, "cannot take record ids from the database; using time-based ids");
                    *b = (first, first + ID_BLOCK);
                }
            }
        }
        let id = b.0;
        b.0 += 1;
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_blocks_and_a_new_block_is_taken_when_one_is_used_up() {
        let ids = IdBlocks::default();
        let mut taken = vec![];
        let mut next_block = 1u64;
        let mut all = vec![];
        for _ in 0..(ID_BLOCK * 2 + 3) {
            all.push(ids.next(|| {
                let first = next_block;
                taken.push(first);
                next_block += ID_BLOCK * 5; // another node took the blocks in between
                Ok(first)
            }));
        }
        assert_eq!(taken, vec![1, 1 + ID_BLOCK * 5, 1 + ID_BLOCK * 10]);
        assert_eq!(all[0], 1);
        assert_eq!(all[ID_BLOCK as usize], 1 + ID_BLOCK * 5);
        let mut sorted = all.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len(), "ids repeat");
        assert!(all.windows(2).all(|w| w[0] < w[1]), "ids not increasing");
    }

    #[test]
    fn without_the_database_ids_stay_unique_and_above_the_sequence() {
        let ids = IdBlocks::default();
        let a = ids.next(|| Err(StoreError::Closed));
        let b = ids.next(|| unreachable!("the block is not used up"));
        assert_eq!(b, a + 1);
        assert!(a > 1_000_000_000_000 * ID_BLOCK);
    }
}
