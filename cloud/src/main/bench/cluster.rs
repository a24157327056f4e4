//! The cluster benchmark (`--only cluster`, needs `--postgres`): 1, 2, … `--nodes` cloud
//! nodes in this process on a scratch PostgreSQL database each, behind a Mosquitto the
//! bench starts (unlimited queues, so a slow consumer is measured rather than dropped), and
//! the same telemetry stream of `--messages` samples over 100 registered devices. Prints
//! the ingest rate per node count (messages stored per second, from the first publish to
//! the last commit), then starts one more node on the last cluster and counts the shards
//! and devices that moved to it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use shiki_cloud::App;
use shiki_cloud::config::ClusterConfig;

use super::ingest::{bench_devices, register_devices, spawn_publisher, stream};
use super::shared::{Access, ScratchDb, bench_config, out, temp_dir, topics_of};

/// Shards of the bench clusters.
const SHARDS: u32 = 64;

/// A Mosquitto of the bench's own on a free loopback port (killed on drop).
struct Broker {
    child: std::process::Child,
    port: u16,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Broker {
    async fn start(dir: &Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_queued_messages 0\nmax_inflight_messages 100\nmessage_size_limit 131072\n"
            ),
        )?;
        let child = std::process::Command::new("mosquitto")
            .args(["-c", &conf.display().to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("cannot start mosquitto (the cluster bench needs it on PATH: apt-get install mosquitto)")?;
        let broker = Self { child, port };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "mosquitto did not listen on {addr}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(broker)
    }
}

/// Starts node `name` of a cluster on `db` and the broker at `port`.
async fn start_node(name: &str, db: &str, port: u16, prefix: &str) -> anyhow::Result<App> {
    let dir = temp_dir()?;
    let mut cfg = bench_config(&dir);
    cfg.store.url = Some(db.to_owned());
    cfg.mqtt.url = Some(format!("mqtt://127.0.0.1:{port}"));
    cfg.mqtt.client_id = "bench-cloud".into();
    cfg.topic_prefix = prefix.to_owned();
    let mut cluster = ClusterConfig::node(name);
    cluster.shards = SHARDS;
    cluster.lease_ttl = Duration::from_secs(6);
    cluster.renew_every = Duration::from_secs(1);
    cfg.cluster = Some(cluster);
    Ok(shiki_cloud::start(cfg).await?)
}

/// Waits until the nodes' actors cover all `devices` and every node has taken its share.
async fn balanced(nodes: &[App], devices: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let views: Vec<_> = nodes.iter().filter_map(App::cluster).collect();
        let owned: usize = views.iter().map(|v| v.leases_held()).sum();
        let running: usize = nodes.iter().map(App::devices_running).sum();
        if owned == SHARDS as usize && running == devices {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the cluster did not settle: {owned} of {SHARDS} shards held, {running} of {devices} devices running"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn stored(nodes: &[App]) -> u64 {
    nodes.iter().map(|n| n.store().stats().samples_stored).sum()
}

/// Waits until the nodes have stored `target` samples in all, or nothing moved for 20 s.
async fn until_stored(nodes: &[App], target: u64) -> u64 {
    let (mut last, mut moved) = (stored(nodes), Instant::now());
    while last < target && moved.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = stored(nodes);
        if now != last {
            (last, moved) = (now, Instant::now());
        }
    }
    last
}

/// Runs the bench for 1..=`max_nodes` nodes, then a join.
pub(super) async fn run(server: &str, max_nodes: usize, messages: usize) -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let broker = Broker::start(&dir).await?;
    let devices = bench_devices().len();
    out(&format!(
        "cluster: {messages} single-sample messages over {devices} devices, {SHARDS} shards, \
         PostgreSQL and Mosquitto on this machine"
    ));
    let mut base_rate = None;
    for k in 1..=max_nodes.max(1) {
        let db = ScratchDb::create(server).await?;
        let prefix = format!("bench{}/shiki/v1", rand::random::<u32>());
        let result = measure(&db.url, broker.port, &prefix, k, messages, k == max_nodes).await;
        db.drop_now().await;
        let rate = result?;
        let ratio = base_rate.map_or(1.0, |b: f64| rate / b);
        base_rate.get_or_insert(rate);
        out(&format!(
            "cluster: {k} node(s): {rate:.0} msg/s stored ({ratio:.2}× one node)"
        ));
    }
    drop(broker);
    Ok(())
}

/// One cluster of `k` nodes: the rate it stores the stream at; with `join`, then adds a
/// node and prints what moved.
async fn measure(
    db: &str,
    port: u16,
    prefix: &str,
    k: usize,
    messages: usize,
    join: bool,
) -> anyhow::Result<f64> {
    let mut nodes = Vec::new();
    for i in 0..k {
        nodes.push(start_node(&format!("bench-node-{i}"), db, port, prefix).await?);
    }
    register_devices(&nodes[0], None).await?;
    let devices = bench_devices().len();
    balanced(&nodes, devices).await?;
    let mut cfg = bench_config(&temp_dir()?);
    cfg.topic_prefix = prefix.to_owned();
    let topics = topics_of(&cfg)?;
    let access = Access {
        port,
        password: None,
    };
    // One sample per device first: it proves every shard's session subscribed.
    let warm = spawn_publisher(access.clone(), stream(&topics, devices, 1, 13));
    let got = until_stored(&nodes, devices as u64).await;
    drop(warm);
    anyhow::ensure!(
        got == devices as u64,
        "only {got} of {devices} warm-up samples stored: a shard's session did not subscribe"
    );
    let start = Instant::now();
    let publisher = spawn_publisher(access, stream(&topics, messages, 2, 13));
    let target = (devices + messages) as u64;
    let got = until_stored(&nodes, target).await;
    let took = start.elapsed();
    drop(publisher);
    anyhow::ensure!(
        got == target,
        "{k} node(s) stored {got} of {target} samples and then nothing for 20 s"
    );
    let rate = messages as f64 / took.as_secs_f64();
    if join {
        let before = nodes[0].cluster().and_then(|v| v.snapshot());
        let owners_before = lease_owners(before.as_ref());
        nodes.push(start_node(&format!("bench-node-{k}"), db, port, prefix).await?);
        let joined = format!("bench-node-{k}");
        // Settled when the newcomer holds its share and every shard has an owner again.
        let deadline = Instant::now() + Duration::from_secs(60);
        let owners_after = loop {
            let owners = lease_owners(nodes[0].cluster().and_then(|v| v.snapshot()).as_ref());
            let all_owned = owners.iter().all(Option::is_some);
            let mine = owners
                .iter()
                .filter(|o| o.as_deref() == Some(joined.as_str()))
                .count();
            let expected = shards_preferring(&joined, k + 1);
            if all_owned && mine == expected {
                break owners;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the joining node took {mine} of its {expected} shards within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let moved = owners_after
            .iter()
            .zip(&owners_before)
            .filter(|(a, b)| a != b)
            .count();
        let moved_devices = bench_devices()
            .iter()
            .map(|d| shiki_cloud::cluster::shard_of(d, SHARDS) as usize)
            .filter(|&s| owners_after.get(s) != owners_before.get(s))
            .count();
        out(&format!(
            "cluster: a node joining {k}: {moved} of {SHARDS} shards moved ({:.0} % ; 1/{} = {:.0} %), \
             {moved_devices} of {devices} devices",
            moved as f64 * 100.0 / f64::from(SHARDS),
            k + 1,
            100.0 / (k + 1) as f64
        ));
    }
    for n in nodes {
        n.stop().await;
    }
    Ok(rate)
}

/// Each shard's lease owner in a snapshot (by shard).
fn lease_owners(snap: Option<&shiki_cloud::store::ClusterSnapshot>) -> Vec<Option<String>> {
    let mut owners = vec![None; SHARDS as usize];
    if let Some(s) = snap {
        for l in &s.leases {
            if l.expires_at > s.now
                && let Some(o) = owners.get_mut(l.shard as usize)
            {
                o.clone_from(&l.owner);
            }
        }
    }
    owners
}

/// How many shards prefer `node` among `bench-node-0..n`.
fn shards_preferring(node: &str, n: usize) -> usize {
    let names: Vec<String> = (0..n).map(|i| format!("bench-node-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    (0..SHARDS)
        .filter(|s| shiki_cloud::cluster::preferred(*s, &refs) == Some(node))
        .count()
}
