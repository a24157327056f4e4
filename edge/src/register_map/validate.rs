//! Validation of a `[plc]` section, with errors that name the point or key.

use std::collections::HashSet;

use super::{DataType, MapError, PlcConfig, PointConfig, RegisterKind};

fn invalid(point: &PointConfig, reason: impl Into<String>) -> MapError {
    MapError::InvalidPoint {
        point: point.name.clone(),
        reason: reason.into(),
    }
}

pub(super) fn validate(config: &PlcConfig) -> Result<(), MapError> {
    if config.address.trim().is_empty() {
        return Err(MapError::InvalidSetting {
            key: "address",
            reason: "empty; expected host:port or a serial device path".into(),
        });
    }
    for (key, d) in [
        ("poll_interval", config.poll_interval),
        ("request_timeout", config.request_timeout),
        ("reconnect_min", config.reconnect_min),
    ] {
        if d.is_zero() {
            return Err(MapError::InvalidSetting {
                key,
                reason: "must be longer than 0".into(),
            });
        }
    }
    if config.reconnect_max < config.reconnect_min {
        return Err(MapError::InvalidSetting {
            key: "reconnect_max",
            reason: "shorter than reconnect_min".into(),
        });
    }
    let mut names = HashSet::new();
    for p in &config.points {
        validate_point(p)?;
        if !names.insert(p.name.as_str()) {
            return Err(MapError::DuplicateName(p.name.clone()));
        }
    }
    check_overlaps(config)
}

fn validate_point(p: &PointConfig) -> Result<(), MapError> {
    if p.name.is_empty()
        || !p
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(invalid(p, "name must be non-empty [A-Za-z0-9_-]"));
    }
    if u32::from(p.address) + u32::from(p.width()) > 0x1_0000 {
        return Err(invalid(p, "address runs past 65535"));
    }
    if p.writable && !p.kind.is_writable() {
        return Err(invalid(
            p,
            format!("{:?} points cannot be writable", p.kind).to_lowercase(),
        ));
    }
    if p.kind.is_bit() && p.data_type != DataType::Bool {
        return Err(invalid(
            p,
            "coils and discrete inputs hold type = \"bool\" only",
        ));
    }
    if !p.scale.is_finite() || p.scale == 0.0 || !p.offset.is_finite() {
        return Err(invalid(
            p,
            "scale must be finite and non-zero, offset finite",
        ));
    }
    if let Some(r) = p.resolution
        && (!r.is_finite() || r <= 0.0)
    {
        return Err(invalid(p, "resolution must be positive"));
    }
    // Values are rounded to multiples of the resolution; an integer register's values lie
    // on offset + k × scale. An offset off that grid would make every value read back as
    // another (a write that never verifies; found by fuzzing).
    let integer = matches!(
        p.data_type,
        DataType::U16 | DataType::I16 | DataType::U32 | DataType::I32
    );
    if integer
        && let Some(r) = p.resolution()
        && !is_multiple(p.offset, r)
    {
        return Err(invalid(
            p,
            format!(
                "offset {} is not a multiple of the resolution {r}: values could not be written \
                 and read back as the same; set resolution to a step that divides both the \
                 offset and the scale {} (e.g. resolution = 0.05 for scale 0.1, offset -273.15)",
                p.offset, p.scale
            ),
        ));
    }
    match p.data_type {
        DataType::Enum => {
            if p.options.is_empty() {
                return Err(invalid(p, "type = \"enum\" needs options"));
            }
            let mut raws = HashSet::new();
            for (label, raw) in &p.options {
                if !raws.insert(*raw) {
                    return Err(invalid(
                        p,
                        format!("option {label:?}: raw value {raw} used twice"),
                    ));
                }
            }
        }
        _ if !p.options.is_empty() => {
            return Err(invalid(p, "options are only for type = \"enum\""));
        }
        _ => {}
    }
    let numeric = !matches!(p.data_type, DataType::Bool | DataType::Enum);
    if !numeric && (p.min.is_some() || p.max.is_some()) {
        return Err(invalid(p, "min/max are only for numeric types"));
    }
    if let (Some(min), Some(max)) = (p.min, p.max)
        && min > max
    {
        return Err(invalid(p, format!("min {min} is greater than max {max}")));
    }
    if p.writable && numeric && (p.min.is_none() || p.max.is_none()) {
        return Err(invalid(
            p,
            "writable numeric points need min and max (safety limits)",
        ));
    }
    Ok(())
}

/// Whether `x` is a whole number of `step`s (to float noise).
fn is_multiple(x: f64, step: f64) -> bool {
    let q = x / step;
    q.is_finite() && (q - q.round()).abs() < 1e-6
}

fn check_overlaps(config: &PlcConfig) -> Result<(), MapError> {
    let mut spans: Vec<(u8, RegisterKind, u32, u32, &str)> = config
        .points
        .iter()
        .map(|p| {
            let start = u32::from(p.address);
            (
                p.unit_id.unwrap_or(config.unit_id),
                p.kind,
                start,
                start + u32::from(p.width()),
                p.name.as_str(),
            )
        })
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if a.0 == b.0 && a.1 == b.1 && b.2 < a.3 {
            return Err(MapError::Overlap {
                first: a.4.to_owned(),
                second: b.4.to_owned(),
                unit_id: b.0,
                register: b.1.describe(u16::try_from(b.2).unwrap_or(u16::MAX)),
            });
        }
    }
    Ok(())
}
