//! The registry: one [`DeviceActor`] per device, started on first contact, restored from the
//! store (all known devices at start-up, so pending verifications resume). The actors are
//! kept in a [`Directory`] that the ingest routes through directly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use actix::prelude::*;
use shiki_proto::DeviceId;

use super::state::{DesiredChange, DesiredError, DeviceConfig, DeviceState, DeviceView};
use super::{ChangeDesired, Clock, DeviceActor, DeviceInput, DeviceMetrics, GetView, Publish};
use crate::notifier::Alert;
use crate::schedule::{DeviceSchedules, FleetJobsDue, SyncConfig};
use crate::store::{Fence, Store, StoreError};

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
    /// The jobs actor: each device's status and job updates. `None` on a cluster node:
    /// there the session of the jobs lease hears them from the broker itself (ADR
    /// `docs/adr/cluster-ota-jobs.md`).
    pub jobs: Option<Recipient<crate::ota::DeviceJobInput>>,
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

/// The actor of a known device (running, or restored from the store), `None` if the
/// device is unknown. Ask the actor itself for its view ([`GetView`]) or a change.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Option<Addr<DeviceActor>>")]
pub struct LookupDevice(pub DeviceId);

/// Every device's actor, shared by the [`Registry`] actor and the ingest. The ingest routes
/// each message straight into its device's mailbox ([`Router`]) rather than through the
/// registry's, which would cost a second envelope and handler per message.
/// Actors are started under the lock, so a device never gets two, and since one caller
/// does both the lookup and the send, a device's messages keep their order.
pub struct Directory {
    devices: Mutex<HashMap<DeviceId, Addr<DeviceActor>>>,
    deps: Arc<DeviceDeps>,
    /// In a cluster: the shards this node owns; an actor runs only for a device of one of
    /// them, and writes under its lease's fence.
    ownership: Option<Arc<Ownership>>,
}

/// In a cluster, the shards this node owns now and the fence of each lease
/// (`crate::cluster` keeps it up to date).
#[derive(Debug)]
pub struct Ownership {
    shards: u32,
    held: RwLock<HashMap<u32, Fence>>,
}

impl Ownership {
    pub fn new(shards: u32) -> Arc<Self> {
        Arc::new(Self {
            shards,
            held: RwLock::new(HashMap::new()),
        })
    }

    pub fn shard_of(&self, device: &DeviceId) -> u32 {
        crate::cluster::shard_of(device, self.shards)
    }

    /// The fence of the lease under which `device` is owned here (`None`: owned elsewhere).
    pub fn fence_of(&self, device: &DeviceId) -> Option<Fence> {
        let shard = self.shard_of(device);
        self.held
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&shard)
            .copied()
    }

    /// Records that `shard` is held under `fence` (`None`: no longer held).
    pub fn set(&self, shard: u32, fence: Option<Fence>) {
        let mut held = self.held.write().unwrap_or_else(PoisonError::into_inner);
        match fence {
            Some(f) => held.insert(shard, f),
            None => held.remove(&shard),
        };
    }

    /// Shards held now.
    pub fn count(&self) -> usize {
        self.held
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("devices", &self.len())
            .finish()
    }
}

impl Directory {
    pub fn new(deps: DeviceDeps) -> Arc<Self> {
        Self::build(deps, None)
    }

    /// A cluster node's directory: actors only for devices of the shards it owns.
    pub fn with_ownership(deps: DeviceDeps, ownership: Arc<Ownership>) -> Arc<Self> {
        Self::build(deps, Some(ownership))
    }

    fn build(deps: DeviceDeps, ownership: Option<Arc<Ownership>>) -> Arc<Self> {
        Arc::new(Self {
            devices: Mutex::new(HashMap::new()),
            deps: Arc::new(deps),
            ownership,
        })
    }

    /// The peers of `id`'s actor: in a cluster with its store fenced by its shard's lease,
    /// `None` when this node does not own the device.
    fn actor_deps(&self, id: &DeviceId) -> Option<Arc<DeviceDeps>> {
        let Some(ownership) = &self.ownership else {
            return Some(self.deps.clone());
        };
        let fence = ownership.fence_of(id)?;
        let mut deps = (*self.deps).clone();
        deps.store = Arc::new(crate::cluster::FencedStore::new(
            self.deps.store.clone(),
            fence,
        ));
        Some(Arc::new(deps))
    }

    fn devices(&self) -> MutexGuard<'_, HashMap<DeviceId, Addr<DeviceActor>>> {
        // The map is consistent after any panic (inserts are single calls).
        self.devices.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn restore(
        &self,
        id: &DeviceId,
        deps: &DeviceDeps,
    ) -> Result<(DeviceState, Option<DeviceSchedules>), StoreError> {
        let store = &deps.store;
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

    /// Starts the actor of `id`, restored from the store (`None`: a cluster node that does
    /// not own it). Must run on an actix arbiter.
    fn spawn(&self, id: &DeviceId) -> Option<Addr<DeviceActor>> {
        let deps = self.actor_deps(id)?;
        let (state, schedules) = self.restore(id, &deps).unwrap_or_else(|e| {
            tracing::error!(device_id = %id, error = %e, "cannot restore device; starting empty");
            (DeviceState::new(id.clone(), self.deps.cfg), None)
        });
        Some(
            DeviceActor::new(state, deps)
                .with_schedules(schedules)
                .start(),
        )
    }

    /// The actor of `id`, started (and restored from the store) if it is not running;
    /// `None` on a cluster node that does not own the device.
    pub fn get_or_start(&self, id: &DeviceId) -> Option<Addr<DeviceActor>> {
        let mut devices = self.devices();
        if let Some(a) = devices.get(id) {
            return Some(a.clone());
        }
        let addr = self.spawn(id)?;
        devices.insert(id.clone(), addr.clone());
        Some(addr)
    }

    /// A cluster node took `shard`: starts the actors of its known devices, restored from
    /// the store (pending verifications, schedule pushes and offline alerts resume).
    pub fn start_shard(&self, ids: &[DeviceId]) {
        for id in ids {
            if self.get_or_start(id).is_none() {
                tracing::warn!(device_id = %id, "device of a shard this node does not own; not started");
            }
        }
    }

    /// A cluster node gave up `shard`: stops the actors of its devices (they write nothing
    /// more) and forgets them. Returns how many were stopped.
    pub fn stop_shard(&self, shard: u32) -> usize {
        let Some(ownership) = &self.ownership else {
            return 0;
        };
        let stopped: Vec<Addr<DeviceActor>> = {
            let mut devices = self.devices();
            let ids: Vec<DeviceId> = devices
                .keys()
                .filter(|id| ownership.shard_of(id) == shard)
                .cloned()
                .collect();
            ids.iter().filter_map(|id| devices.remove(id)).collect()
        };
        for addr in &stopped {
            addr.do_send(super::Retire);
        }
        stopped.len()
    }

    /// The actor of `id` if the device is known (running, or in the store).
    pub fn get_known(&self, id: &DeviceId) -> Option<Addr<DeviceActor>> {
        let mut devices = self.devices();
        if let Some(a) = devices.get(id) {
            return Some(a.clone());
        }
        if !matches!(self.deps.store.device(id), Ok(Some(_))) {
            return None;
        }
        let addr = self.spawn(id)?;
        devices.insert(id.clone(), addr.clone());
        Some(addr)
    }

    /// Every running device actor, by device id.
    pub fn list(&self) -> Vec<(DeviceId, Addr<DeviceActor>)> {
        let mut v: Vec<_> = self
            .devices()
            .iter()
            .map(|(k, a)| (k.clone(), a.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Number of running device actors.
    pub fn len(&self) -> usize {
        self.devices().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts the actor of every device the store knows, so that pending verifications
    /// and schedule pushes resume.
    fn restore_all(&self) {
        if self.ownership.is_some() {
            // A cluster node restores each shard's devices when it takes the shard.
            return;
        }
        match self.deps.store.devices() {
            Ok(ids) => {
                for id in &ids {
                    self.get_or_start(id);
                }
                tracing::info!(devices = ids.len(), "device actors restored from the store");
            }
            Err(e) => tracing::error!(error = %e, "cannot list stored devices"),
        }
    }
}

/// Where the ingest sends each device's input.
pub trait Router {
    fn route(&self, device: DeviceId, input: DeviceInput);
}

/// Straight into the device actor's mailbox, starting it on first contact.
impl Router for Directory {
    fn route(&self, device: DeviceId, input: DeviceInput) {
        match self.get_or_start(&device) {
            Some(actor) => actor.do_send(input),
            None => {
                tracing::warn!(device_id = %device, "message for a device this node no longer owns; its new owner's session gets what was not acknowledged")
            }
        }
    }
}

/// Through an actor handling [`Route`] (the registry, or a test's stand-in).
impl Router for Recipient<Route> {
    fn route(&self, device: DeviceId, input: DeviceInput) {
        self.do_send(Route { device, input });
    }
}

/// The registry actor: the API's and the fleet scheduler's way to the device actors of a
/// [`Directory`].
#[derive(Debug)]
pub struct Registry {
    directory: Arc<Directory>,
}

impl Registry {
    pub fn new(deps: DeviceDeps) -> Self {
        Self::with_directory(Directory::new(deps))
    }

    pub fn with_directory(directory: Arc<Directory>) -> Self {
        Self { directory }
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        self.directory.restore_all();
    }
}

impl Handler<Route> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Route, _ctx: &mut Self::Context) {
        self.directory.route(msg.device, msg.input);
    }
}

impl Handler<ListDevices> for Registry {
    type Result = MessageResult<ListDevices>;

    fn handle(&mut self, _msg: ListDevices, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.directory.list())
    }
}

/// The fleet's yearly jobs: `last_run` is stored (so missed fires are caught up after a
/// restart) and the jobs go to every device actor, which carries them out itself.
impl Handler<FleetJobsDue> for Registry {
    type Result = ();

    fn handle(&mut self, msg: FleetJobsDue, _ctx: &mut Self::Context) {
        drop(
            self.directory
                .deps
                .store
                .submit(vec![crate::store::Write::FleetLastRun(msg.last_run)]),
        );
        let devices = self.directory.list();
        tracing::info!(jobs = ?msg.jobs, devices = devices.len(), "yearly schedule jobs sent to every device");
        for (_, addr) in devices {
            addr.do_send(msg.clone());
        }
    }
}

/// A `jobs/notify` from the jobs actor, to the device's actor (which publishes it); a
/// device the cloud does not know is logged.
impl Handler<crate::ota::NotifyDevice> for Registry {
    type Result = ();

    fn handle(&mut self, msg: crate::ota::NotifyDevice, _ctx: &mut Self::Context) {
        match self.directory.get_known(&msg.device) {
            Some(addr) => addr.do_send(msg),
            None => {
                tracing::warn!(device_id = %msg.device, "jobs/notify for an unknown device dropped")
            }
        }
    }
}

impl Handler<DeviceCount> for Registry {
    type Result = usize;

    fn handle(&mut self, _msg: DeviceCount, _ctx: &mut Self::Context) -> usize {
        self.directory.len()
    }
}

impl Handler<LookupDevice> for Registry {
    type Result = Option<Addr<DeviceActor>>;

    fn handle(&mut self, msg: LookupDevice, _ctx: &mut Self::Context) -> Self::Result {
        self.directory.get_known(&msg.0)
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
            .send(LookupDevice(id.clone()))
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

    /// Applies a desired change asked for by `author`; returns the new version.
    pub async fn change_desired(
        registry: &Addr<Registry>,
        id: DeviceId,
        change: DesiredChange,
        author: crate::store::Author,
    ) -> Result<u64, RegistryError> {
        let addr = registry
            .send(LookupDevice(id.clone()))
            .await
            .map_err(|_| RegistryError::ActorGone(id.clone()))?
            .ok_or_else(|| RegistryError::UnknownDevice(id.clone()))?;
        Ok(addr
            .send(ChangeDesired { change, author })
            .await
            .map_err(|_| RegistryError::ActorGone(id))??)
    }
}
