//! The schema: migrations applied at start, the monthly partitions of `shiki.telemetry`,
//! and retention.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use deadpool_postgres::Pool;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::StoreError;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The newest schema version this binary knows (the highest migration in
/// `cloud/store/migrations/`).
pub const SCHEMA_VERSION: i32 = 4;

/// Where refinery records the applied migrations.
const HISTORY_TABLE: &str = "shiki.schema_history";

/// Key of the session lock that lets one process at a time migrate.
const MIGRATION_LOCK: i64 = 0x5348_494b_495f_4d49; // "SHIKI_MI"

/// How many months of partitions exist ahead of the current one.
const MONTHS_AHEAD: i32 = 2;

/// How often partitions are created ahead and retention applied.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);

fn open_err(reason: impl Into<String>) -> StoreError {
    StoreError::Open {
        path: String::new(),
        reason: reason.into(),
    }
}

/// Applies the migrations this binary carries that the database lacks; refuses a database
/// migrated by a newer version.
pub(super) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let sql_err = |what: &str, e: tokio_postgres::Error| open_err(format!("{what}: {e}"));
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| sql_err("cannot take the migration lock", e))?;
    let result = migrate_locked(client).await;
    if let Err(e) = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
    {
        tracing::warn!(error = %e, "cannot release the migration lock; it goes with the connection");
    }
    result
}

async fn migrate_locked(client: &mut Client) -> Result<(), StoreError> {
    client
        .batch_execute("CREATE SCHEMA IF NOT EXISTS shiki")
        .await
        .map_err(|e| open_err(format!("cannot create schema shiki: {e}")))?;
    let mut runner = embedded::migrations::runner()
        .set_abort_divergent(true)
        .set_abort_missing(true);
    runner.set_migration_table_name(HISTORY_TABLE);
    let newest: Option<(i32, String)> = {
        let sql =
            format!("SELECT version, name FROM {HISTORY_TABLE} ORDER BY version DESC LIMIT 1");
        let exists: Option<String> = client
            .query_one("SELECT to_regclass($1)::text", &[&HISTORY_TABLE])
            .await
            .map_err(|e| open_err(format!("cannot read the schema version: {}", chain(&e))))?
            .get(0);
        match exists {
            Some(_) => client
                .query_opt(&sql, &[])
                .await
                .map_err(|e| open_err(format!("cannot read the schema version: {}", chain(&e))))?
                .map(|r| (r.get(0), r.get(1))),
            None => None,
        }
    };
    if let Some((version, name)) = newest
        && version > SCHEMA_VERSION
    {
        return Err(open_err(format!(
            "the database's schema is at version {version} ({name}), newer than this \
             shiki-cloud knows (version {SCHEMA_VERSION}): run a shiki-cloud at least as new \
             as the one that migrated it, or point store.url at another database"
        )));
    }
    let report = runner
        .run_async(client)
        .await
        .map_err(|e| open_err(format!("migration failed: {}", chain(&e))))?;
    for m in report.applied_migrations() {
        tracing::info!(
            version = m.version(),
            name = m.name(),
            "applied store migration"
        );
    }
    Ok(())
}

/// `e` with every source it has, `: `-separated (refinery's errors say little on their own).
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A month as a number: `year * 12 + month0`.
pub(super) fn month_of(ts: DateTime<Utc>) -> i32 {
    ts.year() * 12 + ts.month0() as i32
}

fn month_start(month: i32) -> DateTime<Utc> {
    let (year, month0) = (month.div_euclid(12), month.rem_euclid(12));
    Utc.with_ymd_and_hms(year, month0 as u32 + 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn partition_name(month: i32) -> String {
    format!(
        "telemetry_y{:04}m{:02}",
        month.div_euclid(12),
        month.rem_euclid(12) + 1
    )
}

fn parse_partition_name(name: &str) -> Option<i32> {
    let rest = name.strip_prefix("telemetry_y")?;
    let (year, month) = rest.split_once('m')?;
    let (year, month): (i32, i32) = (year.parse().ok()?, month.parse().ok()?);
    (1..=12).contains(&month).then_some(year * 12 + month - 1)
}

/// The telemetry partitions known to exist (months).
#[derive(Debug, Default)]
pub(super) struct Partitions {
    known: Mutex<BTreeSet<i32>>,
}

impl Partitions {
    /// Reads which partitions exist.
    pub async fn load(&self, client: &Client) -> Result<(), StoreError> {
        let rows = client
            .query(
                "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                 WHERE i.inhparent = 'shiki.telemetry'::regclass",
                &[],
            )
            .await
            .map_err(|e| open_err(format!("cannot list telemetry partitions: {e}")))?;
        let found = rows
            .iter()
            .filter_map(|r| parse_partition_name(r.get(0)))
            .collect();
        *self.known.lock().unwrap_or_else(|p| p.into_inner()) = found;
        Ok(())
    }

    /// Creates the partitions of `months` that do not exist yet.
    pub async fn ensure(
        &self,
        client: &Client,
        months: impl IntoIterator<Item = i32>,
    ) -> Result<(), tokio_postgres::Error> {
        let missing: Vec<i32> = {
            let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            months.into_iter().filter(|m| !known.contains(m)).collect()
        };
        for month in missing {
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS shiki.{} PARTITION OF shiki.telemetry \
                 FOR VALUES FROM ('{}') TO ('{}')",
                partition_name(month),
                month_start(month).to_rfc3339(),
                month_start(month + 1).to_rfc3339()
            );
            match client.batch_execute(&sql).await {
                Ok(()) => {
                    tracing::info!(partition = %partition_name(month), "telemetry partition ready")
                }
                // Another process created it at the same moment.
                Err(e)
                    if e.code() == Some(&SqlState::DUPLICATE_TABLE)
                        || e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {}
                Err(e) => return Err(e),
            }
            self.known
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(month);
        }
        Ok(())
    }

    /// Drops the partitions that end at or before `cutoff`; returns their names. Months
    /// before any release (`shiki_shared::clock::earliest_plausible`) are kept: they hold
    /// only samples a gateway stamped with an unset clock (1970 after an RTC reset), which
    /// the ingest counted and logged, and which an engineer may still re-date.
    async fn drop_before(
        &self,
        client: &Client,
        cutoff: DateTime<Utc>,
    ) -> Result<Vec<String>, tokio_postgres::Error> {
        let misdated_until = month_of(shiki_shared::clock::earliest_plausible());
        let old: Vec<i32> = {
            let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            known
                .iter()
                .copied()
                .filter(|m| *m >= misdated_until && month_start(m + 1) <= cutoff)
                .collect()
        };
        let mut dropped = Vec::new();
        for month in old {
            let name = partition_name(month);
            client
                .batch_execute(&format!("DROP TABLE IF EXISTS shiki.{name}"))
                .await?;
            self.known
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&month);
            dropped.push(name);
        }
        Ok(dropped)
    }
}

/// Creates this month's partition and the next ones; with a retention, drops the
/// partitions (and hourly rollups) older than it.
pub(super) async fn maintain(
    client: &Client,
    partitions: &Partitions,
    now: DateTime<Utc>,
    retention: Option<Duration>,
) -> Result<(), StoreError> {
    let be = |e: tokio_postgres::Error| StoreError::backend("partition maintenance", e);
    let this = month_of(now);
    partitions
        .ensure(client, this..=this + MONTHS_AHEAD)
        .await
        .map_err(be)?;
    let Some(retention) = retention else {
        return Ok(());
    };
    let cutoff = now - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let dropped = partitions.drop_before(client, cutoff).await.map_err(be)?;
    // Everything before the oldest month kept (but the misdated months `drop_before` keeps),
    // so the rollups match the samples.
    let kept_from = month_start(month_of(cutoff));
    let misdated_until = shiki_shared::clock::earliest_plausible();
    let rollups = client
        .execute(
            "DELETE FROM shiki.telemetry_hourly WHERE hour < $1 AND hour >= $2",
            &[&kept_from, &misdated_until],
        )
        .await
        .map_err(be)?;
    if !dropped.is_empty() || rollups > 0 {
        tracing::info!(partitions = ?dropped, hourly_rows = rollups, before = %kept_from, "retention: dropped old telemetry");
    }
    Ok(())
}

/// Runs [`maintain`] every hour until the store closes.
pub(super) async fn maintenance_loop(
    pool: Pool,
    partitions: Arc<Partitions>,
    retention: Option<Duration>,
) {
    let mut every = tokio::time::interval(MAINTENANCE_EVERY);
    every.tick().await; // the store ran it at open
    loop {
        every.tick().await;
        let result = match pool.get().await {
            Ok(client) => maintain(&client, &partitions, Utc::now(), retention).await,
            Err(e) => Err(StoreError::backend("partition maintenance", e)),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "telemetry partition maintenance failed; retried in an hour");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip_and_months_start_on_the_first() {
        let ts = Utc
            .with_ymd_and_hms(2026, 12, 4, 23, 0, 0)
            .single()
            .expect("ts");
        let m = month_of(ts);
        assert_eq!(partition_name(m), "telemetry_y2026m12");
        assert_eq!(parse_partition_name("telemetry_y2026m12"), Some(m));
        assert_eq!(month_start(m + 1).to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert_eq!(parse_partition_name("telemetry_y2026m13"), None);
        assert_eq!(parse_partition_name("telemetry_default"), None);
    }

    #[test]
    fn the_schema_version_is_the_newest_embedded_migration() {
        let newest = embedded::migrations::runner()
            .get_migrations()
            .iter()
            .map(|m| m.version())
            .max();
        assert_eq!(newest, Some(SCHEMA_VERSION));
    }
}
