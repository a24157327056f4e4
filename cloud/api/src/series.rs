//! `GET /api/v1/devices/{id}/telemetry/series`: a device's telemetry over a range, one
//! min/avg/max per time bucket and point, so a chart gets no more points than it has pixels
//! whatever the range.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shiki_proto::PointValue;

use super::params::device_id;
use super::{ApiError, ApiState, TelemetryRow, TimeRange};
use crate::auth::CanRead;
use crate::devices::ensure_visible;

/// Buckets when the query names none.
pub const DEFAULT_BUCKETS: usize = 300;
/// Most buckets a query may ask for.
pub const MAX_BUCKETS: usize = 4000;
/// Most raw samples read for one answer (`truncated` says when the range held more).
pub const MAX_SAMPLES: usize = 200_000;
/// Range when the query names none: the last 24 hours.
const DEFAULT_RANGE: Duration = Duration::hours(24);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeriesQuery {
    from: Option<String>,
    to: Option<String>,
    buckets: Option<usize>,
    /// Comma-separated point names; all numeric points when absent.
    points: Option<String>,
}

/// One bucket of one point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// Start of the bucket.
    pub t: DateTime<Utc>,
    pub min: f64,
    pub avg: f64,
    pub max: f64,
    /// Samples in the bucket.
    pub n: u32,
}

pub(crate) async fn series(
    auth: CanRead,
    state: web::Data<ApiState>,
    id: web::Path<String>,
    query: web::Query<SeriesQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = device_id(&id)?;
    ensure_visible(&state, &auth.caller, &id).await?;
    let range =
        crate::params::RangeQuery::from_parts(query.from.clone(), query.to.clone()).range()?;
    let to = range.to.unwrap_or_else(|| state.now());
    let from = range.from.unwrap_or(to - DEFAULT_RANGE);
    if from >= to {
        return Err(ApiError::InvalidParameter {
            parameter: "from",
            reason: "must be before to".into(),
        });
    }
    let buckets = query.buckets.unwrap_or(DEFAULT_BUCKETS);
    if !(1..=MAX_BUCKETS).contains(&buckets) {
        return Err(ApiError::InvalidParameter {
            parameter: "buckets",
            reason: format!("must be 1 to {MAX_BUCKETS}"),
        });
    }
    let wanted: Option<Vec<String>> = query.points.as_deref().map(|p| {
        p.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    });
    let rows = state
        .backend
        .telemetry(
            id.clone(),
            TimeRange {
                from: Some(from),
                to: Some(to),
                newest_first: false,
            },
            MAX_SAMPLES + 1,
        )
        .await
        .map_err(|e| ApiError::from_backend(e, || format!("device {:?}", id.as_str())))?;
    let truncated = rows.len() > MAX_SAMPLES;
    let (width, series) = aggregate(
        &rows[..rows.len().min(MAX_SAMPLES)],
        from,
        to,
        buckets,
        wanted.as_deref(),
    );
    Ok(HttpResponse::Ok().json(json!({
        "device": id,
        "from": from,
        "to": to,
        "bucket_seconds": width.num_milliseconds() as f64 / 1000.0,
        "samples": rows.len().min(MAX_SAMPLES),
        "truncated": truncated,
        "series": series,
    })))
}

/// A bucket being added up: (min, sum, max, n).
type Acc = (f64, f64, f64, u32);

/// Buckets `[from, to)` into `buckets` equal spans; per point (numbers, and booleans as
/// 0/1; text is skipped) the min/avg/max of each non-empty bucket, oldest first.
pub fn aggregate(
    rows: &[TelemetryRow],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    buckets: usize,
    points: Option<&[String]>,
) -> (Duration, BTreeMap<String, Vec<Bucket>>) {
    let span_ms = (to - from).num_milliseconds().max(1);
    let width_ms = (span_ms + buckets as i64 - 1) / buckets as i64;
    let width = Duration::milliseconds(width_ms.max(1));
    let mut acc: BTreeMap<&str, BTreeMap<i64, Acc>> = BTreeMap::new();
    for row in rows {
        if row.ts < from || row.ts >= to {
            continue;
        }
        let index = (row.ts - from).num_milliseconds() / width.num_milliseconds();
        for (name, value) in &row.values {
            if points.is_some_and(|p| !p.iter().any(|w| w == name)) {
                continue;
            }
            let v = match value {
                PointValue::Number(n) if n.is_finite() => *n,
                PointValue::Bool(b) => f64::from(u8::from(*b)),
                _ => continue,
            };
            let slot = acc
                .entry(name.as_str())
                .or_default()
                .entry(index)
                .or_insert((f64::INFINITY, 0.0, f64::NEG_INFINITY, 0));
            slot.0 = slot.0.min(v);
            slot.1 += v;
            slot.2 = slot.2.max(v);
            slot.3 += 1;
        }
    }
    let series = acc
        .into_iter()
        .map(|(name, slots)| {
            let list = slots
                .into_iter()
                .map(|(i, (min, sum, max, n))| Bucket {
                    t: from + Duration::milliseconds(i * width.num_milliseconds()),
                    min,
                    avg: sum / f64::from(n),
                    max,
                    n,
                })
                .collect();
            (name.to_owned(), list)
        })
        .collect();
    (width, series)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn row(seq: u64, ts: DateTime<Utc>, v: f64) -> TelemetryRow {
        TelemetryRow {
            seq,
            ts,
            values: BTreeMap::from([
                ("supply_c".to_owned(), PointValue::Number(v)),
                ("running".to_owned(), PointValue::Bool(v > 7.0)),
                ("mode".to_owned(), PointValue::Text("cool".into())),
            ]),
        }
    }

    #[test]
    fn a_day_of_minutes_in_24_buckets_gives_hourly_min_avg_max() {
        let from = Utc
            .with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
            .single()
            .expect("time");
        let rows: Vec<_> = (0..1440)
            .map(|m| {
                row(
                    m as u64,
                    from + Duration::minutes(m),
                    6.0 + (m % 60) as f64 / 60.0,
                )
            })
            .collect();
        let (width, series) = aggregate(&rows, from, from + Duration::days(1), 24, None);
        assert_eq!(width, Duration::hours(1));
        let supply = &series["supply_c"];
        assert_eq!(supply.len(), 24);
        assert_eq!(supply[3].t, from + Duration::hours(3));
        assert_eq!(
            (supply[3].min, supply[3].max, supply[3].n),
            (6.0, 6.0 + 59.0 / 60.0, 60)
        );
        assert!((supply[3].avg - (6.0 + 29.5 / 60.0)).abs() < 1e-9);
        // Booleans count as 0/1; text is not charted.
        assert!(series.contains_key("running"));
        assert!(!series.contains_key("mode"));
    }

    #[test]
    fn only_the_named_points_and_samples_inside_the_range_count() {
        let from = Utc
            .with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
            .single()
            .expect("time");
        let rows = vec![
            row(1, from - Duration::seconds(1), 100.0),
            row(2, from, 1.0),
            row(3, from + Duration::minutes(10), 3.0),
            row(4, from + Duration::hours(1), 100.0),
        ];
        let only = vec!["supply_c".to_owned()];
        let (_, series) = aggregate(&rows, from, from + Duration::hours(1), 1, Some(&only));
        assert_eq!(series.keys().collect::<Vec<_>>(), ["supply_c"]);
        assert_eq!(
            series["supply_c"],
            vec![Bucket {
                t: from,
                min: 1.0,
                avg: 2.0,
                max: 3.0,
                n: 2
            }]
        );
    }
}
