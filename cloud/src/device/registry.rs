//! The registry: one [`DeviceActor`] per device, started on first contact, restored from the
//! store (all known devices at start-up, so pending verifications resume).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix::prelude::*;
use shiki_proto::DeviceId;

use super::state::{DesiredChange, DesiredError, DeviceConfig, DeviceState, DeviceView};
use super::{ChangeDesired, Clock, DeviceActor, DeviceInput, DeviceMetrics, GetView, Publish};
use crate::notifier::Alert;
use crate::schedule::{DeviceSchedules, FleetJobsDue, SyncConfig};
use crate::store::{Store, StoreError};

/// Peers and settings every device actor shares.
#[derive(Clone)]
pub struct DeviceDeps {
    pub store: Arc<dyn Store>,
    pub publisher: Recipient<Publish>,
    pub alerts: Recipient<Alert>,
    pub clock: Arc<dyn Clock>,
    pub cfg: DeviceConfig,
    pub metrics: Arc<DeviceMetrics>,
    /// Retry and alert settings of yearly schedule sync.
    pub schedule: SyncConfig,
}

impl std::fmt::Debug for DeviceDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceDeps")
            .field("cfg", &self.cfg)
            .finish()
    }
}

/// Why the registry could not serve a request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistryError {
    #[error("device {0} is unknown")]
    UnknownDevice(DeviceId),
    #[error(transparent)]
    Desired(#[from] DesiredError),
    #[error("device actor of {0} is not running")]
    ActorGone(DeviceId),
}

/// Routes an input to a device, starting its actor on first contact.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Route {
    pub device: DeviceId,
    pub input: DeviceInput,
}

/// Every known device id.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Vec<(DeviceId, Addr<DeviceActor>)>")]
pub struct ListDevices;

/// Number of resident device actors.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "usize")]
pub struct DeviceCount;

/// The view of one device (`None` if unknown).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Option<Addr<DeviceActor>>")]
pub struct GetDeviceView(pub DeviceId);

/// A desired change for a known device.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Option<Addr<DeviceActor>>")]
pub struct ChangeDesiredFor(pub DeviceId);

/// The registry actor.
#[derive(Debug)]
pub struct Registry {
    devices: HashMap<DeviceId, Addr<DeviceActor>>,
    deps: Arc<DeviceDeps>,
    started: Arc<AtomicU64>,
}

impl Registry {
    pub fn new(deps: DeviceDeps) -> Self {
        Self {
            devices: HashMap::new(),
            deps: Arc::new(deps),
            started: Arc::new(AtomicU64::new(0)),
        }
    }

    fn restore(&self, id: &DeviceId) -> Result<(DeviceState, Option<DeviceSchedules>), StoreError> {
        let store = &self.deps.store;
        let snapshot = store.device(id)?;
        let first_contact = snapshot.is_none();
        let verifications = store.verifications(id)?;
        let last = store.last_sample(id)?;
        let state = DeviceState::restore(id.clone(), self.deps.cfg, snapshot, verifications, last);
        if first_contact {
            // Known from now on, also after a restart (fire and forget: the ingest's own
            // writes carry the data).
            drop(store.submit(vec![state.snapshot_write()]));
        }
        let schedules = store.schedules(id)?;
        Ok((state, schedules))
    }

    fn spawn(&mut self, id: &DeviceId) -> Addr<DeviceActor> {
        let (state, schedules) = self.restore(id).unwrap_or_else(|e| {
            tracing::error!(device_id = %id, error = %e, "cannot restore device; starting empty");
            (DeviceState::new(id.clone(), self.deps.cfg), None)
        });
        let addr = DeviceActor::new(state, self.deps.clone())
            .with_schedules(schedules)
            .start();
        self.started.fetch_add(1, Ordering::Relaxed);
        self.devices.insert(id.clone(), addr.clone());
        addr
    }

    fn get_or_start(&mut self, id: &DeviceId) -> Addr<DeviceActor> {
        match self.devices.get(id) {
            Some(a) => a.clone(),
            None => self.spawn(id),
        }
    }

    /// Whether the store knows a device the registry has not started yet.
    fn known_in_store(&self, id: &DeviceId) -> bool {
        matches!(self.deps.store.device(id), Ok(Some(_)))
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        match self.deps.store.devices() {
            Ok(ids) => {
                for id in &ids {
                    self.spawn(id);
                }
                tracing::info!(devices = ids.len(), "device actors restored from the store");
            }
            Err(e) => tracing::error!(error = %e, "cannot list stored devices"),
        }
    }
}

impl Handler<Route> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Route, _ctx: &mut Self::Context) {
        self.get_or_start(&msg.device).do_send(msg.input);
    }
}

impl Handler<ListDevices> for Registry {
    type Result = MessageResult<ListDevices>;

    fn handle(&mut self, _msg: ListDevices, _ctx: &mut Self::Context) -> Self::Result {
        let mut v: Vec<_> = self
            .devices
            .iter()
            .map(|(k, a)| (k.clone(), a.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        MessageResult(v)
    }
}

/// The fleet's yearly jobs: `last_run` is stored (so missed fires are caught up after a
/// restart) and the jobs go to every device actor, which carries them out itself.
impl Handler<FleetJobsDue> for Registry {
    type Result = ();

    fn handle(&mut self, msg: FleetJobsDue, _ctx: &mut Self::Context) {
        drop(
            self.deps
                .store
                .submit(vec![crate::store::Write::FleetLastRun(msg.last_run)]),
        );
        tracing::info!(jobs = ?msg.jobs, devices = self.devices.len(), "yearly schedule jobs sent to every device");
        for addr in self.devices.values() {
            addr.do_send(msg.clone());
        }
    }
}

impl Handler<DeviceCount> for Registry {
    type Result = usize;

    fn handle(&mut self, _msg: DeviceCount, _ctx: &mut Self::Context) -> usize {
        self.devices.len()
    }
}

impl Handler<GetDeviceView> for Registry {
    type Result = Option<Addr<DeviceActor>>;

    fn handle(&mut self, msg: GetDeviceView, _ctx: &mut Self::Context) -> Self::Result {
        if let Some(a) = self.devices.get(&msg.0) {
            return Some(a.clone());
        }
        self.known_in_store(&msg.0).then(|| self.spawn(&msg.0))
    }
}

impl Handler<ChangeDesiredFor> for Registry {
    type Result = Option<Addr<DeviceActor>>;

    fn handle(&mut self, msg: ChangeDesiredFor, ctx: &mut Self::Context) -> Self::Result {
        self.handle(GetDeviceView(msg.0), ctx)
    }
}

/// Convenience calls on a registry address.
impl Registry {
    /// The view of one device, `Ok(None)` when unknown.
    pub async fn view(
        registry: &Addr<Registry>,
        id: DeviceId,
    ) -> Result<Option<DeviceView>, RegistryError> {
        let Some(addr) = registry
            .send(GetDeviceView(id.clone()))
            .await
            .map_err(|_| RegistryError::ActorGone(id.clone()))?
        else {
            return Ok(None);
        };
        addr.send(GetView)
            .await
            .map(Some)
            .map_err(|_| RegistryError::ActorGone(id))
    }

    /// Applies a desired change; returns the new version.
    pub async fn change_desired(
        registry: &Addr<Registry>,
        id: DeviceId,
        change: DesiredChange,
    ) -> Result<u64, RegistryError> {
        let addr = registry
            .send(ChangeDesiredFor(id.clone()))
            .await
            .map_err(|_| RegistryError::ActorGone(id.clone()))?
            .ok_or_else(|| RegistryError::UnknownDevice(id.clone()))?;
        Ok(addr
            .send(ChangeDesired(change))
            .await
            .map_err(|_| RegistryError::ActorGone(id))??)
    }
}
