//! Foreign Modbus peer: `shiki-edge run` polls a pymodbus server (edge/tests/peers/
//! modbus_server.py, not our simulator) through the default register map. The cloud's
//! telemetry holds the correctly decoded values of every type, and a desired change lands
//! in the right holding registers, read back by a pymodbus client.
//!
//! Needs python3 with pymodbus (CI installs it); fails, not skips, without them.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use shiki_e2e::{Cloud, Edge, EdgeOptions, temp_dir, wait_for};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const DEVICE: &str = "plant-pymodbus";

/// The pymodbus server, answering `read hr ADDRESS COUNT` on stdin with a pymodbus client.
struct PyPeer {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    port: u16,
}

impl PyPeer {
    async fn start() -> anyhow::Result<Self> {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../edge/tests/peers/modbus_server.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("python3 must be installed for the foreign Modbus peer test")?;
        let stdin = child.stdin.take().context("stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
            .await
            .context("pymodbus peer did not start within 30 s")??
            .context("pymodbus peer exited")?;
        let port = line
            .strip_prefix("PORT ")
            .with_context(|| format!("pymodbus peer: {line}"))?
            .parse()?;
        Ok(Self {
            _child: child,
            stdin,
            stdout,
            port,
        })
    }

    /// Holding registers read by pymodbus's own client.
    async fn holding(&mut self, address: u16, count: u16) -> anyhow::Result<Vec<u16>> {
        self.stdin
            .write_all(format!("read hr {address} {count}\n").as_bytes())
            .await?;
        let line = tokio::time::timeout(Duration::from_secs(10), self.stdout.next_line())
            .await??
            .context("pymodbus peer exited")?;
        let rest = line
            .strip_prefix(&format!("hr {address} "))
            .with_context(|| format!("pymodbus peer: {line}"))?;
        Ok(rest
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?)
    }
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-6)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_decodes_a_foreign_modbus_server_and_writes_the_right_registers()
-> anyhow::Result<()> {
    let dir = temp_dir("pymodbus")?;
    let mut peer = PyPeer::start().await?;
    assert_eq!(
        peer.holding(0, 4).await?,
        vec![1, 85, 480, 80],
        "the peer's preload"
    );
    let cloud = Cloud::start_embedded("cloud", &dir.path().join("cloud"), dir.path()).await?;
    let plc = format!("127.0.0.1:{}", peer.port).parse()?;
    let _edge = Edge::start(
        "edge",
        dir.path(),
        &EdgeOptions::new(DEVICE, cloud.mqtt_url()?, Some(plc))
            .with_password(cloud.api.register_device(DEVICE).await?),
    )
    .await?;
    let api = &cloud.api;
    api.wait_device_ready(DEVICE, Duration::from_secs(30))
        .await?;

    // Every type of the default map, decoded (see the preload in modbus_server.py).
    let sample = wait_for(
        "a sample with every point",
        Duration::from_secs(30),
        || async {
            api.telemetry(DEVICE)
                .await
                .into_iter()
                .rev()
                .find(|s| s["values"].as_object().is_some_and(|v| v.len() >= 13))
        },
    )
    .await?;
    let v = &sample["values"];
    let numbers = [
        ("supply_c", -2.5),      // i16 × 0.1, negative
        ("return_c", 12.3),      // i16 × 0.1
        ("outdoor_c", -7.5),     // i16 × 0.1, negative
        ("alarm_code", 12.0),    // u16
        ("gas_m3h", 23.75),      // f32, big word order
        ("run_hours_h", 1e5),    // u32, little word order
        ("chw_setpoint_c", 8.5), // holding i16 × 0.1
        ("hw_setpoint_c", 48.0),
        ("demand_limit_pct", 80.0),
    ];
    for (name, expected) in numbers {
        assert!(
            close(&v[name], expected),
            "{name}: {} ≠ {expected} in {v}",
            v[name]
        );
    }
    assert_eq!(v["mode"], json!("heating"), "enum from holding 40001 = 1");
    assert_eq!(v["running"], json!(true), "discrete input 10001");
    assert_eq!(v["run"], json!(true), "coil 00001");
    assert_eq!(v["saving"], json!(false), "coil 00002");

    // A desired change lands in holding registers 40002 and 40004 only.
    let (status, body) = api
        .patch_desired(
            DEVICE,
            json!({ "chw_setpoint_c": 10.5, "demand_limit_pct": 60 }),
            "foreign peer",
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let version = body["version"].as_u64().expect("version");
    let peer = tokio::sync::Mutex::new(peer);
    let registers = wait_for(
        "the write to reach the pymodbus server",
        Duration::from_secs(30),
        || async {
            let r = peer.lock().await.holding(0, 4).await.ok()?;
            (r.get(1) == Some(&105) && r.get(3) == Some(&60)).then_some(r)
        },
    )
    .await?;
    assert_eq!(
        registers,
        vec![1, 105, 480, 60],
        "only 40002 and 40004 changed"
    );
    api.wait_verified(DEVICE, "chw_setpoint_c", version, Duration::from_secs(30))
        .await?;
    api.wait_verified(DEVICE, "demand_limit_pct", version, Duration::from_secs(30))
        .await?;
    Ok(())
}
