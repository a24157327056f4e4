//! OTA jobs on a cluster of cloud nodes (issue #20): three `shiki-cloud` nodes on one
//! PostgreSQL database and a Mosquitto of the test's own, three edges run from copies of
//! their binary. The nodes share their data dir (with the PostgreSQL store it holds only
//! the OTA artifacts and the download-URL key) and hand out download URLs under one
//! address, a proxy standing in for the load balancer in front of them.
//!
//! A job created through a node that neither drives the jobs nor owns every device updates
//! the edges owned by the others; the node driving the jobs (holding the jobs lease) is
//! SIGKILLed mid-rollout, and the job still ends with every device succeeded, driven by a
//! survivor from what PostgreSQL and the broker kept.
//!
//! Prints how long the rollout and the failover took (`--no-capture` shows it).
#![allow(
    clippy::print_stderr,
    reason = "the durations are figures for the notes, printed on purpose"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shiki_cloud_store::testing::PgTestDb;
use shiki_e2e::mosquitto::Mosquitto;
use shiki_e2e::ota::{ReleaseKeys, copy_binary, stamped_edge};
use shiki_e2e::stack::ADMIN_TOKEN;
use shiki_e2e::{Api, Cloud, Edge, EdgeOptions, TcpProxy, bin_path, temp_dir, wait_for};

const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
const DEVICES: usize = 3;
const LEASE_TTL: &str = "6s";
const BASE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The version the edges are updated to (the same stamped build as the OTA tests').
const NEW_VERSION: &str = "99.1.0";

fn device(i: usize) -> String {
    format!("ota-plant-{i}")
}

async fn start_node(
    dir: &Path,
    node: &str,
    db: &PgTestDb,
    mqtt: &str,
    downloads: &TcpProxy,
    key: &ReleaseKeys,
) -> anyhow::Result<Cloud> {
    let config = dir.join(format!("{node}.toml"));
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = {url:?}\n\n[mqtt]\nurl = {mqtt:?}\n\n\
             [api]\npublic_url = \"http://{downloads}\"\n\n\
             [ota]\npublic_keys = [{public:?}]\n\n\
             [cluster]\nnode_id = {node:?}\nshards = 32\nlease_ttl = {LEASE_TTL:?}\nrenew_every = \"1s\"\n",
            url = db.url,
            downloads = downloads.addr(),
            public = key.public,
        ),
    )?;
    // One data dir for every node: the artifacts and the URL key are shared.
    Cloud::start(node, &dir.join("shared-data"), dir, None, Some(&config)).await
}

/// `GET /api/v1{path}` through `api`: status, body and the `Shiki-Node` that served it.
async fn get_served(api: &Api, path: &str) -> anyhow::Result<(u16, Value, Option<String>)> {
    let r = reqwest::Client::new()
        .get(format!("http://{}/api/v1{path}", api.addr))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?;
    let status = r.status().as_u16();
    let node = r
        .headers()
        .get("shiki-node")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((status, r.json().await.unwrap_or(Value::Null), node))
}

/// The node every live node says drives the jobs (all agreeing), once they do.
async fn jobs_driver(apis: &[Api]) -> Option<String> {
    let mut seen = BTreeSet::new();
    for api in apis {
        match get_served(api, "/jobs").await.ok()? {
            (200, _, Some(node)) => seen.insert(node),
            _ => return None,
        };
    }
    (seen.len() == 1).then(|| seen.into_iter().next().expect("one"))
}

/// Live nodes as `GET /api/v1/cluster` through `api` lists them.
async fn live_nodes(api: &Api) -> Option<BTreeSet<String>> {
    let (status, body) = api.get("/cluster").await.ok()?;
    (status == 200).then(|| {
        body["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["live"] == json!(true))
            .filter_map(|n| n["node_id"].as_str().map(str::to_owned))
            .collect()
    })
}

/// Each device's execution in job `id` as `api` shows it: its status, and the step the
/// edge last reported (`None` before its first update).
async fn executions(api: &Api, id: &str) -> Option<BTreeMap<String, (String, Option<String>)>> {
    let (status, job) = api.get(&format!("/jobs/{id}")).await.ok()?;
    (status == 200).then(|| {
        job["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| {
                Some((
                    d["device"].as_str()?.to_owned(),
                    (
                        d["status"].as_str()?.to_owned(),
                        d["step"].as_str().map(str::to_owned),
                    ),
                ))
            })
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_through_one_node_updates_every_edge_and_survives_its_driver_killed()
-> anyhow::Result<()> {
    let dir = temp_dir("cluster-ota")?;
    let key = ReleaseKeys::generate(&dir.path().join("keys"))?;
    let new_build = stamped_edge(NEW_VERSION)?;
    let db = PgTestDb::create();
    let mosquitto = Mosquitto::start_plain(dir.path()).await?;
    let mqtt = mosquitto.url();
    // The load balancer in front of the nodes' download URLs: pointed at a node that
    // stays up once the driver is known.
    let downloads = TcpProxy::start(std::net::SocketAddr::from(([127, 0, 0, 1], 9))).await?;
    let mut nodes = Vec::new();
    for node in NODES {
        nodes.push(start_node(dir.path(), node, &db, &mqtt, &downloads, &key).await?);
    }
    let apis: Vec<Api> = nodes.iter().map(|n| n.api.clone()).collect();
    for i in 0..DEVICES {
        apis[0].register_device(&device(i)).await?;
    }
    let agreed = wait_for(
        "every node live and one of them driving the jobs",
        Duration::from_secs(60),
        || async {
            let live = live_nodes(&apis[0]).await?;
            if live.len() != NODES.len() {
                return None;
            }
            jobs_driver(&apis).await
        },
    )
    .await;
    if let Err(e) = agreed {
        let mut seen = Vec::new();
        for api in &apis {
            seen.push(get_served(api, "/jobs").await.ok());
        }
        let logs: Vec<String> = nodes.iter().map(|n| n.child.output()).collect();
        anyhow::bail!(
            "{e:#}: GET /jobs answered {seen:?}\n{}",
            logs.join("\n---\n")
        );
    }

    let mut edges = Vec::new();
    for i in 0..DEVICES {
        let bin_dir = dir.path().join(format!("bin-{i}"));
        let mut opts = EdgeOptions::new(&device(i), mqtt.clone(), None);
        opts.binary = Some(copy_binary(
            &bin_path("shiki-edge")?,
            &bin_dir,
            "shiki-edge",
        )?);
        opts.extra_toml.push_str(&format!(
            "[ota]\npublic_keys = [{:?}]\nhealth_window = \"20s\"\n",
            key.public
        ));
        edges.push(Edge::start(&format!("edge-{i}"), dir.path(), &opts).await?);
    }
    for i in 0..DEVICES {
        wait_for(
            &format!("{} online on {BASE_VERSION}", device(i)),
            Duration::from_secs(60),
            || async {
                (apis[0].software_version(&device(i)).await.as_deref() == Some(BASE_VERSION))
                    .then_some(())
            },
        )
        .await?;
    }

    // Who does what: the driver of the jobs, the devices' owners, and a third node through
    // which the job is created.
    let driver = jobs_driver(&apis)
        .await
        .ok_or_else(|| anyhow::anyhow!("the nodes disagree on the jobs' driver"))?;
    let d = NODES.iter().position(|n| *n == driver).expect("known node");
    let mut owners = BTreeMap::new();
    for i in 0..DEVICES {
        owners.insert(device(i), apis[0].served_by(&device(i)).await?);
    }
    let (c, creator) = NODES
        .iter()
        .enumerate()
        .find(|(i, n)| *i != d && owners.values().any(|o| o != *n))
        .map(|(i, n)| (i, (*n).to_owned()))
        .expect("some node does not own every device");
    downloads.set_upstream(apis[c].addr);
    eprintln!("jobs driven by {driver}; job created through {creator}; owners {owners:?}");
    assert!(
        owners.values().any(|o| *o != creator),
        "a device owned by a node other than the one the job is created through: {owners:?}"
    );

    let signature = key.sign(&new_build, NEW_VERSION)?;
    let (status, body) = apis[c]
        .put_artifact(NEW_VERSION, std::fs::read(&new_build)?, &signature)
        .await?;
    assert_eq!(status, 201, "upload: {body}");
    let started = Instant::now();
    // Two at a time: the third waits for a slot, which the next driver has to give it.
    let devices: Vec<String> = (0..DEVICES).map(device).collect();
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/v1/jobs", apis[c].addr))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({
            "artifact_version": NEW_VERSION,
            "devices": devices,
            "max_in_progress": 2,
        }))
        .send()
        .await?;
    let served_by = r
        .headers()
        .get("shiki-node")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (status, body): (u16, Value) = (r.status().as_u16(), r.json().await?);
    assert_eq!(status, 201, "POST /jobs through {creator}: {body}");
    assert_eq!(
        served_by.as_deref(),
        Some(driver.as_str()),
        "forwarded to the driver"
    );
    let job = body["id"].as_str().expect("job id").to_owned();

    // Mid-rollout: an edge has reported its progress, another device is still queued.
    let before = wait_for("the rollout under way", Duration::from_secs(60), || async {
        let e = executions(&apis[c], &job).await?;
        let reporting = e
            .values()
            .any(|(status, step)| status == "in_progress" && step.is_some());
        let queued = e.values().any(|(status, _)| status == "queued");
        (reporting && queued).then_some(e)
    })
    .await?;
    let mut dead = nodes.remove(d);
    let mut names: Vec<&str> = NODES.to_vec();
    names.remove(d);
    let survivors: Vec<Api> = nodes.iter().map(|n| n.api.clone()).collect();
    let killed_at = Instant::now();
    dead.child.kill9();
    eprintln!(
        "killed {driver} {:?} after the job was created, executions {before:?}",
        started.elapsed()
    );

    let next = wait_for(
        "a survivor driving the jobs",
        Duration::from_secs(30),
        || async { jobs_driver(&survivors).await.filter(|n| *n != driver) },
    )
    .await?;
    eprintln!(
        "jobs driven by {next} {:?} after the kill",
        killed_at.elapsed()
    );
    wait_for(
        "GET /cluster to name the new driver",
        Duration::from_secs(10),
        || async {
            let (status, cluster) = survivors[0].get("/cluster").await.ok()?;
            let drivers: Vec<&str> = cluster["nodes"]
                .as_array()?
                .iter()
                .filter(|n| n["drives_jobs"] == json!(true))
                .filter_map(|n| n["node_id"].as_str())
                .collect();
            (status == 200 && drivers == [next.as_str()]).then_some(())
        },
    )
    .await?;
    for i in 0..DEVICES {
        let api = &survivors[i % survivors.len()];
        let entry = match api
            .wait_job_done(&job, &device(i), Duration::from_secs(180))
            .await
        {
            Ok(e) => e,
            Err(e) => anyhow::bail!(
                "{e:#}\n--- edge ---\n{}\n--- {next} ---\n{}\n--- {driver} (killed) ---\n{}",
                edges[i].child.output(),
                names
                    .iter()
                    .position(|n| *n == next)
                    .map(|p| nodes[p].child.output())
                    .unwrap_or_default(),
                dead.child.output()
            ),
        };
        assert_eq!(
            entry["status"],
            "succeeded",
            "{}: {entry}\n{}",
            device(i),
            edges[i].child.output()
        );
        assert_eq!(
            api.software_version(&device(i)).await.as_deref(),
            Some(NEW_VERSION)
        );
    }
    eprintln!(
        "rollout: {DEVICES} devices succeeded {:?} after the job was created ({:?} after the kill)",
        started.elapsed(),
        killed_at.elapsed()
    );
    // Stored as driven: the job in PostgreSQL says what the API says.
    let stored = db
        .query(&format!(
            "SELECT count(*) FROM shiki.jobs, jsonb_array_elements(body -> 'executions') e \
             WHERE id = '{job}' AND e ->> 'status' = 'succeeded'"
        ))
        .map_err(anyhow::Error::msg)?;
    assert_eq!(stored, vec![DEVICES.to_string()], "stored executions");
    drop(edges);
    drop(dead);
    Ok(())
}
