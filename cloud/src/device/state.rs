//! The device actor's logic as a plain state machine: inputs with a `now`, outputs as
//! [`Effects`] (store writes, messages to the edge, alerts). No I/O, no actix.
//!
//! Verifying desired keys (start, settle on reports, re-check, supersede) is the half of
//! [`DeviceState`] in the `verification` submodule.

mod verification;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use shiki_cloud_model::shadow::{Shadow, catalog_resolution};
use shiki_proto::{
    Catalog, Connectivity, DeviceId, Event, EventKind, JsonMap, PROTOCOL_VERSION, ReportedUpdate,
    Sample, ShadowDelta, ShadowDocument, ShadowGet, Status,
};

use super::types::decode_checked;
pub use super::types::{DeviceConfig, DeviceView, Effects, Outbound, SampleJson};
use super::validate::validate;
pub use super::validate::{DesiredError, VersionConflict};
use crate::notifier::{Alert, AlertKind};
use crate::store::{Author, DeviceSnapshot, HistoryEntry, Side, VerificationRecord, Write};
pub use shiki_cloud_model::DesiredChange;

/// The state of one device.
#[derive(Debug)]
pub struct DeviceState {
    id: DeviceId,
    cfg: DeviceConfig,
    snap: DeviceSnapshot,
    last_seq: u64,
    /// The JSON text of the sample with `last_seq` (empty before the first): the buffer is
    /// reused, so keeping each new sample allocates nothing once it is large enough.
    last_sample: Vec<u8>,
    pending: BTreeMap<u64, VerificationRecord>,
    /// Boxed: most devices hold none, and inline it would cost every actor its full size.
    last_verification: Option<Box<VerificationRecord>>,
}

impl DeviceState {
    /// A device seen for the first time.
    pub fn new(id: DeviceId, cfg: DeviceConfig) -> Self {
        Self::restore(id, cfg, None, Vec::new(), None)
    }

    /// A device restored from the store.
    pub fn restore(
        id: DeviceId,
        cfg: DeviceConfig,
        snapshot: Option<DeviceSnapshot>,
        verifications: Vec<VerificationRecord>,
        last_sample: Option<Sample>,
    ) -> Self {
        let last_verification = verifications
            .iter()
            .rev()
            .find(|v| !v.is_pending())
            .cloned()
            .map(Box::new);
        let pending = verifications
            .into_iter()
            .filter(VerificationRecord::is_pending)
            .map(|v| (v.id, v))
            .collect();
        // A stored sample always encodes; if one ever did not, the device starts without.
        let last_sample = last_sample.and_then(|s| {
            serde_json::to_vec(&s)
                .inspect_err(
                    |e| tracing::error!(device_id = %id, error = %e, "cannot keep the last sample"),
                )
                .ok()
                .map(|json| (s.seq, json))
        });
        let (last_seq, last_sample) = last_sample.unwrap_or_default();
        let mut snap = snapshot.unwrap_or_default();
        // Limits are configuration, not part of the stored shadow.
        snap.shadow.set_limits(cfg.shadow_limits);
        Self {
            id,
            cfg,
            snap,
            last_seq,
            last_sample,
            pending,
            last_verification,
        }
    }

    pub fn id(&self) -> &DeviceId {
        &self.id
    }

    pub fn shadow(&self) -> &Shadow {
        &self.snap.shadow
    }

    /// The device's point catalog (retained `catalog` topic), once it sent one.
    pub fn catalog(&self) -> Option<&Catalog> {
        self.snap.catalog.as_ref()
    }

    pub fn online(&self) -> bool {
        self.snap
            .status
            .as_ref()
            .is_some_and(|s| s.state == Connectivity::Online)
    }

    pub fn pending(&self) -> impl Iterator<Item = &VerificationRecord> {
        self.pending.values()
    }

    /// The few fields the fleet list shows (see [`super::GetBrief`]).
    pub fn brief(&self) -> super::DeviceBrief {
        let status = self.snap.status.as_ref();
        super::DeviceBrief {
            id: self.id.clone(),
            online: self.online(),
            last_seen: self.snap.last_seen,
            version: self.snap.shadow.version(),
            pending_verifications: self.pending.len(),
            software_version: status.and_then(|s| s.software_version.clone()),
            status_ts: status.and_then(|s| s.ts),
        }
    }

    pub fn view(&self) -> DeviceView {
        DeviceView {
            id: self.id.clone(),
            online: self.online(),
            last_seen: self.snap.last_seen,
            version: self.snap.shadow.version(),
            desired: self.snap.shadow.desired().clone(),
            reported: self.snap.shadow.reported().clone(),
            delta: self
                .snap
                .shadow
                .delta_with(&catalog_resolution(self.catalog())),
            status: self.snap.status.clone(),
            catalog: self.snap.catalog.clone(),
            last_seq: self.last_seq,
            last_telemetry: (!self.last_sample.is_empty())
                .then(|| decode_checked(self.last_seq, &self.last_sample))
                .flatten()
                .map(|mut s| {
                    super::types::at_resolution(&mut s, self.catalog());
                    s
                }),
            pending_verifications: self.pending.values().cloned().collect(),
            last_verification: self.last_verification.as_deref().cloned(),
            applied_version: self.snap.applied_version,
            metadata: self.snap.shadow.metadata().clone(),
            settings: self.snap.settings.clone(),
        }
    }

    /// The write that saves this device's state (also used on first contact).
    pub fn snapshot_write(&self) -> Write {
        Write::Device {
            device: self.id.clone(),
            snapshot: Box::new(self.snap.clone()),
        }
    }

    /// `status` (retained, also the Last Will).
    pub fn on_status(&mut self, status: Status, now: DateTime<Utc>) -> Effects {
        match status.state {
            Connectivity::Online => {
                self.snap.offline_since = None;
                self.snap.offline_alerted = false;
                self.snap.last_seen = Some(now);
            }
            Connectivity::Offline => {
                if self.snap.offline_since.is_none() {
                    self.snap.offline_since = Some(status.ts.unwrap_or(now).min(now));
                }
            }
            Connectivity::Unknown => {}
        }
        self.snap.status = Some(status);
        Effects {
            writes: vec![self.snapshot_write()],
            ..Effects::default()
        }
    }

    /// `catalog` (retained).
    pub fn on_catalog(&mut self, catalog: Catalog, now: DateTime<Utc>) -> Effects {
        self.snap.catalog = Some(catalog);
        self.snap.last_seen = Some(now);
        Effects {
            writes: vec![self.snapshot_write()],
            ..Effects::default()
        }
    }

    /// Telemetry the ingest already queued for the store.
    pub fn on_telemetry(&mut self, newest: SampleJson, now: DateTime<Utc>) {
        self.snap.last_seen = Some(now);
        if newest.seq() > self.last_seq {
            self.last_seq = newest.seq();
            self.last_sample.clear();
            self.last_sample.extend_from_slice(newest.as_bytes());
        }
    }

    /// Events the ingest already queued for the store; new PLC alarms raise alerts.
    pub fn on_events(&mut self, events: &[Event], now: DateTime<Utc>) -> Effects {
        self.snap.last_seen = Some(now);
        let mut fx = Effects::default();
        let mut newest = self.snap.last_event_seq;
        for e in events.iter().filter(|e| e.seq > self.snap.last_event_seq) {
            newest = newest.max(e.seq);
            if e.kind == EventKind::Alarm {
                fx.alerts.push(Alert {
                    device: self.id.clone(),
                    kind: AlertKind::PlcAlarm,
                    text: format!("PLC alarm on {}: {}", self.id, e.message),
                });
            }
        }
        if newest != self.snap.last_event_seq {
            self.snap.last_event_seq = newest;
            fx.writes.push(self.snapshot_write());
        }
        fx
    }

    /// `shadow/get`: answer with the full document.
    pub fn on_shadow_get(&mut self, get: ShadowGet, now: DateTime<Utc>) -> Effects {
        self.snap.last_seen = Some(now);
        let document = ShadowDocument {
            client_token: get.client_token,
            ..self
                .snap
                .shadow
                .document_with(now, &catalog_resolution(self.catalog()))
        };
        Effects {
            publish: vec![Outbound::Document(document)],
            ..Effects::default()
        }
    }

    /// A desired change from the API, asked for by `author`. Returns the new desired
    /// version (one more than before for every accepted change, as the [`Shadow`] counts
    /// them). Keys whose value and `until` stay the same are not recorded and not verified
    /// again.
    pub fn change_desired(
        &mut self,
        change: DesiredChange,
        author: Author,
        now: DateTime<Utc>,
        next_id: &mut dyn FnMut() -> u64,
    ) -> Result<(u64, Effects), DesiredError> {
        validate(self.snap.catalog.as_ref(), &change.settings)?;
        let until_before: BTreeMap<String, Option<DateTime<Utc>>> = change
            .settings
            .keys()
            .map(|k| {
                let until = self
                    .snap
                    .shadow
                    .metadata()
                    .desired
                    .get(k)
                    .and_then(|m| m.until);
                (k.clone(), until)
            })
            .collect();
        let (until, comment) = (change.until, change.comment.clone());
        let outcome = self.snap.shadow.apply_desired(change, now)?;
        let version = outcome.version;
        let mut fx = Effects::default();
        for c in outcome.changes {
            let until_changed =
                c.new.is_some() && until_before.get(&c.key).copied().flatten() != until;
            if c.is_noop() && !until_changed {
                continue; // set again to what it was: nothing to record or verify
            }
            self.supersede(&c.key, version, now, &mut fx);
            let verification_id = c.new.as_ref().map(|requested| {
                self.start_verification(&c.key, requested, version, now, next_id(), &mut fx)
            });
            fx.writes.push(Write::History(Box::new(HistoryEntry {
                id: next_id(),
                device: self.id.clone(),
                ts: now,
                actor: author.clone(),
                side: Side::Desired,
                key: c.key,
                old: c.old.unwrap_or(Value::Null),
                new: c.new.unwrap_or(Value::Null),
                version,
                comment: comment.clone(),
                verification_id,
            })));
        }
        fx.writes.push(self.snapshot_write());
        fx.publish
            .push(Outbound::Delta(self.delta_message(&[], now)));
        Ok((version, fx))
    }

    /// The `shadow/delta` for the edge: desired keys reported does not match (at the
    /// points' resolutions), deletions it has not acknowledged yet and the overrides in
    /// `expired` as `null`. Sent even when empty: it carries the new desired version.
    fn delta_message(&self, expired: &[String], now: DateTime<Utc>) -> ShadowDelta {
        let mut delta = self
            .snap
            .shadow
            .delta_message_with(now, &catalog_resolution(self.catalog()))
            .unwrap_or_else(|| ShadowDelta {
                v: PROTOCOL_VERSION,
                state: JsonMap::new(),
                metadata: BTreeMap::new(),
                version: self.snap.shadow.version(),
                timestamp: now,
                client_token: None,
            });
        for key in expired {
            delta.state.entry(key.clone()).or_insert(Value::Null);
        }
        delta
    }

    /// `shadow/reported`: record changes, end expired overrides, settle verifications.
    pub fn on_reported(
        &mut self,
        update: ReportedUpdate,
        now: DateTime<Utc>,
        next_id: &mut dyn FnMut() -> u64,
    ) -> Effects {
        let mut fx = Effects::default();
        self.snap.last_seen = Some(now);
        let applied = update.applied_version.unwrap_or(self.snap.shadow.version());
        if update.applied_version.is_some() {
            self.snap.applied_version = update.applied_version;
        }
        for (k, s) in &update.settings {
            self.snap.settings.insert(k.clone(), s.clone());
        }
        self.record_reported(&update, applied, now, next_id, &mut fx);
        let removed = self.end_expired_overrides(&update, now, next_id, &mut fx);
        self.settle_verifications(&update, applied, now, &mut fx);
        fx.writes.push(self.snapshot_write());
        if !removed.is_empty() {
            fx.publish
                .push(Outbound::Delta(self.delta_message(&removed, now)));
        }
        fx
    }

    /// Applies the reported state to the shadow and records each change (by the device).
    fn record_reported(
        &mut self,
        update: &ReportedUpdate,
        applied: u64,
        now: DateTime<Utc>,
        next_id: &mut dyn FnMut() -> u64,
        fx: &mut Effects,
    ) {
        let applied_report = {
            let resolution = catalog_resolution(self.snap.catalog.as_ref());
            self.snap
                .shadow
                .apply_reported_update_with(update, now, &resolution)
        };
        match applied_report {
            Ok(outcome) => {
                for c in outcome.changes {
                    let comment = update.settings.get(&c.key).and_then(|s| s.detail.clone());
                    fx.writes.push(Write::History(Box::new(HistoryEntry {
                        id: next_id(),
                        device: self.id.clone(),
                        ts: now,
                        actor: Author::Device(self.id.clone()),
                        side: Side::Reported,
                        key: c.key,
                        old: c.old.unwrap_or(Value::Null),
                        new: c.new.unwrap_or(Value::Null),
                        version: applied,
                        comment,
                        verification_id: None,
                    })));
                }
            }
            Err(e) => {
                tracing::warn!(device_id = %self.id, error = %e, "reported state refused; the previous one is kept");
            }
        }
    }

    /// Removes from desired the overrides the edge reports expired (unless set again since),
    /// recording each removal; returns the removed keys.
    fn end_expired_overrides(
        &mut self,
        update: &ReportedUpdate,
        now: DateTime<Utc>,
        next_id: &mut dyn FnMut() -> u64,
        fx: &mut Effects,
    ) -> Vec<String> {
        let mut removed = Vec::new();
        for e in &update.expired {
            // Gone already, or set again after the override the edge ended: nothing to do.
            let Some(outcome) = self
                .snap
                .shadow
                .remove_expired(&e.key, e.desired_version, now)
            else {
                continue;
            };
            let version = outcome.version;
            for c in outcome.changes {
                self.supersede(&c.key, version, now, fx);
                fx.writes.push(Write::History(Box::new(HistoryEntry {
                    id: next_id(),
                    device: self.id.clone(),
                    ts: now,
                    actor: Author::Schedule,
                    side: Side::Desired,
                    key: c.key.clone(),
                    old: c.old.unwrap_or(Value::Null),
                    new: Value::Null,
                    version,
                    comment: Some(format!("override expired at {}", e.at.to_rfc3339())),
                    verification_id: None,
                })));
                removed.push(c.key);
            }
        }
        removed
    }

    /// Re-checks that are due, and the offline alert.
    pub fn on_tick(&mut self, now: DateTime<Utc>) -> Effects {
        let mut fx = Effects::default();
        self.recheck_due(now, &mut fx);
        if let Some(alert_at) = self.offline_alert_at()
            && alert_at <= now
        {
            self.snap.offline_alerted = true;
            let since = self.snap.offline_since.unwrap_or(now);
            fx.alerts.push(Alert {
                device: self.id.clone(),
                kind: AlertKind::DeviceOffline,
                text: format!("{} has been offline since {}", self.id, since.to_rfc3339()),
            });
            fx.writes.push(self.snapshot_write());
        }
        fx
    }

    fn offline_alert_at(&self) -> Option<DateTime<Utc>> {
        if self.snap.offline_alerted {
            return None;
        }
        let since = self.snap.offline_since?;
        Some(since + chrono::Duration::from_std(self.cfg.offline_after).ok()?)
    }

    /// When [`DeviceState::on_tick`] next has something to do.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        self.pending
            .values()
            .filter_map(|v| v.next_check)
            .chain(self.offline_alert_at())
            .min()
    }
}
