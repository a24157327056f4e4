//! Query and path parameters: time windows, limits, formats and device ids. Every refusal
//! is a 400 naming the parameter.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use shiki_proto::DeviceId;

use super::{ApiError, TimeRange};

/// Rows returned when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 1000;
/// Largest `limit` honoured for JSON answers; larger values are capped to it.
pub const MAX_LIMIT: usize = 10_000;
/// Largest number of rows in a CSV history export (also its default).
pub const MAX_EXPORT_ROWS: usize = 100_000;

/// `?from=&to=&limit=&format=` as strings, parsed by the methods below so that errors name
/// the parameter.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
    format: Option<String>,
    /// `oldest_first` (default) or `newest_first` (telemetry and events).
    order: Option<String>,
}

/// Output format of the history endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Csv,
}

impl RangeQuery {
    /// A range from raw `from` and `to` parameters (other routes' queries).
    pub(crate) fn from_parts(from: Option<String>, to: Option<String>) -> Self {
        RangeQuery {
            from,
            to,
            limit: None,
            format: None,
            order: None,
        }
    }

    /// `from` and `to` as RFC 3339 instants; `from` must not be after `to`.
    pub(crate) fn range(&self) -> Result<TimeRange, ApiError> {
        let from = self
            .from
            .as_deref()
            .map(|s| instant("from", s))
            .transpose()?;
        let to = self.to.as_deref().map(|s| instant("to", s)).transpose()?;
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err(ApiError::InvalidParameter {
                parameter: "from",
                reason: format!("{f} is after to={t}"),
            });
        }
        let newest_first = match self.order.as_deref() {
            None | Some("oldest_first") => false,
            Some("newest_first") => true,
            Some(other) => {
                return Err(ApiError::InvalidParameter {
                    parameter: "order",
                    reason: format!("{other:?} is not one of oldest_first, newest_first"),
                });
            }
        };
        Ok(TimeRange {
            from,
            to,
            newest_first,
        })
    }

    /// `limit`: a positive integer, default `default`, capped to `max`.
    pub(crate) fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        let Some(raw) = self.limit.as_deref() else {
            return Ok(default.min(max));
        };
        match raw.trim().parse::<usize>() {
            Ok(0) => Err(ApiError::InvalidParameter {
                parameter: "limit",
                reason: "must be at least 1".into(),
            }),
            Ok(n) => Ok(n.min(max)),
            Err(_) => Err(ApiError::InvalidParameter {
                parameter: "limit",
                reason: format!("{raw:?} is not a positive integer"),
            }),
        }
    }

    /// `format`: `json` (default) or `csv`.
    pub(crate) fn format(&self) -> Result<Format, ApiError> {
        match self.format.as_deref() {
            None | Some("json") => Ok(Format::Json),
            Some("csv") => Ok(Format::Csv),
            Some(other) => Err(ApiError::InvalidParameter {
                parameter: "format",
                reason: format!("{other:?} is not one of json, csv"),
            }),
        }
    }
}

/// Parses an RFC 3339 instant. A `+` in an offset that arrived unencoded in a query string
/// decodes as a space; that is accepted too (`2026-01-01T00:00:00 09:00`).
fn instant(parameter: &'static str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    let parse = |s: &str| DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc));
    parse(raw)
        .or_else(|e| {
            if raw.contains(' ') {
                parse(&raw.replace(' ', "+"))
            } else {
                Err(e)
            }
        })
        .map_err(|e| ApiError::InvalidParameter {
            parameter,
            reason: format!("{raw:?} is not an RFC 3339 instant ({e}), e.g. 2026-11-23T09:00:00Z"),
        })
}

/// Validates a device id from the path.
pub(crate) fn device_id(raw: &str) -> Result<DeviceId, ApiError> {
    DeviceId::new(raw).map_err(|e| ApiError::InvalidParameter {
        parameter: "id",
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(from: Option<&str>, to: Option<&str>, limit: Option<&str>) -> RangeQuery {
        RangeQuery {
            from: from.map(Into::into),
            to: to.map(Into::into),
            limit: limit.map(Into::into),
            format: None,
            order: None,
        }
    }

    #[test]
    fn instants_accept_offsets_and_unencoded_plus() {
        let r = q(
            Some("2026-01-01T09:00:00+09:00"),
            Some("2026-01-01T00:00:00 00:00"),
            None,
        )
        .range()
        .expect("valid range");
        assert_eq!(r.from, r.to);
    }

    #[test]
    fn errors_name_the_parameter() {
        let param = |e: ApiError| match e {
            ApiError::InvalidParameter { parameter, .. } => parameter,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(
            param(q(Some("yesterday"), None, None).range().expect_err("bad")),
            "from"
        );
        assert_eq!(
            param(q(None, Some("2026-13-01"), None).range().expect_err("bad")),
            "to"
        );
        assert_eq!(
            param(
                q(
                    Some("2026-02-01T00:00:00Z"),
                    Some("2026-01-01T00:00:00Z"),
                    None
                )
                .range()
                .expect_err("reversed")
            ),
            "from"
        );
        assert_eq!(
            param(q(None, None, Some("-1")).limit(10, 20).expect_err("bad")),
            "limit"
        );
        assert_eq!(
            param(q(None, None, Some("0")).limit(10, 20).expect_err("zero")),
            "limit"
        );
    }

    #[test]
    fn limit_defaults_and_caps() {
        assert_eq!(q(None, None, None).limit(10, 20), Ok(10));
        assert_eq!(q(None, None, Some("15")).limit(10, 20), Ok(15));
        assert_eq!(q(None, None, Some("999999")).limit(10, 20), Ok(20));
    }
}
