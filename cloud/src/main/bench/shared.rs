//! What the benchmarks share: the cloud's configuration for a run, temp dirs, the MQTT
//! clients that stand in for devices, and printing a figure.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use shiki_cloud::{App, BrokerTarget, CloudConfig};
use shiki_proto::Topics;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Prints one line of figures to stdout.
pub(super) fn out(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// The cloud's configuration for one run: data in `dir`, the embedded broker and the API
/// on free loopback ports, a client id of its own.
pub(super) fn bench_config(dir: &Path) -> CloudConfig {
    let mut c = CloudConfig {
        data_dir: dir.to_owned(),
        ..CloudConfig::default()
    };
    c.mqtt.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.api.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.mqtt.client_id = format!("shiki-cloud-bench-{}", rand::random::<u32>());
    c
}

/// Points `config` at the external broker `url`, under a topic prefix of this run only
/// (the broker may be shared).
pub(super) fn use_external_broker(config: &mut CloudConfig, url: &str, run: u32) {
    config.mqtt.url = Some(url.to_owned());
    config.topic_prefix = format!("bench{run}/shiki/v1");
}

/// The topics under `config`'s prefix.
pub(super) fn topics_of(config: &CloudConfig) -> anyhow::Result<Topics> {
    Topics::new(&config.topic_prefix)
        .with_context(|| format!("invalid topic_prefix {:?}", config.topic_prefix))
}

/// A fresh directory under the system temp dir.
pub(super) fn temp_dir() -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("shiki-bench-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    Ok(d)
}

/// The port devices connect to (the embedded broker's, or the external one's) and how the
/// figures name that broker. With the embedded broker the bench's clients connect to
/// rumqttd behind the devices' front, with its secret: one bench client publishes for many
/// devices, which the front allows no device to do.
pub(super) fn broker_port(app: &App, target: &BrokerTarget) -> (Access, String) {
    match (&app.internal_mqtt, target) {
        (Some((a, secret)), _) => (
            Access {
                port: a.port(),
                password: Some(secret.clone()),
            },
            "the embedded broker".to_owned(),
        ),
        (None, BrokerTarget::External { port, host, .. }) => (
            Access {
                port: *port,
                password: None,
            },
            format!("{host}:{port}"),
        ),
        (None, _) => (
            Access {
                port: 1883,
                password: None,
            },
            "127.0.0.1:1883".to_owned(),
        ),
    }
}

/// Where the bench's MQTT clients connect: a loopback port, and the password it wants.
#[derive(Debug, Clone)]
pub(super) struct Access {
    pub port: u16,
    pub password: Option<String>,
}

/// An MQTT client on loopback standing in for a device (or a bare subscriber); the caller
/// polls the event loop.
pub(super) fn device_client(id: &str, access: &Access) -> (AsyncClient, EventLoop) {
    let client_id = format!("{id}-{}", rand::random::<u32>());
    let mut o = MqttOptions::new(client_id.clone(), "127.0.0.1", access.port);
    if let Some(p) = &access.password {
        o.set_credentials(client_id, p.clone());
    }
    o.set_keep_alive(Duration::from_secs(30))
        .set_inflight(1000)
        .set_max_packet_size(256 * 1024, 256 * 1024);
    let (c, mut el) = AsyncClient::new(o, 10_000);
    el.set_network_options(shiki_cloud::ingest::nodelay());
    (c, el)
}

/// Polls `client`'s event loop on the actix runtime: subscribes to `filter` on every
/// connection, fires the returned receiver at the first SUBACK, and hands every message
/// that arrives to `on_publish`. Abort the returned task to stop.
pub(super) fn subscriber(
    (client, mut el): (AsyncClient, EventLoop),
    filter: String,
    mut on_publish: impl FnMut(&AsyncClient, Publish) + 'static,
) -> (JoinHandle<()>, oneshot::Receiver<()>) {
    let (ready_tx, ready_rx) = oneshot::channel::<()>();
    let task = actix::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => on_publish(&client, p),
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    });
    (task, ready_rx)
}

/// A database of its own on a PostgreSQL server, for one bench run; dropped by
/// [`ScratchDb::drop_now`].
#[derive(Debug)]
pub(super) struct ScratchDb {
    server: String,
    name: String,
    /// The scratch database's URL.
    pub url: String,
}

impl ScratchDb {
    /// Creates `shiki_bench_<random>` on the server of `server_url`.
    pub async fn create(server_url: &str) -> anyhow::Result<Self> {
        let name = format!("shiki_bench_{}", rand::random::<u32>());
        admin(server_url, &format!("CREATE DATABASE {name}")).await?;
        let (base, _) = server_url
            .rsplit_once('/')
            .context("--postgres must be postgres://user@host:port/database")?;
        Ok(Self {
            server: server_url.to_owned(),
            url: format!("{base}/{name}"),
            name,
        })
    }

    /// Drops the database (and its connections).
    pub async fn drop_now(self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = admin(&self.server, &sql).await {
            tracing::warn!(database = %self.name, error = %e, "cannot drop the scratch database");
        }
    }
}

/// Runs `sql` on a connection of its own to `url`.
pub(super) async fn admin(url: &str, sql: &str) -> anyhow::Result<()> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| {
            format!(
                "cannot connect to {}",
                shiki_cloud::store::redacted_url(url)
            )
        })?;
    let conn = tokio::spawn(conn);
    let result = client.batch_execute(sql).await;
    drop(client);
    let _ = conn.await;
    result.with_context(|| format!("{sql} failed"))
}
