//! The composition root: builds the store, the broker (embedded or external), the ingest,
//! the device registry, the notifier, the OTA artifact storage and the admin API, and
//! wires them. Nothing else starts
//! actors or reads the whole configuration.

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use shiki_proto::Topics;

use crate::api::{
    self, ApiState, Artifacts, ArtifactsConfig, SharedBackend, URL_KEY_FILE, UrlKeyError, UrlSigner,
};
use crate::auth::{AuthConfig, bootstrap_admin};
use crate::backend_impl::CloudBackend;
use crate::broker::{self, BrokerError, EmbeddedBroker};
use crate::cluster::{ClusterNode, ClusterView, NodeDeps};
use crate::config::{BrokerTarget, CloudConfig, ConfigError};
use crate::device::{
    Clock, DeviceConfig, DeviceDeps, DeviceMetrics, Directory, Ownership, Registry, SystemClock,
};
use crate::ingest::{Ingest, IngestStats};
use crate::notifier::{Notifier, NotifierStats};
use crate::ota::{Jobs, JobsActor, StoredArtifacts};
use crate::publisher::MqttPublisher;
use crate::schedule::{FleetScheduleActor, FleetScheduler};
use crate::store::{ClusterDb, PgOptions, PgStore, RedbStore, Store, StoreError, StoreOptions};

/// Why the cloud could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("admin API cannot listen on {addr}: {source}")]
    ApiBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    UrlKey(#[from] UrlKeyError),
    #[error("cannot set up the OTA artifacts dir {dir}: {source}")]
    ArtifactsDir {
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("admin API configuration refused: {0}")]
    Auth(String),
    #[error("cannot create the first admin token: {0}")]
    Bootstrap(String),
}

/// A running cloud. Stop it with [`App::stop`].
#[derive(Debug)]
pub struct App {
    /// Address of the embedded broker (`None` with an external broker).
    pub mqtt_addr: Option<SocketAddr>,
    /// Address the admin API listens on.
    pub api_addr: SocketAddr,
    /// The first admin token, when this start created it (show it once).
    pub admin_token: Option<String>,
    pub registry: Addr<Registry>,
    pub ingest_stats: Arc<IngestStats>,
    pub device_metrics: Arc<DeviceMetrics>,
    pub notifier_stats: Arc<NotifierStats>,
    /// The fleet's yearly schedule jobs (send it `ScheduleTick` to evaluate now).
    pub fleet: Addr<FleetScheduleActor>,
    /// Makes the signed download URLs of OTA artifacts (under `api.public_url`).
    pub url_signer: UrlSigner,
    /// The OTA jobs.
    pub jobs: Addr<JobsActor>,
    /// The embedded broker behind the devices' front and its secret (benches publish there
    /// for many devices from one client).
    pub internal_mqtt: Option<(SocketAddr, String)>,
    store: Arc<dyn Store>,
    /// The fleet's MQTT session (`None` on a cluster node: each shard has its own).
    ingest: Option<Ingest>,
    /// This process as a node of a cluster.
    cluster: Option<ClusterNode>,
    directory: Arc<Directory>,
    /// A cluster node's publishing connection.
    publishing: Option<tokio::task::JoinHandle<()>>,
    api: actix_web::dev::ServerHandle,
    _broker: Option<Embedded>,
}

/// The embedded broker: rumqttd on loopback, behind the front devices connect to.
#[derive(Debug)]
struct Embedded {
    broker: EmbeddedBroker,
    front: broker::DeviceFront,
    /// What rumqttd accepts as a password: the front's and the cloud's own.
    password: String,
    /// Device data acknowledged by the front once the ingest stored it.
    receipts: Arc<broker::Receipts>,
}

/// How long the store's writer lets writes gather under load when nothing waits for the
/// commit (see [`StoreOptions::linger`]): fewer, larger commits cost the writer less CPU
/// per message.
const COMMIT_LINGER: Duration = Duration::from_millis(5);

/// Starts everything. Must be called inside an actix `System`. An MQTT listen port of 0
/// picks a free port for the embedded broker; an API port of 0 binds any free port.
pub async fn start(config: CloudConfig) -> Result<App, AppError> {
    config.validate()?;
    // Idempotent: main (and tests) may have installed it already.
    shiki_shared::tls::install_crypto_provider();
    let topics = Topics::new(&config.topic_prefix).map_err(|e| ConfigError::Invalid {
        key: "topic_prefix",
        reason: e.to_string(),
    })?;
    let target = config.broker()?;
    let ack_after_commit = config.mqtt.acks_after_commit(&target);
    let (store, cluster_db) = open_store(&config, ack_after_commit)?;
    let dyn_store = store.clone();
    let (api_listener, api_addr) = bind_api(&config)?;
    let artifacts = open_artifacts(&config, api_addr)?;
    let url_signer = artifacts.urls().clone();
    let sessions = Arc::new(broker::DeviceSessions::default());
    let embedded = start_broker(&config, &target, &topics, dyn_store.clone(), &sessions)?;
    let target = match &embedded {
        Some(e) => BrokerTarget::Embedded(e.broker.addr()),
        None => target,
    };
    // A cluster node publishes commands on a connection of its own; its shards' sessions
    // (see `cluster`) receive.
    let mut mqtt = config.mqtt.clone();
    if let Some(c) = &config.cluster {
        mqtt.client_id = format!("{}-{}-out", config.mqtt.client_id, c.node_id);
    }
    let options = broker::client_options(
        &mqtt,
        &target,
        embedded.as_ref().map(|e| e.password.as_str()),
    )?;
    let (client, eventloop) = Ingest::client_for(options);

    let notifier_stats = Arc::new(NotifierStats::default());
    let notifier = Notifier::new(config.notifier.clone(), notifier_stats.clone()).start();
    let publisher = MqttPublisher::new(client.clone(), topics.clone()).start();
    let device_metrics = Arc::new(DeviceMetrics::default());
    let clock = SystemClock::shared();
    // The jobs actor and the device actors talk to each other: its address first.
    let jobs_ctx = Context::<JobsActor>::new();
    let jobs = jobs_ctx.address();
    let deps = DeviceDeps {
        store: dyn_store.clone(),
        publisher: publisher.clone().recipient(),
        alerts: notifier.clone().recipient(),
        // On a cluster node the jobs lease's own session hears statuses and job updates.
        jobs: config.cluster.is_none().then(|| jobs.clone().recipient()),
        clock: clock.clone(),
        cfg: DeviceConfig {
            verification: config.verification,
            offline_after: config.notifier.offline_after,
            shadow_limits: config.shadow.limits(),
        },
        metrics: device_metrics.clone(),
        schedule: config.schedule.sync(),
    };
    let ownership = config.cluster.as_ref().map(|c| Ownership::new(c.shards));
    let device_cfg = deps.cfg;
    let directory = match &ownership {
        Some(o) => Directory::with_ownership(deps, o.clone()),
        None => Directory::new(deps),
    };
    let running = directory.clone();
    let registry = Registry::with_directory(directory.clone()).start();
    // On a cluster node the jobs actor waits for the jobs lease (the coordinator hands it
    // the stored jobs then) and publishes `jobs/notify` itself, since most devices' actors
    // run elsewhere (ADR docs/adr/cluster-ota-jobs.md).
    let artifacts_for_jobs = Arc::new(StoredArtifacts::new(dyn_store.clone(), url_signer.clone()));
    let jobs_actor = if config.cluster.is_some() {
        JobsActor::new(
            Jobs::restore(config.ota.jobs, artifacts_for_jobs, Vec::new()),
            dyn_store.clone(),
            publisher.recipient(),
            notifier.recipient(),
            clock.clone(),
        )
        .standby()
    } else {
        JobsActor::new(
            Jobs::restore(config.ota.jobs, artifacts_for_jobs, dyn_store.jobs()?),
            dyn_store.clone(),
            registry.clone().recipient(),
            notifier.recipient(),
            clock.clone(),
        )
    };
    jobs_ctx.run(jobs_actor);
    // The yearly push and New Year check; `last_run` survives restarts so a missed
    // 1 December is caught up.
    let last_run = dyn_store.fleet_last_run()?.unwrap_or_else(|| clock.now());
    let scheduler = FleetScheduler::new(&config.schedule.fleet(), last_run).map_err(|e| {
        ConfigError::Invalid {
            key: "schedule.yearly_push_cron",
            reason: e.to_string(),
        }
    })?;
    let fleet =
        FleetScheduleActor::new(scheduler, clock.clone(), registry.clone().recipient()).start();
    let ingest_stats = Arc::new(IngestStats::default());
    let mut publishing = None;
    let (ingest, cluster) = match (&config.cluster, cluster_db, ownership) {
        (Some(c), Some(db), Some(ownership)) => {
            publishing = Some(actix::spawn(crate::publisher::keep_connected((
                client, eventloop,
            ))));
            let node = ClusterNode::start(NodeDeps {
                config: c.clone(),
                api_url: node_api_url(c, api_addr),
                db,
                store: dyn_store.clone(),
                directory,
                ownership,
                topics,
                mqtt: config.mqtt.clone(),
                target: target.clone(),
                stats: ingest_stats.clone(),
                jobs: crate::cluster::JobsPeers {
                    drive: jobs.clone().recipient(),
                    stand_by: jobs.clone().recipient(),
                    inputs: jobs.clone().recipient(),
                },
            })
            .await?;
            (None, Some(node))
        }
        _ => (
            Some(Ingest::start(
                (client, eventloop),
                topics,
                dyn_store.clone(),
                directory,
                ingest_stats.clone(),
                ack_after_commit,
                embedded.as_ref().map(|e| e.receipts.clone()),
            )),
            None,
        ),
    };

    let mut backend = CloudBackend::new(
        registry.clone(),
        jobs.clone(),
        dyn_store,
        ingest_stats.clone(),
        device_metrics.clone(),
    )?
    .with_sessions(sessions);
    if let Some(e) = &embedded {
        backend = backend.with_front_stats(e.front.stats.clone());
    }
    if let Some(node) = &cluster {
        backend = backend.with_cluster(node.view.clone(), device_cfg);
    }
    let backend: SharedBackend = Arc::new(backend);
    let oidc = config
        .auth
        .oidc
        .clone()
        .map(|oidc| crate::auth::oidc::OidcSettings {
            config: oidc,
            public_url: config.api.public_url(api_addr),
        });
    let limits = ApiLimits {
        server: config.api.server_options(),
        max_body_bytes: config.api.max_body_bytes,
        failed_auth: config.auth.failed_auth_limits(),
    };
    let (api, admin_token) =
        serve_api((api_listener, api_addr), backend, artifacts, oidc, limits).await?;
    let mqtt_addr = embedded.as_ref().map(|e| e.front.addr());
    tracing::info!(%api_addr, mqtt = ?mqtt_addr, "shiki-cloud started");
    Ok(App {
        mqtt_addr,
        internal_mqtt: embedded
            .as_ref()
            .map(|e| (e.broker.addr(), e.password.clone())),
        api_addr,
        admin_token,
        registry,
        ingest_stats,
        device_metrics,
        notifier_stats,
        fleet,
        url_signer,
        jobs,
        store,
        ingest,
        cluster,
        directory: running,
        publishing,
        api,
        _broker: embedded,
    })
}

/// The URL the other nodes forward this node's requests to: `cluster.api_url`, else the
/// address the API is bound to (`api.public_url` names the cluster's front, not one node).
fn node_api_url(c: &crate::config::ClusterConfig, bound: SocketAddr) -> String {
    c.api_url.clone().unwrap_or_else(|| {
        if bound.ip().is_unspecified() {
            tracing::warn!(%bound, "cluster.api_url is not set and the API listens on every address: the other nodes cannot reach this one; set cluster.api_url");
        }
        format!("http://{bound}")
    })
}

/// Opens the PostgreSQL store of `store.url`, or else the redb store in the data dir.
/// Acknowledging on receipt, nothing waits for a telemetry commit, so under load the redb
/// writer lets a few milliseconds of writes gather into each commit.
fn open_store(
    config: &CloudConfig,
    ack_after_commit: bool,
) -> Result<(Arc<dyn Store>, Option<ClusterDb>), AppError> {
    if let Some(url) = &config.store.url {
        let pg = PgStore::open(
            url,
            &PgOptions {
                max_batch: config.store.max_batch,
                pool_size: config.store.pool_size,
                retention: config.store.retention,
            },
        )?;
        let cluster = pg.cluster();
        return Ok((Arc::new(pg), Some(cluster)));
    }
    let options = StoreOptions {
        max_batch: config.store.max_batch,
        cache_bytes: config.store.cache_mb.saturating_mul(1024 * 1024),
        linger: if ack_after_commit {
            Duration::ZERO
        } else {
            COMMIT_LINGER
        },
        ..StoreOptions::default()
    };
    Ok((
        Arc::new(RedbStore::open_with(&config.store_path(), &options)?),
        None,
    ))
}

/// With the embedded broker: rumqttd on a free loopback port, accepting only an internal
/// secret, and the devices' front on `mqtt.listen` (port 0: any free port), which checks
/// each device against the registry and keeps it to its own topics.
fn start_broker(
    config: &CloudConfig,
    target: &BrokerTarget,
    topics: &Topics,
    store: Arc<dyn Store>,
    sessions: &Arc<broker::DeviceSessions>,
) -> Result<Option<Embedded>, AppError> {
    let BrokerTarget::Embedded(listen) = target else {
        return Ok(None);
    };
    let password = broker::internal_password();
    let receipts = Arc::new(broker::Receipts::default());
    let broker = EmbeddedBroker::start_on_free_port(config.mqtt.max_inflight, Some(&password))?;
    let front = broker::DeviceFront::start(
        *listen,
        broker::FrontConfig {
            upstream: broker.addr(),
            internal_password: password.clone(),
            topics: topics.clone(),
            allow_unregistered: config.mqtt.allow_unregistered,
            max_packet: shiki_proto::MAX_MESSAGE_BYTES + 4096,
            receipts: receipts.clone(),
        },
        store,
        sessions.clone(),
    )?;
    tracing::info!(addr = %front.addr(), allow_unregistered = config.mqtt.allow_unregistered, "embedded MQTT broker listening");
    Ok(Some(Embedded {
        broker,
        front,
        password,
        receipts,
    }))
}

/// Binds the admin API's listener (port 0: any free port) and returns it with its address.
fn bind_api(config: &CloudConfig) -> Result<(std::net::TcpListener, SocketAddr), AppError> {
    let addr = config.api.listen;
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| AppError::ApiBind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| AppError::ApiBind { addr, source })?;
    Ok((listener, bound))
}

/// The OTA artifact storage in the data dir, with download URLs under `api.public_url`
/// (default: the bound API address) signed with the key in `<data_dir>/ota-url.key`.
fn open_artifacts(config: &CloudConfig, api_addr: SocketAddr) -> Result<Artifacts, AppError> {
    if config.api.public_url.is_none() && !api_addr.ip().is_loopback() {
        tracing::warn!(%api_addr, "api.public_url is not set: OTA download URLs name the listen address, which gateways may not reach");
    }
    // With the PostgreSQL store nothing else has made the data dir yet.
    std::fs::create_dir_all(&config.data_dir).map_err(|source| AppError::ArtifactsDir {
        dir: config.data_dir.clone(),
        source,
    })?;
    let urls = UrlSigner::load_or_create(
        &config.data_dir.join(URL_KEY_FILE),
        &config.api.public_url(api_addr),
        config.ota.url_ttl,
    )?;
    let dir = config.artifacts_dir();
    Artifacts::open(ArtifactsConfig {
        dir: dir.clone(),
        trusted_keys: config.ota.trusted_keys()?,
        max_bytes: config.ota.max_artifact_bytes(),
        urls,
    })
    .map_err(|source| AppError::ArtifactsDir { dir, source })
}

/// What `[api]` and `[auth]` say about hostile clients: timeouts, body size, lockouts.
struct ApiLimits {
    server: api::ServerOptions,
    max_body_bytes: usize,
    failed_auth: Option<crate::auth::FailedAuthLimits>,
}

/// Creates the first admin token on an empty store and serves the admin API on `listener`.
/// Returns the server's handle and the bootstrap token (if one was made).
async fn serve_api(
    (listener, addr): (std::net::TcpListener, SocketAddr),
    backend: SharedBackend,
    artifacts: Artifacts,
    oidc: Option<crate::auth::oidc::OidcSettings>,
    limits: ApiLimits,
) -> Result<(actix_web::dev::ServerHandle, Option<String>), AppError> {
    if let Some(o) = &oidc {
        tracing::info!(issuer = %o.config.issuer, audience = %o.config.audience, web_sign_in = o.config.client_id.is_some(), "OIDC sign-in configured");
    }
    let auth = AuthConfig {
        admin_token: std::env::var("SHIKI_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        oidc,
    };
    let state = ApiState::new(
        backend.clone(),
        api::ApiConfig {
            auth,
            metrics_require_token: false,
            max_body_bytes: limits.max_body_bytes,
            failed_auth: limits.failed_auth,
        },
    )
    .map_err(|e| AppError::Auth(e.to_string()))?
    .with_artifacts(artifacts);
    let admin_token = bootstrap_admin(backend.as_ref(), state.authenticator(), chrono::Utc::now())
        .await
        .map_err(|e| AppError::Bootstrap(e.to_string()))?;
    let server = api::server(listener, state, &limits.server)
        .map_err(|source| AppError::ApiBind { addr, source })?;
    let handle = server.handle();
    actix::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "admin API stopped");
        }
    });
    Ok((handle, admin_token))
}

impl App {
    /// This node's view of the cluster (`None` outside a cluster).
    pub fn cluster(&self) -> Option<Arc<ClusterView>> {
        self.cluster.as_ref().map(|c| c.view.clone())
    }

    /// Device actors running in this process now.
    pub fn devices_running(&self) -> usize {
        self.directory.len()
    }

    /// The store (for tests and benches reading what was stored).
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Stops the API and the ingest, then commits everything queued and closes the store.
    /// The embedded broker lives until the process ends.
    pub async fn stop(self) {
        if let Some(node) = self.cluster {
            // Hand the devices over first: the others take them at their next round.
            node.leave().await;
        }
        self.api.stop(true).await;
        if let Some(ingest) = self.ingest {
            ingest.stop().await;
        }
        if let Some(p) = self.publishing {
            p.abort();
        }
        let store = self.store.clone();
        // Joining the writer blocks: do it off the arbiter.
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
        tracing::info!("shiki-cloud stopped; store flushed");
    }
}

/// Runs the cloud until `shutdown` resolves, then stops it cleanly (store flushed).
/// Must be called inside an actix `System`.
pub async fn run(config: CloudConfig, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
    let app = start(config).await?;
    if let Some(token) = &app.admin_token {
        // Shown once: only its hash is stored.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "First start: created admin API token (shown only once, store it now):\n{token}"
        );
    }
    shutdown.await;
    tracing::info!("shutting down");
    app.stop().await;
    Ok(())
}
