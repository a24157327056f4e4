//! Several `shiki-cloud` processes sharing one fleet (ADR `docs/adr/cluster-leases.md`).
//!
//! The fleet's devices fall into `cluster.shards` shards ([`shard_of`]). Each shard has a
//! lease row in PostgreSQL; the node holding it runs the actors of the shard's devices and
//! its MQTT session: client id `{mqtt.client_id}-shard-{n}`, persistent, subscribed to the
//! shard's devices' topics, acknowledging after the store's commit. When the node dies the
//! next owner resumes the same session, so the broker hands it what the dead node had not
//! acknowledged and what arrived meanwhile.
//!
//! The [`Coordinator`] runs a round every `cluster.renew_every`: lose what expired locally,
//! heartbeat, renew, then release the shards another live node is preferred for
//! (rendezvous hashing, [`preferred`]) and claim the free ones this node is preferred
//! for. Writes of device actors carry their lease's [`Fence`] ([`FencedStore`]); the
//! store refuses them once the lease has moved on.
//!
//! One more lease, [`JOBS_LEASE`], is claimed and renewed like a shard's: its holder
//! drives the OTA jobs and runs their MQTT session (`jobs`; ADR
//! `docs/adr/cluster-ota-jobs.md`).
//!
//! # Layout
//! - [`shards`](self::shard_of): device → shard, shard → preferred node;
//! - `lease`: the lease state machine ([`Leases`]), without I/O;
//! - `fenced`: [`FencedStore`];
//! - `jobs`: what the jobs lease's holder runs ([`JobsPeers`]);
//! - this file: the coordinator, each shard's session and the jobs'.

mod fenced;
mod jobs;
mod lease;
mod shards;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use shiki_proto::{DeviceId, Topics};
use tokio::sync::watch;

pub use fenced::FencedStore;
pub use jobs::JobsPeers;
pub use lease::{Leases, Plan};
pub use shards::{preferred, shard_of};

use crate::api::cluster::DeviceOwner as Owner;
use crate::broker;
use crate::config::{BrokerTarget, ClusterConfig, MqttConfig};
use crate::device::{Directory, Ownership};
use crate::ingest::{Gate, Ingest, IngestStats, Scope};
use crate::ota::{DriveJobs, StandBy};
use crate::store::{ClusterDb, ClusterSnapshot, Fence, JOBS_LEASE, Store};

/// How a node reaches its peers and what it shares with its shards' sessions.
#[derive(Debug)]
pub struct NodeDeps {
    pub config: ClusterConfig,
    /// The base URL other nodes forward requests for this node's devices to.
    pub api_url: String,
    pub db: ClusterDb,
    pub store: Arc<dyn Store>,
    pub directory: Arc<Directory>,
    pub ownership: Arc<Ownership>,
    pub topics: Topics,
    pub mqtt: MqttConfig,
    pub target: BrokerTarget,
    pub stats: Arc<IngestStats>,
    /// The process's jobs actor, which drives the jobs while this node holds their lease.
    pub jobs: JobsPeers,
}

/// What the API shows of the cluster and how it routes a device's requests: the latest
/// snapshot of nodes and leases, shared by the coordinator.
#[derive(Debug)]
pub struct ClusterView {
    pub node_id: String,
    pub shards: u32,
    pub ttl: Duration,
    ownership: Arc<Ownership>,
    /// Whether this node drives the OTA jobs now (holds the jobs lease).
    drives_jobs: AtomicBool,
    latest: Mutex<Option<ClusterSnapshot>>,
}

impl ClusterView {
    /// Who owns `device`, as of this node's leases and its latest snapshot.
    pub fn owner_of(&self, device: &DeviceId) -> Owner {
        if self.ownership.fence_of(device).is_some() {
            return Owner::Here;
        }
        self.holder_of(self.ownership.shard_of(device))
    }

    /// Who drives the OTA jobs (holds the jobs lease), as of this node's leases and its
    /// latest snapshot.
    pub fn jobs_owner(&self) -> Owner {
        if self.drives_jobs.load(Ordering::Acquire) {
            return Owner::Here;
        }
        self.holder_of(JOBS_LEASE)
    }

    /// The other live node holding lease `shard` in the latest snapshot.
    fn holder_of(&self, shard: u32) -> Owner {
        let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(snap) = latest.as_ref() else {
            return Owner::Nobody;
        };
        let holder = snap
            .leases
            .iter()
            .find(|l| l.shard == shard && l.expires_at > snap.now)
            .and_then(|l| l.owner.as_deref());
        match holder.and_then(|h| snap.nodes.iter().find(|n| n.node_id == h)) {
            Some(n) if n.node_id != self.node_id => Owner::Node {
                node_id: n.node_id.clone(),
                api_url: n.api_url.clone(),
            },
            _ => Owner::Nobody,
        }
    }

    /// The latest snapshot (`None` before the first round).
    pub fn snapshot(&self) -> Option<ClusterSnapshot> {
        self.latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Shard leases this node holds now.
    pub fn leases_held(&self) -> usize {
        self.ownership.count()
    }

    fn set(&self, snap: ClusterSnapshot) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(snap);
    }
}

/// A running cluster node: its coordinator task.
#[derive(Debug)]
pub struct ClusterNode {
    pub view: Arc<ClusterView>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ClusterNode {
    /// Joins the cluster: makes sure every shard has a lease row and starts the rounds.
    /// Must run inside an actix `System` (shards start device actors).
    pub async fn start(deps: NodeDeps) -> Result<Self, crate::AppError> {
        // Every shard's session has these options but for the client id.
        let mut mqtt = deps.mqtt.clone();
        mqtt.client_id = shard_client_id(&deps.mqtt, 0);
        broker::client_options(&mqtt, &deps.target, None)?;
        deps.db.ensure_shards(deps.config.shards).await?;
        let view = Arc::new(ClusterView {
            node_id: deps.config.node_id.clone(),
            shards: deps.config.shards,
            ttl: deps.config.lease_ttl,
            ownership: deps.ownership.clone(),
            drives_jobs: AtomicBool::new(false),
            latest: Mutex::new(None),
        });
        let (stop, stopped) = watch::channel(false);
        let coordinator = Coordinator {
            leases: Leases::new(
                &deps.config.node_id,
                deps.config.shards,
                deps.config.lease_ttl,
            ),
            started_at: Utc::now(),
            view: view.clone(),
            sessions: HashMap::new(),
            jobs: None,
            deps,
        };
        tracing::info!(node_id = %view.node_id, shards = view.shards, "joining the cluster");
        let task = actix::spawn(coordinator.run(stopped));
        Ok(Self {
            view,
            stop,
            task: Some(task),
        })
    }

    /// Leaves cleanly: stops every shard's session and actors, releases the leases and
    /// removes this node's row, so the others take its devices at their next round.
    pub async fn leave(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// The client id of shard `shard`'s MQTT session, the same on every node.
fn shard_client_id(mqtt: &MqttConfig, shard: u32) -> String {
    format!("{}-shard-{shard}", mqtt.client_id)
}

/// One shard's MQTT session on this node.
struct ShardSession {
    fence: Fence,
    ingest: Ingest,
    gate: Arc<LeaseGate>,
}

/// Open while the shard's lease holds by this node's clock.
#[derive(Debug)]
struct LeaseGate {
    until: Mutex<Instant>,
    closed: AtomicBool,
}

impl LeaseGate {
    fn open_now(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
            && Instant::now() < *self.until.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Coordinator {
    deps: NodeDeps,
    leases: Leases,
    started_at: DateTime<Utc>,
    view: Arc<ClusterView>,
    sessions: HashMap<u32, ShardSession>,
    /// The jobs lease's session, while this node holds it.
    jobs: Option<ShardSession>,
}

impl Coordinator {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.deps.config.renew_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.round().await,
                _ = stop.changed() => break,
            }
        }
        self.leave().await;
    }

    fn node(&self) -> &str {
        &self.deps.config.node_id
    }

    async fn round(&mut self) {
        // A pause (SIGSTOP, a stalled VM) past the lease: stop before touching anything.
        for fence in self.leases.expire(Instant::now()) {
            tracing::warn!(
                shard = fence.shard,
                epoch = fence.epoch,
                "lease ran out before it was renewed; stopping its devices"
            );
            self.stop(fence).await;
        }
        let devices = self.deps.directory.len() as u32;
        if let Err(e) = self
            .deps
            .db
            .heartbeat(
                self.node(),
                &self.deps.api_url,
                self.started_at,
                devices,
                self.sessions.len() as u32,
            )
            .await
        {
            tracing::warn!(error = %e, "cluster heartbeat failed");
        }
        self.renew().await;
        let snap = match self.deps.db.snapshot().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cluster's leases; keeping what is held");
                return;
            }
        };
        let plan = self.leases.plan(&snap);
        self.view.set(snap);
        for fence in plan.release {
            tracing::info!(
                shard = fence.shard,
                "handing the shard to the node it prefers"
            );
            self.stop(fence).await;
            self.leases.released(fence.shard);
            if let Err(e) = self.deps.db.release(self.node(), fence).await {
                tracing::warn!(shard = fence.shard, error = %e, "cannot release the lease; it expires by itself");
            }
        }
        if plan.claim.is_empty() && self.sessions.is_empty() {
            return;
        }
        // The fleet is listed once a round: for the shards taken now and for devices
        // registered since their shard was taken.
        let mut fleet = self.fleet_by_shard().await;
        for shard in plan.claim {
            let sent = Instant::now();
            match self
                .deps
                .db
                .claim(shard, self.node(), self.deps.config.lease_ttl)
                .await
            {
                Ok(Some(epoch)) if shard == JOBS_LEASE => {
                    self.leases.claimed(shard, epoch, sent);
                    self.start_jobs(Fence { shard, epoch }, sent).await;
                }
                Ok(Some(epoch)) => {
                    self.leases.claimed(shard, epoch, sent);
                    let ids = fleet.remove(&shard).unwrap_or_default();
                    self.start_shard(Fence { shard, epoch }, sent, ids).await;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(shard, error = %e, "cannot claim the lease"),
            }
        }
        self.add_new_devices(fleet);
    }

    async fn renew(&mut self) {
        let held = self.leases.held();
        if held.is_empty() {
            return;
        }
        let sent = Instant::now();
        match self
            .deps
            .db
            .renew(self.node(), &held, self.deps.config.lease_ttl)
            .await
        {
            Ok(renewed) => {
                for fence in self.leases.renewed(sent, &renewed) {
                    tracing::warn!(
                        shard = fence.shard,
                        epoch = fence.epoch,
                        "lease lost to another node; stopping its devices"
                    );
                    self.stop(fence).await;
                }
                let jobs = self.jobs.as_ref().map(|s| (&JOBS_LEASE, s));
                for (shard, s) in self.sessions.iter().chain(jobs) {
                    if let Some(until) = self.leases.valid_until(*shard) {
                        *s.gate.until.lock().unwrap_or_else(PoisonError::into_inner) = until;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the leases; they run out unless a later round renews them")
            }
        }
    }

    /// The fleet's known devices (stored or registered, not retired) by shard; empty when
    /// the store cannot list them (logged; the next round tries again).
    async fn fleet_by_shard(&self) -> HashMap<u32, Vec<DeviceId>> {
        let store = self.deps.store.clone();
        let listed = tokio::task::spawn_blocking(move || {
            let mut ids: BTreeSet<DeviceId> = store.devices()?.into_iter().collect();
            ids.extend(
                store
                    .registry()?
                    .into_iter()
                    .filter(|r| r.retired_at.is_none())
                    .map(|r| r.id),
            );
            Ok::<_, crate::store::StoreError>(ids)
        })
        .await;
        let ids = match listed {
            Ok(Ok(ids)) => ids,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot list the fleet's devices");
                return HashMap::new();
            }
            Err(e) => {
                tracing::error!(error = %e, "device listing task failed");
                return HashMap::new();
            }
        };
        let mut by_shard: HashMap<u32, Vec<DeviceId>> = HashMap::new();
        for id in ids {
            by_shard
                .entry(shard_of(&id, self.deps.config.shards))
                .or_default()
                .push(id);
        }
        by_shard
    }

    /// Runs the shard's devices here: their actors, restored from the store, and the
    /// shard's MQTT session.
    async fn start_shard(&mut self, fence: Fence, sent: Instant, ids: Vec<DeviceId>) {
        let mut mqtt = self.deps.mqtt.clone();
        mqtt.client_id = shard_client_id(&self.deps.mqtt, fence.shard);
        // Checked when the node started (`ClusterNode::start`): the options differ from
        // those only by the client id.
        let options = match broker::client_options(&mqtt, &self.deps.target, None) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, shard = fence.shard, "cannot set up the shard's MQTT session; giving the lease up");
                return self.give_up(fence).await;
            }
        };
        self.deps.ownership.set(fence.shard, Some(fence));
        self.deps.directory.start_shard(&ids);
        let gate = Arc::new(LeaseGate {
            until: Mutex::new(sent + self.deps.config.lease_ttl),
            closed: AtomicBool::new(false),
        });
        let scope = Scope::Devices(Arc::new(Mutex::new(ids.iter().cloned().collect())));
        let open = gate.clone();
        let gate_fn: Gate = Arc::new(move || open.open_now());
        let ingest = Ingest::start_scoped(
            Ingest::client_for(options),
            (self.deps.topics.clone(), scope, Some(gate_fn)),
            self.deps.store.clone(),
            self.deps.directory.clone(),
            self.deps.stats.clone(),
            true,
            None,
        );
        tracing::info!(
            shard = fence.shard,
            epoch = fence.epoch,
            devices = ids.len(),
            client_id = %mqtt.client_id,
            "took the shard: its devices run here"
        );
        self.sessions.insert(
            fence.shard,
            ShardSession {
                fence,
                ingest,
                gate,
            },
        );
    }

    /// Stops what a lease held runs here: a shard's devices, or the jobs.
    async fn stop(&mut self, fence: Fence) {
        if fence.shard == JOBS_LEASE {
            self.stop_jobs(fence).await;
        } else {
            self.stop_shard(fence).await;
        }
    }

    /// Gives up a lease just claimed that this node cannot serve (logged by the caller).
    async fn give_up(&mut self, fence: Fence) {
        self.leases.released(fence.shard);
        if let Err(e) = self.deps.db.release(self.node(), fence).await {
            tracing::warn!(shard = fence.shard, error = %e, "cannot release the lease; it expires by itself");
        }
    }

    /// Drives the OTA jobs here: the jobs actor takes every stored job, then the jobs
    /// lease's MQTT session resumes (what arrived since the last holder, and every
    /// retained status again).
    async fn start_jobs(&mut self, fence: Fence, sent: Instant) {
        let mut mqtt = self.deps.mqtt.clone();
        mqtt.client_id = jobs::jobs_client_id(&self.deps.mqtt);
        let options = match broker::client_options(&mqtt, &self.deps.target, None) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "cannot set up the jobs' MQTT session; giving the jobs lease up");
                return self.give_up(fence).await;
            }
        };
        let store = self.deps.store.clone();
        let records = match tokio::task::spawn_blocking(move || store.jobs()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the stored jobs; giving the jobs lease up");
                return self.give_up(fence).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "job listing task failed; giving the jobs lease up");
                return self.give_up(fence).await;
            }
        };
        let jobs = records.len();
        if let Err(e) = self
            .deps
            .jobs
            .drive
            .send(DriveJobs { fence, records })
            .await
        {
            tracing::error!(error = %e, "the jobs actor is gone; giving the jobs lease up");
            return self.give_up(fence).await;
        }
        let gate = Arc::new(LeaseGate {
            until: Mutex::new(sent + self.deps.config.lease_ttl),
            closed: AtomicBool::new(false),
        });
        let open = gate.clone();
        let gate_fn: Gate = Arc::new(move || open.open_now());
        let ingest = Ingest::start_scoped(
            Ingest::client_for(options),
            (self.deps.topics.clone(), Scope::Jobs, Some(gate_fn)),
            self.deps.store.clone(),
            Arc::new(jobs::JobsRouter(self.deps.jobs.inputs.clone())),
            Arc::new(IngestStats::default()),
            true,
            None,
        );
        self.view.drives_jobs.store(true, Ordering::Release);
        tracing::info!(
            epoch = fence.epoch,
            jobs,
            client_id = %mqtt.client_id,
            "took the jobs lease: the OTA jobs run here"
        );
        self.jobs = Some(ShardSession {
            fence,
            ingest,
            gate,
        });
    }

    /// Stops the jobs' session first (what it had not acknowledged goes to the next
    /// holder), then the jobs.
    async fn stop_jobs(&mut self, fence: Fence) {
        self.view.drives_jobs.store(false, Ordering::Release);
        if let Some(s) = self.jobs.take() {
            s.gate.closed.store(true, Ordering::Release);
            s.ingest.stop().await;
            debug_assert_eq!(s.fence, fence);
        }
        if let Err(e) = self.deps.jobs.stand_by.send(StandBy).await {
            tracing::error!(error = %e, "the jobs actor is gone");
        }
        tracing::info!(
            epoch = fence.epoch,
            "gave the jobs lease up: the OTA jobs run elsewhere"
        );
    }

    /// Stops the shard's session first (nothing new arrives; what was not acknowledged
    /// goes to the next owner), then its actors.
    async fn stop_shard(&mut self, fence: Fence) {
        if let Some(s) = self.sessions.remove(&fence.shard) {
            s.gate.closed.store(true, Ordering::Release);
            s.ingest.stop().await;
            debug_assert_eq!(s.fence, fence);
        }
        self.deps.ownership.set(fence.shard, None);
        let stopped = self.deps.directory.stop_shard(fence.shard);
        tracing::info!(
            shard = fence.shard,
            devices = stopped,
            "gave the shard up: its devices run elsewhere"
        );
    }

    /// Devices registered since their shard was taken (`fleet`: the shards not taken this
    /// round): subscribe to them and start their actors.
    fn add_new_devices(&self, fleet: HashMap<u32, Vec<DeviceId>>) {
        for (shard, ids) in fleet {
            let Some(s) = self.sessions.get(&shard) else {
                continue;
            };
            let new = s.ingest.add_devices(&ids);
            if !new.is_empty() {
                tracing::info!(
                    shard,
                    devices = new.len(),
                    "new devices in a shard held here"
                );
                self.deps.directory.start_shard(&new);
            }
        }
    }

    async fn leave(&mut self) {
        let held = self.leases.held();
        for fence in held {
            self.stop(fence).await;
            self.leases.released(fence.shard);
            if let Err(e) = self.deps.db.release(self.node(), fence).await {
                tracing::warn!(shard = fence.shard, error = %e, "cannot release the lease; it expires by itself");
            }
        }
        if let Err(e) = self.deps.db.leave(self.node()).await {
            tracing::warn!(error = %e, "cannot remove this node's row; the others drop it after the lease time");
        }
        tracing::info!(node_id = %self.node(), "left the cluster");
    }
}
