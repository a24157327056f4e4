//! Control's plain state machine: effective settings by precedence, expiry of overrides,
//! which writes are needed, and the report. No I/O, no actix; time comes in as arguments.
//!
//! Precedence per setting: safety limits (clamp or refuse per point) > operator override >
//! schedule > `[control.defaults]`. An override ends when its `until` passes, or, without
//! `until`, at the next scheduled transition touching its key (`ScheduledValue::next_change`,
//! or as soon as the schedule's value for the key started after the override was set).
//!
//! While the schedule is held (`ScheduleSettings::held`: the edge's clock reads an
//! implausible time, as after an RTC reset to 1970) a setting without an override or a
//! held schedule value has no target: no default is written, the PLC keeps what it holds.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use shiki_proto::{
    ActiveSchedule, EventKind, ExpiredOverride, PointValue, SettingSource, SettingStatus, Severity,
};

use super::config::{ControlConfig, ControlConfigError};
use crate::messages::{
    ControlReport, Override, RecordEvent, ScheduleSettings, ScheduledValue, SetOverrides,
    WriteError, WritePoint,
};
use crate::register_map::{Limited, PointConfig, RegisterMap};

/// What the edge will do with one setting's requested value.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Within limits: write this value.
    Write(PointValue),
    /// Outside limits: write the limit instead; carries "clamped to 12.0".
    Clamped(PointValue, String),
    /// Not written (outside limits with `refuse`, or not a valid value); carries why.
    Refused(String),
}

/// The effective target of one setting.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub source: SettingSource,
    pub requested: serde_json::Value,
    pub decision: Decision,
}

impl Target {
    /// The value to write, if any.
    pub fn value(&self) -> Option<&PointValue> {
        match &self.decision {
            Decision::Write(v) | Decision::Clamped(v, _) => Some(v),
            Decision::Refused(_) => None,
        }
    }
}

/// The last write of a setting that did not land.
#[derive(Debug, Clone, PartialEq)]
enum Failure {
    /// The PLC (or PlcLink's checks) refused this value; not retried until the target changes.
    Refused {
        attempted: PointValue,
        detail: String,
    },
    /// The link failed, or the PLC was busy or failing; retried on the next input.
    Unreachable { detail: String },
}

/// Control's state. See the module docs for the rules.
#[derive(Debug, Clone)]
pub struct ControlState {
    map: RegisterMap,
    defaults: BTreeMap<String, serde_json::Value>,
    overrides: BTreeMap<String, Override>,
    unknown_overrides: BTreeMap<String, serde_json::Value>,
    desired_version: Option<u64>,
    /// Overrides this edge ended: key → `set_at`, so a desired document that still carries
    /// them does not bring them back.
    ended: BTreeMap<String, DateTime<Utc>>,
    schedule: Option<ActiveSchedule>,
    scheduled: BTreeMap<String, ScheduledValue>,
    /// The schedule is held (implausible clock): no defaults are written.
    held: bool,
    /// What the PLC holds, from readings and read-backs.
    plc: BTreeMap<String, PointValue>,
    /// Nothing is written before the first poll: the PLC's values are not known yet.
    polled: bool,
    failures: BTreeMap<String, Failure>,
    /// Edge-side refusals already announced by a `ControlError` event: key → detail.
    announced: BTreeMap<String, String>,
    pending_expired: Vec<ExpiredOverride>,
}

fn source_name(s: SettingSource) -> &'static str {
    match s {
        SettingSource::Override => "override",
        SettingSource::Schedule => "schedule",
        SettingSource::Default => "default",
        SettingSource::Clamped => "clamped",
        SettingSource::Refused => "refused",
        SettingSource::Unknown => "unknown",
    }
}

impl ControlState {
    /// Check `[control.defaults]` against the map: every key a writable point, every value valid.
    pub fn new(map: RegisterMap, config: &ControlConfig) -> Result<Self, ControlConfigError> {
        if config.expiry_check_interval.is_zero() {
            return Err(ControlConfigError::ZeroInterval);
        }
        for (key, value) in &config.defaults {
            let invalid = |reason: String| ControlConfigError::InvalidDefault {
                key: key.clone(),
                reason,
            };
            let p = map
                .point(key)
                .filter(|p| p.writable)
                .ok_or_else(|| invalid("not a writable point of [plc]".into()))?;
            let v = p
                .value_from_json(value)
                .map_err(|e| invalid(e.to_string()))?;
            if let Limited::Refused(r) = p.limit(v) {
                return Err(invalid(r));
            }
        }
        Ok(Self {
            map,
            defaults: config.defaults.clone(),
            overrides: BTreeMap::new(),
            unknown_overrides: BTreeMap::new(),
            desired_version: None,
            ended: BTreeMap::new(),
            schedule: None,
            scheduled: BTreeMap::new(),
            held: false,
            plc: BTreeMap::new(),
            polled: false,
            failures: BTreeMap::new(),
            announced: BTreeMap::new(),
            pending_expired: Vec::new(),
        })
    }

    fn setting(&self, key: &str) -> Option<&PointConfig> {
        self.map.point(key).filter(|p| p.writable)
    }

    /// Replace the operator overrides. Overrides this edge already ended (same `set_at`) stay
    /// ended and are reported expired again.
    pub fn set_overrides(&mut self, msg: SetOverrides) {
        self.desired_version = Some(msg.desired_version);
        self.overrides.clear();
        self.unknown_overrides.clear();
        self.ended.retain(|k, _| msg.overrides.contains_key(k));
        for (key, ov) in msg.overrides {
            if self.setting(&key).is_none() {
                self.unknown_overrides.insert(key, ov.value);
                continue;
            }
            if self.ended.get(&key) == Some(&ov.set_at) {
                if !self.pending_expired.iter().any(|e| e.key == key) {
                    self.pending_expired.push(ExpiredOverride {
                        key: key.clone(),
                        at: ov.until.unwrap_or(ov.set_at),
                        desired_version: msg.desired_version,
                    });
                }
                continue;
            }
            self.ended.remove(&key);
            self.overrides.insert(key, ov);
        }
    }

    /// Replace what the schedule has in force.
    pub fn set_schedule(&mut self, msg: ScheduleSettings) {
        self.schedule = msg.schedule;
        self.scheduled = msg.settings;
        self.held = msg.held;
    }

    /// Take the PLC's values of the settings from a poll.
    pub fn observe(&mut self, values: &BTreeMap<String, PointValue>) {
        self.polled = true;
        for (k, v) in values {
            if self.setting(k).is_some() {
                self.plc.insert(k.clone(), v.clone());
            }
        }
    }

    /// When the override of `key` ends, if it is bounded.
    fn deadline(&self, key: &str, ov: &Override) -> Option<DateTime<Utc>> {
        if let Some(until) = ov.until {
            return Some(until);
        }
        let sv = self.scheduled.get(key)?;
        if sv.since > ov.set_at {
            // The schedule moved on since the override was set (e.g. after a reboot).
            return Some(sv.since);
        }
        sv.next_change
    }

    /// The earliest moment an override will end.
    pub fn next_expiry(&self) -> Option<DateTime<Utc>> {
        self.overrides
            .iter()
            .filter_map(|(k, ov)| self.deadline(k, ov))
            .min()
    }

    /// End overrides whose time has come; returns an `OverrideExpired` event for each.
    pub fn expire(&mut self, now: DateTime<Utc>) -> Vec<RecordEvent> {
        let due: Vec<(String, DateTime<Utc>)> = self
            .overrides
            .iter()
            .filter_map(|(k, ov)| {
                self.deadline(k, ov)
                    .filter(|d| *d <= now)
                    .map(|d| (k.clone(), d))
            })
            .collect();
        let version = self.desired_version.unwrap_or(0);
        let mut events = Vec::new();
        for (key, at) in due {
            let Some(ov) = self.overrides.remove(&key) else {
                continue;
            };
            let why = if ov.until.is_some() {
                "its until passed"
            } else {
                "the schedule moved on"
            };
            self.ended.insert(key.clone(), ov.set_at);
            self.pending_expired.push(ExpiredOverride {
                key: key.clone(),
                at,
                desired_version: version,
            });
            events.push(RecordEvent::new(
                now,
                EventKind::OverrideExpired,
                Severity::Info,
                format!("override of {key} ended: {why}"),
                serde_json::json!({"key": key, "at": at, "desired_version": version, "value": ov.value}),
            ));
        }
        events
    }

    /// The effective target of a setting, by precedence, after the safety limits.
    pub fn target(&self, key: &str) -> Option<Target> {
        let p = self.setting(key)?;
        let (source, requested) = if let Some(ov) = self.overrides.get(key) {
            (SettingSource::Override, ov.value.clone())
        } else if let Some(sv) = self.scheduled.get(key) {
            (SettingSource::Schedule, sv.value.clone())
        } else if self.held {
            return None;
        } else {
            (SettingSource::Default, self.defaults.get(key)?.clone())
        };
        let decision = match p.value_from_json(&requested) {
            Err(e) => Decision::Refused(format!("refused: {e}")),
            Ok(v) => match p.limit(v) {
                Limited::Within(v) => Decision::Write(v),
                Limited::Clamped(v, d) => Decision::Clamped(v, d),
                Limited::Refused(d) => Decision::Refused(d),
            },
        };
        Some(Target {
            source,
            requested,
            decision,
        })
    }

    /// Writes needed now: settings whose target differs from the PLC's value (at the point's
    /// resolution), except values the PLC already refused. None before the first poll.
    pub fn writes(&self) -> Vec<WritePoint> {
        let mut out = Vec::new();
        if !self.polled {
            return out;
        }
        for p in self.map.settings() {
            let Some(target) = self.target(&p.name) else {
                continue;
            };
            let Some(value) = target.value() else {
                continue;
            };
            if self
                .plc
                .get(&p.name)
                .is_some_and(|held| p.same_value(held, value))
            {
                continue;
            }
            if let Some(Failure::Refused { attempted, .. }) = self.failures.get(&p.name)
                && p.same_value(attempted, value)
            {
                continue;
            }
            out.push(WritePoint {
                name: p.name.clone(),
                value: value.clone(),
            });
        }
        out
    }

    /// The answer to a write; returns the event to record, if any.
    pub fn on_write(
        &mut self,
        write: &WritePoint,
        result: Result<PointValue, WriteError>,
        now: DateTime<Utc>,
    ) -> Option<RecordEvent> {
        let key = write.name.clone();
        let source = self
            .target(&key)
            .map_or(SettingSource::Unknown, |t| t.source);
        let (failure, severity) = match result {
            Ok(held) => {
                self.failures.remove(&key);
                let msg = format!("{key} set to {} ({})", show(&held), source_name(source));
                let data = serde_json::json!({"key": key, "value": held, "requested": write.value, "source": source});
                self.plc.insert(key, held);
                return Some(RecordEvent::new(
                    now,
                    EventKind::SettingApplied,
                    Severity::Info,
                    msg,
                    data,
                ));
            }
            Err(WriteError::Link(cause)) => (
                Failure::Unreachable {
                    detail: format!("not applied: PLC unreachable: {cause}"),
                },
                Severity::Warning,
            ),
            Err(e @ WriteError::Busy(_)) => (
                Failure::Unreachable {
                    detail: format!("not applied: {e}"),
                },
                Severity::Warning,
            ),
            Err(WriteError::Refused(exception)) => (
                Failure::Refused {
                    attempted: write.value.clone(),
                    detail: format!("PLC refused: {exception}"),
                },
                Severity::Warning,
            ),
            Err(other) => (
                Failure::Refused {
                    attempted: write.value.clone(),
                    detail: format!("refused: {other}"),
                },
                Severity::Warning,
            ),
        };
        let repeated = self.failures.get(&key) == Some(&failure);
        let detail = match &failure {
            Failure::Refused { detail, .. } | Failure::Unreachable { detail } => detail.clone(),
        };
        self.failures.insert(key.clone(), failure);
        (!repeated).then(|| {
            RecordEvent::new(
                now,
                EventKind::ControlError,
                severity,
                format!("writing {key} = {}: {detail}", show(&write.value)),
                serde_json::json!({"key": key, "requested": write.value, "source": source, "cause": detail}),
            )
        })
    }

    /// A `ControlError` event for each setting whose requested value the edge newly
    /// refuses (outside limits with `refuse`, or not a valid value); once per refusal.
    pub fn refusal_events(&mut self, now: DateTime<Utc>) -> Vec<RecordEvent> {
        let mut refused = BTreeMap::new();
        for p in self.map.settings() {
            if let Some(Target {
                source,
                requested,
                decision: Decision::Refused(detail),
            }) = self.target(&p.name)
            {
                refused.insert(p.name.clone(), (source, requested, detail));
            }
        }
        self.announced.retain(|k, _| refused.contains_key(k));
        let mut events = Vec::new();
        for (key, (source, requested, detail)) in refused {
            if self.announced.get(&key) == Some(&detail) {
                continue;
            }
            events.push(RecordEvent::new(
                now,
                EventKind::ControlError,
                Severity::Warning,
                format!("{key} = {requested} ({}) not written: {detail}", source_name(source)),
                serde_json::json!({"key": key, "requested": requested, "source": source, "cause": detail}),
            ));
            self.announced.insert(key, detail);
        }
        events
    }

    /// How one setting stands.
    pub fn status(&self, key: &str) -> Option<SettingStatus> {
        let p = self.setting(key)?;
        let t = self.target(key)?;
        let held = self.plc.get(key);
        let status = |source, detail: Option<String>| SettingStatus {
            source,
            requested: Some(t.requested.clone()),
            detail,
        };
        Some(match (&t.decision, self.failures.get(key)) {
            (Decision::Refused(d), _) => status(SettingSource::Refused, Some(d.clone())),
            (_, Some(Failure::Refused { attempted, detail }))
                if t.value().is_some_and(|v| p.same_value(v, attempted)) =>
            {
                status(SettingSource::Refused, Some(detail.clone()))
            }
            (Decision::Clamped(_, d), _) => status(SettingSource::Clamped, Some(d.clone())),
            (Decision::Write(v), failure) => {
                if held.is_some_and(|h| p.same_value(h, v)) {
                    SettingStatus {
                        source: t.source,
                        requested: None,
                        detail: None,
                    }
                } else {
                    let detail = match failure {
                        Some(Failure::Unreachable { detail }) => detail.clone(),
                        _ => "not applied yet".into(),
                    };
                    status(t.source, Some(detail))
                }
            }
        })
    }

    /// The report: what the PLC holds, each setting's status, and the overrides that ended
    /// since the last report (drained).
    pub fn report(&mut self, now: DateTime<Utc>) -> ControlReport {
        let mut settings = BTreeMap::new();
        for p in self.map.settings() {
            if let Some(s) = self.status(&p.name) {
                settings.insert(p.name.clone(), s);
            }
        }
        for (key, value) in &self.unknown_overrides {
            settings.insert(
                key.clone(),
                SettingStatus {
                    source: SettingSource::Refused,
                    requested: Some(value.clone()),
                    detail: Some(format!("refused: {key:?} is not a setting of this device")),
                },
            );
        }
        ControlReport {
            ts: now,
            reported: self
                .plc
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
                .collect(),
            settings,
            applied_version: self.desired_version,
            expired: std::mem::take(&mut self.pending_expired),
            schedule: self.schedule.clone(),
        }
    }
}

fn show(v: &PointValue) -> String {
    match v {
        PointValue::Bool(b) => b.to_string(),
        PointValue::Number(n) => format!("{n}"),
        PointValue::Text(t) => t.clone(),
    }
}
