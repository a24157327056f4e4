//! The pieces of a Shiki installation as real processes: the PLC simulator, the cloud, an
//! edge; plus the admin API client and a Modbus client to look at registers directly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::{Child, bin_path, wait_for};

/// The admin token every test cloud accepts (`SHIKI_ADMIN_TOKEN`).
pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789";

/// How long a process may take to start and report its address.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Removes ANSI colour sequences from log text.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of `field=` on the last log line containing `marker`.
pub fn log_field(log: &str, marker: &str, field: &str) -> Option<String> {
    let log = strip_ansi(log);
    let line = log.lines().rev().find(|l| l.contains(marker))?;
    let start = line.find(&format!("{field}="))? + field.len() + 1;
    let value = line[start..].split_whitespace().next()?;
    let value = value.trim_start_matches("Some(").trim_end_matches(')');
    Some(value.trim_matches('"').to_owned())
}

/// Waits until `child` logs a line with `marker` and `field=ADDR`, failing early if the
/// process exits.
pub async fn logged_addr(
    child: &mut Child,
    marker: &str,
    field: &str,
) -> anyhow::Result<SocketAddr> {
    let found = wait_for(&format!("{marker} in the log"), START_TIMEOUT, || {
        let running = child.is_running();
        let out = child.output();
        async move {
            if !running {
                return Some(Err(anyhow::anyhow!("process exited:\n{out}")));
            }
            log_field(&out, marker, field).map(Ok)
        }
    })
    .await??;
    found
        .parse()
        .with_context(|| format!("{field}={found} is not an address"))
}

/// `shiki-edge plc-sim` on a port of its own choosing.
#[derive(Debug)]
pub struct PlcSim {
    pub child: Child,
    pub addr: SocketAddr,
}

impl PlcSim {
    pub async fn start(log_dir: &Path) -> anyhow::Result<Self> {
        let bin = bin_path("shiki-edge")?;
        let mut child = Child::spawn(
            "plc-sim",
            &bin,
            &["plc-sim", "--listen", "127.0.0.1:0"],
            &[],
            log_dir,
        )?;
        let addr = logged_addr(&mut child, "plc-sim listening", "addr").await?;
        Ok(Self { child, addr })
    }
}

/// `shiki-cloud serve` with its embedded broker, or an external one.
#[derive(Debug)]
pub struct Cloud {
    pub child: Child,
    /// The admin API.
    pub api: Api,
    /// The embedded broker (`None` with an external broker).
    pub mqtt: Option<SocketAddr>,
}

impl Cloud {
    /// Starts a cloud storing in `data_dir`. `mqtt_listen` picks the embedded broker's
    /// address (`127.0.0.1:0`: any free port); `config` is an optional TOML file.
    pub async fn start(
        name: &str,
        data_dir: &Path,
        log_dir: &Path,
        mqtt_listen: Option<SocketAddr>,
        config: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let bin = bin_path("shiki-cloud")?;
        let data = data_dir.display().to_string();
        let mut args = vec![
            "serve".to_owned(),
            "--data-dir".into(),
            data,
            "--api-listen".into(),
            "127.0.0.1:0".into(),
        ];
        if let Some(listen) = mqtt_listen {
            args.extend(["--mqtt-listen".into(), listen.to_string()]);
        }
        if let Some(c) = config {
            args.extend(["--config".into(), c.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = Child::spawn(
            name,
            &bin,
            &args,
            &[
                ("SHIKI_ADMIN_TOKEN", ADMIN_TOKEN),
                ("RUST_LOG", "info,rumqttd=warn,rumqttc=warn"),
                ("NO_COLOR", "1"),
            ],
            log_dir,
        )?;
        let api = logged_addr(&mut child, "shiki-cloud started", "api_addr").await?;
        let mqtt = log_field(&child.output(), "embedded MQTT broker listening", "addr")
            .and_then(|a| a.parse().ok());
        Ok(Self {
            child,
            api: Api::new(api)?,
            mqtt,
        })
    }

    /// Starts a cloud with its embedded broker on a free port (retrying on a clash).
    pub async fn start_embedded(
        name: &str,
        data_dir: &Path,
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        Self::start(
            name,
            data_dir,
            log_dir,
            Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            None,
        )
        .await
    }

    /// The embedded broker's `mqtt://` URL.
    pub fn mqtt_url(&self) -> anyhow::Result<String> {
        let addr = self.mqtt.context("the cloud runs no embedded broker")?;
        Ok(format!("mqtt://{addr}"))
    }
}

/// What an edge is started with.
#[derive(Debug, Clone)]
pub struct EdgeOptions {
    pub device_id: String,
    pub mqtt_url: String,
    /// Modbus TCP address of the PLC (default register map).
    pub plc: Option<SocketAddr>,
    pub telemetry_interval: &'static str,
    /// Extra TOML appended to the config file (e.g. an `[mqtt]` section).
    pub extra_toml: String,
    /// The binary to run (default: the workspace's `shiki-edge`); OTA tests run a copy.
    pub binary: Option<PathBuf>,
    /// The device's MQTT password, written to a file the edge reads
    /// (`mqtt.password_file`; see [`Api::register_device`]).
    pub password: Option<String>,
}

impl EdgeOptions {
    pub fn new(device_id: &str, mqtt_url: String, plc: Option<SocketAddr>) -> Self {
        Self {
            device_id: device_id.to_owned(),
            mqtt_url,
            plc,
            telemetry_interval: "1s",
            extra_toml: "[mqtt]\nreconnect_min = \"200ms\"\nreconnect_max = \"1s\"\n".into(),
            binary: None,
            password: None,
        }
    }

    /// With the MQTT password the cloud gave the device.
    pub fn with_password(mut self, password: String) -> Self {
        self.password = Some(password);
        self
    }
}

/// `shiki-edge run`.
#[derive(Debug)]
pub struct Edge {
    pub child: Child,
    pub data_dir: PathBuf,
}

impl Edge {
    /// Starts an edge with a config file written into `dir`, storing in `dir/<device>-data`.
    /// `name` names the log file (use a new one per restart to read only its output).
    pub async fn start(name: &str, dir: &Path, opts: &EdgeOptions) -> anyhow::Result<Self> {
        let bin = match &opts.binary {
            Some(b) => b.clone(),
            None => bin_path("shiki-edge")?,
        };
        let config = dir.join(format!("{}.toml", opts.device_id));
        let data_dir = dir.join(format!("{}-data", opts.device_id));
        let mut toml = opts.extra_toml.clone();
        if let Some(p) = &opts.password {
            // As a gateway keeps it: in a file of its own (`mqtt.password_file`).
            let file = dir.join(format!("{}.mqtt-password", opts.device_id));
            std::fs::write(&file, format!("{p}\n"))?;
            let line = format!("password_file = {:?}\n", file.display().to_string());
            toml = match toml.find("[mqtt]\n") {
                Some(at) => format!("{}{line}{}", &toml[..at + 7], &toml[at + 7..]),
                None => format!("{toml}\n[mqtt]\n{line}"),
            };
        }
        std::fs::write(
            &config,
            format!("device_id = {:?}\n{}", opts.device_id, toml),
        )?;
        let config_s = config.display().to_string();
        let data_s = data_dir.display().to_string();
        let mut args = vec![
            "run",
            "--config",
            &config_s,
            "--mqtt-url",
            &opts.mqtt_url,
            "--data-dir",
            &data_s,
            "--telemetry-interval",
            opts.telemetry_interval,
        ];
        let plc = opts.plc.map(|p| p.to_string());
        if let Some(p) = &plc {
            args.extend(["--plc", p]);
        }
        let mut child = Child::spawn(
            name,
            &bin,
            &args,
            &[("SHIKI_LOG", "info,rumqttc=warn"), ("NO_COLOR", "1")],
            dir,
        )?;
        wait_for("the edge to start", START_TIMEOUT, || {
            let running = child.is_running();
            let out = strip_ansi(&child.output());
            async move {
                if !running {
                    return Some(Err(anyhow::anyhow!("edge exited:\n{out}")));
                }
                out.contains("shiki-edge running").then_some(Ok(()))
            }
        })
        .await??;
        Ok(Self { child, data_dir })
    }
}

/// A client of the admin API, authenticated with [`ADMIN_TOKEN`].
#[derive(Debug, Clone)]
pub struct Api {
    pub addr: SocketAddr,
    http: reqwest::Client,
}

impl Api {
    pub fn new(addr: SocketAddr) -> anyhow::Result<Self> {
        crate::install_crypto();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self { addr, http })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}/api/v1{path}", self.addr)
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// GET; the status and the JSON body (`null` when not JSON).
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// `PATCH /devices/{id}/desired`; the status and the JSON body.
    pub async fn patch_desired(
        &self,
        device: &str,
        settings: Value,
        comment: &str,
    ) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http
            .patch(self.url(&format!("/devices/{device}/desired")))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "settings": settings, "comment": comment }))
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// `PUT /devices/{id}/schedule[?slot=…]` with a schedule document; the status and the
    /// JSON body.
    pub async fn put_schedule(
        &self,
        device: &str,
        slot: Option<&str>,
        document: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        let query = slot.map(|s| format!("?slot={s}")).unwrap_or_default();
        let r = self
            .http
            .put(self.url(&format!("/devices/{device}/schedule{query}")))
            .bearer_auth(ADMIN_TOKEN)
            .json(document)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// `GET /devices/{id}/schedule`: the sync status of both slots (`None` when unreachable).
    pub async fn schedule(&self, device: &str) -> Option<Value> {
        match self.get(&format!("/devices/{device}/schedule")).await {
            Ok((200, v)) => Some(v),
            _ => None,
        }
    }

    /// Waits until `slot` (`current` or `next`) holds the schedule with `hash` and the
    /// device has acked it; fails as soon as the push is `failed`.
    pub async fn wait_schedule_acked(
        &self,
        device: &str,
        slot: &str,
        hash: &str,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let view = wait_for(
            &format!("the {slot} schedule of {device} acked"),
            timeout,
            || async {
                let v = self.schedule(device).await?;
                let s = &v[slot];
                (s["hash"] == hash
                    && matches!(s["status"]["state"].as_str(), Some("acked" | "failed")))
                .then_some(v)
            },
        )
        .await?;
        anyhow::ensure!(
            view[slot]["status"]["state"] == "acked" && view[slot]["status"]["hash"] == hash,
            "the {slot} schedule of {device} was not acked: {view}"
        );
        Ok(view)
    }

    /// The device view, `None` while the device is unknown (or the API unreachable).
    pub async fn device(&self, device: &str) -> Option<Value> {
        match self.get(&format!("/devices/{device}")).await {
            Ok((200, v)) => Some(v),
            _ => None,
        }
    }

    /// `DELETE /api/v1{path}`: the status and the body (`null` when empty).
    pub async fn delete(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http
            .delete(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// The cluster node that serves `device` (the `Shiki-Node` header of its view).
    pub async fn served_by(&self, device: &str) -> anyhow::Result<String> {
        let r = self
            .http
            .get(self.url(&format!("/devices/{device}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?;
        let status = r.status();
        let node = r
            .headers()
            .get("shiki-node")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        node.ok_or_else(|| anyhow::anyhow!("GET /devices/{device}: {status} without Shiki-Node"))
    }

    /// Registers `device` for the embedded broker; returns its MQTT password.
    pub async fn register_device(&self, device: &str) -> anyhow::Result<String> {
        let res = self
            .http
            .post(format!("http://{}/api/v1/devices", self.addr))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({ "id": device }))
            .send()
            .await?;
        let status = res.status();
        let body: Value = res.json().await?;
        anyhow::ensure!(
            status.as_u16() == 201,
            "registering {device}: {status} {body}"
        );
        body["mqtt_password"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no mqtt_password in {body}"))
    }

    /// Every stored telemetry `seq` of the device, oldest first (empty while unknown).
    pub async fn telemetry(&self, device: &str) -> Vec<Value> {
        match self
            .get(&format!("/devices/{device}/telemetry?limit=10000"))
            .await
        {
            Ok((200, v)) => v["samples"].as_array().cloned().unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// The stored telemetry sequence numbers, in the order the API lists them.
    pub async fn telemetry_seqs(&self, device: &str) -> Vec<u64> {
        self.telemetry(device)
            .await
            .iter()
            .filter_map(|s| s["seq"].as_u64())
            .collect()
    }

    /// History entries, newest first.
    pub async fn history(&self, device: &str) -> Vec<Value> {
        match self.get(&format!("/devices/{device}/history")).await {
            Ok((200, v)) => v["history"].as_array().cloned().unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Device events, by seq.
    pub async fn events(&self, device: &str) -> Vec<Value> {
        match self
            .get(&format!("/devices/{device}/events?limit=10000"))
            .await
        {
            Ok((200, v)) => v["events"].as_array().cloned().unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Waits until the device has a catalog (desired changes can be validated) and
    /// telemetry.
    pub async fn wait_device_ready(
        &self,
        device: &str,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        wait_for(
            &format!("device {device} with a catalog and telemetry"),
            timeout,
            || async {
                let d = self.device(device).await?;
                (!d["catalog"].is_null() && d["last_seq"].as_u64().is_some()).then_some(d)
            },
        )
        .await
    }

    /// Waits until the desired change of `key` at `version` is `verified` in the history;
    /// fails as soon as it is `failed`.
    pub async fn wait_verified(
        &self,
        device: &str,
        key: &str,
        version: u64,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let entry = wait_for(&format!("{key} v{version} verified"), timeout, || async {
            self.history(device).await.into_iter().find(|h| {
                h["side"] == "desired"
                    && h["key"] == key
                    && h["version"] == version
                    && matches!(
                        h["verification"]["outcome"].as_str(),
                        Some("verified" | "failed")
                    )
            })
        })
        .await?;
        anyhow::ensure!(
            entry["verification"]["outcome"] == "verified",
            "verification of {key} v{version} failed: {entry}"
        );
        Ok(entry)
    }
}

/// Checks that `seqs` is exactly 1, 2, …, n: every sample once, in order, no gap.
pub fn assert_contiguous(seqs: &[u64]) -> anyhow::Result<()> {
    for (i, s) in seqs.iter().enumerate() {
        let expected = i as u64 + 1;
        anyhow::ensure!(
            *s == expected,
            "telemetry seq at position {i} is {s}, expected {expected} (seqs: {seqs:?})"
        );
    }
    Ok(())
}

/// Reads `count` holding registers from `addr` (0-based protocol address) over Modbus TCP.
pub async fn read_holding(plc: SocketAddr, addr: u16, count: u16) -> anyhow::Result<Vec<u16>> {
    use tokio_modbus::prelude::*;
    let mut ctx = tcp::connect(plc).await?;
    let words = ctx.read_holding_registers(addr, count).await??;
    let _ = ctx.disconnect().await;
    Ok(words)
}

/// A fresh temp dir for one test (kept on failure? no: removed on drop).
pub fn temp_dir(test: &str) -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix(&format!("shiki-e2e-{test}-"))
        .tempdir()?)
}
