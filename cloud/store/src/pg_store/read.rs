//! The [`Store`] trait on [`PgStore`]: writes go to the writer task as a [`Job`]; each read
//! is one query on a pooled connection, run on the store's runtime.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use shiki_cloud_model::schedule::DeviceSchedules;
use shiki_proto::{DeviceId, Event, Sample};
use tokio_postgres::Row;

use super::PgStore;
use super::sql::JsonBuf;
use crate::{
    ArtifactRecord, Commit, DeviceSnapshot, HistoryEntry, HistoryItem, JobRecord, RegistryRecord,
    SeqGap, Store, StoreError, StoreStats, TimeQuery, TokenRecord, VerificationRecord, Write,
};

/// Key in `shiki.meta` of the instant the fleet's yearly jobs last ran.
pub(super) const FLEET_LAST_RUN: &str = "fleet.last_run";

/// Decodes the JSON in column `col` of `row`.
fn decode<T: DeserializeOwned>(
    table: &'static str,
    row: &Row,
    col: usize,
) -> Result<T, StoreError> {
    let JsonBuf(text) = row.try_get(col).map_err(|e| StoreError::Corrupt {
        table,
        reason: e.to_string(),
    })?;
    serde_json::from_slice(&text).map_err(|e| StoreError::Corrupt {
        table,
        reason: e.to_string(),
    })
}

fn decode_all<T: DeserializeOwned>(
    table: &'static str,
    rows: &[Row],
) -> Result<Vec<T>, StoreError> {
    rows.iter().map(|r| decode(table, r, 0)).collect()
}

/// A time window's bounds and limit as query parameters (no bound: ±infinity; no limit:
/// NULL, which PostgreSQL reads as none).
struct Window {
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    limit: Option<i64>,
}

impl From<&TimeQuery> for Window {
    fn from(q: &TimeQuery) -> Self {
        Self {
            from: q.from,
            to: q.to,
            limit: q.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX)),
        }
    }
}

/// The clauses of a [`Window`] on column `ts`: parameters $2 and $3 (the limit is $4).
fn window(ts: &str) -> String {
    format!("($2::timestamptz IS NULL OR {ts} >= $2) AND ($3::timestamptz IS NULL OR {ts} <= $3)")
}

impl Store for PgStore {
    fn submit(&self, writes: Vec<Write>) -> Commit {
        self.send_job(writes, None)
    }

    fn submit_fenced(&self, fence: crate::Fence, writes: Vec<Write>) -> Commit {
        self.send_job(writes, Some(fence))
    }

    fn next_id(&self) -> u64 {
        self.ids.next(|| self.id_block())
    }

    fn telemetry(&self, device: &DeviceId, q: &TimeQuery) -> Result<Vec<Sample>, StoreError> {
        let (device, w) = (device.to_string(), Window::from(q));
        let order = if q.newest_first {
            "ts DESC, seq DESC"
        } else {
            "ts, seq"
        };
        let rows = self.query("telemetry query", move |c| async move {
            c.query(
                &format!(
                    "SELECT body FROM shiki.telemetry WHERE device = $1 AND {} \
                     ORDER BY {order} LIMIT $4",
                    window("ts")
                ),
                &[&device, &w.from, &w.to, &w.limit],
            )
            .await
        })?;
        decode_all("telemetry", &rows)
    }

    fn last_sample(&self, device: &DeviceId) -> Result<Option<Sample>, StoreError> {
        let device = device.to_string();
        let row = self.query("last sample", move |c| async move {
            c.query_opt(
                "SELECT body FROM shiki.telemetry WHERE device = $1 ORDER BY seq DESC LIMIT 1",
                &[&device],
            )
            .await
        })?;
        row.map(|r| decode("telemetry", &r, 0)).transpose()
    }

    fn telemetry_gaps(&self, device: &DeviceId, max: usize) -> Result<Vec<SeqGap>, StoreError> {
        let device = device.to_string();
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let rows = self.query("telemetry gaps", move |c| async move {
            c.query(
                "SELECT prev + 1, seq - 1 FROM ( \
                     SELECT seq, lag(seq, 1, 0::bigint) OVER (ORDER BY seq) AS prev \
                     FROM shiki.telemetry WHERE device = $1 \
                 ) s WHERE seq > prev + 1 ORDER BY seq LIMIT $2",
                &[&device, &max],
            )
            .await
        })?;
        Ok(rows
            .iter()
            .map(|r| SeqGap {
                from: u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
                to: u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
            })
            .collect())
    }

    fn events(&self, device: &DeviceId, q: &TimeQuery) -> Result<Vec<Event>, StoreError> {
        let (device, w) = (device.to_string(), Window::from(q));
        let order = if q.newest_first { "seq DESC" } else { "seq" };
        let rows = self.query("events query", move |c| async move {
            c.query(
                &format!(
                    "SELECT body FROM shiki.events WHERE device = $1 AND {} \
                     ORDER BY {order} LIMIT $4",
                    window("ts")
                ),
                &[&device, &w.from, &w.to, &w.limit],
            )
            .await
        })?;
        decode_all("events", &rows)
    }

    fn history(&self, device: &DeviceId, q: &TimeQuery) -> Result<Vec<HistoryItem>, StoreError> {
        let (device, w) = (device.to_string(), Window::from(q));
        let rows = self.query("history query", move |c| async move {
            c.query(
                &format!(
                    "SELECT h.body, v.body FROM shiki.history h \
                     LEFT JOIN shiki.verifications v \
                       ON v.device = h.device AND v.id = (h.body ->> 'verification_id')::bigint \
                     WHERE h.device = $1 AND {} ORDER BY h.id DESC LIMIT $4",
                    window("h.ts")
                ),
                &[&device, &w.from, &w.to, &w.limit],
            )
            .await
        })?;
        rows.iter()
            .map(|r| {
                let entry: HistoryEntry = decode("history", r, 0)?;
                let verification = match r.try_get::<_, Option<super::sql::JsonBuf>>(1) {
                    Ok(Some(_)) => Some(decode("verifications", r, 1)?),
                    Ok(None) => None,
                    Err(e) => {
                        return Err(StoreError::Corrupt {
                            table: "verifications",
                            reason: e.to_string(),
                        });
                    }
                };
                Ok(HistoryItem {
                    entry,
                    verification,
                })
            })
            .collect()
    }

    fn verifications(&self, device: &DeviceId) -> Result<Vec<VerificationRecord>, StoreError> {
        let device = device.to_string();
        let rows = self.query("verifications query", move |c| async move {
            c.query(
                "SELECT body FROM shiki.verifications WHERE device = $1 ORDER BY id",
                &[&device],
            )
            .await
        })?;
        decode_all("verifications", &rows)
    }

    fn device(&self, device: &DeviceId) -> Result<Option<DeviceSnapshot>, StoreError> {
        let device = device.to_string();
        let row = self.query("device query", move |c| async move {
            c.query_opt(
                "SELECT snapshot FROM shiki.devices WHERE device = $1",
                &[&device],
            )
            .await
        })?;
        row.map(|r| decode("devices", &r, 0)).transpose()
    }

    fn devices(&self) -> Result<Vec<DeviceId>, StoreError> {
        let rows = self.query("device list", move |c| async move {
            c.query("SELECT device FROM shiki.devices ORDER BY device", &[])
                .await
        })?;
        Ok(rows
            .iter()
            .filter_map(|r| match DeviceId::new(r.get::<_, &str>(0)) {
                Ok(id) => Some(id),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping invalid stored device id");
                    None
                }
            })
            .collect())
    }

    fn token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let hash = hash.to_owned();
        let row = self.query("token lookup", move |c| async move {
            c.query_opt("SELECT body FROM shiki.tokens WHERE hash = $1", &[&hash])
                .await
        })?;
        row.map(|r| decode("tokens", &r, 0)).transpose()
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = self.query("token list", move |c| async move {
            c.query("SELECT body FROM shiki.tokens ORDER BY hash", &[])
                .await
        })?;
        decode_all("tokens", &rows)
    }

    fn schedules(&self, device: &DeviceId) -> Result<Option<DeviceSchedules>, StoreError> {
        let device = device.to_string();
        let row = self.query("schedule query", move |c| async move {
            c.query_opt(
                "SELECT body FROM shiki.schedules WHERE device = $1",
                &[&device],
            )
            .await
        })?;
        row.map(|r| decode("schedules", &r, 0)).transpose()
    }

    fn fleet_last_run(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = self.query("fleet last run query", move |c| async move {
            c.query_opt(
                "SELECT value FROM shiki.meta WHERE key = $1",
                &[&FLEET_LAST_RUN],
            )
            .await
        })?;
        row.map(|r| decode("meta", &r, 0)).transpose()
    }

    fn artifact(&self, version: &str) -> Result<Option<ArtifactRecord>, StoreError> {
        let version = version.to_owned();
        let row = self.query("artifact lookup", move |c| async move {
            c.query_opt(
                "SELECT body FROM shiki.artifacts WHERE version = $1",
                &[&version],
            )
            .await
        })?;
        row.map(|r| decode("artifacts", &r, 0)).transpose()
    }

    fn artifacts(&self) -> Result<Vec<ArtifactRecord>, StoreError> {
        let rows = self.query("artifact list", move |c| async move {
            c.query(
                "SELECT body FROM shiki.artifacts ORDER BY uploaded_at DESC, version",
                &[],
            )
            .await
        })?;
        decode_all("artifacts", &rows)
    }

    fn jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        let rows = self.query("job list", move |c| async move {
            c.query("SELECT body FROM shiki.jobs ORDER BY id", &[])
                .await
        })?;
        decode_all("jobs", &rows)
    }

    fn registered(&self, device: &DeviceId) -> Result<Option<RegistryRecord>, StoreError> {
        let device = device.to_string();
        let row = self.query("registry lookup", move |c| async move {
            c.query_opt(
                "SELECT body FROM shiki.registry WHERE device = $1",
                &[&device],
            )
            .await
        })?;
        row.map(|r| decode("registry", &r, 0)).transpose()
    }

    fn registry(&self) -> Result<Vec<RegistryRecord>, StoreError> {
        let rows = self.query("registry list", move |c| async move {
            c.query("SELECT body FROM shiki.registry ORDER BY device", &[])
                .await
        })?;
        decode_all("registry", &rows)
    }

    fn stats(&self) -> StoreStats {
        self.counters.stats()
    }

    fn close(&self) {
        PgStore::close(self);
    }
}
