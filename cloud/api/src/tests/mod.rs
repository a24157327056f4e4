//! API tests without a socket (`actix_web::test`), against an in-memory fake backend that
//! lives only here; `shiki-cloud`'s `backend_tests` run the app over the real backend.

mod artifact_tests;
mod auth_tests;
mod device_tests;
mod hostile_tests;
mod job_tests;
mod ops_tests;
mod registry_tests;
mod schedule_tests;
mod tenant_tests;
mod token_tests;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use actix_web::test::TestRequest;
use chrono::{DateTime, Duration, TimeZone, Utc};
use futures::FutureExt;
use serde_json::{Value, json};
use shiki_proto::{
    Catalog, DeviceId, Event, EventKind, PointInfo, PointRole, Sample, Severity, ValueKind,
};

use super::*;
use crate::auth::{Role, hash_token};
use shiki_cloud_model::Author;

/// Token secrets the harness creates, one per role.
pub(super) const VIEWER: &str =
    "shiki_viewer000000000000000000000000000000000000000000000000000000";
pub(super) const OPERATOR: &str =
    "shiki_operator0000000000000000000000000000000000000000000000000000";
pub(super) const ADMIN: &str = "shiki_admin0000000000000000000000000000000000000000000000000000000";
/// Admin tokens of tenant `acme` (which owns `plant-01`) and of tenant `globex`.
pub(super) const ACME_ADMIN: &str =
    "shiki_acmeadmin00000000000000000000000000000000000000000000000000";
pub(super) const GLOBEX_ADMIN: &str =
    "shiki_globexadmin000000000000000000000000000000000000000000000000";
/// `SHIKI_ADMIN_TOKEN` in tests that configure it.
pub(super) const ENV_ADMIN: &str = "env-admin-token-0123456789";

/// "Now" for every test.
pub(super) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0)
        .single()
        .expect("valid date")
}

// ---------------------------------------------------------------------------------------
// fake backend

#[derive(Default)]
pub(super) struct Data {
    pub devices: BTreeMap<DeviceId, DeviceView>,
    pub history: Vec<(DeviceId, HistoryEntry)>,
    pub telemetry: Vec<(DeviceId, Sample)>,
    pub events: Vec<(DeviceId, Event)>,
    /// name → (hash, info)
    pub tokens: BTreeMap<String, (String, TokenInfo)>,
    pub metrics: MetricsSnapshot,
    /// The last desired change the API passed on.
    pub last_patch: Option<(DeviceId, DesiredChange, Author)>,
    /// Schedule views by device (absent: no schedule yet).
    pub schedules: BTreeMap<DeviceId, crate::ScheduleView>,
    /// The last schedule put the API passed on.
    pub last_schedule_put: Option<(DeviceId, crate::SlotChoice, Value, Author)>,
    /// OTA artifact records, in upload order.
    pub artifacts: Vec<Artifact>,
    /// Artifact versions uploaded.
    pub artifact_versions: Vec<String>,
    /// Jobs by id.
    pub jobs: BTreeMap<String, JobView>,
    /// Device registrations with their password hashes.
    pub registry: BTreeMap<DeviceId, (Option<String>, crate::Registration)>,
}

pub(super) struct FakeBackend {
    data: Mutex<Data>,
    /// When set, every call answers `Unavailable`.
    pub down: AtomicBool,
    /// Holds the artifacts dir of the API built over this backend (lives as long as it).
    pub dir: tempfile::TempDir,
}

impl Default for FakeBackend {
    fn default() -> Self {
        Self {
            data: Mutex::default(),
            down: AtomicBool::default(),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
}

impl FakeBackend {
    pub(super) fn data(&self) -> MutexGuard<'_, Data> {
        self.data.lock().expect("fake backend lock")
    }

    fn check(&self) -> Result<(), BackendError> {
        if self.down.load(Ordering::SeqCst) {
            Err(BackendError::Unavailable("store closed".into()))
        } else {
            Ok(())
        }
    }

    fn answer<T: 'static>(
        &self,
        f: impl FnOnce(&mut Data) -> Result<T, BackendError>,
    ) -> BackendFuture<'_, T> {
        let result = self.check().and_then(|()| f(&mut self.data()));
        async move { result }.boxed_local()
    }
}

fn known(d: &Data, id: &DeviceId) -> Result<(), BackendError> {
    if d.devices.contains_key(id) {
        Ok(())
    } else {
        Err(BackendError::NotFound)
    }
}

fn validate(catalog: Option<&Catalog>, key: &str, value: &Value) -> Result<(), BackendError> {
    let invalid = |reason: &str| BackendError::Invalid {
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    let catalog = catalog.ok_or_else(|| invalid("no catalog received from the device yet"))?;
    let point = catalog.point(key).ok_or_else(|| invalid("unknown point"))?;
    if !point.writable {
        return Err(invalid("read-only point"));
    }
    if value.is_null() {
        return Ok(());
    }
    match point.kind {
        ValueKind::Number => {
            let v = value.as_f64().ok_or_else(|| invalid("not a number"))?;
            if point.min.is_some_and(|m| v < m) || point.max.is_some_and(|m| v > m) {
                return Err(invalid("outside the point's limits"));
            }
            Ok(())
        }
        ValueKind::Enum => match value.as_str() {
            Some(s) if point.options.iter().any(|o| o == s) => Ok(()),
            _ => Err(invalid("not one of the point's options")),
        },
        _ => Ok(()),
    }
}

impl Backend for FakeBackend {
    fn list_devices(&self) -> BackendFuture<'_, Vec<DeviceSummary>> {
        self.answer(|d| {
            Ok(d.devices
                .values()
                .rev() // the API sorts by id itself
                .map(|v| DeviceSummary {
                    id: v.id.clone(),
                    online: v.online,
                    last_seen: v.last_seen,
                    shadow_version: v.version,
                    pending_verifications: v.pending_verifications.len() as u32,
                    software_version: v.software_version.clone(),
                    last_sample_at: v.last_telemetry.as_ref().map(|s| s.ts),
                    state_since: DeviceSummary::state_since(
                        v.online,
                        v.status.as_ref().and_then(|s| s.ts),
                        v.last_seen,
                    ),
                    last_values: v
                        .last_telemetry
                        .as_ref()
                        .map(|s| s.values.clone())
                        .unwrap_or_default(),
                    tenant: None,
                })
                .collect())
        })
    }

    fn device(&self, id: DeviceId) -> BackendFuture<'_, Option<DeviceView>> {
        self.answer(move |d| Ok(d.devices.get(&id).cloned()))
    }

    fn patch_desired(
        &self,
        id: DeviceId,
        patch: DesiredChange,
        author: Author,
    ) -> BackendFuture<'_, PatchOutcome> {
        self.answer(move |d| {
            d.last_patch = Some((id.clone(), patch.clone(), author.clone()));
            let view = d.devices.get_mut(&id).ok_or(BackendError::NotFound)?;
            if let Some(expected) = patch.expected_version
                && expected != view.version
            {
                return Err(BackendError::VersionConflict {
                    expected,
                    current: view.version,
                });
            }
            for (k, v) in &patch.settings {
                validate(view.catalog.as_ref(), k, v)?;
            }
            view.version += 1;
            let mut entries = Vec::new();
            for (k, v) in patch.settings {
                let old = if v.is_null() {
                    view.desired.remove(&k)
                } else {
                    view.desired.insert(k.clone(), v.clone())
                };
                entries.push(HistoryEntry {
                    ts: now(),
                    actor: AuthorView::from(&author),
                    side: ShadowSide::Desired,
                    key: k,
                    old,
                    new: (!v.is_null()).then_some(v),
                    version: view.version,
                    comment: patch.comment.clone(),
                    verification: Some(Verification {
                        outcome: VerificationOutcome::Pending,
                        reason: None,
                        at: None,
                        attempts: 0,
                    }),
                });
            }
            let version = view.version;
            d.history
                .extend(entries.into_iter().map(|e| (id.clone(), e)));
            Ok(PatchOutcome { version })
        })
    }

    fn history(
        &self,
        id: DeviceId,
        range: TimeRange,
        limit: usize,
    ) -> BackendFuture<'_, Vec<HistoryEntry>> {
        // Deliberately oldest first: the API must order newest first itself.
        self.answer(move |d| {
            known(d, &id)?;
            let mut rows: Vec<_> = d
                .history
                .iter()
                .filter(|(dev, e)| *dev == id && range.contains(e.ts))
                .map(|(_, e)| e.clone())
                .collect();
            let skip = rows.len().saturating_sub(limit);
            rows.drain(..skip);
            Ok(rows)
        })
    }

    fn telemetry(
        &self,
        id: DeviceId,
        range: TimeRange,
        limit: usize,
    ) -> BackendFuture<'_, Vec<TelemetryRow>> {
        self.answer(move |d| {
            known(d, &id)?;
            let mut rows: Vec<_> = d
                .telemetry
                .iter()
                .filter(|(dev, s)| *dev == id && range.contains(s.ts))
                .map(|(_, s)| s.clone())
                .collect();
            if range.newest_first {
                rows.reverse();
            }
            Ok(rows.into_iter().take(limit).collect())
        })
    }

    fn events(
        &self,
        id: DeviceId,
        range: TimeRange,
        limit: usize,
    ) -> BackendFuture<'_, Vec<EventRow>> {
        self.answer(move |d| {
            known(d, &id)?;
            let mut rows: Vec<_> = d
                .events
                .iter()
                .filter(|(dev, e)| *dev == id && range.contains(e.ts))
                .map(|(_, e)| e.clone())
                .collect();
            if range.newest_first {
                rows.reverse();
            }
            Ok(rows.into_iter().take(limit).collect())
        })
    }

    fn create_token(&self, token: NewToken) -> BackendFuture<'_, TokenInfo> {
        self.answer(move |d| {
            if d.tokens.contains_key(&token.name) {
                return Err(BackendError::AlreadyExists(format!(
                    "token {:?}",
                    token.name
                )));
            }
            let info = TokenInfo {
                name: token.name.clone(),
                role: token.role,
                created_at: token.created_at,
                created_by: token.created_by,
                tenant: token.tenant,
            };
            d.tokens.insert(token.name, (token.hash, info.clone()));
            Ok(info)
        })
    }

    fn list_tokens(&self) -> BackendFuture<'_, Vec<TokenInfo>> {
        self.answer(|d| Ok(d.tokens.values().map(|(_, i)| i.clone()).collect()))
    }

    fn revoke_token(&self, name: String) -> BackendFuture<'_, ()> {
        self.answer(move |d| {
            d.tokens
                .remove(&name)
                .map(|_| ())
                .ok_or(BackendError::NotFound)
        })
    }

    fn token_by_hash(&self, hash: String) -> BackendFuture<'_, Option<TokenRecord>> {
        self.answer(move |d| {
            Ok(d.tokens
                .values()
                .find(|(h, _)| *h == hash)
                .map(|(_, i)| TokenRecord {
                    name: i.name.clone(),
                    role: i.role,
                    tenant: i.tenant.clone(),
                }))
        })
    }

    fn metrics(&self) -> BackendFuture<'_, MetricsSnapshot> {
        self.answer(|d| Ok(d.metrics.clone()))
    }

    fn put_schedule(
        &self,
        id: DeviceId,
        slot: crate::SlotChoice,
        document: Value,
        author: Author,
    ) -> BackendFuture<'_, crate::PutScheduleResponse> {
        self.answer(move |d| schedule_tests::fake_put(d, id, slot, document, author))
    }

    fn put_artifact(&self, artifact: Artifact) -> BackendFuture<'_, ArtifactPut> {
        self.answer(move |d| artifact_tests::fake_put(d, artifact))
    }

    fn artifacts(&self) -> BackendFuture<'_, Vec<Artifact>> {
        // Deliberately oldest first: the API must order newest first itself.
        self.answer(|d| Ok(d.artifacts.clone()))
    }

    fn create_job(&self, job: NewJob, author: Author) -> BackendFuture<'_, JobCreated> {
        self.answer(move |d| job_tests::fake_create(d, job, author))
    }

    fn list_jobs(&self) -> BackendFuture<'_, Vec<JobView>> {
        // In id order: the API must order them newest first itself.
        self.answer(|d| Ok(d.jobs.values().cloned().collect()))
    }

    fn job(&self, id: shiki_proto::JobId) -> BackendFuture<'_, JobView> {
        self.answer(move |d| {
            d.jobs
                .get(id.as_str())
                .cloned()
                .ok_or(BackendError::NotFound)
        })
    }

    fn cancel_job(&self, id: shiki_proto::JobId, author: Author) -> BackendFuture<'_, JobView> {
        self.answer(move |d| job_tests::fake_cancel(d, id.as_str(), &author))
    }

    fn register_device(
        &self,
        new: crate::NewRegistration,
    ) -> BackendFuture<'_, crate::Registration> {
        self.answer(move |d| {
            if d.registry
                .get(&new.id)
                .is_some_and(|(_, r)| r.retired_at.is_none())
            {
                return Err(BackendError::AlreadyExists(format!(
                    "device {:?}",
                    new.id.as_str()
                )));
            }
            let r = crate::Registration {
                id: new.id.clone(),
                tenant: new.tenant,
                created_at: new.at,
                created_by: new.by,
                credentials_at: new.at,
                retired_at: None,
            };
            d.registry
                .insert(new.id, (Some(new.password_hash), r.clone()));
            Ok(r)
        })
    }

    fn set_device_password(
        &self,
        id: DeviceId,
        hash: String,
        at: DateTime<Utc>,
    ) -> BackendFuture<'_, crate::Registration> {
        self.answer(move |d| match d.registry.get_mut(&id) {
            Some((h, r)) if r.retired_at.is_none() => {
                *h = Some(hash);
                r.credentials_at = at;
                Ok(r.clone())
            }
            _ => Err(BackendError::NotFound),
        })
    }

    fn device_tenant(&self, id: DeviceId) -> BackendFuture<'_, Option<String>> {
        self.answer(move |d| Ok(d.registry.get(&id).and_then(|(_, r)| r.tenant.clone())))
    }

    fn set_device_tenant(
        &self,
        id: DeviceId,
        tenant: Option<String>,
    ) -> BackendFuture<'_, crate::Registration> {
        self.answer(move |d| match d.registry.get_mut(&id) {
            Some((_, r)) if r.retired_at.is_none() => {
                r.tenant = tenant;
                Ok(r.clone())
            }
            _ => Err(BackendError::NotFound),
        })
    }

    fn retire_device(
        &self,
        id: DeviceId,
        at: DateTime<Utc>,
    ) -> BackendFuture<'_, crate::Registration> {
        self.answer(move |d| match d.registry.get_mut(&id) {
            Some((h, r)) if r.retired_at.is_none() => {
                *h = None;
                r.retired_at = Some(at);
                Ok(r.clone())
            }
            _ => Err(BackendError::NotFound),
        })
    }

    fn schedule(&self, id: DeviceId) -> BackendFuture<'_, crate::ScheduleView> {
        self.answer(move |d| {
            known(d, &id)?;
            Ok(d.schedules
                .get(&id)
                .cloned()
                .unwrap_or(crate::ScheduleView {
                    device_id: id.to_string(),
                    current: None,
                    next: None,
                }))
        })
    }
}

// ---------------------------------------------------------------------------------------
// fixtures

pub(super) fn dev(id: &str) -> DeviceId {
    DeviceId::new(id).expect("test device id")
}

fn point(name: &str, role: PointRole, kind: ValueKind, writable: bool) -> PointInfo {
    PointInfo {
        name: name.into(),
        role,
        kind,
        unit: None,
        writable,
        min: None,
        max: None,
        resolution: None,
        options: vec![],
    }
}

fn catalog() -> Catalog {
    let mut setpoint = point(
        "chw_setpoint_c",
        PointRole::Setting,
        ValueKind::Number,
        true,
    );
    setpoint.min = Some(5.0);
    setpoint.max = Some(15.0);
    setpoint.resolution = Some(0.1);
    setpoint.unit = Some("°C".into());
    let mut mode = point("mode", PointRole::Setting, ValueKind::Enum, true);
    mode.options = vec!["cooling".into(), "heating".into()];
    Catalog {
        v: 1,
        points: vec![
            setpoint,
            mode,
            point(
                "chw_supply_temp",
                PointRole::Reading,
                ValueKind::Number,
                false,
            ),
        ],
    }
}

fn view(id: &str, online: bool, with_catalog: bool) -> DeviceView {
    let mut reported = shiki_proto::JsonMap::new();
    reported.insert("chw_setpoint_c".into(), json!(7.0));
    reported.insert("mode".into(), json!("cooling"));
    DeviceView {
        id: dev(id),
        status: None,
        software_version: None,
        online,
        last_seen: Some(now() - Duration::minutes(1)),
        desired: Default::default(),
        reported,
        delta: Default::default(),
        version: 3,
        applied_version: Some(3),
        metadata: Default::default(),
        settings: Default::default(),
        last_telemetry: None,
        last_seq: Some(3),
        pending_verifications: vec![],
        last_verification: None,
        catalog: with_catalog.then(catalog),
    }
}

/// A reported-side history entry at `minutes` after 10:00.
pub(super) fn history_entry(minutes: i64, key: &str, comment: Option<&str>) -> HistoryEntry {
    HistoryEntry {
        ts: now() - Duration::hours(2) + Duration::minutes(minutes),
        actor: AuthorView {
            kind: AuthorKind::Device,
            name: "plant-01".into(),
            role: None,
        },
        side: ShadowSide::Reported,
        key: key.into(),
        old: Some(json!(7.0)),
        new: Some(json!(8.5)),
        version: 3,
        comment: comment.map(Into::into),
        verification: None,
    }
}

/// A backend with two devices (`plant-01` online with a catalog, `plant-02` offline
/// without), history, telemetry, events, and one token per role.
pub(super) fn seeded() -> Arc<FakeBackend> {
    let b = Arc::new(FakeBackend::default());
    {
        let mut d = b.data();
        for v in [view("plant-01", true, true), view("plant-02", false, false)] {
            d.devices.insert(v.id.clone(), v);
        }
        let p1 = dev("plant-01");
        d.schedules
            .insert(p1.clone(), schedule_tests::view(&p1, "sapporo-2027"));
        d.registry.insert(
            p1.clone(),
            (
                Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
                crate::Registration {
                    id: p1.clone(),
                    tenant: Some("acme".into()),
                    created_at: now(),
                    created_by: "admin".into(),
                    credentials_at: now(),
                    retired_at: None,
                },
            ),
        );
        for (i, key) in ["chw_setpoint_c", "mode", "chw_setpoint_c"]
            .iter()
            .enumerate()
        {
            d.history
                .push((p1.clone(), history_entry(i as i64 * 10, key, None)));
        }
        for seq in 1..=5u64 {
            let ts = now() - Duration::hours(1) + Duration::minutes(seq as i64);
            let values =
                BTreeMap::from([("chw_supply_temp".to_owned(), (6.0 + seq as f64).into())]);
            d.telemetry.push((p1.clone(), Sample { seq, ts, values }));
            d.events.push((
                p1.clone(),
                Event {
                    seq,
                    ts,
                    kind: EventKind::SettingApplied,
                    severity: Severity::Info,
                    message: format!("event {seq}"),
                    data: Value::Null,
                },
            ));
        }
        for (name, secret, role, tenant) in [
            ("viewer", VIEWER, Role::Viewer, None),
            ("operator", OPERATOR, Role::Operator, None),
            ("admin", ADMIN, Role::Admin, None),
            ("acme-admin", ACME_ADMIN, Role::Admin, Some("acme")),
            ("globex-admin", GLOBEX_ADMIN, Role::Admin, Some("globex")),
        ] {
            let info = TokenInfo {
                name: name.into(),
                role,
                created_at: now(),
                created_by: "test".into(),
                tenant: tenant.map(str::to_owned),
            };
            d.tokens.insert(name.into(), (hash_token(secret), info));
        }
        d.artifact_versions.push("0.2.0".into());
        let job = job_tests::fake_job(&mut d, "ota-1", &["plant-01", "plant-02"]);
        d.jobs.insert(job.id.clone(), job);
    }
    b
}

/// API state over `backend`, with the fixed clock, optionally `SHIKI_ADMIN_TOKEN`, and
/// artifacts in the backend's temp dir trusting [`artifact_tests::release_key`].
pub(super) fn state_with(backend: Arc<FakeBackend>, config: ApiConfig) -> ApiState {
    let artifacts = artifact_tests::artifacts_config(backend.dir.path());
    ApiState::new(backend, config)
        .expect("valid api config")
        .with_clock(Arc::new(now))
        .with_artifacts(Artifacts::open(artifacts).expect("artifacts dir"))
}

pub(super) fn state(backend: Arc<FakeBackend>) -> ApiState {
    state_with(backend, ApiConfig::default())
}

// ---------------------------------------------------------------------------------------
// requests and responses

/// The app under test: `let app = app!(state);`.
macro_rules! app {
    ($state:expr) => {
        actix_web::test::init_service(crate::app($state)).await
    };
}
pub(super) use app;

/// Sends a request: `send!(app, req)` → [`Resp`].
macro_rules! send {
    ($app:expr, $req:expr) => {
        crate::testing::call(&$app, $req).await
    };
}
pub(super) use send;

pub(super) use crate::testing::req;

/// Every API route: method, a concrete path, the OpenAPI path template, what sets the body
/// (and its headers), the role it needs, and the status it answers on success.
pub(super) struct RouteCase {
    pub method: &'static str,
    pub path: &'static str,
    pub template: &'static str,
    pub body: Option<fn(TestRequest) -> TestRequest>,
    pub role: Role,
    pub ok: u16,
}

#[rustfmt::skip]
pub(super) const ROUTES: &[RouteCase] = &[
    RouteCase { method: "GET", path: "/api/v1/devices", template: "/api/v1/devices", body: None, role: Role::Viewer, ok: 200 },
    RouteCase { method: "GET", path: "/api/v1/devices/plant-01", template: "/api/v1/devices/{id}", body: None, role: Role::Viewer, ok: 200 },
    RouteCase { method: "POST", path: "/api/v1/devices", template: "/api/v1/devices", body: Some(|r| r.set_json(json!({"id": "plant-09"}))), role: Role::Admin, ok: 201 },
    RouteCase { method: "POST", path: "/api/v1/devices/plant-01/credentials", template: "/api/v1/devices/{id}/credentials", body: None, role: Role::Admin, ok: 200 },
    RouteCase { method: "PATCH", path: "/api/v1/devices/plant-01", template: "/api/v1/devices/{id}", body: Some(|r| r.set_json(json!({"tenant": "acme"}))), role: Role::Admin, ok: 200 },
    RouteCase { method: "DELETE", path: "/api/v1/devices/plant-01", template: "/api/v1/devices/{id}", body: None, role: Role::Admin, ok: 204 },
    RouteCase { method: "PATCH", path: "/api/v1/devices/plant-01/desired", template: "/api/v1/devices/{id}/desired", body: Some(|r| r.set_json(json!({"settings": {"chw_setpoint_c": 8.0}}))), role: Role::Operator, ok: 200 },
    RouteCase { method: "GET", path: "/api/v1/devices/plant-01/history", template: "/api/v1/devices/{id}/history", body: None, role: Role::Viewer, ok: 200 },
    RouteCase { method: "GET", path: "/api/v1/devices/plant-01/telemetry", template: "/api/v1/devices/{id}/telemetry", body: None, role: Role::Viewer, ok: 200 },
    RouteCase { method: "GET", path: "/api/v1/devices/plant-01/telemetry/series", template: "/api/v1/devices/{id}/telemetry/series", body: None, role: Role::Viewer, ok: 200 },
    RouteCase { method: "GET", path: "/api/v1/devices/plant-01/events", template: "/api/v1/devices/{id}/events", body: None, role: Role::Viewer, ok: 200 },
    RouteCase { method: "PUT", path: "/api/v1/devices/plant-01/schedule", template: "/api/v1/devices/{id}/schedule", body: Some(|r| r.set_json(json!({"id": "sapporo-2027"}))), role: Role::Operator, ok: 200 },
    RouteCase { method: "GET", path: "/api/v1/devices/plant-01/schedule", template: "/api/v1/devices/{id}/schedule", body: None, role: Role::Viewer, ok: 200 },
    RouteCase { method: "GET", path: "/api/v1/devices/plant-01/schedule/calendar", template: "/api/v1/devices/{id}/schedule/calendar", body: None, role: Role::Viewer, ok: 200 },
    RouteCase { method: "GET", path: "/api/v1/tokens", template: "/api/v1/tokens", body: None, role: Role::Admin, ok: 200 },
    RouteCase { method: "POST", path: "/api/v1/tokens", template: "/api/v1/tokens", body: Some(|r| r.set_json(json!({"name": "grafana", "role": "viewer"}))), role: Role::Admin, ok: 201 },
    RouteCase { method: "DELETE", path: "/api/v1/tokens/viewer", template: "/api/v1/tokens/{name}", body: None, role: Role::Admin, ok: 204 },
    RouteCase { method: "PUT", path: "/api/v1/artifacts/0.2.0", template: "/api/v1/artifacts/{version}", body: Some(artifact_tests::signed_upload), role: Role::Admin, ok: 201 },
    RouteCase { method: "GET", path: "/api/v1/artifacts", template: "/api/v1/artifacts", body: None, role: Role::Viewer, ok: 200 },
    RouteCase { method: "POST", path: "/api/v1/jobs", template: "/api/v1/jobs", body: Some(|r| r.set_json(json!({"artifact_version": "0.2.0", "devices": ["plant-01"]}))), role: Role::Operator, ok: 201 },
    RouteCase { method: "GET", path: "/api/v1/jobs", template: "/api/v1/jobs", body: None, role: Role::Viewer, ok: 200 },
    RouteCase { method: "GET", path: "/api/v1/jobs/ota-1", template: "/api/v1/jobs/{id}", body: None, role: Role::Viewer, ok: 200 },
    RouteCase { method: "POST", path: "/api/v1/jobs/ota-1/cancel", template: "/api/v1/jobs/{id}/cancel", body: None, role: Role::Operator, ok: 200 },
    RouteCase { method: "GET", path: "/api/v1/openapi.json", template: "/api/v1/openapi.json", body: None, role: Role::Viewer, ok: 200 },
    RouteCase { method: "GET", path: "/api/v1/whoami", template: "/api/v1/whoami", body: None, role: Role::Viewer, ok: 200 },
    RouteCase { method: "GET", path: "/api/v1/cluster", template: "/api/v1/cluster", body: None, role: Role::Viewer, ok: 200 },
];

/// Routes outside `/api` whose URL is the credential (signed download URLs).
pub(super) const SIGNED_ROUTES: &[(&str, &str)] = &[("GET", "/ota/v1/artifacts/{sha256}")];

/// Routes outside `/api` (no token needed).
pub(super) const PUBLIC_ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/"),
    ("GET", "/app.js"),
    ("GET", "/lib.js"),
    ("GET", "/fleet.js"),
    ("GET", "/device.js"),
    ("GET", "/chart.js"),
    ("GET", "/schedule.js"),
    ("GET", "/jobs.js"),
    ("GET", "/style.css"),
    ("GET", "/auth/session"),
    ("POST", "/auth/logout"),
];

/// The web sign-in's routes: 404 unless `[auth.oidc]` has a `client_id` (tests/tests/oidc.rs
/// walks them against a real provider).
pub(super) const SSO_ROUTES: &[(&str, &str)] = &[("GET", "/auth/login"), ("GET", "/auth/callback")];
