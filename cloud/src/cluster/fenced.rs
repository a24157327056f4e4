//! A device actor's store in a cluster: every write it submits carries the fence of its
//! shard's lease, so a node that lost the lease cannot overwrite the new owner's state.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use shiki_proto::{DeviceId, Event, Sample};

use crate::schedule::DeviceSchedules;
use crate::store::{
    ArtifactRecord, Commit, DeviceSnapshot, Fence, HistoryItem, JobRecord, RegistryRecord, SeqGap,
    Store, StoreError, StoreStats, TimeQuery, TokenRecord, VerificationRecord, Write,
};

/// The node's store, with the lease a device actor was started under.
#[derive(Debug)]
pub struct FencedStore {
    inner: Arc<dyn Store>,
    fence: Fence,
}

impl FencedStore {
    pub fn new(inner: Arc<dyn Store>, fence: Fence) -> Self {
        Self { inner, fence }
    }
}

impl Store for FencedStore {
    fn submit(&self, writes: Vec<Write>) -> Commit {
        self.inner.submit_fenced(self.fence, writes)
    }
    fn submit_fenced(&self, fence: Fence, writes: Vec<Write>) -> Commit {
        self.inner.submit_fenced(fence, writes)
    }
    fn next_id(&self) -> u64 {
        self.inner.next_id()
    }
    fn telemetry(&self, device: &DeviceId, q: &TimeQuery) -> Result<Vec<Sample>, StoreError> {
        self.inner.telemetry(device, q)
    }
    fn last_sample(&self, device: &DeviceId) -> Result<Option<Sample>, StoreError> {
        self.inner.last_sample(device)
    }
    fn telemetry_gaps(&self, device: &DeviceId, max: usize) -> Result<Vec<SeqGap>, StoreError> {
        self.inner.telemetry_gaps(device, max)
    }
    fn events(&self, device: &DeviceId, q: &TimeQuery) -> Result<Vec<Event>, StoreError> {
        self.inner.events(device, q)
    }
    fn history(&self, device: &DeviceId, q: &TimeQuery) -> Result<Vec<HistoryItem>, StoreError> {
        self.inner.history(device, q)
    }
    fn verifications(&self, device: &DeviceId) -> Result<Vec<VerificationRecord>, StoreError> {
        self.inner.verifications(device)
    }
    fn device(&self, device: &DeviceId) -> Result<Option<DeviceSnapshot>, StoreError> {
        self.inner.device(device)
    }
    fn devices(&self) -> Result<Vec<DeviceId>, StoreError> {
        self.inner.devices()
    }
    fn token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.inner.token(hash)
    }
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.inner.tokens()
    }
    fn schedules(&self, device: &DeviceId) -> Result<Option<DeviceSchedules>, StoreError> {
        self.inner.schedules(device)
    }
    fn fleet_last_run(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.inner.fleet_last_run()
    }
    fn artifact(&self, version: &str) -> Result<Option<ArtifactRecord>, StoreError> {
        self.inner.artifact(version)
    }
    fn artifacts(&self) -> Result<Vec<ArtifactRecord>, StoreError> {
        self.inner.artifacts()
    }
    fn jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        self.inner.jobs()
    }
    fn registered(&self, device: &DeviceId) -> Result<Option<RegistryRecord>, StoreError> {
        self.inner.registered(device)
    }
    fn registry(&self) -> Result<Vec<RegistryRecord>, StoreError> {
        self.inner.registry()
    }
    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
}
