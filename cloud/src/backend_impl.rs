//! The admin API's [`Backend`] on top of the device registry and the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use actix::Addr;
use futures::FutureExt;
use shiki_proto::DeviceId;

use crate::api::{
    self, Artifact, ArtifactPut, Backend, BackendError, BackendFuture, DeviceSummary, EventRow,
    KeyVerification, LatencySummary, MetricsSnapshot, NewToken, PatchOutcome, TelemetryRow,
    TimeRange, TokenInfo,
};
use crate::device::{
    DesiredChange, DesiredError, DeviceActor, DeviceMetrics, DeviceView, GetBrief, ListDevices,
    LookupDevice, Registry, RegistryError,
};
use crate::ingest::IngestStats;
use crate::ota::JobsActor;
use crate::schedule::{
    GetScheduleView, PutSchedule, PutScheduleResponse, ScheduleView, SetError, SlotChoice,
};
use crate::store::{self, ArtifactRecord, Store, StoreError, TimeQuery, TokenRecord, Write};

/// The real backend.
pub struct CloudBackend {
    registry: Addr<Registry>,
    jobs: Addr<JobsActor>,
    store: Arc<dyn Store>,
    /// Tokens by hash, served from memory (every API request looks one up).
    tokens: RwLock<HashMap<String, TokenRecord>>,
    ingest: Arc<IngestStats>,
    devices: Arc<DeviceMetrics>,
    rate: Mutex<(Instant, u64, f64)>,
    /// Serialises artifact puts, so the check of a version and its record are one step.
    artifact_puts: tokio::sync::Mutex<()>,
    /// Live device connections through the embedded broker's front.
    sessions: Arc<crate::broker::DeviceSessions>,
    /// What the front refused (embedded broker only).
    front: Option<Arc<crate::broker::FrontStats>>,
    /// On a cluster node: who owns which device, and the settings to read a device owned
    /// elsewhere from the store.
    cluster: Option<(
        Arc<crate::cluster::ClusterView>,
        crate::device::DeviceConfig,
    )>,
}

impl std::fmt::Debug for CloudBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudBackend").finish_non_exhaustive()
    }
}

fn internal(e: StoreError) -> BackendError {
    BackendError::Internal(e.to_string())
}

fn query(range: TimeRange, limit: usize) -> TimeQuery {
    TimeQuery {
        from: range.from,
        to: range.to,
        limit: Some(limit),
        newest_first: range.newest_first,
    }
}

impl CloudBackend {
    pub fn new(
        registry: Addr<Registry>,
        jobs: Addr<JobsActor>,
        store: Arc<dyn Store>,
        ingest: Arc<IngestStats>,
        devices: Arc<DeviceMetrics>,
    ) -> Result<Self, StoreError> {
        let tokens = store
            .tokens()?
            .into_iter()
            .map(|t| (t.hash.clone(), t))
            .collect();
        Ok(Self {
            registry,
            jobs,
            store,
            tokens: RwLock::new(tokens),
            ingest,
            devices,
            rate: Mutex::new((Instant::now(), 0, 0.0)),
            artifact_puts: tokio::sync::Mutex::new(()),
            sessions: Arc::default(),
            front: None,
            cluster: None,
        })
    }

    /// A cluster node's backend: requests for devices owned elsewhere are forwarded (see
    /// [`api::Backend::owner`]), the device list joins every node's devices from the store,
    /// and API tokens are read from the store (another node may have created or revoked
    /// one).
    pub fn with_cluster(
        mut self,
        view: Arc<crate::cluster::ClusterView>,
        cfg: crate::device::DeviceConfig,
    ) -> Self {
        self.cluster = Some((view, cfg));
        self
    }

    /// Briefs of the devices the store knows that no actor here runs (a cluster node:
    /// devices owned by the others), read from their stored state.
    async fn stored_briefs(
        &self,
        local: std::collections::HashSet<DeviceId>,
    ) -> Result<Vec<crate::device::DeviceBrief>, BackendError> {
        let Some((_, cfg)) = &self.cluster else {
            return Ok(Vec::new());
        };
        let (store, cfg) = (self.store.clone(), *cfg);
        tokio::task::spawn_blocking(move || {
            let mut briefs = Vec::new();
            for id in store.devices()? {
                if local.contains(&id) {
                    continue;
                }
                let snapshot = store.device(&id)?;
                let verifications = store.verifications(&id)?;
                let state =
                    crate::device::DeviceState::restore(id, cfg, snapshot, verifications, None);
                briefs.push(state.brief());
            }
            Ok::<_, StoreError>(briefs)
        })
        .await
        .map_err(|e| BackendError::Unavailable(e.to_string()))?
        .map_err(internal)
    }

    /// Counts of the devices' front, for `/metrics`.
    pub fn with_front_stats(mut self, stats: Arc<crate::broker::FrontStats>) -> Self {
        self.front = Some(stats);
        self
    }

    /// Closes the live connections of a device whose password changes through `sessions`
    /// (the embedded broker's front).
    pub fn with_sessions(mut self, sessions: Arc<crate::broker::DeviceSessions>) -> Self {
        self.sessions = sessions;
        self
    }

    pub(crate) fn in_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn sessions(&self) -> &crate::broker::DeviceSessions {
        &self.sessions
    }

    pub(crate) fn registry(&self) -> &Addr<Registry> {
        &self.registry
    }

    pub(crate) fn jobs(&self) -> &Addr<JobsActor> {
        &self.jobs
    }

    /// The actor of a known device (`NotFound` otherwise).
    async fn actor(&self, id: &DeviceId) -> Result<Addr<DeviceActor>, BackendError> {
        match self.registry.send(LookupDevice(id.clone())).await {
            Ok(Some(a)) => Ok(a),
            Ok(None) => Err(BackendError::NotFound),
            Err(e) => Err(BackendError::Unavailable(e.to_string())),
        }
    }

    async fn known(&self, id: &DeviceId) -> Result<(), BackendError> {
        match self.registry.send(LookupDevice(id.clone())).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(BackendError::NotFound),
            Err(e) => Err(BackendError::Unavailable(e.to_string())),
        }
    }
}

fn key_verification(v: &store::VerificationRecord) -> KeyVerification {
    KeyVerification {
        key: v.key.clone(),
        version: v.version,
        verification: verification(v),
    }
}

fn verification(v: &store::VerificationRecord) -> api::Verification {
    use store::{FailureReason, VerificationOutcome as O};
    let (outcome, reason, at) = match &v.outcome {
        O::Pending => (api::VerificationOutcome::Pending, None, None),
        O::Verified { at } => (api::VerificationOutcome::Verified, None, Some(*at)),
        O::Failed {
            at,
            reason: r @ FailureReason::Superseded { .. },
        } => (
            api::VerificationOutcome::Superseded,
            Some(r.to_string()),
            Some(*at),
        ),
        O::Failed { at, reason } => (
            api::VerificationOutcome::Failed,
            Some(match reason {
                FailureReason::TimedOut => format!("timed out after {} attempts", v.attempts),
                r => r.to_string(),
            }),
            Some(*at),
        ),
    };
    api::Verification {
        outcome,
        reason,
        at,
        attempts: v.attempts,
    }
}

fn view(v: DeviceView) -> api::DeviceView {
    api::DeviceView {
        id: v.id,
        software_version: v.status.as_ref().and_then(|s| s.software_version.clone()),
        status: v.status,
        online: v.online,
        last_seen: v.last_seen,
        desired: v.desired,
        reported: v.reported,
        delta: v.delta,
        version: v.version,
        applied_version: v.applied_version,
        metadata: v.metadata,
        settings: v.settings,
        last_telemetry: v.last_telemetry,
        last_seq: (v.last_seq > 0).then_some(v.last_seq),
        pending_verifications: v
            .pending_verifications
            .iter()
            .map(key_verification)
            .collect(),
        last_verification: v.last_verification.as_ref().map(key_verification),
        catalog: v.catalog,
    }
}

fn history_entry(h: store::HistoryItem) -> api::HistoryEntry {
    let e = h.entry;
    api::HistoryEntry {
        ts: e.ts,
        actor: api::AuthorView::from(&e.actor),
        side: match e.side {
            store::Side::Desired => api::ShadowSide::Desired,
            store::Side::Reported => api::ShadowSide::Reported,
        },
        key: e.key,
        old: (!e.old.is_null()).then_some(e.old),
        new: (!e.new.is_null()).then_some(e.new),
        version: e.version,
        comment: e.comment,
        verification: h.verification.as_ref().map(verification),
    }
}

fn artifact(a: ArtifactRecord) -> Artifact {
    Artifact {
        version: a.version,
        sha256: a.sha256,
        size: a.size,
        signature: a.signature,
        uploaded_at: a.uploaded_at,
        uploaded_by: a.uploaded_by,
    }
}

fn registry_error(e: RegistryError) -> BackendError {
    match e {
        RegistryError::UnknownDevice(_) => BackendError::NotFound,
        RegistryError::ActorGone(d) => {
            BackendError::Unavailable(format!("device actor {d} is gone"))
        }
        RegistryError::Desired(DesiredError::Conflict(c)) => BackendError::VersionConflict {
            expected: c.expected,
            current: c.current,
        },
        RegistryError::Desired(DesiredError::Empty) => BackendError::Invalid {
            key: "settings".into(),
            reason: "must name at least one setting".into(),
        },
        RegistryError::Desired(d) => BackendError::Invalid {
            key: d.key().unwrap_or("settings").to_owned(),
            reason: d.to_string(),
        },
    }
}

impl Backend for CloudBackend {
    fn list_devices(&self) -> BackendFuture<'_, Vec<DeviceSummary>> {
        async move {
            let devices = self
                .registry
                .send(ListDevices)
                .await
                .map_err(|e| BackendError::Unavailable(e.to_string()))?;
            // The brief of each (no shadow cloned, no sample decoded); the API adds the
            // newest sample's values for the page it shows.
            let mut briefs: Vec<_> =
                futures::future::join_all(devices.iter().map(|(_, a)| a.send(GetBrief)))
                    .await
                    .into_iter()
                    .filter_map(Result::ok)
                    .collect();
            briefs.extend(
                self.stored_briefs(devices.into_iter().map(|(id, _)| id).collect())
                    .await?,
            );
            Ok(briefs
                .into_iter()
                .map(|b| DeviceSummary {
                    id: b.id,
                    online: b.online,
                    last_seen: b.last_seen,
                    shadow_version: b.version,
                    pending_verifications: u32::try_from(b.pending_verifications)
                        .unwrap_or(u32::MAX),
                    software_version: b.software_version,
                    last_sample_at: None,
                    tenant: None,
                    state_since: DeviceSummary::state_since(b.online, b.status_ts, b.last_seen),
                    last_values: Default::default(),
                })
                .collect())
        }
        .boxed_local()
    }

    fn device(&self, id: DeviceId) -> BackendFuture<'_, Option<api::DeviceView>> {
        async move {
            Registry::view(&self.registry, id)
                .await
                .map(|v| v.map(view))
                .map_err(registry_error)
        }
        .boxed_local()
    }

    fn patch_desired(
        &self,
        id: DeviceId,
        change: DesiredChange,
        author: store::Author,
    ) -> BackendFuture<'_, PatchOutcome> {
        async move {
            let version = Registry::change_desired(&self.registry, id, change, author)
                .await
                .map_err(registry_error)?;
            Ok(PatchOutcome { version })
        }
        .boxed_local()
    }

    fn history(
        &self,
        id: DeviceId,
        range: TimeRange,
        limit: usize,
    ) -> BackendFuture<'_, Vec<api::HistoryEntry>> {
        async move {
            self.known(&id).await?;
            let items = self
                .store
                .history(&id, &query(range, limit))
                .map_err(internal)?;
            Ok(items.into_iter().map(history_entry).collect())
        }
        .boxed_local()
    }

    fn telemetry(
        &self,
        id: DeviceId,
        range: TimeRange,
        limit: usize,
    ) -> BackendFuture<'_, Vec<TelemetryRow>> {
        async move {
            self.known(&id).await?;
            let mut samples = self
                .store
                .telemetry(&id, &query(range, limit))
                .map_err(internal)?;
            let catalog = self
                .store
                .device(&id)
                .map_err(internal)?
                .and_then(|d| d.catalog);
            for s in &mut samples {
                crate::device::at_resolution(s, catalog.as_ref());
            }
            Ok(samples)
        }
        .boxed_local()
    }

    fn events(
        &self,
        id: DeviceId,
        range: TimeRange,
        limit: usize,
    ) -> BackendFuture<'_, Vec<EventRow>> {
        async move {
            self.known(&id).await?;
            self.store
                .events(&id, &query(range, limit))
                .map_err(internal)
        }
        .boxed_local()
    }

    fn create_token(&self, token: NewToken) -> BackendFuture<'_, TokenInfo> {
        async move {
            let exists = self
                .tokens
                .read()
                .map_err(|_| BackendError::Internal("token cache poisoned".into()))?
                .values()
                .any(|t| t.name == token.name);
            if exists {
                return Err(BackendError::AlreadyExists(format!(
                    "token {:?}",
                    token.name
                )));
            }
            let rec = TokenRecord {
                hash: token.hash.clone(),
                name: token.name.clone(),
                role: token.role,
                created: token.created_at,
                created_by: token.created_by.clone(),
                tenant: token.tenant.clone(),
            };
            self.store
                .submit(vec![Write::PutToken(Box::new(rec.clone()))])
                .await
                .map_err(internal)?;
            if let Ok(mut t) = self.tokens.write() {
                t.insert(rec.hash.clone(), rec);
            }
            Ok(TokenInfo {
                name: token.name,
                role: token.role,
                created_at: token.created_at,
                created_by: token.created_by,
                tenant: token.tenant,
            })
        }
        .boxed_local()
    }

    fn list_tokens(&self) -> BackendFuture<'_, Vec<TokenInfo>> {
        async move {
            let mut list: Vec<TokenInfo> = self
                .tokens
                .read()
                .map_err(|_| BackendError::Internal("token cache poisoned".into()))?
                .values()
                .map(|t| TokenInfo {
                    name: t.name.clone(),
                    role: t.role,
                    created_at: t.created,
                    created_by: t.created_by.clone(),
                    tenant: t.tenant.clone(),
                })
                .collect();
            list.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(list)
        }
        .boxed_local()
    }

    fn revoke_token(&self, name: String) -> BackendFuture<'_, ()> {
        async move {
            let hash = self
                .tokens
                .read()
                .map_err(|_| BackendError::Internal("token cache poisoned".into()))?
                .values()
                .find(|t| t.name == name)
                .map(|t| t.hash.clone())
                .ok_or(BackendError::NotFound)?;
            self.store
                .submit(vec![Write::RevokeToken { hash: hash.clone() }])
                .await
                .map_err(internal)?;
            if let Ok(mut t) = self.tokens.write() {
                t.remove(&hash);
            }
            Ok(())
        }
        .boxed_local()
    }

    fn token_by_hash(&self, hash: String) -> BackendFuture<'_, Option<api::TokenRecord>> {
        let record = |r: &TokenRecord| api::TokenRecord {
            name: r.name.clone(),
            role: r.role,
            tenant: r.tenant.clone(),
        };
        if self.cluster.is_some() {
            // Another node may have created or revoked it: the store decides.
            let store = self.store.clone();
            return async move {
                let found = tokio::task::spawn_blocking(move || store.token(&hash))
                    .await
                    .map_err(|e| BackendError::Unavailable(e.to_string()))?
                    .map_err(internal)?;
                Ok(found.as_ref().map(record))
            }
            .boxed_local();
        }
        let found = self
            .tokens
            .read()
            .ok()
            .and_then(|t| t.get(&hash).map(record));
        async move { Ok(found) }.boxed_local()
    }

    fn node_id(&self) -> String {
        match &self.cluster {
            Some((view, _)) => view.node_id.clone(),
            None => "standalone".to_owned(),
        }
    }

    fn owner(&self, id: &DeviceId) -> api::cluster::DeviceOwner {
        match &self.cluster {
            Some((view, _)) => view.owner_of(id),
            None => api::cluster::DeviceOwner::Here,
        }
    }

    fn jobs_owner(&self) -> api::cluster::DeviceOwner {
        match &self.cluster {
            Some((view, _)) => view.jobs_owner(),
            None => api::cluster::DeviceOwner::Here,
        }
    }

    fn cluster(&self) -> BackendFuture<'_, api::cluster::ClusterStatus> {
        async move {
            let Some((view, _)) = &self.cluster else {
                let devices = self
                    .registry
                    .send(crate::device::DeviceCount)
                    .await
                    .map_err(|e| BackendError::Unavailable(e.to_string()))?;
                return Ok(api::cluster::ClusterStatus {
                    node_id: self.node_id(),
                    nodes: vec![api::cluster::ClusterNodeStatus {
                        node_id: self.node_id(),
                        devices: u32::try_from(devices).unwrap_or(u32::MAX),
                        leases: 0,
                        drives_jobs: true,
                        last_seen: chrono::Utc::now(),
                        live: true,
                        api_url: String::new(),
                    }],
                });
            };
            let snap = view.snapshot().ok_or_else(|| {
                BackendError::Unavailable("this node has not read the cluster's leases yet".into())
            })?;
            let jobs_driver = snap
                .leases
                .iter()
                .find(|l| l.shard == store::JOBS_LEASE && l.expires_at > snap.now)
                .and_then(|l| l.owner.clone());
            Ok(api::cluster::ClusterStatus {
                node_id: view.node_id.clone(),
                nodes: snap
                    .nodes
                    .iter()
                    .map(|n| api::cluster::ClusterNodeStatus {
                        node_id: n.node_id.clone(),
                        devices: n.devices,
                        leases: n.leases,
                        drives_jobs: jobs_driver.as_deref() == Some(n.node_id.as_str()),
                        last_seen: n.last_seen,
                        live: snap.is_live(n, view.ttl),
                        api_url: n.api_url.clone(),
                    })
                    .collect(),
            })
        }
        .boxed_local()
    }

    fn put_schedule(
        &self,
        id: DeviceId,
        slot: SlotChoice,
        document: serde_json::Value,
        author: store::Author,
    ) -> BackendFuture<'_, PutScheduleResponse> {
        async move {
            let addr = self.actor(&id).await?;
            let put = PutSchedule {
                slot,
                document,
                actor: author,
            };
            match addr.send(put).await {
                Ok(Ok(r)) => Ok(r),
                Ok(Err(SetError::Malformed(reason))) => {
                    Err(BackendError::MalformedSchedule(reason))
                }
                Ok(Err(SetError::Invalid { problems })) => {
                    Err(BackendError::InvalidSchedule { problems })
                }
                Err(e) => Err(BackendError::Unavailable(format!(
                    "device actor {id} did not answer: {e}"
                ))),
            }
        }
        .boxed_local()
    }

    fn schedule(&self, id: DeviceId) -> BackendFuture<'_, ScheduleView> {
        async move {
            let addr = self.actor(&id).await?;
            addr.send(GetScheduleView).await.map_err(|e| {
                BackendError::Unavailable(format!("device actor {id} did not answer: {e}"))
            })
        }
        .boxed_local()
    }

    fn put_artifact(&self, upload: Artifact) -> BackendFuture<'_, ArtifactPut> {
        async move {
            let _one_at_a_time = self.artifact_puts.lock().await;
            let stored = self.store.artifact(&upload.version).map_err(internal)?;
            let put = ArtifactPut::judge(stored.map(artifact), &upload);
            if put == ArtifactPut::Created {
                let record = ArtifactRecord {
                    version: upload.version,
                    sha256: upload.sha256,
                    size: upload.size,
                    signature: upload.signature,
                    uploaded_at: upload.uploaded_at,
                    uploaded_by: upload.uploaded_by,
                };
                self.store
                    .submit(vec![Write::PutArtifact(Box::new(record))])
                    .await
                    .map_err(internal)?;
            }
            Ok(put)
        }
        .boxed_local()
    }

    fn artifacts(&self) -> BackendFuture<'_, Vec<Artifact>> {
        let listed = self.store.artifacts().map_err(internal);
        async move { Ok(listed?.into_iter().map(artifact).collect()) }.boxed_local()
    }

    fn create_job(
        &self,
        job: api::NewJob,
        author: store::Author,
    ) -> BackendFuture<'_, api::JobCreated> {
        self.create_job_now(job, author).boxed_local()
    }

    fn list_jobs(&self) -> BackendFuture<'_, Vec<api::JobView>> {
        self.list_jobs_now().boxed_local()
    }

    fn job(&self, id: shiki_proto::JobId) -> BackendFuture<'_, api::JobView> {
        self.job_now(id).boxed_local()
    }

    fn cancel_job(
        &self,
        id: shiki_proto::JobId,
        author: store::Author,
    ) -> BackendFuture<'_, api::JobView> {
        self.cancel_job_now(id, author).boxed_local()
    }

    fn register_device(
        &self,
        registration: api::NewRegistration,
    ) -> BackendFuture<'_, api::Registration> {
        self.register_device_now(registration).boxed_local()
    }

    fn set_device_password(
        &self,
        id: DeviceId,
        password_hash: String,
        at: chrono::DateTime<chrono::Utc>,
    ) -> BackendFuture<'_, api::Registration> {
        self.set_device_password_now(id, password_hash, at)
            .boxed_local()
    }

    fn device_tenant(&self, id: DeviceId) -> BackendFuture<'_, Option<String>> {
        let found = self
            .store
            .registered(&id)
            .map(|r| r.and_then(|r| r.tenant))
            .map_err(internal);
        async move { found }.boxed_local()
    }

    fn set_device_tenant(
        &self,
        id: DeviceId,
        tenant: Option<String>,
    ) -> BackendFuture<'_, api::Registration> {
        self.set_device_tenant_now(id, tenant).boxed_local()
    }

    fn retire_device(
        &self,
        id: DeviceId,
        at: chrono::DateTime<chrono::Utc>,
    ) -> BackendFuture<'_, api::Registration> {
        self.retire_device_now(id, at).boxed_local()
    }

    fn metrics(&self) -> BackendFuture<'_, MetricsSnapshot> {
        async move {
            let devices = self
                .registry
                .send(crate::device::DeviceCount)
                .await
                .map_err(|e| BackendError::Unavailable(e.to_string()))?;
            let s = self.store.stats();
            let accepted = self.ingest.accepted_total();
            let rate = {
                let mut r = self
                    .rate
                    .lock()
                    .map_err(|_| BackendError::Internal("rate lock poisoned".into()))?;
                let secs = r.0.elapsed().as_secs_f64();
                if secs >= 1.0 {
                    r.2 = (accepted.saturating_sub(r.1)) as f64 / secs;
                    *r = (Instant::now(), accepted, r.2);
                }
                r.2
            };
            let d = &self.devices;
            let mut verifications = BTreeMap::new();
            verifications.insert(
                api::VerificationOutcome::Verified,
                d.verified.load(Ordering::Relaxed),
            );
            verifications.insert(
                api::VerificationOutcome::Failed,
                d.failed.load(Ordering::Relaxed),
            );
            verifications.insert(
                api::VerificationOutcome::Superseded,
                d.superseded.load(Ordering::Relaxed),
            );
            Ok(MetricsSnapshot {
                devices: devices as u64,
                devices_online: d.online.load(Ordering::Relaxed).max(0) as u64,
                ingest_messages_total: self.ingest.accepted_by_channel(),
                ingest_samples_total: s.samples_stored,
                ingest_rate_per_second: rate,
                dedup_dropped_total: s.duplicates_dropped,
                malformed_dropped_total: self.ingest.dropped_total(),
                verifications_total: verifications,
                verifications_pending: d.pending_verifications.load(Ordering::Relaxed).max(0)
                    as u64,
                store_commit: LatencySummary {
                    count: s.commits,
                    sum_seconds: s.total_commit_micros as f64 / 1e6,
                    quantiles: Vec::new(),
                },
                store_commit_failures_total: s.failed_commits,
                ingest_unstored_total: self.ingest.unstored_total(),
                ingest_implausible_time_total: self.ingest.implausible_time_total(),
                store_quarantined_rows_total: s.quarantined_rows,
                store_fenced_total: s.fenced_submissions,
                cluster_leases: self
                    .cluster
                    .as_ref()
                    .map_or(0, |(view, _)| view.leases_held() as u64),
                mqtt_connections_refused_total: self
                    .front
                    .as_ref()
                    .map(|f| {
                        f.refused_by_reason()
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v))
                            .collect()
                    })
                    .unwrap_or_default(),
                mqtt_connections_accepted_total: self
                    .front
                    .as_ref()
                    .map_or(0, |f| f.accepted.load(Ordering::Relaxed)),
                mqtt_publishes_refused_total: self
                    .front
                    .as_ref()
                    .map_or(0, |f| f.publishes_refused.load(Ordering::Relaxed)),
                mqtt_subscriptions_refused_total: self
                    .front
                    .as_ref()
                    .map_or(0, |f| f.subscriptions_refused.load(Ordering::Relaxed)),
                mqtt_devices_connected: self.sessions.connected() as u64,
            })
        }
        .boxed_local()
    }
}
