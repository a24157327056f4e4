//! The Grafana contract: the provisioned data source and dashboards (deploy/grafana) hang
//! together, and every query they hold (panel targets, annotations, template variables),
//! expanded as Grafana expands it, runs on the `grafana` views of a fresh database
//! (`PgTestDb`: `SHIKI_TEST_POSTGRES`, default 127.0.0.1:5432) for the last hour, day,
//! week and year, and returns what Grafana needs: the right columns, rows where there must
//! be data, at most twice the panel's width in rows per series, and only the raw or only
//! the hourly view read.
//!
//! Two data sets: one inserted here in the store's record shapes (fast, a year of data),
//! and one written by a running cloud (`shiki-cloud serve` with `[store] url`) that an edge
//! and the PLC simulator feed, after an operator's setpoint change and an alarm code. The
//! queries run as a role granted only schema `grafana`, which reads nothing of `shiki`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Value, json};
use shiki_cloud_store::testing::PgTestDb;
use shiki_e2e::grafana::{
    self, Cell, Column, Dashboard, DashboardQuery, Format, Interval, QueryContext, QueryKind,
    QueryResult, TimeRange, VarValue,
};
use shiki_e2e::{Cloud, Edge, EdgeOptions, PlcSim, temp_dir, wait_for};
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, NoTls};
use yaml_rust2::{Yaml, YamlLoader};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

// ---------------------------------------------------------------------------------------
// provisioning

fn yaml(path: &Path) -> anyhow::Result<Yaml> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut docs = YamlLoader::load_from_str(&text)
        .with_context(|| format!("{} is not YAML", path.display()))?;
    ensure!(docs.len() == 1, "{}: one YAML document", path.display());
    Ok(docs.remove(0))
}

/// The provisioned Shiki data source; its `timeInterval` (min interval), if set.
fn provisioned_datasource() -> anyhow::Result<Option<String>> {
    let path = repo("deploy/grafana/provisioning/datasources/shiki.yaml");
    let doc = yaml(&path)?;
    ensure!(doc["apiVersion"].as_i64() == Some(1), "apiVersion 1");
    let sources = doc["datasources"].as_vec().context("datasources list")?;
    let ds = sources
        .iter()
        .find(|d| d["uid"].as_str() == Some(grafana::DATASOURCE_UID))
        .with_context(|| format!("no data source with uid {}", grafana::DATASOURCE_UID))?;
    ensure!(
        ds["type"].as_str() == Some(grafana::DATASOURCE_TYPE),
        "type"
    );
    ensure!(
        ds["user"].as_str() == Some("grafana_reader"),
        "read-only user"
    );
    ensure!(
        ds["secureJsonData"]["password"].as_str() == Some("$SHIKI_GRAFANA_DB_PASSWORD"),
        "password from the environment"
    );
    ensure!(ds["url"].as_str() == Some("$SHIKI_GRAFANA_DB_HOST"), "url");
    let j = &ds["jsonData"];
    ensure!(
        j["database"].as_str().is_some_and(|d| !d.is_empty()),
        "database"
    );
    ensure!(j["sslmode"].as_str().is_some(), "sslmode");
    for key in ["maxOpenConns", "maxIdleConns", "connMaxLifetime"] {
        ensure!(j[key].as_i64().is_some_and(|n| n > 0), "jsonData.{key}");
    }
    Ok(j["timeInterval"].as_str().map(str::to_owned))
}

fn dashboards() -> anyhow::Result<Vec<Dashboard>> {
    grafana::load_dashboards(&repo("deploy/grafana/dashboards"))
}

#[test]
fn the_provisioning_files_and_dashboards_hang_together() -> anyhow::Result<()> {
    provisioned_datasource()?;
    let providers = yaml(&repo("deploy/grafana/provisioning/dashboards/shiki.yaml"))?;
    let provider = &providers["providers"][0];
    ensure!(provider["type"].as_str() == Some("file"), "a file provider");
    ensure!(provider["options"]["path"].as_str().is_some(), "a path");

    let dashboards = dashboards()?;
    let uids: BTreeSet<&str> = dashboards.iter().map(|d| d.uid.as_str()).collect();
    ensure!(
        uids == BTreeSet::from(["shiki-chiller", "shiki-fleet"]),
        "dashboards: {uids:?}"
    );
    let duplicates = grafana::duplicate_uids(&dashboards);
    ensure!(duplicates.is_empty(), "duplicate uids: {duplicates:?}");
    for d in &dashboards {
        let problems = d.problems();
        ensure!(problems.is_empty(), "{}:\n{}", d.uid, problems.join("\n"));
        // Every variable a query names is one the dashboard declares.
        let declared: BTreeMap<String, VarValue> = d
            .variable_names()
            .into_iter()
            .map(|n| (n, VarValue::Single("x".into())))
            .collect();
        let now = Utc::now();
        let ctx = QueryContext {
            range: TimeRange::last(chrono::Duration::hours(1), now),
            interval: None,
            vars: declared,
            now,
        };
        for q in d.queries()? {
            let sql = grafana::replace_variables(&q.raw_sql, &ctx)?;
            let undeclared = sql.match_indices('$').find(|(i, _)| {
                let rest = &sql[i + 1..];
                rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '{')
                    || (rest.starts_with('_') && !rest.starts_with("__"))
            });
            ensure!(
                undeclared.is_none(),
                "{}: undeclared variable in {sql}",
                q.describe()
            );
        }
    }
    let chiller = dashboards
        .iter()
        .find(|d| d.uid == "shiki-chiller")
        .context("chiller dashboard")?;
    ensure!(
        chiller.variable_names() == ["device"],
        "the $device variable"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// a database per test (PgTestDb), and the role Grafana logs in as

/// A login role with no rights yet; dropped, with what was granted to it, when this is
/// (before the test database: declare it after the database).
struct Role<'a> {
    db: &'a PgTestDb,
    name: String,
}

impl<'a> Role<'a> {
    fn create(db: &'a PgTestDb) -> anyhow::Result<Self> {
        let name = format!("{}_grafana", db.name());
        db.query(&format!("CREATE ROLE {name} LOGIN"))
            .map_err(|e| anyhow::anyhow!("creating role {name}: {e}"))?;
        Ok(Self { db, name })
    }
}

impl Drop for Role<'_> {
    fn drop(&mut self) {
        // A leftover role only costs a name; the test's result stands either way.
        let _ = self
            .db
            .query(&format!("DROP OWNED BY {0}; DROP ROLE {0}", self.name));
    }
}

/// A session on the test database as `user`, in UTC.
async fn connect(db: &PgTestDb, user: &str) -> anyhow::Result<Client> {
    let url = db.url.replacen("://postgres@", &format!("://{user}@"), 1);
    let (client, connection) = tokio_postgres::connect(&url, NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(connection);
    client.batch_execute("SET TIME ZONE 'UTC'").await?;
    Ok(client)
}

// ---------------------------------------------------------------------------------------
// running a query as Grafana would, decoding what Grafana decodes

/// A PostgreSQL number of any numeric type, `numeric` included (binary format).
struct Number(f64);

impl<'a> FromSql<'a> for Number {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let v = match *ty {
            Type::INT2 => f64::from(i16::from_sql(ty, raw)?),
            Type::INT4 => f64::from(i32::from_sql(ty, raw)?),
            Type::INT8 => i64::from_sql(ty, raw)? as f64,
            Type::FLOAT4 => f64::from(f32::from_sql(ty, raw)?),
            Type::FLOAT8 => f64::from_sql(ty, raw)?,
            _ => {
                // numeric: ndigits, weight, sign, dscale, then base-10000 digits.
                let word = |i: usize| -> Result<u16, String> {
                    raw.get(2 * i..2 * i + 2)
                        .map(|b| u16::from_be_bytes([b[0], b[1]]))
                        .ok_or_else(|| "numeric too short".to_owned())
                };
                let ndigits = usize::from(word(0)?);
                let weight = i32::from(word(1)? as i16);
                let sign = word(2)?;
                if sign == 0xC000 {
                    f64::NAN
                } else {
                    let mut v = 0.0;
                    for i in 0..ndigits {
                        v += f64::from(word(4 + i)?) * 10_000_f64.powi(weight - i as i32);
                    }
                    if sign == 0x4000 { -v } else { v }
                }
            }
        };
        Ok(Number(v))
    }

    fn accepts(ty: &Type) -> bool {
        [
            Type::INT2,
            Type::INT4,
            Type::INT8,
            Type::FLOAT4,
            Type::FLOAT8,
            Type::NUMERIC,
        ]
        .contains(ty)
    }
}

async fn run(client: &Client, sql: &str) -> anyhow::Result<QueryResult> {
    let stmt = client.prepare(sql).await?;
    let columns: Vec<Column> = stmt
        .columns()
        .iter()
        .map(|c| Column {
            name: c.name().to_owned(),
            pg_type: c.type_().name().to_owned(),
        })
        .collect();
    let mut rows = Vec::new();
    for row in client.query(&stmt, &[]).await? {
        let mut cells = Vec::new();
        for (i, c) in columns.iter().enumerate() {
            let cell = match c.pg_type.as_str() {
                "int2" | "int4" | "int8" | "float4" | "float8" | "numeric" => row
                    .try_get::<_, Option<Number>>(i)?
                    .map(|n| Cell::Number(n.0)),
                "text" | "varchar" | "bpchar" | "name" => {
                    row.try_get::<_, Option<String>>(i)?.map(Cell::Text)
                }
                "bool" => row.try_get::<_, Option<bool>>(i)?.map(Cell::Bool),
                "timestamptz" => row.try_get::<_, Option<DateTime<Utc>>>(i)?.map(Cell::Time),
                "timestamp" => row
                    .try_get::<_, Option<NaiveDateTime>>(i)?
                    .map(|t| Cell::Time(t.and_utc())),
                "date" => row
                    .try_get::<_, Option<NaiveDate>>(i)?
                    .map(|d| Cell::Time(d.and_time(Default::default()).and_utc())),
                "json" | "jsonb" => row.try_get::<_, Option<Value>>(i)?.map(Cell::Json),
                other => bail!(
                    "column {} has type {other}, which the test does not read",
                    c.name
                ),
            };
            cells.push(cell.unwrap_or(Cell::Null));
        }
        rows.push(cells);
    }
    Ok(QueryResult { columns, rows })
}

/// The tables and partitions PostgreSQL's plan for `sql` reads.
async fn relations_read(client: &Client, sql: &str) -> anyhow::Result<BTreeSet<String>> {
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("Relation Name") {
                    out.insert(r.clone());
                }
                m.values().for_each(|v| walk(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let row = client
        .query_one(&format!("EXPLAIN (FORMAT JSON) {sql}"), &[])
        .await?;
    let plan: Value = row.try_get(0)?;
    let mut out = BTreeSet::new();
    walk(&plan, &mut out);
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// every query of every dashboard over four ranges

/// What the data set must show.
struct Expect<'a> {
    /// The device the dashboards must show data of (other devices may show none).
    device: &'a str,
    /// Panel titles or annotation names that may come back empty for `device`.
    may_be_empty: &'a [&'a str],
}

#[derive(Debug, Default)]
struct Report {
    queries: usize,
    rows: usize,
    /// (range, title) of the queries that had rows, for `device`.
    with_data: BTreeSet<(String, String)>,
}

const RANGES: [(&str, i64); 4] = [
    ("1h", 3_600),
    ("24h", 86_400),
    ("7d", 7 * 86_400),
    ("365d", 365 * 86_400),
];

async fn run_dashboards(
    client: &Client,
    now: DateTime<Utc>,
    expect: &Expect<'_>,
) -> anyhow::Result<Report> {
    let min_interval = provisioned_datasource()?;
    let dashboards = dashboards()?;
    let mut report = Report::default();
    for (label, seconds) in RANGES {
        let range = TimeRange::last(chrono::Duration::seconds(seconds), now);
        for d in &dashboards {
            let queries = d.queries()?;
            let ctx = QueryContext {
                range,
                interval: None,
                vars: BTreeMap::new(),
                now,
            };
            // Variables first, as Grafana resolves them before the panels.
            let mut options: Vec<BTreeMap<String, VarValue>> = vec![BTreeMap::new()];
            for q in queries.iter().filter(|q| q.kind == QueryKind::Variable) {
                let result = run_one(client, q, &ctx, &mut report).await?;
                let values: Vec<String> = result
                    .rows
                    .iter()
                    .filter_map(|r| match &r[0] {
                        Cell::Text(t) => Some(t.clone()),
                        _ => None,
                    })
                    .collect();
                ensure!(
                    values.iter().any(|v| v == expect.device),
                    "{}: options {values:?} lack {}",
                    q.describe(),
                    expect.device
                );
                ensure!(
                    options.len() == 1,
                    "the test handles one variable a dashboard"
                );
                options = values
                    .into_iter()
                    .map(|v| BTreeMap::from([(q.title.clone(), VarValue::Single(v))]))
                    .collect();
            }
            for vars in options {
                let shows_device = vars.is_empty()
                    || vars
                        .values()
                        .any(|v| *v == VarValue::Single(expect.device.into()));
                for q in queries.iter().filter(|q| q.kind != QueryKind::Variable) {
                    let ctx = QueryContext {
                        interval: Some(Interval::calculate(
                            &range,
                            q.max_data_points,
                            q.min_interval.as_deref().or(min_interval.as_deref()),
                        )?),
                        vars: vars.clone(),
                        ..ctx.clone()
                    };
                    let result = run_one(client, q, &ctx, &mut report).await?;
                    if !shows_device {
                        continue;
                    }
                    if !result.rows.is_empty() {
                        report.with_data.insert((label.to_owned(), q.title.clone()));
                    }
                    ensure!(
                        !result.rows.is_empty() || expect.may_be_empty.contains(&q.title.as_str()),
                        "{} over the last {label}: no rows for {} ({vars:?})",
                        q.describe(),
                        expect.device
                    );
                    check_reads_one_view(client, q, &ctx).await?;
                }
            }
        }
    }
    Ok(report)
}

async fn run_one(
    client: &Client,
    q: &DashboardQuery,
    ctx: &QueryContext,
    report: &mut Report,
) -> anyhow::Result<QueryResult> {
    let expanded = grafana::expand(&q.raw_sql, ctx).with_context(|| q.describe())?;
    let result = run(client, &expanded.sql)
        .await
        .with_context(|| format!("{} failed:\n{}", q.describe(), expanded.sql))?;
    grafana::check_result(q, ctx, &result)
        .with_context(|| format!("interval {:?}, SQL:\n{}", ctx.interval, expanded.sql))?;
    report.queries += 1;
    report.rows += result.rows.len();
    Ok(result)
}

/// A series read from both views reads the hourly rollup only from an interval of an hour,
/// the raw samples only below: PostgreSQL drops the other branch when it plans.
async fn check_reads_one_view(
    client: &Client,
    q: &DashboardQuery,
    ctx: &QueryContext,
) -> anyhow::Result<()> {
    let mut names = q
        .raw_sql
        .split(|c: char| c.is_whitespace() || "(),".contains(c));
    let both = names.clone().any(|n| n == "grafana.samples")
        && names.any(|n| n == "grafana.samples_hourly");
    if q.format != Format::TimeSeries || !both {
        return Ok(());
    }
    let sql = grafana::expand(&q.raw_sql, ctx)?.sql;
    let read = relations_read(client, &sql).await?;
    let hourly = read.contains("telemetry_hourly");
    let raw = read
        .iter()
        .any(|r| r.starts_with("telemetry") && r != "telemetry_hourly");
    let interval = ctx.interval.as_ref().map_or(0, |i| i.ms);
    let expected_hourly = interval >= 3_600_000;
    ensure!(
        hourly == expected_hourly && raw != expected_hourly,
        "{} with interval {interval} ms reads {read:?}",
        q.describe()
    );
    Ok(())
}

/// The rollup rule: one `samples_hourly` row per device, point and UTC hour with samples,
/// holding their count, mean, min and max.
async fn check_rollup(client: &Client) -> anyhow::Result<usize> {
    let rows = client
        .query(
            "WITH raw AS (
                 SELECT device, point, date_trunc('hour', time) AS hour, count(*) AS n,
                        avg(value) AS mean, min(value) AS lo, max(value) AS hi
                 FROM grafana.samples GROUP BY 1, 2, 3)
             SELECT coalesce(raw.device, h.device) || ' ' || coalesce(raw.point, h.point)
                    || ' ' || coalesce(raw.hour, h.time)::text
             FROM raw FULL JOIN grafana.samples_hourly h
               ON h.device = raw.device COLLATE \"C\" AND h.point = raw.point COLLATE \"C\"
              AND h.time = raw.hour
             WHERE raw.n IS DISTINCT FROM h.samples OR raw.lo IS DISTINCT FROM h.min
                OR raw.hi IS DISTINCT FROM h.max OR h.value IS NULL OR raw.mean IS NULL
                OR abs(raw.mean - h.value) > 1e-9 * greatest(1, abs(raw.mean))
             LIMIT 5",
            &[],
        )
        .await?;
    let wrong: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    ensure!(
        wrong.is_empty(),
        "hourly rows that do not match their samples: {wrong:?}"
    );
    let hours: i64 = client
        .query_one("SELECT count(*) FROM grafana.samples_hourly", &[])
        .await?
        .get(0);
    Ok(usize::try_from(hours)?)
}

/// Grafana's role reads the views and nothing of schema `shiki`.
async fn check_reader_sees_only_the_views(reader: &Client) -> anyhow::Result<()> {
    for view in [
        "samples",
        "samples_hourly",
        "settings_history",
        "events",
        "devices",
    ] {
        reader
            .query(&format!("SELECT * FROM grafana.{view} LIMIT 1"), &[])
            .await
            .with_context(|| format!("the reader role cannot read grafana.{view}"))?;
    }
    for table in ["telemetry", "history", "tokens", "devices"] {
        let denied = reader
            .query(&format!("SELECT 1 FROM shiki.{table} LIMIT 1"), &[])
            .await;
        ensure!(denied.is_err(), "the reader role can read shiki.{table}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// data in the store's shapes

/// Rows as the PostgreSQL store writes them: sample, event, history, verification and
/// device-snapshot JSON in `body`, the hourly rollup of every sample.
const SEED: &str = r#"
CREATE TABLE shiki.telemetry_default PARTITION OF shiki.telemetry DEFAULT;

INSERT INTO shiki.telemetry (device, seq, ts, body)
SELECT device, seq, t, jsonb_build_object(
    'seq', seq, 'ts', to_char(t, 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    'values', jsonb_build_object(
        'run', true, 'saving', false, 'mode', 'cooling',
        'chw_setpoint_c', CASE WHEN t >= NOW - interval '20 minutes' THEN 7.0
                               WHEN t >= NOW - interval '12 hours' THEN 8.5
                               WHEN t >= NOW - interval '3 days' THEN 7.5 ELSE 7.0 END,
        'hw_setpoint_c', 45.0, 'demand_limit_pct', 100,
        'running', (e::bigint / 1800) % 4 <> 3,
        'supply_c', round((7.0 + sin(e / 3600.0))::numeric, 1),
        'return_c', round((12.0 + sin(e / 3600.0))::numeric, 1),
        'outdoor_c', round((20.0 + 8 * sin(e * 2 * pi() / 86400))::numeric, 1),
        'alarm_code', CASE WHEN t BETWEEN NOW - interval '30 minutes'
                                      AND NOW - interval '25 minutes' THEN 17 ELSE 0 END,
        'gas_m3h', round((18.0 + 2 * cos(e / 5400.0))::numeric, 2),
        'run_hours_h', round((e / 3600.0 - 490000)::numeric, 2)))
FROM (
    SELECT device, t, extract(epoch from t) AS e,
           row_number() OVER (PARTITION BY device ORDER BY t) AS seq
    FROM (
        SELECT 'chiller-01' AS device, t FROM generate_series(NOW - interval '400 days', NOW - interval '8 days 1 second', interval '1 hour') t
        UNION ALL SELECT 'chiller-01', t FROM generate_series(NOW - interval '8 days', NOW - interval '24 hours 1 second', interval '5 minutes') t
        UNION ALL SELECT 'chiller-01', t FROM generate_series(NOW - interval '24 hours', NOW - interval '1 hour 1 second', interval '30 seconds') t
        UNION ALL SELECT 'chiller-01', t FROM generate_series(NOW - interval '1 hour', NOW, interval '1 second') t
        UNION ALL SELECT 'chiller-02', t FROM generate_series(NOW - interval '24 hours', NOW - interval '3 hours', interval '30 seconds') t
    ) ticks
) samples;

INSERT INTO shiki.telemetry_hourly (device, point, hour, n, sum, min, max)
SELECT device, point, date_trunc('hour', time), count(*), sum(value), min(value), max(value)
FROM grafana.samples GROUP BY 1, 2, 3;

INSERT INTO shiki.verifications (device, id, body)
SELECT device, id, jsonb_build_object('id', id, 'device', device, 'key', key,
    'requested', requested, 'version', version, 'started', started, 'attempts', 1,
    'outcome', outcome)
FROM (VALUES
    ('chiller-01', 1, 'chw_setpoint_c', '7.0'::jsonb, 1, NOW - interval '200 days', jsonb_build_object('state', 'verified', 'at', NOW - interval '200 days' + interval '8 seconds')),
    ('chiller-01', 2, 'chw_setpoint_c', '8.0', 2, NOW - interval '30 days', jsonb_build_object('state', 'failed', 'at', NOW - interval '30 days' + interval '5 minutes', 'reason', 'timed_out')),
    ('chiller-01', 3, 'chw_setpoint_c', '7.5', 3, NOW - interval '3 days', jsonb_build_object('state', 'verified', 'at', NOW - interval '3 days' + interval '6 seconds')),
    ('chiller-01', 4, 'chw_setpoint_c', '8.5', 4, NOW - interval '12 hours', jsonb_build_object('state', 'verified', 'at', NOW - interval '12 hours' + interval '5 seconds')),
    ('chiller-01', 5, 'demand_limit_pct', '40', 5, NOW - interval '40 minutes', jsonb_build_object('state', 'failed', 'at', NOW - interval '40 minutes' + interval '4 seconds', 'reason', 'plc_refused', 'detail', 'below the minimum 50')),
    ('chiller-01', 6, 'chw_setpoint_c', '7.0', 6, NOW - interval '20 minutes', jsonb_build_object('state', 'verified', 'at', NOW - interval '20 minutes' + interval '5 seconds')),
    ('chiller-01', 7, 'demand_limit_pct', '90', 7, NOW - interval '1 minute', jsonb_build_object('state', 'pending')),
    ('chiller-02', 1, 'chw_setpoint_c', '9.0', 1, NOW - interval '6 hours', jsonb_build_object('state', 'failed', 'at', NOW - interval '6 hours' + interval '2 minutes', 'reason', 'device_offline'))
) v(device, id, key, requested, version, started, outcome);

INSERT INTO shiki.history (device, id, ts, body)
SELECT device, row_number() OVER (PARTITION BY device ORDER BY ts), ts, body
FROM (
    SELECT device, started AS ts, jsonb_build_object(
        'id', 0, 'device', device, 'ts', started,
        'actor', jsonb_build_object('kind', 'api_key', 'name', 'ops', 'role', 'operator'),
        'side', 'desired', 'key', key, 'old', old, 'new', requested, 'version', version,
        'verification_id', id)
        || CASE WHEN comment IS NULL THEN '{}' ELSE jsonb_build_object('comment', comment) END AS body
    FROM (SELECT v.device, v.id, v.body ->> 'key' AS key, v.body -> 'requested' AS requested,
                 (v.body ->> 'version')::int AS version, (v.body ->> 'started')::timestamptz AS started,
                 CASE v.id WHEN 4 THEN 'summer load' END AS comment,
                 coalesce(lag(v.body -> 'requested') OVER (PARTITION BY v.device, v.body ->> 'key' ORDER BY v.id), 'null') AS old
          FROM shiki.verifications v) d
    UNION ALL
    SELECT v.device, (v.body -> 'outcome' ->> 'at')::timestamptz, jsonb_build_object(
        'id', 0, 'device', v.device, 'ts', v.body -> 'outcome' -> 'at',
        'actor', jsonb_build_object('kind', 'device', 'name', v.device),
        'side', 'reported', 'key', v.body ->> 'key', 'old', 'null'::jsonb,
        'new', v.body -> 'requested', 'version', v.body -> 'version')
    FROM shiki.verifications v WHERE v.body -> 'outcome' ->> 'state' = 'verified'
) entries;
UPDATE shiki.history SET body = jsonb_set(body, '{id}', to_jsonb(id));

INSERT INTO shiki.events (device, seq, ts, body)
SELECT device, row_number() OVER (PARTITION BY device ORDER BY ts), ts,
       jsonb_build_object('seq', 0, 'ts', ts, 'kind', kind, 'severity', severity,
                          'message', message, 'data', data)
FROM (
    SELECT 'chiller-01' AS device, NOW - interval '400 days' AS ts, 'boot' AS kind, 'info' AS severity, 'shiki-edge 0.1.0 started' AS message, '{}'::jsonb AS data
    UNION ALL SELECT 'chiller-01', t, 'schedule_transition', 'info', 'schedule summer-weekday: schedule set chw_setpoint_c=7.0', '{"settings": {"chw_setpoint_c": 7.0}}'
    FROM generate_series(date_trunc('day', NOW - interval '400 days') + interval '6 hours', NOW, interval '12 hours') t
    UNION ALL SELECT 'chiller-01', NOW - interval '10 minutes', 'schedule_transition', 'info', 'schedule summer-weekday: schedule set demand_limit_pct=100', '{"settings": {"demand_limit_pct": 100}}'
    UNION ALL SELECT 'chiller-01', NOW - d, 'alarm', 'critical', 'alarm 17: flame failure', '{"code": 17}'
    FROM unnest(ARRAY[interval '100 days', interval '2 days', interval '30 minutes']) d
    UNION ALL SELECT 'chiller-01', NOW - d + interval '5 minutes', 'alarm_cleared', 'info', 'alarm 17 cleared', '{"code": 17}'
    FROM unnest(ARRAY[interval '100 days', interval '2 days', interval '30 minutes']) d
    UNION ALL SELECT 'chiller-01', NOW - interval '5 hours', 'plc_error', 'warning', 'modbus read of holding register 40012 timed out after 2 s', '{"register": 40012}'
    UNION ALL SELECT 'chiller-01', NOW - interval '50 days', 'ota', 'info', 'update to 0.1.0 done', '{}'
    UNION ALL SELECT device, (body ->> 'ts')::timestamptz + interval '1 second', 'setting_applied', 'info', 'chw_setpoint_c set', jsonb_build_object('key', body ->> 'key')
    FROM shiki.history WHERE body ->> 'side' = 'reported'
    UNION ALL SELECT 'chiller-02', NOW - interval '24 hours', 'boot', 'info', 'shiki-edge 0.1.0 started', '{}'
    UNION ALL SELECT 'chiller-02', NOW - interval '5 hours', 'control_error', 'critical', 'demand_limit_pct refused by the PLC', '{}'
) e;
UPDATE shiki.events SET body = jsonb_set(body, '{seq}', to_jsonb(seq));

INSERT INTO shiki.devices (device, tenant, snapshot) VALUES
    ('chiller-01', 'acme', jsonb_build_object('shadow', '{}'::jsonb,
        'status', '{"v": 1, "state": "online", "software_version": "0.1.0"}'::jsonb, 'last_seen', NOW)),
    ('chiller-02', 'acme', jsonb_build_object('shadow', '{}'::jsonb,
        'status', '{"v": 1, "state": "offline", "software_version": "0.1.0"}'::jsonb,
        'last_seen', NOW - interval '3 hours', 'offline_since', NOW - interval '3 hours')),
    ('heater-03', NULL, '{"shadow": {}}');
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_runs_on_rows_shaped_like_the_stores() -> anyhow::Result<()> {
    let db = PgTestDb::create();
    let client = connect(&db, "postgres").await?;
    client
        .batch_execute(&std::fs::read_to_string(repo(
            "cloud/store/migrations/V1__initial.sql",
        ))?)
        .await
        .context("applying the store's migration")?;
    let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).context("now")?;
    let seed = SEED.replace("NOW", &format!("'{}'::timestamptz", now.to_rfc3339()));
    client.batch_execute(&seed).await.context("seeding")?;
    // Grafana's role as docs/grafana.md grants it in SQL.
    let role = Role::create(&db)?;
    client
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA grafana TO {0}; \
             GRANT SELECT ON ALL TABLES IN SCHEMA grafana TO {0};",
            role.name
        ))
        .await?;
    let reader = connect(&db, &role.name).await?;
    check_reader_sees_only_the_views(&reader).await?;
    ensure!(
        check_rollup(&reader).await? > 9_000,
        "a year of hourly rows"
    );

    let report = run_dashboards(
        &reader,
        now,
        &Expect {
            device: "chiller-01",
            may_be_empty: &[],
        },
    )
    .await?;
    // 4 ranges × (fleet: 6, chiller: 1 variable + 3 devices × 11).
    ensure!(report.queries == 4 * (6 + 1 + 3 * 11), "{report:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// data from a running cloud

const DEVICE: &str = "plant-grafana";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_runs_on_what_a_running_cloud_stores() -> anyhow::Result<()> {
    let db = PgTestDb::create();
    let dir = temp_dir("grafana")?;
    let config = dir.path().join("cloud.toml");
    std::fs::write(&config, format!("[store]\nurl = \"{}\"\n", db.url))?;
    let sim = PlcSim::start(dir.path()).await?;
    let cloud = Cloud::start(
        "cloud",
        &dir.path().join("cloud"),
        dir.path(),
        Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        Some(&config),
    )
    .await?;
    let _edge = Edge::start(
        "edge",
        dir.path(),
        &EdgeOptions::new(DEVICE, cloud.mqtt_url()?, Some(sim.addr))
            .with_password(cloud.api.register_device(DEVICE).await?),
    )
    .await?;
    let api = &cloud.api;
    api.wait_device_ready(DEVICE, Duration::from_secs(30))
        .await?;
    let (status, body) = api
        .patch_desired(DEVICE, json!({ "chw_setpoint_c": 8.5 }), "grafana e2e")
        .await?;
    ensure!(status == 200, "{status} {body}");
    let version = body["version"].as_u64().context("version in the answer")?;
    api.wait_verified(DEVICE, "chw_setpoint_c", version, Duration::from_secs(30))
        .await?;
    {
        use tokio_modbus::prelude::*;
        let mut plc = tcp::connect(sim.addr).await?;
        // The simulator's alarm register (protocol address 99): alarm 17.
        plc.write_single_register(99, 17).await??;
    }

    let client = connect(&db, "postgres").await?;
    let stored = [
        (
            "the device online",
            "SELECT count(*) FROM grafana.devices WHERE device = $1 AND online",
        ),
        (
            "the reported setpoint 8.5 in the samples",
            "SELECT count(*) FROM grafana.samples WHERE device = $1 \
             AND point = 'chw_setpoint_c' AND value = 8.5",
        ),
        (
            "hourly rows",
            "SELECT count(*) FROM grafana.samples_hourly WHERE device = $1",
        ),
        (
            "the verified desired change",
            "SELECT count(*) FROM grafana.settings_history WHERE device = $1 \
             AND key = 'chw_setpoint_c' AND side = 'desired' AND verification = 'verified'",
        ),
        (
            "alarm code 17 in the samples",
            "SELECT count(*) FROM grafana.samples WHERE device = $1 \
             AND point = 'alarm_code' AND value = 17",
        ),
    ];
    for (what, sql) in stored {
        wait_for(
            &format!("{what} in PostgreSQL"),
            Duration::from_secs(60),
            || {
                let client = &client;
                async move {
                    let n: i64 = client.query_one(sql, &[&DEVICE]).await.ok()?.get(0);
                    (n > 0).then_some(())
                }
            },
        )
        .await?;
    }
    // Grafana's role as `shiki-cloud db grant-grafana` grants it.
    let role = Role::create(&db)?;
    let out = std::process::Command::new(shiki_e2e::bin_path("shiki-cloud")?)
        .args(["db", "--store", &db.url, "grant-grafana", &role.name])
        .output()?;
    ensure!(out.status.success(), "grant-grafana failed: {out:?}");
    let reader = connect(&db, &role.name).await?;
    check_reader_sees_only_the_views(&reader).await?;
    check_rollup(&reader).await?;

    let now = Utc::now();
    let report = run_dashboards(
        &reader,
        now,
        &Expect {
            device: DEVICE,
            // No schedule is loaded, every change is verified, and the edge raises no
            // alarm events (only alarm_code in the samples).
            may_be_empty: &[
                "Schedule transitions",
                "Verification failures",
                "Failed settings changes",
                "Alarms",
                "Alerts",
            ],
        },
    )
    .await?;
    for title in [
        "Water and outdoor temperatures",
        "Chilled water setpoint: desired and reported",
        "Settings changes",
        "Alarm code",
        "Recent events",
        "Devices",
    ] {
        ensure!(
            report
                .with_data
                .contains(&("365d".to_owned(), title.to_owned())),
            "{title} shows nothing over the last year: {report:?}"
        );
    }
    Ok(())
}
