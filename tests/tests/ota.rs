//! OTA end to end: a cloud with its embedded broker, an edge run from a copy of its binary,
//! release keys made and used through `shiki-cloud ota keygen|sign`, artifacts uploaded and
//! jobs created through the admin API. The edge verifies what it downloads itself, runs the
//! new build on trial and rolls back by itself when it does not prove healthy.
//!
//! The success and rollback tests print how long the job took (`--no-capture` shows it).
#![allow(
    clippy::print_stderr,
    reason = "the durations are figures for the OTA notes, printed on purpose"
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shiki_e2e::ota::{ReleaseKeys, copy_binary, stamped_edge};
use shiki_e2e::{
    Api, Cloud, Edge, EdgeOptions, TcpProxy, assert_contiguous, bin_path, temp_dir, wait_for,
};

const DEVICE: &str = "plant-ota";
const BASE_VERSION: &str = env!("CARGO_PKG_VERSION");
const JOB_TIMEOUT: Duration = Duration::from_secs(240);

/// A cloud trusting `cloud_key`, and an edge (run from a copy of the workspace binary in
/// `dir/bin`) trusting `edge_key`, online.
struct Stack {
    cloud: Cloud,
    edge: Edge,
    binary: PathBuf,
    opts: EdgeOptions,
    /// Between the edge and the cloud's download URLs (`api.public_url`).
    downloads: TcpProxy,
    /// Between the edge and the broker.
    mqtt: TcpProxy,
}

async fn start(
    dir: &Path,
    cloud_key: &ReleaseKeys,
    edge_key: &ReleaseKeys,
) -> anyhow::Result<Stack> {
    // Downloads go through a proxy the test can cut: the cloud hands out URLs under it.
    let downloads = TcpProxy::start(std::net::SocketAddr::from(([127, 0, 0, 1], 9))).await?;
    let config = dir.join("cloud.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\npublic_url = \"http://{}\"\n[ota]\npublic_keys = [{:?}]\n",
            downloads.addr(),
            cloud_key.public
        ),
    )?;
    let cloud = Cloud::start(
        "cloud",
        &dir.join("cloud"),
        dir,
        Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        Some(&config),
    )
    .await?;
    downloads.set_upstream(cloud.api.addr);
    let binary = copy_binary(&bin_path("shiki-edge")?, &dir.join("bin"), "shiki-edge")?;
    let broker = cloud
        .mqtt
        .ok_or_else(|| anyhow::anyhow!("no embedded broker"))?;
    let mqtt = TcpProxy::start(broker).await?;
    let mut opts = EdgeOptions::new(DEVICE, format!("mqtt://{}", mqtt.addr()), None)
        .with_password(cloud.api.register_device(DEVICE).await?);
    opts.binary = Some(binary.clone());
    opts.extra_toml.push_str(&format!(
        "[ota]\npublic_keys = [{:?}]\nhealth_window = \"20s\"\n",
        edge_key.public
    ));
    let edge = Edge::start("edge", dir, &opts).await?;
    wait_for(
        "the edge to report its version",
        Duration::from_secs(30),
        || async {
            (cloud.api.software_version(DEVICE).await.as_deref() == Some(BASE_VERSION))
                .then_some(())
        },
    )
    .await?;
    Ok(Stack {
        cloud,
        edge,
        binary,
        opts,
        downloads,
        mqtt,
    })
}

/// A small executable for this machine that exits at once (`/bin/false`), in `dir/release`.
fn small_build(dir: &Path) -> anyhow::Result<PathBuf> {
    copy_binary(Path::new("/bin/false"), &dir.join("release"), "shiki-edge")
}

impl Stack {
    /// Waits until the device's execution of `job` ends; on a timeout the error carries
    /// the edge's and the cloud's logs.
    async fn job_done(&self, job: &str) -> anyhow::Result<serde_json::Value> {
        match self.cloud.api.wait_job_done(job, DEVICE, JOB_TIMEOUT).await {
            Ok(entry) => Ok(entry),
            Err(e) => anyhow::bail!(
                "{e:#}\n--- edge ---\n{}\n--- cloud ---\n{}",
                self.edge.child.output(),
                self.cloud.child.output()
            ),
        }
    }

    /// Stops the edge (SIGTERM) and waits until the cloud sees it offline.
    async fn stop_edge(&mut self) -> anyhow::Result<()> {
        self.edge.child.terminate()?;
        let api = &self.cloud.api;
        wait_for("the device offline", Duration::from_secs(30), || async {
            let (_, view) = api.get(&format!("/devices/{DEVICE}")).await.ok()?;
            (view["online"] == false).then_some(())
        })
        .await
    }

    /// Starts the edge again from the same binary file and data.
    async fn restart_edge(&mut self, dir: &Path, name: &str) -> anyhow::Result<()> {
        self.edge = Edge::start(name, dir, &self.opts).await?;
        Ok(())
    }
}

/// Nothing buffered was lost or duplicated across an update or a rollback: once samples
/// taken after `since` arrived, telemetry and events are each contiguous from seq 1.
async fn assert_streams_intact(
    api: &Api,
    since: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let seqs = wait_for(
        "samples taken after the switch",
        Duration::from_secs(60),
        || async {
            let samples = api.telemetry(DEVICE).await;
            let later = samples.iter().any(|s| {
                s["ts"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| t > since)
            });
            let last = samples.last()?["seq"].as_u64()?;
            (later && samples.len() as u64 == last).then(|| {
                samples
                    .iter()
                    .filter_map(|s| s["seq"].as_u64())
                    .collect::<Vec<_>>()
            })
        },
    )
    .await?;
    assert_contiguous(&seqs)?;
    let events: Vec<u64> = api
        .events(DEVICE)
        .await
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    assert_contiguous(&events)
}

/// Signs `file` as `version`, uploads it and creates a job for the device; the job id.
/// After a rollback: the edge runs on, reports the old version again, and its telemetry
/// and events are intact.
async fn back_on_the_old_version(stack: &mut Stack) -> anyhow::Result<()> {
    assert!(stack.edge.child.is_running());
    wait_for(
        "the device online on the old version",
        Duration::from_secs(60),
        || async {
            (stack.cloud.api.software_version(DEVICE).await.as_deref() == Some(BASE_VERSION))
                .then_some(())
        },
    )
    .await?;
    assert_streams_intact(&stack.cloud.api, chrono::Utc::now()).await
}

async fn release(
    stack: &Stack,
    key: &ReleaseKeys,
    file: &Path,
    version: &str,
) -> anyhow::Result<String> {
    let signature = key.sign(file, version)?;
    let (status, body) = stack
        .cloud
        .api
        .put_artifact(version, std::fs::read(file)?, &signature)
        .await?;
    anyhow::ensure!(status == 201, "upload answered {status}: {body}");
    stack.cloud.api.create_job(version, &[DEVICE]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_update_is_installed_proves_healthy_and_is_reported() -> anyhow::Result<()> {
    let dir = temp_dir("ota-ok")?;
    let key = ReleaseKeys::generate(&dir.path().join("keys"))?;
    let new_version = "99.1.0";
    let new_build = stamped_edge(new_version)?;
    let mut stack = start(dir.path(), &key, &key).await?;
    let pid = stack.edge.child.pid();

    let started = Instant::now();
    let job = release(&stack, &key, &new_build, new_version).await?;
    let entry = stack.job_done(&job).await?;
    assert_eq!(
        entry["status"],
        "succeeded",
        "{entry}\n{}",
        stack.edge.child.output()
    );
    eprintln!("job created → succeeded in {:?}", started.elapsed());
    assert_eq!(
        stack.cloud.api.software_version(DEVICE).await.as_deref(),
        Some(new_version)
    );
    assert_eq!(std::fs::read(&stack.binary)?, std::fs::read(&new_build)?);
    assert!(
        stack.edge.child.is_running(),
        "the agent runs on (same process, new binary)"
    );
    assert_eq!(stack.edge.child.pid(), pid);
    assert_streams_intact(&stack.cloud.api, chrono::Utc::now()).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_exits_at_once_is_rolled_back_and_the_old_version_runs_on()
-> anyhow::Result<()> {
    let dir = temp_dir("ota-crash")?;
    let key = ReleaseKeys::generate(&dir.path().join("keys"))?;
    let broken = small_build(dir.path())?;
    let mut stack = start(dir.path(), &key, &key).await?;
    let before = std::fs::read(&stack.binary)?;

    let started = Instant::now();
    let job = release(&stack, &key, &broken, "9.0.0").await?;
    let entry = stack.job_done(&job).await?;
    assert_eq!(
        entry["status"],
        "rolled_back",
        "{entry}\n{}",
        stack.edge.child.output()
    );
    eprintln!("job created → rolled back in {:?}", started.elapsed());
    assert!(
        entry["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{entry}"
    );
    assert_eq!(
        std::fs::read(&stack.binary)?,
        before,
        "the old binary is back"
    );
    back_on_the_old_version(&mut stack).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_refuses_a_build_signed_by_a_key_it_does_not_trust() -> anyhow::Result<()> {
    let dir = temp_dir("ota-untrusted")?;
    let cloud_key = ReleaseKeys::generate(&dir.path().join("cloud-keys"))?;
    let edge_key = ReleaseKeys::generate(&dir.path().join("edge-keys"))?;
    let build = small_build(dir.path())?;
    let mut stack = start(dir.path(), &cloud_key, &edge_key).await?;
    let before = std::fs::read(&stack.binary)?;

    let job = release(&stack, &cloud_key, &build, "9.0.1").await?;
    let entry = stack.job_done(&job).await?;
    assert_eq!(
        entry["status"],
        "failed",
        "{entry}\n{}",
        stack.edge.child.output()
    );
    assert!(
        entry["reason"]
            .as_str()
            .is_some_and(|r| r.contains("signature")),
        "{entry}"
    );
    assert_eq!(std::fs::read(&stack.binary)?, before);
    assert!(stack.edge.child.is_running());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_changed_after_signing_is_refused_and_the_binary_is_untouched()
-> anyhow::Result<()> {
    let dir = temp_dir("ota-tampered")?;
    let key = ReleaseKeys::generate(&dir.path().join("keys"))?;
    let build = small_build(dir.path())?;
    let mut stack = start(dir.path(), &key, &key).await?;
    let before = std::fs::read(&stack.binary)?;

    // The upload is checked by the cloud; the bytes it then serves are changed on its disk.
    let signature = key.sign(&build, "9.0.2")?;
    let (status, body) = stack
        .cloud
        .api
        .put_artifact("9.0.2", std::fs::read(&build)?, &signature)
        .await?;
    assert_eq!(status, 201, "{body}");
    let sha = body["sha256"].as_str().expect("sha256").to_owned();
    let stored = dir
        .path()
        .join("cloud")
        .join("artifacts")
        .join("sha256")
        .join(&sha);
    let mut bytes = std::fs::read(&stored)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xFF;
    std::fs::write(&stored, bytes)?;

    let job = stack.cloud.api.create_job("9.0.2", &[DEVICE]).await?;
    let entry = stack.job_done(&job).await?;
    assert_eq!(
        entry["status"],
        "failed",
        "{entry}\n{}",
        stack.edge.child.output()
    );
    assert!(
        entry["reason"]
            .as_str()
            .is_some_and(|r| r.contains("sha256") || r.contains("SHA-256")),
        "{entry}"
    );
    assert_eq!(std::fs::read(&stack.binary)?, before);
    assert!(stack.edge.child.is_running());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_cut_three_times_resumes_and_fetches_little_twice() -> anyhow::Result<()> {
    let dir = temp_dir("ota-cut")?;
    let key = ReleaseKeys::generate(&dir.path().join("keys"))?;
    let new_version = "99.1.0";
    let new_build = stamped_edge(new_version)?;
    let size = std::fs::metadata(&new_build)?.len();
    let stack = start(dir.path(), &key, &key).await?;
    // A slower link, so the cuts land inside the download.
    stack.downloads.set_delay(Duration::from_millis(2));

    let job = release(&stack, &key, &new_build, new_version).await?;
    for share in [20, 45, 70] {
        let at = size * share / 100;
        let proxy = &stack.downloads;
        wait_for(
            &format!("{share} % downloaded"),
            JOB_TIMEOUT,
            || async move { (proxy.downstream_bytes() >= at).then_some(()) },
        )
        .await?;
        proxy.cut();
        proxy.restore();
    }
    let entry = stack.job_done(&job).await?;
    assert_eq!(
        entry["status"],
        "succeeded",
        "{entry}\n{}",
        stack.edge.child.output()
    );
    let fetched = stack.downloads.downstream_bytes();
    let extra = fetched.saturating_sub(size);
    eprintln!(
        "artifact {size} bytes, fetched {fetched} bytes over 3 cuts: {:.2} % again",
        extra as f64 * 100.0 / size as f64
    );
    assert!(
        extra * 100 <= size * 5,
        "fetched {fetched} bytes for a {size}-byte artifact: more than 5 % again"
    );
    assert_eq!(
        stack.cloud.api.software_version(DEVICE).await.as_deref(),
        Some(new_version)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_for_an_offline_device_waits_and_runs_when_it_returns() -> anyhow::Result<()> {
    let dir = temp_dir("ota-offline")?;
    let key = ReleaseKeys::generate(&dir.path().join("keys"))?;
    let broken = small_build(dir.path())?;
    let mut stack = start(dir.path(), &key, &key).await?;
    stack.stop_edge().await?;

    let job = release(&stack, &key, &broken, "9.0.3").await?;
    let (_, view) = stack.cloud.api.get(&format!("/jobs/{job}")).await?;
    assert_eq!(view["devices"][0]["status"], "queued", "{view}");

    stack.restart_edge(dir.path(), "edge-back").await?;
    let entry = stack.job_done(&job).await?;
    assert_eq!(
        entry["status"],
        "rolled_back",
        "{entry}\n{}",
        stack.edge.child.output()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canceled_job_never_reaches_the_device() -> anyhow::Result<()> {
    let dir = temp_dir("ota-cancel")?;
    let key = ReleaseKeys::generate(&dir.path().join("keys"))?;
    let broken = small_build(dir.path())?;
    let mut stack = start(dir.path(), &key, &key).await?;
    let before = std::fs::read(&stack.binary)?;
    stack.stop_edge().await?;

    let job = release(&stack, &key, &broken, "9.0.4").await?;
    let r = stack
        .cloud
        .api
        .post_empty(&format!("/jobs/{job}/cancel"))
        .await?;
    assert_eq!(r.0, 200, "{}", r.1);
    let entry = stack
        .cloud
        .api
        .wait_job_done(&job, DEVICE, Duration::from_secs(10))
        .await?;
    assert_eq!(entry["status"], "canceled", "{entry}");

    stack.restart_edge(dir.path(), "edge-back").await?;
    wait_for(
        "the device online again",
        Duration::from_secs(30),
        || async {
            let (_, view) = stack
                .cloud
                .api
                .get(&format!("/devices/{DEVICE}"))
                .await
                .ok()?;
            (view["online"] == true).then_some(())
        },
    )
    .await?;
    let (_, view) = stack.cloud.api.get(&format!("/jobs/{job}")).await?;
    assert_eq!(view["devices"][0]["status"], "canceled", "{view}");
    assert_eq!(std::fs::read(&stack.binary)?, before);
    assert!(
        !stack.edge.child.output().contains("9.0.4"),
        "the edge heard of the canceled job:\n{}",
        stack.edge.child.output()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_that_cannot_prove_healthy_is_killed_and_rolled_back() -> anyhow::Result<()> {
    let dir = temp_dir("ota-unhealthy")?;
    let key = ReleaseKeys::generate(&dir.path().join("keys"))?;
    let new_build = stamped_edge("99.1.0")?;
    let size = std::fs::metadata(&new_build)?.len();
    let mut stack = start(dir.path(), &key, &key).await?;
    let before = std::fs::read(&stack.binary)?;

    let job = release(&stack, &key, &new_build, "99.1.0").await?;
    // Once the whole artifact is through, the broker becomes unreachable: the new version
    // runs but never reaches it, so it is not healthy within the window (20 s).
    let proxy = &stack.downloads;
    wait_for("the artifact downloaded", JOB_TIMEOUT, || async move {
        (proxy.downstream_bytes() >= size).then_some(())
    })
    .await?;
    stack.mqtt.cut();
    let started = Instant::now();
    // The two builds differ in size: the file's size says which one is in place.
    let installed_size = || std::fs::metadata(&stack.binary).map(|m| m.len()).ok();
    anyhow::ensure!(
        size != before.len() as u64,
        "the builds must differ in size"
    );
    wait_for("the new binary installed", JOB_TIMEOUT, || async {
        (installed_size() == Some(size)).then_some(())
    })
    .await?;
    wait_for("the previous binary back", JOB_TIMEOUT, || async {
        (installed_size() == Some(before.len() as u64)).then_some(())
    })
    .await?;
    assert_eq!(std::fs::read(&stack.binary)?, before);
    eprintln!("installed → rolled back in {:?}", started.elapsed());
    stack.mqtt.restore();
    let entry = stack.job_done(&job).await?;
    assert_eq!(
        entry["status"],
        "rolled_back",
        "{entry}\n{}",
        stack.edge.child.output()
    );
    assert!(
        entry["reason"]
            .as_str()
            .is_some_and(|r| r.contains("healthy")),
        "{entry}"
    );
    back_on_the_old_version(&mut stack).await
}
