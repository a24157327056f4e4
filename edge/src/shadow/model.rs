//! The shadow's state, without actix: the persisted desired document, the overrides it
//! means for Control, and the reported updates built from Control's reports.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shiki_proto::{
    ExpiredOverride, JsonMap, KeyMetadata, PROTOCOL_VERSION, ReportedState, ReportedUpdate,
    ShadowDelta, ShadowDocument,
};

use crate::messages::{ControlReport, Override, PublishReported, SetOverrides};

/// The desired half of the shadow as the edge keeps it (persisted in redb).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DesiredDoc {
    pub version: u64,
    pub desired: JsonMap,
    pub metadata: BTreeMap<String, KeyMetadata>,
    pub timestamp: Option<DateTime<Utc>>,
}

/// Result of applying a cloud message.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The desired set changed: persist the document and send these overrides to Control.
    Changed(SetOverrides),
    /// Older than what the edge already has; ignored.
    Stale { have: u64, got: u64 },
}

#[derive(Debug, Default)]
pub struct ShadowModel {
    pub doc: DesiredDoc,
    /// Expired overrides not yet acknowledged by the broker (persisted).
    pub pending_expired: Vec<ExpiredOverride>,
    latest: Option<ControlReport>,
    generation: u64,
    sent: BTreeMap<u64, Vec<ExpiredOverride>>,
}

impl ShadowModel {
    pub fn new(doc: DesiredDoc, pending_expired: Vec<ExpiredOverride>) -> Self {
        Self {
            doc,
            pending_expired,
            ..Self::default()
        }
    }

    /// The overrides the current desired document means.
    pub fn overrides(&self) -> SetOverrides {
        let fallback = self.doc.timestamp.unwrap_or(DateTime::<Utc>::MIN_UTC);
        let overrides = self
            .doc
            .desired
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let meta = self.doc.metadata.get(k);
                (
                    k.clone(),
                    Override {
                        value: v.clone(),
                        until: meta.and_then(|m| m.until),
                        set_at: meta.map(|m| m.timestamp).unwrap_or(fallback),
                    },
                )
            })
            .collect();
        SetOverrides {
            desired_version: self.doc.version,
            overrides,
        }
    }

    /// A full document replaces the desired set (unless it is older than what we have).
    pub fn on_document(&mut self, d: ShadowDocument) -> Applied {
        if d.version < self.doc.version {
            return Applied::Stale {
                have: self.doc.version,
                got: d.version,
            };
        }
        self.doc = DesiredDoc {
            version: d.version,
            desired: d
                .state
                .desired
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .collect(),
            metadata: d.metadata.desired,
            timestamp: Some(d.timestamp),
        };
        self.doc
            .metadata
            .retain(|k, _| self.doc.desired.contains_key(k));
        Applied::Changed(self.overrides())
    }

    /// A delta is merged: `null` removes a key, anything else sets it.
    pub fn on_delta(&mut self, d: ShadowDelta) -> Applied {
        if d.version < self.doc.version {
            return Applied::Stale {
                have: self.doc.version,
                got: d.version,
            };
        }
        for (k, v) in d.state {
            if v.is_null() {
                self.doc.desired.remove(&k);
                self.doc.metadata.remove(&k);
            } else {
                let meta = d.metadata.get(&k).cloned().unwrap_or(KeyMetadata {
                    timestamp: d.timestamp,
                    until: None,
                    version: None,
                });
                self.doc.metadata.insert(k.clone(), meta);
                self.doc.desired.insert(k, v);
            }
        }
        self.doc.version = d.version;
        self.doc.timestamp = Some(d.timestamp);
        Applied::Changed(self.overrides())
    }

    /// Control's report: expired overrides leave the local desired set and wait for
    /// delivery; the returned update is to be published.
    pub fn on_report(&mut self, r: ControlReport) -> PublishReported {
        for e in &r.expired {
            self.doc.desired.remove(&e.key);
            self.doc.metadata.remove(&e.key);
            if !self.pending_expired.contains(e) {
                self.pending_expired.push(e.clone());
            }
        }
        self.latest = Some(r);
        self.republish()
            .expect("a report was just stored, so there is one to publish")
    }

    /// The latest report again (with every undelivered expiry), e.g. after a reconnect.
    pub fn republish(&mut self) -> Option<PublishReported> {
        let r = self.latest.as_ref()?;
        self.generation += 1;
        let update = ReportedUpdate {
            v: PROTOCOL_VERSION,
            state: ReportedState {
                reported: r.reported.clone().into_iter().collect(),
            },
            applied_version: r.applied_version,
            settings: r.settings.clone(),
            expired: self.pending_expired.clone(),
            schedule: r.schedule.clone(),
            timestamp: r.ts,
            client_token: None,
        };
        self.sent
            .insert(self.generation, self.pending_expired.clone());
        Some(PublishReported {
            generation: self.generation,
            update,
        })
    }

    /// The broker acknowledged `generation`: its expiries reached the cloud. Returns
    /// whether the pending list changed.
    pub fn on_delivered(&mut self, generation: u64) -> bool {
        let Some(delivered) = self.sent.remove(&generation) else {
            return false;
        };
        self.sent.retain(|g, _| *g > generation);
        let before = self.pending_expired.len();
        self.pending_expired.retain(|e| !delivered.contains(e));
        before != self.pending_expired.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shiki_proto::decode;

    fn golden<T: serde::de::DeserializeOwned>(name: &str) -> T {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../proto/examples")
            .join(name);
        decode(&std::fs::read(path).expect("golden file")).expect("golden decodes")
    }

    fn report(expired: Vec<ExpiredOverride>) -> ControlReport {
        ControlReport {
            ts: Utc::now(),
            reported: [("chw_setpoint_c".to_owned(), serde_json::json!(7.5))].into(),
            settings: BTreeMap::new(),
            applied_version: Some(12),
            expired,
            schedule: None,
        }
    }

    #[test]
    fn a_document_becomes_overrides_with_their_until() {
        let mut m = ShadowModel::default();
        let Applied::Changed(o) = m.on_document(golden("shadow-document.json")) else {
            panic!("not applied")
        };
        assert_eq!(o.desired_version, 12);
        let chw = &o.overrides["chw_setpoint_c"];
        assert_eq!(chw.value, serde_json::json!(7.5));
        assert!(chw.until.is_some());
        assert_eq!(o.overrides["saving"].until, None);
    }

    #[test]
    fn a_delta_merges_and_null_removes_and_stale_versions_are_ignored() {
        let mut m = ShadowModel::default();
        m.on_document(golden("shadow-document.json"));
        m.doc
            .desired
            .insert("demand_limit_pct".into(), serde_json::json!(80));
        let delta: ShadowDelta = golden("shadow-delta.json");
        let Applied::Changed(o) = m.on_delta(delta.clone()) else {
            panic!("not applied")
        };
        assert!(
            !o.overrides.contains_key("demand_limit_pct"),
            "null removes"
        );
        assert!(o.overrides.contains_key("saving"), "untouched keys stay");
        let mut old = delta;
        old.version = 3;
        assert_eq!(m.on_delta(old), Applied::Stale { have: 12, got: 3 });
    }

    #[test]
    fn expired_overrides_are_resent_until_a_report_carrying_them_is_delivered() {
        let mut m = ShadowModel::default();
        m.on_document(golden("shadow-document.json"));
        let exp = ExpiredOverride {
            key: "chw_setpoint_c".into(),
            at: Utc::now(),
            desired_version: 12,
        };
        let first = m.on_report(report(vec![exp.clone()]));
        assert_eq!(first.update.expired, vec![exp.clone()]);
        assert!(!m.overrides().overrides.contains_key("chw_setpoint_c"));
        // Link dropped before the PUBACK: the next report still carries it.
        let second = m.on_report(report(vec![]));
        assert_eq!(second.update.expired, vec![exp.clone()]);
        assert!(m.on_delivered(second.generation));
        assert!(m.pending_expired.is_empty());
        assert!(
            !m.on_delivered(first.generation),
            "older generation is forgotten"
        );
        let third = m.republish().expect("latest report");
        assert!(third.update.expired.is_empty());
    }
}
