//! Verification of a desired key: `Pending` → `Verified` when a reported state matches at
//! the point's resolution; → `Failed` when the edge reports the value refused or clamped, a
//! newer change supersedes it, or every re-check (first delay, doubling) found no match
//! (reason: device offline, or timed out).

use chrono::{DateTime, Utc};
use serde_json::Value;
use shiki_cloud_model::shadow::{catalog_resolution, values_match};
use shiki_proto::{ReportedUpdate, SettingSource};

use super::DeviceState;
use crate::device::types::Effects;
use crate::notifier::{Alert, AlertKind};
use crate::store::{FailureReason, VerificationOutcome, VerificationRecord, Write};

impl DeviceState {
    /// Starts verifying that `key` reaches `requested` (set in desired `version`); returns
    /// the verification's id.
    pub(super) fn start_verification(
        &mut self,
        key: &str,
        requested: &Value,
        version: u64,
        now: DateTime<Utc>,
        id: u64,
        fx: &mut Effects,
    ) -> u64 {
        let v = VerificationRecord {
            id,
            device: self.id.clone(),
            key: key.to_owned(),
            requested: requested.clone(),
            version,
            started: now,
            attempts: 0,
            next_check: Some(now + self.backoff(0)),
            outcome: VerificationOutcome::Pending,
        };
        fx.writes.push(Write::Verification(Box::new(v.clone())));
        self.pending.insert(id, v);
        id
    }

    /// Wait before the re-check after `attempts_done` checks: first delay, doubling.
    fn backoff(&self, attempts_done: u32) -> chrono::Duration {
        let base = self.cfg.verification.first_delay;
        let d = base.saturating_mul(1u32 << attempts_done.min(20));
        chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
    }

    /// The catalog's resolution of `key`, for comparing values.
    fn resolution(&self, key: &str) -> Option<f64> {
        catalog_resolution(self.catalog())(key)
    }

    /// Ends verification `id` with `outcome`; a failure other than superseded alerts.
    fn finish(&mut self, id: u64, outcome: VerificationOutcome, fx: &mut Effects) {
        let Some(mut v) = self.pending.remove(&id) else {
            return;
        };
        v.next_check = None;
        v.outcome = outcome;
        if let VerificationOutcome::Failed { reason, .. } = &v.outcome
            && !matches!(reason, FailureReason::Superseded { .. })
        {
            fx.alerts.push(Alert {
                device: self.id.clone(),
                kind: AlertKind::VerificationFailed,
                text: format!(
                    "{}: setting `{}` to {} (desired version {}) failed: {}",
                    self.id, v.key, v.requested, v.version, reason
                ),
            });
        }
        tracing::info!(device_id = %self.id, key = %v.key, version = v.version, outcome = ?v.outcome, "verification finished");
        fx.writes.push(Write::Verification(Box::new(v.clone())));
        self.last_verification = Some(Box::new(v));
    }

    /// Ends the pending verifications of `key` as superseded by desired `by_version`.
    pub(super) fn supersede(
        &mut self,
        key: &str,
        by_version: u64,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) {
        let ids: Vec<u64> = self
            .pending
            .values()
            .filter(|v| v.key == key)
            .map(|v| v.id)
            .collect();
        for id in ids {
            let outcome = VerificationOutcome::Failed {
                at: now,
                reason: FailureReason::Superseded { by_version },
            };
            self.finish(id, outcome, fx);
        }
    }

    /// Settles the pending verifications of the changes the edge has applied: failed when
    /// it reports the value refused or clamped, verified when the reported value matches.
    pub(super) fn settle_verifications(
        &mut self,
        update: &ReportedUpdate,
        applied: u64,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) {
        let ids: Vec<u64> = self.pending.keys().copied().collect();
        for id in ids {
            let Some(v) = self.pending.get(&id) else {
                continue;
            };
            if applied < v.version {
                continue; // the edge has not seen this change yet
            }
            let status = update.settings.get(&v.key);
            let reported = self.snap.shadow.reported().get(&v.key);
            let outcome = match status.map(|s| s.source) {
                Some(SettingSource::Refused) => Some(FailureReason::PlcRefused {
                    detail: status.and_then(|s| s.detail.clone()),
                }),
                Some(SettingSource::Clamped) => Some(FailureReason::Clamped {
                    value: reported.cloned().unwrap_or(Value::Null),
                }),
                _ => None,
            };
            let outcome = match outcome {
                Some(reason) => Some(VerificationOutcome::Failed { at: now, reason }),
                None if reported
                    .is_some_and(|r| values_match(&v.requested, r, self.resolution(&v.key))) =>
                {
                    Some(VerificationOutcome::Verified { at: now })
                }
                None => None,
            };
            if let Some(o) = outcome {
                self.finish(id, o, fx);
            }
        }
    }

    /// Re-checks the verifications that are due: verified when reported matches, failed
    /// (device offline, or timed out) after the last attempt, else checked again later.
    pub(super) fn recheck_due(&mut self, now: DateTime<Utc>, fx: &mut Effects) {
        let due: Vec<u64> = self
            .pending
            .values()
            .filter(|v| v.next_check.is_some_and(|t| t <= now))
            .map(|v| v.id)
            .collect();
        let online = self.online();
        for id in due {
            let (matched, attempts) =
                {
                    let Some(v) = self.pending.get(&id) else {
                        continue;
                    };
                    let matched =
                        self.snap.shadow.reported().get(&v.key).is_some_and(|r| {
                            values_match(&v.requested, r, self.resolution(&v.key))
                        });
                    (matched, v.attempts + 1)
                };
            if matched {
                self.finish(id, VerificationOutcome::Verified { at: now }, fx);
            } else if attempts >= self.cfg.verification.attempts {
                let reason = if online {
                    FailureReason::TimedOut
                } else {
                    FailureReason::DeviceOffline
                };
                self.finish(id, VerificationOutcome::Failed { at: now, reason }, fx);
            } else {
                let next = now + self.backoff(attempts);
                if let Some(v) = self.pending.get_mut(&id) {
                    v.attempts = attempts;
                    v.next_check = Some(next);
                    fx.writes.push(Write::Verification(Box::new(v.clone())));
                }
            }
        }
    }
}
