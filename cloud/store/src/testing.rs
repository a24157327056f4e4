//! Helpers for tests of the store and of its users (feature `test-support`, and this
//! crate's own tests). Not part of the production API.

/// The seqs of a device's stored samples in `query`, oldest first.
pub fn stored_seqs_in(
    store: &dyn crate::Store,
    device: &shiki_proto::DeviceId,
    query: &crate::TimeQuery,
) -> Vec<u64> {
    store
        .telemetry(device, query)
        .expect("telemetry reads")
        .iter()
        .map(|s| s.seq)
        .collect()
}

/// The seqs of all of a device's stored samples, oldest first.
pub fn stored_seqs(store: &dyn crate::Store, device: &shiki_proto::DeviceId) -> Vec<u64> {
    stored_seqs_in(store, device, &crate::TimeQuery::default())
}

/// A fresh, empty PostgreSQL database for one test, dropped (with its connections) when
/// this is. The server is `SHIKI_TEST_POSTGRES` (an admin URL, default
/// `postgres://postgres@127.0.0.1:5432/postgres`); a test that cannot reach it fails.
#[derive(Debug)]
pub struct PgTestDb {
    admin_url: String,
    name: String,
    /// The URL of the new database.
    pub url: String,
}

impl PgTestDb {
    /// Creates the database (blocking; callable from async tests too).
    pub fn create() -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let admin_url = std::env::var("SHIKI_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "shiki_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        simple_query(&admin_url, format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("cannot create test database {name} on {admin_url}: {e} (is PostgreSQL running? .ci/run starts it)"));
        let url = match admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("SHIKI_TEST_POSTGRES must be a postgres:// URL ending in /database"),
        };
        Self {
            admin_url,
            name,
            url,
        }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `sql` (one or more statements) on the database as the admin user; returns the
    /// first column of every row, as text (`NULL` as an empty string).
    pub fn query(&self, sql: &str) -> Result<Vec<String>, String> {
        simple_query(&self.url, sql.to_owned())
    }

    /// As [`PgTestDb::query`], on the admin connection's database (for what a connection
    /// to this database cannot do, e.g. when it refuses connections).
    pub fn query_admin(&self, sql: &str) -> Result<Vec<String>, String> {
        simple_query(&self.admin_url, sql.to_owned())
    }

    /// As [`PgTestDb::query`], connected as `user`.
    pub fn query_as(&self, user: &str, sql: &str) -> Result<Vec<String>, String> {
        let url = self.url.replacen("://postgres@", &format!("://{user}@"), 1);
        simple_query(&url, sql.to_owned())
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = simple_query(&self.admin_url, sql) {
            tracing::warn!(database = %self.name, error = %e, "cannot drop test database");
        }
    }
}

/// Runs `sql` on a connection to `url`, on a thread of its own (so that it works inside and
/// outside a runtime); returns the first column of every row, as text.
fn simple_query(url: &str, sql: String) -> Result<Vec<String>, String> {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            let conn = tokio::spawn(conn);
            let r = client
                .simple_query(&sql)
                .await
                .map_err(|e| match e.as_db_error() {
                    Some(db) => db.message().to_owned(),
                    None => e.to_string(),
                });
            drop(client);
            let _ = conn.await;
            Ok(r?
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => {
                        Some(row.get(0).unwrap_or("").to_owned())
                    }
                    _ => None,
                })
                .collect())
        })
    })
    .join()
    .map_err(|_| "query thread panicked".to_owned())?
}
