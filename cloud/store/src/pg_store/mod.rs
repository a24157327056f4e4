//! The PostgreSQL backend: the same [`Store`](crate::Store) over tables in schema `shiki`
//! (migrations in `cloud/store/migrations/`), with the views Grafana reads in schema
//! `grafana` (docs/grafana.md).
//!
//! The store owns a small tokio runtime of its own: the pool's connections, the group-commit
//! writer and the partition maintenance run there, so the synchronous reads of the
//! [`Store`](crate::Store) trait can block on a query from any thread (an actor's, a test's)
//! without driving, or deadlocking, the caller's runtime.
//!
//! # Layout
//! - [`schema`]: migrations at start, telemetry partitions (created ahead and on demand) and
//!   retention;
//! - [`writer`]: the writer task and its group commit (one transaction per group);
//! - [`rollup`]: the hourly rollup of the samples a commit stored;
//! - [`read`]: the [`Store`](crate::Store) trait on [`PgStore`];
//! - [`sql`]: raw JSON parameters and results, without a detour through `serde_json::Value`.

mod cluster;
mod read;
mod rollup;
mod schema;
mod sql;
mod writer;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use crate::Job;
use crate::StoreError;
use crate::counters::Counters;
pub use cluster::{ClusterDb, ClusterSnapshot, JOBS_LEASE, LeaseRow, NodeRow};
pub use schema::SCHEMA_VERSION;

/// How the PostgreSQL store connects and commits.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Most queued writes committed in one transaction.
    pub max_batch: usize,
    /// Connections in the pool (the writer takes one; readers share the rest).
    pub pool_size: usize,
    /// Telemetry partitions (months) ending longer ago than this are dropped, with their
    /// hourly rollups. `None`: keep everything.
    pub retention: Option<Duration>,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            max_batch: 4096,
            pool_size: 8,
            retention: None,
        }
    }
}

/// The PostgreSQL-backed [`Store`](crate::Store). Dropping it commits what is queued and
/// stops its runtime.
#[derive(Debug)]
pub struct PgStore {
    rt: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    pool: Pool,
    tx: Mutex<Option<tokio::sync::mpsc::UnboundedSender<Job>>>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    maintenance: Mutex<Option<tokio::task::JoinHandle<()>>>,
    ids: cluster::IdBlocks,
    counters: Arc<Counters>,
    partitions: Arc<schema::Partitions>,
    retention: Option<Duration>,
}

impl PgStore {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/database`), applies the
    /// migrations this binary carries, and starts the writer. Refuses a database whose
    /// schema is newer than this binary's.
    pub fn open(url: &str, options: &PgOptions) -> Result<Self, StoreError> {
        let shown = redacted(url);
        let open_err = |reason: String| StoreError::Open {
            path: shown.clone(),
            reason,
        };
        let config: tokio_postgres::Config = url.parse().map_err(|e| {
            open_err(format!(
                "not a PostgreSQL URL ({e}); expected postgres://user@host:port/database"
            ))
        })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("store-pg")
            .enable_all()
            .build()
            .map_err(|e| open_err(format!("cannot start the store's runtime: {e}")))?;
        let handle = rt.handle().clone();
        let prepared = (|| {
            let manager = Manager::from_config(
                config,
                tokio_postgres::NoTls,
                ManagerConfig {
                    // A checked-out connection answers a round-trip first: after a server restart or a
                    // dropped connection, reads and commits get a working one.
                    recycling_method: RecyclingMethod::Verified,
                },
            );
            let pool = Pool::builder(manager)
                .max_size(options.pool_size.max(2))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(Duration::from_secs(30)))
                .create_timeout(Some(Duration::from_secs(10)))
                .build()
                .map_err(|e| open_err(e.to_string()))?;
            let counters = Arc::new(Counters::default());
            let partitions = Arc::new(schema::Partitions::default());
            {
                let pool = pool.clone();
                let partitions = partitions.clone();
                let retention = options.retention;
                block_on(&handle, async move {
                    let mut client = pool.get().await.map_err(|e| StoreError::Open {
                        path: String::new(),
                        reason: format!("cannot connect: {}", schema::chain(&e)),
                    })?;
                    schema::migrate(&mut client).await?;
                    partitions.load(&client).await?;
                    schema::maintain(&client, &partitions, chrono::Utc::now(), retention).await
                })
                .map_err(|e| match e {
                    StoreError::Open { reason, .. } => open_err(reason),
                    other => open_err(other.to_string()),
                })?;
            }
            Ok((pool, counters, partitions))
        })();
        let (pool, counters, partitions) = match prepared {
            Ok(p) => p,
            Err(e) => {
                // Not `drop`: dropping a runtime from inside another one panics.
                rt.shutdown_background();
                return Err(e);
            }
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let writer = handle.spawn(writer::writer_loop(
            pool.clone(),
            rx,
            options.max_batch.max(1),
            counters.clone(),
            partitions.clone(),
        ));
        let maintenance = handle.spawn(schema::maintenance_loop(
            pool.clone(),
            partitions.clone(),
            options.retention,
        ));
        tracing::info!(url = %shown, schema_version = SCHEMA_VERSION, "PostgreSQL store open");
        Ok(Self {
            rt: Mutex::new(Some(rt)),
            handle,
            pool,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            maintenance: Mutex::new(Some(maintenance)),
            ids: cluster::IdBlocks::default(),
            counters,
            partitions,
            retention: options.retention,
        })
    }

    /// Commits everything queued and stops the writer and the runtime. Later writes fail
    /// with [`StoreError::Closed`].
    pub fn close(&self) {
        let tx = self.tx.lock().map(|mut g| g.take()).unwrap_or(None);
        drop(tx);
        if let Some(writer) = self.writer.lock().map(|mut g| g.take()).unwrap_or(None) {
            let done = block_on(&self.handle, async move {
                writer
                    .await
                    .map_err(|e| StoreError::backend("close", format!("writer task: {e}")))
            });
            if let Err(e) = done {
                tracing::error!(error = %e, "store writer did not finish");
            }
        }
        if let Some(m) = self
            .maintenance
            .lock()
            .map(|mut g| g.take())
            .unwrap_or(None)
        {
            m.abort();
        }
        self.pool.close();
        if let Some(rt) = self.rt.lock().map(|mut g| g.take()).unwrap_or(None) {
            // Not `drop`: dropping a runtime from inside another one panics.
            rt.shutdown_background();
        }
    }

    /// Lets the existing role `role` read the views of schema `grafana`, and nothing else
    /// (views run with their owner's rights, so it needs nothing on schema `shiki`).
    pub fn grant_grafana(&self, role: &str) -> Result<(), StoreError> {
        let quoted = format!("\"{}\"", role.replace('"', "\"\""));
        let role = role.to_owned();
        let exists = self.query("grant grafana", {
            let role = role.clone();
            move |c| async move {
                c.query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
                    .await
            }
        })?;
        if exists.is_none() {
            return Err(StoreError::backend(
                "grant grafana",
                format!(
                    "there is no role {role}: create it first, e.g. \
                     CREATE ROLE {quoted} LOGIN PASSWORD '...'"
                ),
            ));
        }
        self.query("grant grafana", move |c| async move {
            c.batch_execute(&format!(
                "GRANT USAGE ON SCHEMA grafana TO {quoted}; \
                 GRANT SELECT ON ALL TABLES IN SCHEMA grafana TO {quoted}; \
                 ALTER DEFAULT PRIVILEGES IN SCHEMA grafana GRANT SELECT ON TABLES TO {quoted}"
            ))
            .await
        })
    }

    /// Applies partition maintenance and retention as of `now` (the store does it at open
    /// and every hour).
    pub fn maintain(&self, now: chrono::DateTime<chrono::Utc>) -> Result<(), StoreError> {
        let (pool, partitions, retention) =
            (self.pool.clone(), self.partitions.clone(), self.retention);
        block_on(&self.handle, async move {
            let client = pool
                .get()
                .await
                .map_err(|e| StoreError::backend("partition maintenance", e))?;
            schema::maintain(&client, &partitions, now, retention).await
        })
    }

    /// The cluster's tables (nodes, shard leases) of this database.
    pub fn cluster(&self) -> ClusterDb {
        ClusterDb {
            pool: self.pool.clone(),
            handle: self.handle.clone(),
        }
    }

    /// Queues a group member for the writer.
    fn send_job(&self, writes: Vec<crate::Write>, fence: Option<crate::Fence>) -> crate::Commit {
        crate::submit_with(writes, fence, |job| match self.tx.lock() {
            Ok(g) => g.as_ref().is_some_and(|tx| tx.send(job).is_ok()),
            Err(_) => false,
        })
    }

    /// The first id of a fresh block of record ids (unique across the cluster's nodes).
    fn id_block(&self) -> Result<u64, StoreError> {
        let first: i64 = self.query("record ids", |c| async move {
            Ok(c.query_one("SELECT nextval('shiki.record_ids')", &[])
                .await?
                .get(0))
        })?;
        Ok(u64::try_from(first).unwrap_or(0))
    }

    /// Runs `f` with a pooled connection on the store's runtime and waits for it.
    fn query<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + Send + 'static,
    {
        if self.tx.lock().map(|g| g.is_none()).unwrap_or(true) {
            return Err(StoreError::Closed);
        }
        let pool = self.pool.clone();
        block_on(&self.handle, async move {
            let client = pool.get().await.map_err(|e| StoreError::backend(op, e))?;
            f(client).await.map_err(|e| StoreError::backend(op, e))
        })
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// Runs `fut` on `handle` and blocks the calling thread until it is done. Safe from any
/// thread but the store runtime's own (which never calls it).
fn block_on<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    fut: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().unwrap_or(Err(StoreError::Closed))
}

/// `url` without its password, for logs and errors.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // key=value form
        return url
            .split_whitespace()
            .map(|kv| match kv.split_once('=') {
                Some(("password", _)) => "password=***",
                _ => kv,
            })
            .collect::<Vec<_>>()
            .join(" ");
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}@{host}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(
            super::redacted("postgres://shiki:s3cret@db:5432/shiki"),
            "postgres://shiki@db:5432/shiki"
        );
        assert_eq!(
            super::redacted("postgres://shiki@db/shiki"),
            "postgres://shiki@db/shiki"
        );
        assert_eq!(
            super::redacted("host=db user=x password=y"),
            "host=db user=x password=***"
        );
    }
}
