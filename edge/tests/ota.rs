//! OTA with real processes: a copy of the built `shiki-edge` (never `target/debug` itself)
//! gets a job for a signed "new version" that exits at once (a copy of `/bin/false`); it
//! downloads it over HTTP, runs it on trial, rolls back and keeps running on the old
//! version in the same process, and reports `rolled_back` with the reason. The same for a
//! build that hangs (a signed copy of `/usr/bin/yes`).

#![allow(clippy::print_stderr)] // diagnostics of the agent process on failure

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Subscriber, broker, unique_device};
use rumqttc::QoS;
use shiki_proto::{
    Connectivity, JobDocument, JobId, JobNotify, JobOperation, JobStatus, JobStep, JobUpdate,
    PROTOCOL_VERSION, Status, decode, encode,
};
use shiki_shared::ota::{Manifest, ReleaseKey};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(60);

/// Serves `body` at any path, honouring `Range: bytes=N-`.
async fn serve(body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/artifact", listener.local_addr().expect("addr"));
    let body = Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let start: usize = String::from_utf8_lossy(&head)
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("range: bytes=")
                            .and_then(|r| r.trim_end_matches('-').parse().ok())
                    })
                    .unwrap_or(0);
                let len = body.len();
                let answer = format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{len}\r\nConnection: close\r\n\r\n",
                    len - start,
                    len - 1
                );
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.write_all(&body[start..]).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    url
}

fn write_config(dir: &Path, device: &str, key: &str, health_window: &str) -> PathBuf {
    let (host, port) = broker();
    let text = format!(
        "device_id = \"{device}\"\ndata_dir = \"{}\"\n[mqtt]\nurl = \"mqtt://{host}:{port}\"\n\
         reconnect_min = \"100ms\"\nreconnect_max = \"1s\"\n[telemetry]\ninterval = \"1s\"\n\
         [ota]\npublic_keys = [\"{key}\"]\nhealth_window = \"{health_window}\"\n",
        dir.join("data").display()
    );
    let path = dir.join("edge.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Starts the agent binary at `exe`; its log lines are kept for failure messages.
fn start(exe: &Path, config: &Path, env: &[(&str, &str)], log: Arc<Mutex<Vec<String>>>) -> Child {
    let mut child = Command::new(exe)
        .envs(env.iter().copied())
        .args(["run", "--config"])
        .arg(config)
        .env("NO_COLOR", "1")
        .env("SHIKI_LOG", "info")
        .env_remove("SHIKI_MQTT_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the agent copy");
    let stderr = child.stderr.take().expect("stderr");
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            log.lock().expect("log").push(line);
        }
    });
    child
}

fn ota_job(url: &str, bytes: &[u8], version: &str, key: &ReleaseKey) -> JobDocument {
    let m = Manifest::for_bytes(version, bytes);
    JobDocument {
        job_id: JobId::new("ota-false").expect("job id"),
        operation: JobOperation::Ota {
            software_version: version.into(),
            url: url.into(),
            size: m.size,
            sha256: m.sha256.clone(),
            signature: key.sign(&m),
            url_expires: None,
            allow_downgrade: false,
        },
    }
}

/// What the subscriber saw, in order.
#[derive(Debug)]
enum Seen {
    Status(Status),
    Job(JobUpdate),
}

async fn next(sub: &mut Subscriber, log: &Arc<Mutex<Vec<String>>>) -> Seen {
    let Ok(Some(m)) = tokio::time::timeout(WAIT, sub.rx.recv()).await else {
        for line in log.lock().expect("log").iter() {
            eprintln!("agent: {line}");
        }
        panic!("nothing seen for {WAIT:?}");
    };
    if m.topic.ends_with("/status") {
        Seen::Status(decode(&m.payload).expect("status decodes"))
    } else {
        Seen::Job(decode(&m.payload).expect("job update decodes"))
    }
}

/// An agent copy that was sent one OTA job.
struct Updated {
    _dir: tempfile::TempDir,
    exe: PathBuf,
    data: PathBuf,
    original: Vec<u8>,
    agent: Child,
    pid: Option<u32>,
    /// The job's terminal update.
    outcome: JobUpdate,
    /// Steps of the `in_progress` updates before it.
    steps: Vec<JobStep>,
    /// The `online` status published after it.
    online: Status,
}

/// Starts a copy of the agent, waits until it is online on its own version, sends it a job
/// for `artifact` signed as `version`, and waits for the terminal update and the next
/// `online` status.
async fn update_to(
    artifact: Vec<u8>,
    version: &str,
    health_window: &str,
    env: &[(&str, &str)],
) -> Updated {
    let dir = tempfile::tempdir().expect("tmp");
    let exe = dir.path().join("bin").join("shiki-edge");
    std::fs::create_dir_all(exe.parent().expect("bin")).expect("bin dir");
    std::fs::copy(env!("CARGO_BIN_EXE_shiki-edge"), &exe).expect("copy the agent");
    let original = std::fs::read(&exe).expect("read the copy");

    let key = ReleaseKey::generate();
    let device = unique_device("ota");
    let config = write_config(dir.path(), &device, &key.public_base64(), health_window);
    let url = serve(artifact.clone()).await;
    let prefix = format!("shiki/v1/{device}");
    let mut sub = Subscriber::start(
        &device,
        &[
            format!("{prefix}/status"),
            format!("{prefix}/jobs/+/update"),
        ],
    )
    .await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let agent = start(&exe, &config, env, log.clone());
    let pid = agent.id();
    loop {
        if let Seen::Status(s) = next(&mut sub, &log).await
            && s.state == Connectivity::Online
        {
            assert_eq!(
                s.software_version.as_deref(),
                Some(env!("CARGO_PKG_VERSION"))
            );
            break;
        }
    }
    let notify = JobNotify {
        v: PROTOCOL_VERSION,
        jobs: vec![ota_job(&url, &artifact, version, &key)],
    };
    sub.client
        .publish(
            format!("{prefix}/jobs/notify"),
            QoS::AtLeastOnce,
            false,
            encode(&notify).expect("encode"),
        )
        .await
        .expect("publish the job");
    let mut statuses = Vec::new();
    let mut steps = Vec::new();
    let outcome = loop {
        match next(&mut sub, &log).await {
            Seen::Status(s) => statuses.push(s),
            Seen::Job(u) if u.status == JobStatus::InProgress => steps.extend(u.step),
            Seen::Job(u) => break u,
        }
    };
    // The agent went offline for the install, then came back.
    while !statuses.iter().any(|s| s.state == Connectivity::Online) {
        if let Seen::Status(s) = next(&mut sub, &log).await {
            statuses.push(s);
        }
    }
    let online = statuses
        .into_iter()
        .rfind(|s| s.state == Connectivity::Online)
        .expect("online");
    Updated {
        data: dir.path().join("data").join("ota"),
        _dir: dir,
        exe,
        original,
        agent,
        pid,
        outcome,
        steps,
        online,
    }
}

impl Updated {
    /// The agent runs in the process the test started, on `version`, from `binary`.
    fn assert_runs(&mut self, version: &str, binary: &[u8]) {
        assert_eq!(self.online.software_version.as_deref(), Some(version));
        assert!(
            self.agent.try_wait().expect("wait").is_none(),
            "still running"
        );
        assert_eq!(self.agent.id(), self.pid, "same process");
        assert!(
            std::fs::read(&self.exe).expect("read") == binary,
            "binary in place"
        );
        assert!(
            !self.data.join("trial.json").exists(),
            "trial record deleted after the report"
        );
    }
}

#[tokio::test]
async fn a_new_version_that_exits_at_once_is_rolled_back_and_the_old_one_keeps_running() {
    let artifact = std::fs::read("/bin/false").expect("/bin/false");
    let mut u = update_to(artifact, "99.0.0", "20s", &[]).await;
    assert_eq!(u.outcome.status, JobStatus::RolledBack);
    let detail = u.outcome.detail.clone().unwrap_or_default();
    assert!(
        detail.contains("exited with status 1") && detail.contains("99.0.0"),
        "{detail}"
    );
    let original = u.original.clone();
    u.assert_runs(env!("CARGO_PKG_VERSION"), &original);
    assert!(u.data.join("previous").join("shiki-edge").exists());
    u.agent.kill().await.expect("kill");
}

#[tokio::test]
async fn a_new_version_that_hangs_is_killed_at_the_deadline_and_rolled_back() {
    // `yes run --config …` prints forever (POSIXLY_CORRECT: it takes `--config` as text,
    // not as an option it does not know): it never reports healthy.
    let artifact = std::fs::read("/usr/bin/yes").expect("/usr/bin/yes");
    let mut u = update_to(artifact, "99.0.1", "5s", &[("POSIXLY_CORRECT", "1")]).await;
    assert_eq!(u.outcome.status, JobStatus::RolledBack);
    let detail = u.outcome.detail.clone().unwrap_or_default();
    assert!(
        detail.contains("not healthy within 5 s") && detail.contains("broker not reached"),
        "{detail}"
    );
    let original = u.original.clone();
    u.assert_runs(env!("CARGO_PKG_VERSION"), &original);
    u.agent.kill().await.expect("kill");
}

/// `shiki-edge` built again with `SHIKI_BUILD_VERSION=version` into
/// `<target>/ota-stamped` (seeded with hard links of this build's third-party
/// dependencies, so only the workspace crates compile; the workspace's own artifacts are
/// not linked, so the stamped build cannot write through to this build's files).
fn stamped_build(version: &str) -> PathBuf {
    let built = PathBuf::from(env!("CARGO_BIN_EXE_shiki-edge"));
    let profile_dir = built.parent().expect("profile dir");
    let target = profile_dir.parent().expect("target dir");
    let stamped = target.join("ota-stamped");
    let stamped_profile = stamped.join("debug");
    if !stamped_profile.exists() {
        std::fs::create_dir_all(&stamped_profile).expect("stamped target");
        for sub in ["deps", "build", ".fingerprint"] {
            let status = std::process::Command::new("cp")
                .arg("-al")
                .arg(profile_dir.join(sub))
                .arg(&stamped_profile)
                .status()
                .expect("cp -al");
            assert!(status.success(), "seeding {sub} failed");
            for entry in std::fs::read_dir(stamped_profile.join(sub)).expect("seeded") {
                let path = entry.expect("entry").path();
                if path.to_string_lossy().contains("shiki") {
                    let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
                }
            }
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "build",
            "-p",
            "shiki-edge",
            "--bin",
            "shiki-edge",
            "--target-dir",
        ])
        .arg(&stamped)
        .env("SHIKI_BUILD_VERSION", version)
        .env("CARGO_INCREMENTAL", "0")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo build");
    assert!(
        out.status.success(),
        "stamped build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stamped_profile.join("shiki-edge")
}

#[tokio::test]
async fn a_healthy_new_version_replaces_the_old_one_in_the_same_process() {
    let stamped = stamped_build("99.1.0");
    let v = std::process::Command::new(&stamped)
        .arg("--version")
        .output()
        .expect("run the stamped build");
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        "shiki-edge 99.1.0"
    );
    let artifact = std::fs::read(&stamped).expect("read the stamped build");
    let mut u = update_to(artifact.clone(), "99.1.0", "30s", &[]).await;
    assert_eq!(u.outcome.status, JobStatus::Succeeded, "{:?}", u.outcome);
    assert!(
        u.steps.contains(&JobStep::Trial),
        "the run on trial reported itself: {:?}",
        u.steps
    );
    u.assert_runs("99.1.0", &artifact);
    u.agent.kill().await.expect("kill");
}
