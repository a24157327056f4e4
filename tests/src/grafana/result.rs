//! What Grafana needs of a query's answer, checked on the rows PostgreSQL returned.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, ensure};
use chrono::{DateTime, Utc};

use super::{DashboardQuery, Format, QueryContext, QueryKind};

/// One value of an answer, decoded by the caller from PostgreSQL's types.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Number(f64),
    Text(String),
    Time(DateTime<Utc>),
    Bool(bool),
    Json(serde_json::Value),
}

/// A column: its name and PostgreSQL type name (`float8`, `numeric`, `text`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub pg_type: String,
}

/// An answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Cell>>,
}

/// How an answer is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub rows: usize,
    /// Time series: distinct label sets; otherwise 1.
    pub series: usize,
    pub max_rows_per_series: usize,
}

const NUMERIC: [&str; 6] = ["int2", "int4", "int8", "float4", "float8", "numeric"];
const TIME: [&str; 3] = ["timestamptz", "timestamp", "date"];
const TEXT: [&str; 4] = ["text", "varchar", "bpchar", "name"];

fn is(kinds: &[&str], pg_type: &str) -> bool {
    kinds.contains(&pg_type)
}

/// The instant a `time` cell stands for, as Grafana reads it: a time type as is, a number
/// as epoch milliseconds after `epochPrecisionToMS` (seconds, ~1e9, are multiplied by
/// 1000; nanoseconds, ~1e18, divided by 1e6).
pub fn grafana_time(cell: &Cell) -> Option<DateTime<Utc>> {
    match cell {
        Cell::Time(t) => Some(*t),
        Cell::Number(v) => {
            let e = format!("{v:e}");
            let ms = if e.ends_with("e9") {
                v * 1e3
            } else if e.ends_with("e18") {
                v / 1e6
            } else {
                *v
            };
            DateTime::from_timestamp_millis(ms as i64)
        }
        _ => None,
    }
}

/// Checks an answer as Grafana would read it, and that it stays small:
/// - time series: `time` first (a time type or epoch number, never NULL, ascending, within
///   the range less one interval), then text columns (the series' labels or `metric`) and
///   at least one numeric value column; at most 2 × max data points rows per series and
///   one row per series and time;
/// - tables: at most 2 × max data points rows; a `time` column, if any, in the range;
/// - annotations: `time` and `text` (optionally `timeend`, `tags`), in the range;
/// - variables: a text first column.
pub fn check_result(
    q: &DashboardQuery,
    ctx: &QueryContext,
    r: &QueryResult,
) -> anyhow::Result<Shape> {
    let what = q.describe();
    ensure!(!r.columns.is_empty(), "{what}: no columns");
    let limit = 2 * q.max_data_points as usize;
    let col = |name: &str| r.columns.iter().position(|c| c.name == name);
    let interval_ms = ctx.interval.as_ref().map_or(0, |i| i.ms as i64);
    let earliest = ctx.range.from - chrono::Duration::milliseconds(interval_ms);
    let check_times = |index: usize, ascending: bool| -> anyhow::Result<()> {
        let c = &r.columns[index];
        ensure!(
            is(&TIME, &c.pg_type) || is(&NUMERIC, &c.pg_type),
            "{what}: column {} is {}, not a time or an epoch number",
            c.name,
            c.pg_type
        );
        let mut previous = None;
        for row in &r.rows {
            let Some(t) = grafana_time(&row[index]) else {
                bail!("{what}: {} is {:?}", c.name, row[index]);
            };
            ensure!(
                earliest <= t && t <= ctx.range.to,
                "{what}: {} {t} outside {earliest} .. {}",
                c.name,
                ctx.range.to
            );
            if ascending {
                ensure!(
                    previous.is_none_or(|p| p <= t),
                    "{what}: rows not in ascending time ({t} after {previous:?})"
                );
            }
            previous = Some(t);
        }
        Ok(())
    };

    if q.kind == QueryKind::Variable {
        ensure!(
            is(&TEXT, &r.columns[0].pg_type),
            "{what}: first column is {}, not text",
            r.columns[0].pg_type
        );
        return Ok(Shape {
            rows: r.rows.len(),
            series: 1,
            max_rows_per_series: r.rows.len(),
        });
    }
    if q.kind == QueryKind::Annotation {
        let time = col("time").ok_or_else(|| anyhow::anyhow!("{what}: no time column"))?;
        let text = col("text").ok_or_else(|| anyhow::anyhow!("{what}: no text column"))?;
        ensure!(
            is(&TEXT, &r.columns[text].pg_type),
            "{what}: text is {}",
            r.columns[text].pg_type
        );
        if let Some(tags) = col("tags") {
            ensure!(
                is(&TEXT, &r.columns[tags].pg_type),
                "{what}: tags is {}",
                r.columns[tags].pg_type
            );
        }
        check_times(time, false)?;
        if let Some(end) = col("timeend") {
            check_times(end, false)?;
        }
    }
    if q.format == Format::Table {
        if q.kind == QueryKind::Panel
            && let Some(time) = col("time")
        {
            check_times(time, false)?;
        }
        ensure!(
            r.rows.len() <= limit,
            "{what}: {} rows, more than {limit} (2 × max data points)",
            r.rows.len()
        );
        return Ok(Shape {
            rows: r.rows.len(),
            series: 1,
            max_rows_per_series: r.rows.len(),
        });
    }

    // time series
    ensure!(
        r.columns[0].name == "time",
        "{what}: the first column is {:?}, not \"time\"",
        r.columns[0].name
    );
    check_times(0, true)?;
    let mut labels = Vec::new();
    let mut values = 0;
    for (i, c) in r.columns.iter().enumerate().skip(1) {
        if is(&TEXT, &c.pg_type) {
            labels.push(i);
        } else if is(&NUMERIC, &c.pg_type) {
            values += 1;
        } else {
            bail!(
                "{what}: column {} is {}, neither a label (text) nor a value (number)",
                c.name,
                c.pg_type
            );
        }
    }
    ensure!(values > 0, "{what}: no numeric value column");
    let mut per_series: BTreeMap<Vec<String>, BTreeSet<i64>> = BTreeMap::new();
    for row in &r.rows {
        let key: Vec<String> = labels.iter().map(|i| format!("{:?}", row[*i])).collect();
        let t = grafana_time(&row[0]).map_or(0, |t| t.timestamp_millis());
        ensure!(
            per_series.entry(key.clone()).or_default().insert(t),
            "{what}: two rows for series {key:?} at {t} ms"
        );
    }
    let max_rows_per_series = per_series.values().map(BTreeSet::len).max().unwrap_or(0);
    ensure!(
        max_rows_per_series <= limit,
        "{what}: {max_rows_per_series} rows in one series, more than {limit} (2 × max data points)"
    );
    Ok(Shape {
        rows: r.rows.len(),
        series: per_series.len(),
        max_rows_per_series,
    })
}
