//! Grafana's side of the `grafana` schema contract (docs/grafana.md), without a Grafana:
//! the provisioned dashboards as data, and their SQL expanded exactly as Grafana's
//! PostgreSQL data source expands it, so a test can run every query against a real
//! PostgreSQL and check the answer the way Grafana reads it.
//!
//! Grafana turns a target's `rawSql` into SQL in three steps, reproduced in order by
//! [`expand`]:
//! 1. the browser replaces template variables (`$device`, `${device}`, `[[device]]`) and
//!    `$__interval` / `$__interval_ms` (`TemplateSrv.replace` with the SQL data source's
//!    quoting: a single value has its quotes doubled, several become `'a','b'`);
//! 2. the server replaces `$__interval_ms`, `$__interval`, `$__unixEpochFrom()`,
//!    `$__unixEpochTo()` (`sqleng.Interpolate`);
//! 3. the server expands the macros (`grafana-postgresql-datasource/macros.go`):
//!    `$__timeFilter(col)` → `col BETWEEN '<from>' AND '<to>'` (RFC 3339, UTC),
//!    `$__timeGroup(col, 5m)` → `floor(extract(epoch from col)/300)*300`,
//!    `$__timeGroupAlias(...)` → the same `AS "time"`, `$__timeFrom()`, `$__timeTo()`,
//!    `$__unixEpochFilter(col)`, `$__unixEpochGroup(...)`, `$__time(col)`, ...
//!
//! The interval is the browser's ([`Interval::calculate`]): the range over the panel's max
//! data points (its width, [`DEFAULT_MAX_DATA_POINTS`] here), rounded to one of
//! Grafana's nice intervals, never below the panel's or the data source's minimum.
//!
//! # Layout
//! - `expand`: [`TimeRange`], [`Interval`], [`QueryContext`], [`expand`] and its steps.
//! - `dashboard`: [`Dashboard`] files, their [`DashboardQuery`]s, data source
//!   references and [`Dashboard::problems`].
//! - `result`: [`QueryResult`] as decoded by the caller, [`check_result`].

mod dashboard;
mod expand;
mod result;
#[cfg(test)]
mod tests;

pub use dashboard::{
    Dashboard, DashboardQuery, Format, QueryKind, duplicate_uids, load_dashboards,
};
pub use expand::{
    Expanded, Fill, Interval, QueryContext, TimeRange, VarValue, expand, expand_macros,
    format_interval, go_float, go_parse_duration, go_rfc3339_nano, interpolate_globals,
    interval_to_ms, parse_interval, replace_variables, round_interval, seconds_to_hms,
};
pub use result::{Cell, Column, QueryResult, Shape, check_result, grafana_time};

/// The uid every provisioned dashboard names its data source by.
pub const DATASOURCE_UID: &str = "shiki-postgres";
/// Grafana's built-in PostgreSQL data source.
pub const DATASOURCE_TYPE: &str = "grafana-postgresql-datasource";
/// A panel's max data points when it sets none: Grafana uses the panel's width in pixels.
pub const DEFAULT_MAX_DATA_POINTS: u32 = 1000;
