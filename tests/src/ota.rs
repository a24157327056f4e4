//! OTA helpers: edge binaries to update from and to, release keys through the cloud's own
//! CLI (`shiki-cloud ota keygen` / `ota sign`), artifacts and jobs through the admin API.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use crate::stack::ADMIN_TOKEN;
use crate::{Api, bin_path, wait_for};

/// A copy of `binary` at `dir/name`, executable: the edge under test swaps its own file,
/// so a test never runs `target/<profile>/shiki-edge` itself.
pub fn copy_binary(binary: &Path, dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let to = dir.join(name);
    std::fs::copy(binary, &to)
        .with_context(|| format!("copying {} to {}", binary.display(), to.display()))?;
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))?;
    Ok(to)
}

/// `shiki-edge` built with `SHIKI_BUILD_VERSION=version` into `<target>/ota-stamped`,
/// so the test's own binaries stay as they are. The directory is seeded with hard links of
/// this build's third-party dependencies (never the workspace's own artifacts, so the
/// stamped build cannot write through to them): only the workspace crates compile. The
/// edge's own OTA test builds the same way into the same place; use the same version
/// (`99.1.0`) to share the build.
pub fn stamped_edge(version: &str) -> anyhow::Result<PathBuf> {
    let plain = bin_path("shiki-edge")?;
    let profile_dir = plain
        .parent()
        .context("the edge binary has no profile directory")?;
    let target = profile_dir
        .parent()
        .context("the edge binary has no target directory")?;
    let stamped = target.join("ota-stamped");
    let stamped_profile = stamped.join("debug");
    if !stamped_profile.exists() {
        std::fs::create_dir_all(&stamped_profile)?;
        for sub in ["deps", "build", ".fingerprint"] {
            let status = Command::new("cp")
                .arg("-al")
                .arg(profile_dir.join(sub))
                .arg(&stamped_profile)
                .status()?;
            anyhow::ensure!(status.success(), "seeding {sub} failed");
            for entry in std::fs::read_dir(stamped_profile.join(sub))? {
                let path = entry?.path();
                if path.to_string_lossy().contains("shiki") {
                    let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
                }
            }
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
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
        .output()
        .context("running cargo build for a stamped shiki-edge")?;
    anyhow::ensure!(
        out.status.success(),
        "cargo build of the stamped edge failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let built = stamped_profile.join("shiki-edge");
    let out = Command::new(&built).arg("--version").output()?;
    let printed = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        printed.contains(version),
        "the stamped build prints {printed:?}, not version {version}"
    );
    Ok(built)
}

/// A release key made by `shiki-cloud ota keygen --out dir`: its directory and public key.
#[derive(Debug, Clone)]
pub struct ReleaseKeys {
    pub dir: PathBuf,
    pub public: String,
}

impl ReleaseKeys {
    pub fn generate(dir: &Path) -> anyhow::Result<Self> {
        let cloud = bin_path("shiki-cloud")?;
        let out = Command::new(&cloud)
            .args(["ota", "keygen", "--out"])
            .arg(dir)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "ota keygen failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let public = std::fs::read_to_string(dir.join("ota.pub"))?
            .trim()
            .to_owned();
        Ok(Self {
            dir: dir.to_owned(),
            public,
        })
    }

    /// `shiki-cloud ota sign`: the signature of `file` as `version` (its last line).
    pub fn sign(&self, file: &Path, version: &str) -> anyhow::Result<String> {
        let cloud = bin_path("shiki-cloud")?;
        let out = Command::new(&cloud)
            .args(["ota", "sign", "--key"])
            .arg(self.dir.join("ota.key"))
            .arg("--file")
            .arg(file)
            .args(["--version", version])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "ota sign failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)?
            .lines()
            .last()
            .map(str::to_owned)
            .context("ota sign printed nothing")
    }
}

impl Api {
    /// `PUT /artifacts/{version}` with `bytes` and their signature; status and body.
    pub async fn put_artifact(
        &self,
        version: &str,
        bytes: Vec<u8>,
        signature: &str,
    ) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http()
            .put(self.url(&format!("/artifacts/{version}")))
            .bearer_auth(ADMIN_TOKEN)
            .header("Content-Type", "application/octet-stream")
            .header("Shiki-Signature", signature)
            // A debug edge build is ~180 MB: more than the client's default 10 s on a busy
            // machine.
            .timeout(Duration::from_secs(300))
            .body(bytes)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// `POST /jobs` for `version` on `devices`; the job id.
    pub async fn create_job(&self, version: &str, devices: &[&str]) -> anyhow::Result<String> {
        let r = self
            .http()
            .post(self.url("/jobs"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "artifact_version": version, "devices": devices }))
            .send()
            .await?;
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status == 201, "POST /jobs answered {status}: {body}");
        body["id"]
            .as_str()
            .map(str::to_owned)
            .context("POST /jobs answered no id")
    }

    /// Waits until `device`'s execution of job `id` is in a terminal state; its entry
    /// (`{"device", "status", "progress", "reason"}`). On a timeout the error carries the
    /// job as the cloud last showed it.
    pub async fn wait_job_done(
        &self,
        id: &str,
        device: &str,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let done = wait_for(&format!("job {id} to end on {device}"), timeout, || async {
            let (status, job) = self.get(&format!("/jobs/{id}")).await.ok()?;
            if status != 200 {
                return None;
            }
            let entry = job["devices"]
                .as_array()?
                .iter()
                .find(|d| d["device"] == device)?
                .clone();
            let terminal = [
                "succeeded",
                "failed",
                "rolled_back",
                "timed_out",
                "canceled",
            ];
            terminal
                .contains(&entry["status"].as_str()?)
                .then_some(entry)
        })
        .await;
        match done {
            Ok(entry) => Ok(entry),
            Err(e) => {
                let last = self.get(&format!("/jobs/{id}")).await.ok();
                let device_view = self.get(&format!("/devices/{device}")).await.ok();
                Err(e.context(format!(
                    "job as last seen: {last:?}; device: {:?}",
                    device_view.map(|(_, v)| (v["online"].clone(), v["status"].clone()))
                )))
            }
        }
    }

    /// POST without a body (e.g. `/jobs/{id}/cancel`); status and body.
    pub async fn post_empty(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http()
            .post(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// The device's `software_version` as the cloud shows it.
    pub async fn software_version(&self, device: &str) -> Option<String> {
        let (status, view) = self.get(&format!("/devices/{device}")).await.ok()?;
        (status == 200)
            .then(|| view["software_version"].as_str().map(str::to_owned))
            .flatten()
    }
}
