//! Settings: every value a document writes, interned to a small key id and, with a catalog,
//! checked against the device's points (exists, writable, kind, limits, resolution).

use serde_json::Value;
use shiki_proto::{PointInfo, PointRole, ValueKind};

use super::MAX_SETTINGS;
use crate::schedule::model::Settings;
use crate::schedule::problems::{ProblemKind, Problems};
use crate::schedule::{CProfile, CRule};

/// The setting names met so far (a name's position is its key id, at most
/// [`MAX_SETTINGS`]) and the catalog they are checked against.
pub(super) struct Keys<'c> {
    pub(super) names: Vec<String>,
    catalog: Option<&'c [PointInfo]>,
    too_many_reported: bool,
}

impl<'c> Keys<'c> {
    pub(super) fn new(catalog: Option<&'c [PointInfo]>) -> Self {
        Keys {
            names: Vec::new(),
            catalog,
            too_many_reported: false,
        }
    }

    fn id(&mut self, name: &str, path: &str, p: &mut Problems) -> Option<u8> {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return u8::try_from(i).ok();
        }
        if self.names.len() >= MAX_SETTINGS {
            if !self.too_many_reported {
                self.too_many_reported = true;
                p.error(
                    ProblemKind::TooManySettings,
                    path,
                    format!("more than {MAX_SETTINGS} distinct settings"),
                );
            }
            return None;
        }
        self.names.push(name.to_owned());
        u8::try_from(self.names.len() - 1).ok()
    }

    /// Checks and interns a settings map: the writes by key id, and the mask of their keys.
    pub(super) fn settings(
        &mut self,
        settings: &Settings,
        path: &str,
        p: &mut Problems,
    ) -> (Vec<(u8, Value)>, u64) {
        let mut sets = Vec::with_capacity(settings.len());
        let mut mask = 0u64;
        for (name, value) in settings {
            let vpath = format!("{path}.{name}");
            check_value(name, value, &vpath, self.catalog, p);
            if let Some(id) = self.id(name, &vpath, p) {
                sets.push((id, value.clone()));
                mask |= 1 << id;
            }
        }
        (sets, mask)
    }

    /// Warns about every key a profile or rule writes that has no default.
    pub(super) fn warn_no_default(
        &self,
        defaults_mask: u64,
        profiles: &[CProfile],
        rules: &[CRule],
        p: &mut Problems,
    ) {
        let written: u64 = profiles.iter().map(|x| x.mask).fold(0, |a, b| a | b)
            | rules.iter().map(|r| r.mask).fold(0, |a, b| a | b);
        for (i, name) in self.names.iter().enumerate() {
            if written & !defaults_mask & (1 << i) != 0 {
                p.warning(
                    ProblemKind::NoDefault,
                    "defaults",
                    format!(
                        "`{name}` has no default: it is not in force before its first scheduled write"
                    ),
                );
            }
        }
    }
}

/// Without a catalog: any boolean, number or string. With one: a writable setting point of
/// the device, of its kind and within its limits.
fn check_value(
    name: &str,
    value: &Value,
    path: &str,
    catalog: Option<&[PointInfo]>,
    p: &mut Problems,
) {
    let Some(points) = catalog else {
        if !matches!(value, Value::Bool(_) | Value::Number(_) | Value::String(_)) {
            p.error(
                ProblemKind::WrongValueKind,
                path,
                format!("`{name}` must be a boolean, a number or a string, not {value}"),
            );
        }
        return;
    };
    let Some(point) = points.iter().find(|pt| pt.name == name) else {
        let known: Vec<&str> = points
            .iter()
            .filter(|pt| pt.writable && pt.role != PointRole::Reading)
            .map(|pt| pt.name.as_str())
            .collect();
        p.error(
            ProblemKind::UnknownSetting,
            path,
            format!(
                "the device has no setting `{name}` (settings: {})",
                known.join(", ")
            ),
        );
        return;
    };
    if !point.writable || point.role == PointRole::Reading {
        p.error(
            ProblemKind::NotWritable,
            path,
            format!("`{name}` is a reading or not writable on this device"),
        );
        return;
    }
    match point.kind {
        ValueKind::Bool if !value.is_boolean() => p.error(
            ProblemKind::WrongValueKind,
            path,
            format!("`{name}` takes true or false, not {value}"),
        ),
        ValueKind::Number => match value.as_f64() {
            None => p.error(
                ProblemKind::WrongValueKind,
                path,
                format!("`{name}` takes a number, not {value}"),
            ),
            Some(x) => check_number(point, x, path, p),
        },
        ValueKind::Enum => check_option(point, value, path, p),
        _ => {}
    }
}

/// A number within the point's min/max; a warning when it lies between two steps of its
/// resolution.
fn check_number(point: &PointInfo, x: f64, path: &str, p: &mut Problems) {
    let name = &point.name;
    if let Some(min) = point.min.filter(|min| x < *min) {
        p.error(
            ProblemKind::OutOfLimits,
            path,
            format!("{x} is below the minimum {min} of `{name}`"),
        );
    }
    if let Some(max) = point.max.filter(|max| x > *max) {
        p.error(
            ProblemKind::OutOfLimits,
            path,
            format!("{x} is above the maximum {max} of `{name}`"),
        );
    }
    if let Some(res) = point.resolution.filter(|r| *r > 0.0) {
        let steps = x / res;
        if (steps - steps.round()).abs() > 1e-6 {
            p.warning(
                ProblemKind::OffResolution,
                path,
                format!(
                    "{x} is not a multiple of the resolution {res} of `{name}`; the PLC will hold {}",
                    steps.round() * res
                ),
            );
        }
    }
}

/// One of the point's options.
fn check_option(point: &PointInfo, value: &Value, path: &str, p: &mut Problems) {
    let (name, options) = (&point.name, point.options.join(", "));
    match value.as_str() {
        None => p.error(
            ProblemKind::WrongValueKind,
            path,
            format!("`{name}` takes one of {options}, not {value}"),
        ),
        Some(s) if !point.options.iter().any(|o| o == s) => p.error(
            ProblemKind::OutOfLimits,
            path,
            format!("`{s}` is not one of {options}"),
        ),
        Some(_) => {}
    }
}
