//! Several `shiki-cloud` processes share one fleet (issue #20): three nodes on one
//! PostgreSQL database and a Mosquitto of the test's own, six edges with simulated PLCs
//! publishing every second. The node owning the most devices is SIGKILLed: the others take
//! its devices within 30 s, a setpoint change on every device is verified through a
//! surviving node, and every device's telemetry is stored exactly once without a gap. A
//! node paused past its lease (SIGSTOP, then SIGCONT) gives its devices up without
//! overwriting the new owner's state.
//!
//! Prints the failover time (`--no-capture` shows it).
#![allow(
    clippy::print_stderr,
    reason = "the failover time is a figure for the notes, printed on purpose"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use shiki_cloud_store::testing::PgTestDb;
use shiki_e2e::mosquitto::Mosquitto;
use shiki_e2e::{Api, Cloud, Edge, EdgeOptions, PlcSim, assert_contiguous, temp_dir, wait_for};

const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
const DEVICES: usize = 6;
/// The lease time the nodes run with (the failover bound is this plus a round or two).
const LEASE_TTL: &str = "6s";

fn device(i: usize) -> String {
    format!("plant-{i}")
}

fn node_config(
    dir: &Path,
    node: &str,
    db: &PgTestDb,
    mqtt: &str,
) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join(format!("{node}.toml"));
    std::fs::write(
        &path,
        format!(
            "[store]\nurl = {url:?}\n\n[mqtt]\nurl = {mqtt:?}\n\n\
             [cluster]\nnode_id = {node:?}\nshards = 32\nlease_ttl = {LEASE_TTL:?}\nrenew_every = \"1s\"\n",
            url = db.url,
        ),
    )?;
    Ok(path)
}

async fn start_node(dir: &Path, node: &str, db: &PgTestDb, mqtt: &str) -> anyhow::Result<Cloud> {
    let config = node_config(dir, node, db, mqtt)?;
    Cloud::start(
        node,
        &dir.join(format!("{node}-data")),
        dir,
        None,
        Some(&config),
    )
    .await
}

/// `GET /api/v1/cluster` through `api`: devices per live node.
async fn owners(api: &Api) -> anyhow::Result<BTreeMap<String, u64>> {
    let (status, body) = api.get("/cluster").await?;
    anyhow::ensure!(status == 200, "GET /cluster: {status} {body}");
    Ok(body["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|n| n["live"] == json!(true))
        .map(|n| {
            (
                n["node_id"].as_str().unwrap_or_default().to_owned(),
                n["devices"].as_u64().unwrap_or(0),
            )
        })
        .collect())
}

/// The stored `snapshot` of a device, straight from PostgreSQL.
fn stored_shadow_version(db: &PgTestDb, device: &str) -> anyhow::Result<u64> {
    let rows = db
        .query(&format!(
            "SELECT snapshot -> 'shadow' ->> 'version' FROM shiki.devices WHERE device = '{device}'"
        ))
        .map_err(anyhow::Error::msg)?;
    rows.first()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no stored shadow version for {device}: {rows:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_six_devices_and_a_killed_node_loses_nothing() -> anyhow::Result<()> {
    let dir = temp_dir("cluster")?;
    let db = PgTestDb::create();
    let mosquitto = Mosquitto::start_plain(dir.path()).await?;
    let mqtt = mosquitto.url();
    let mut nodes = Vec::new();
    for node in NODES {
        nodes.push(start_node(dir.path(), node, &db, &mqtt).await?);
    }
    let first = nodes[0].api.clone();
    // The devices are registered first: a node subscribes to the devices it knows.
    for i in 0..DEVICES {
        first.register_device(&device(i)).await?;
    }
    wait_for(
        "every node live and the six devices owned",
        Duration::from_secs(60),
        || async {
            let o = owners(&first).await.ok()?;
            (o.len() == NODES.len() && o.values().sum::<u64>() == DEVICES as u64).then_some(())
        },
    )
    .await?;

    let mut sims = Vec::new();
    let mut edges = Vec::new();
    for i in 0..DEVICES {
        let sim_dir = dir.path().join(format!("sim-{i}"));
        std::fs::create_dir_all(&sim_dir)?;
        let sim = PlcSim::start(&sim_dir).await?;
        edges.push(
            Edge::start(
                &format!("edge-{i}"),
                dir.path(),
                &EdgeOptions::new(&device(i), mqtt.clone(), Some(sim.addr)),
            )
            .await?,
        );
        sims.push(sim);
    }
    // Every device is served, whichever node is asked.
    for i in 0..DEVICES {
        for n in &nodes {
            n.api
                .wait_device_ready(&device(i), Duration::from_secs(60))
                .await?;
        }
    }
    let before = owners(&first).await?;
    assert!(
        before.values().filter(|d| **d > 0).count() >= 2,
        "the devices spread over the nodes: {before:?}"
    );

    // SIGKILL the node owning the most devices.
    let (victim, owned) = before
        .iter()
        .max_by_key(|(_, d)| **d)
        .map(|(n, d)| (n.clone(), *d))
        .expect("nodes");
    let v = NODES.iter().position(|n| *n == victim).expect("known node");
    let mut dead = nodes.remove(v);
    let killed_at = Instant::now();
    let killed_ts = chrono::Utc::now();
    dead.child.kill9();
    let survivor = nodes[0].api.clone();

    // Within 30 s every device is owned by a live node and answers through a survivor.
    wait_for(
        "the dead node's devices taken over",
        Duration::from_secs(30),
        || async {
            let o = owners(&survivor).await.ok()?;
            if o.contains_key(&victim) || o.values().sum::<u64>() != DEVICES as u64 {
                return None;
            }
            for i in 0..DEVICES {
                let (status, _) = survivor
                    .get(&format!("/devices/{}", device(i)))
                    .await
                    .ok()?;
                if status != 200 {
                    return None;
                }
            }
            Some(())
        },
    )
    .await?;
    let failover = killed_at.elapsed();
    let recovered_ts = chrono::Utc::now();
    eprintln!("failover: {owned} devices of {victim} served again after {failover:?}");

    // A setpoint change on every device, through a surviving node, is verified.
    for i in 0..DEVICES {
        let id = device(i);
        let api = &nodes[i % nodes.len()].api;
        let target = 7.0 + i as f64 / 10.0;
        let (status, body) = api
            .patch_desired(&id, json!({ "chw_setpoint_c": target }), "after failover")
            .await?;
        assert_eq!(status, 200, "{id}: {body}");
        let version = body["version"].as_u64().expect("version");
        api.wait_verified(&id, "chw_setpoint_c", version, Duration::from_secs(60))
            .await?;
    }

    // Telemetry kept flowing: every device's seqs are 1..n, each once.
    let marks: Vec<u64> = {
        let mut m = Vec::new();
        for i in 0..DEVICES {
            let d = survivor.device(&device(i)).await.expect("view");
            m.push(d["last_seq"].as_u64().unwrap_or(0) + 3);
        }
        m
    };
    let mut during = 0;
    for (i, mark) in marks.iter().enumerate() {
        let id = device(i);
        let seqs = wait_for(
            &format!("{id} stored up to seq {mark}"),
            Duration::from_secs(60),
            || async {
                let seqs = survivor.telemetry_seqs(&id).await;
                (seqs.last().copied().unwrap_or(0) >= *mark).then_some(seqs)
            },
        )
        .await?;
        assert_contiguous(&seqs).map_err(|e| anyhow::anyhow!("{id}: {e}"))?;
        during += survivor
            .telemetry(&id)
            .await
            .iter()
            .filter_map(|s| {
                s["ts"]
                    .as_str()?
                    .parse::<chrono::DateTime<chrono::Utc>>()
                    .ok()
            })
            .filter(|ts| (killed_ts..=recovered_ts).contains(ts))
            .count();
    }
    eprintln!(
        "failover: {during} samples published between the kill and the recovery, all stored once (every device's seqs 1..n without a gap)"
    );

    // A node paused past its lease gives its devices up and writes nothing stale.
    let names: Vec<&str> = NODES.iter().copied().filter(|n| *n != victim).collect();
    let mut probe = None;
    for i in 0..DEVICES {
        let owner = survivor.served_by(&device(i)).await?;
        if owner == names[0] {
            probe = Some(device(i));
        }
    }
    // Pause the node that owns `probe` (node 0 of the survivors, if it owns any device).
    let (p, probe) = match probe {
        Some(d) => (0, d),
        None => (1, device(0)),
    };
    let other = nodes[1 - p].api.clone();
    let pid = nodes[p].child.pid().to_string();
    std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()?;
    wait_for(
        "the paused node's devices owned by the other",
        Duration::from_secs(30),
        || async {
            let o = owners(&other).await.ok()?;
            (o.len() == 1 && o.values().sum::<u64>() == DEVICES as u64).then_some(())
        },
    )
    .await?;
    assert_eq!(other.served_by(&probe).await?, names[1 - p]);
    // A change through the new owner while the old one sleeps.
    let (status, body) = other
        .patch_desired(&probe, json!({ "chw_setpoint_c": 9.0 }), "while paused")
        .await?;
    assert_eq!(status, 200, "{body}");
    let version = body["version"].as_u64().expect("version");
    other
        .wait_verified(&probe, "chw_setpoint_c", version, Duration::from_secs(60))
        .await?;
    std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()?;
    // It notices on its own clock, before touching the database.
    wait_for(
        "the woken node to stop what it held",
        Duration::from_secs(30),
        || async {
            nodes[p]
                .child
                .output()
                .contains("lease ran out before it was renewed")
                .then_some(())
        },
    )
    .await?;
    wait_for(
        "the woken node to rejoin",
        Duration::from_secs(30),
        || async {
            let o = owners(&other).await.ok()?;
            (o.len() == 2 && o.values().sum::<u64>() == DEVICES as u64).then_some(())
        },
    )
    .await?;
    // The stored shadow is the one the new owner wrote while the old one slept, or newer.
    let stored = stored_shadow_version(&db, &probe)?;
    assert!(
        stored >= version,
        "{probe}: stored shadow version {stored} is older than {version}: the paused node overwrote it"
    );
    let (status, body) = other
        .patch_desired(&probe, json!({ "chw_setpoint_c": 8.0 }), "after the pause")
        .await?;
    assert_eq!(status, 200, "{body}");
    let after = body["version"].as_u64().expect("version");
    assert!(after > version, "{body}");
    other
        .wait_verified(&probe, "chw_setpoint_c", after, Duration::from_secs(60))
        .await?;
    drop(edges);
    drop(sims);
    drop(dead);
    Ok(())
}
