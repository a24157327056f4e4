//! The [`Store`] trait on [`RedbStore`]: writes go to the writer thread as a [`Job`], reads
//! run on the caller's thread, each in its own read transaction.

use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use shiki_cloud_model::schedule::DeviceSchedules;
use shiki_proto::{DeviceId, Event, Sample};

use super::RedbStore;
use super::staging;
use super::tables::{
    ARTIFACTS, DEVICES, EVENTS, FLEET_LAST_RUN, HISTORY, JOBS, META, Order, REGISTRY, SCHEDULES,
    STAGING, TELEMETRY, TOKENS, VERIFICATIONS, for_each_row, from_json, open,
};
use crate::{
    ArtifactRecord, Commit, DeviceSnapshot, HistoryEntry, HistoryItem, JobRecord, RegistryRecord,
    SeqGap, Store, StoreError, StoreStats, TimeQuery, TokenRecord, VerificationRecord, Write,
};

impl RedbStore {
    /// Visits the stored samples of `device` as (seq, JSON), oldest or newest first, until
    /// `visit` returns `false`; a failure is one of `op`.
    fn for_each_sample(
        &self,
        op: &'static str,
        device: &DeviceId,
        newest_first: bool,
        visit: impl FnMut(u64, &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        self.read(op, |rtx| {
            let telemetry = open(rtx, TELEMETRY, op)?;
            let staging = open(rtx, STAGING, op)?;
            if newest_first {
                staging::for_each_sample_newest_first(&telemetry, &staging, device.as_str(), visit)
            } else {
                staging::for_each_sample(&telemetry, &staging, device.as_str(), visit)
            }
        })
    }
}

impl Store for RedbStore {
    fn submit(&self, writes: Vec<Write>) -> Commit {
        crate::submit_with(writes, None, |job| match self.tx.lock() {
            Ok(g) => g.as_ref().is_some_and(|tx| tx.send(job).is_ok()),
            Err(_) => false,
        })
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn telemetry(&self, device: &DeviceId, q: &TimeQuery) -> Result<Vec<Sample>, StoreError> {
        let limit = q.limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let visit = |_, body: &[u8]| {
            let s: Sample = from_json("telemetry", body)?;
            if q.contains(s.ts) {
                out.push(s);
            }
            Ok(out.len() < limit)
        };
        self.for_each_sample("telemetry query", device, q.newest_first, visit)?;
        Ok(out)
    }

    fn last_sample(&self, device: &DeviceId) -> Result<Option<Sample>, StoreError> {
        let op = "last sample";
        self.read(op, |rtx| {
            let telemetry = open(rtx, TELEMETRY, op)?;
            let staging = open(rtx, STAGING, op)?;
            staging::newest_sample(&telemetry, &staging, device.as_str())?
                .map(|json| from_json("telemetry", &json))
                .transpose()
        })
    }

    fn telemetry_gaps(&self, device: &DeviceId, max: usize) -> Result<Vec<SeqGap>, StoreError> {
        let mut gaps = Vec::new();
        if max == 0 {
            return Ok(gaps);
        }
        let mut expected = 1u64;
        self.for_each_sample("telemetry gaps", device, false, |seq, _| {
            if seq > expected {
                gaps.push(SeqGap {
                    from: expected,
                    to: seq - 1,
                });
            }
            expected = seq.saturating_add(1);
            Ok(gaps.len() < max)
        })?;
        Ok(gaps)
    }

    fn events(&self, device: &DeviceId, q: &TimeQuery) -> Result<Vec<Event>, StoreError> {
        let op = "events query";
        self.read(op, |rtx| {
            let keep = |e: &Event| q.contains(e.ts);
            let limit = q.limit.unwrap_or(usize::MAX);
            let order = if q.newest_first {
                Order::NewestFirst
            } else {
                Order::OldestFirst
            };
            EVENTS.scan_device(rtx, op, device, order, keep, limit)
        })
    }

    fn history(&self, device: &DeviceId, q: &TimeQuery) -> Result<Vec<HistoryItem>, StoreError> {
        let op = "history query";
        self.read(op, |rtx| {
            let keep = |h: &HistoryEntry| q.contains(h.ts);
            let limit = q.limit.unwrap_or(usize::MAX);
            let entries = HISTORY.scan_device(rtx, op, device, Order::NewestFirst, keep, limit)?;
            let verifications = VERIFICATIONS.open(rtx, op)?;
            entries
                .into_iter()
                .map(|entry| {
                    let verification = match entry.verification_id {
                        Some(id) => {
                            VERIFICATIONS.lookup(&verifications, (device.as_str(), id), op)?
                        }
                        None => None,
                    };
                    Ok(HistoryItem {
                        entry,
                        verification,
                    })
                })
                .collect()
        })
    }

    fn verifications(&self, device: &DeviceId) -> Result<Vec<VerificationRecord>, StoreError> {
        let op = "verifications query";
        self.read(op, |rtx| {
            VERIFICATIONS.scan_device(rtx, op, device, Order::OldestFirst, |_| true, usize::MAX)
        })
    }

    fn device(&self, device: &DeviceId) -> Result<Option<DeviceSnapshot>, StoreError> {
        let op = "device query";
        self.read(op, |rtx| DEVICES.get(rtx, device.as_str(), op))
    }

    fn devices(&self) -> Result<Vec<DeviceId>, StoreError> {
        let op = "device list";
        self.read(op, |rtx| {
            let mut out = Vec::new();
            for_each_row(&DEVICES.open(rtx, op)?, op, |k, _| {
                match DeviceId::new(k.value()) {
                    Ok(id) => out.push(id),
                    Err(e) => tracing::warn!(error = %e, "skipping invalid stored device id"),
                }
                Ok(true)
            })?;
            Ok(out)
        })
    }

    fn token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let op = "token lookup";
        self.read(op, |rtx| TOKENS.get(rtx, hash, op))
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let op = "token list";
        self.read(op, |rtx| TOKENS.all(rtx, op))
    }

    fn schedules(&self, device: &DeviceId) -> Result<Option<DeviceSchedules>, StoreError> {
        let op = "schedule query";
        self.read(op, |rtx| SCHEDULES.get(rtx, device.as_str(), op))
    }

    fn fleet_last_run(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let op = "fleet last run query";
        self.read(op, |rtx| META.get(rtx, FLEET_LAST_RUN, op))
    }

    fn artifact(&self, version: &str) -> Result<Option<ArtifactRecord>, StoreError> {
        let op = "artifact lookup";
        self.read(op, |rtx| ARTIFACTS.get(rtx, version, op))
    }

    fn artifacts(&self) -> Result<Vec<ArtifactRecord>, StoreError> {
        let op = "artifact list";
        let mut all: Vec<ArtifactRecord> = self.read(op, |rtx| ARTIFACTS.all(rtx, op))?;
        all.sort_by(|a, b| {
            b.uploaded_at
                .cmp(&a.uploaded_at)
                .then_with(|| a.version.cmp(&b.version))
        });
        Ok(all)
    }

    fn jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        let op = "job list";
        self.read(op, |rtx| JOBS.all(rtx, op))
    }

    fn registered(&self, device: &DeviceId) -> Result<Option<RegistryRecord>, StoreError> {
        let op = "registry lookup";
        self.read(op, |rtx| REGISTRY.get(rtx, device.as_str(), op))
    }

    fn registry(&self) -> Result<Vec<RegistryRecord>, StoreError> {
        let op = "registry list";
        self.read(op, |rtx| REGISTRY.all(rtx, op))
    }

    fn stats(&self) -> StoreStats {
        self.counters.stats()
    }

    fn close(&self) {
        RedbStore::close(self);
    }
}
