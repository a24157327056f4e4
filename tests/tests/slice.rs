//! Slice: cloud, edge and PLC simulator as real processes. An operator changes the chilled
//! water setpoint; the simulator's holding register follows, and reported state and history
//! show the change verified. An out-of-limits value is refused with 422.

use std::time::Duration;

use serde_json::json;
use shiki_e2e::{Cloud, Edge, EdgeOptions, PlcSim, read_holding, temp_dir, wait_for};

const DEVICE: &str = "plant-slice";
/// Holding register 40002 (protocol address 1): chw_setpoint_c, raw = value × 10.
const CHW_SETPOINT_REGISTER: u16 = 1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_setpoint_change_reaches_the_plc_and_is_verified() -> anyhow::Result<()> {
    let dir = temp_dir("slice")?;
    let sim = PlcSim::start(dir.path()).await?;
    let cloud = Cloud::start_embedded("cloud", &dir.path().join("cloud"), dir.path()).await?;
    let _edge = Edge::start(
        "edge",
        dir.path(),
        &EdgeOptions::new(DEVICE, cloud.mqtt_url()?, Some(sim.addr))
            .with_password(cloud.api.register_device(DEVICE).await?),
    )
    .await?;
    let api = &cloud.api;
    api.wait_device_ready(DEVICE, Duration::from_secs(30))
        .await?;

    let before = read_holding(sim.addr, CHW_SETPOINT_REGISTER, 1).await?;
    assert_ne!(
        before,
        vec![85],
        "the simulator must not start at the new setpoint"
    );

    let (status, body) = api
        .patch_desired(DEVICE, json!({ "chw_setpoint_c": 8.5 }), "e2e slice")
        .await?;
    assert_eq!(status, 200, "{body}");
    let version = body["version"].as_u64().expect("version in the answer");

    wait_for(
        "the PLC register to hold 85 (8.5 °C)",
        Duration::from_secs(30),
        || async {
            (read_holding(sim.addr, CHW_SETPOINT_REGISTER, 1)
                .await
                .ok()?
                == vec![85])
            .then_some(())
        },
    )
    .await?;

    let entry = api
        .wait_verified(DEVICE, "chw_setpoint_c", version, Duration::from_secs(30))
        .await?;
    assert_eq!(entry["new"], json!(8.5));
    assert_eq!(entry["comment"], json!("e2e slice"));

    let device = api.device(DEVICE).await.expect("device view");
    assert_eq!(device["reported"]["chw_setpoint_c"], json!(8.5), "{device}");
    assert_eq!(
        device["settings"]["chw_setpoint_c"]["source"],
        json!("override"),
        "{device}"
    );
    let history = api.history(DEVICE).await;
    assert!(
        history.iter().any(|h| h["side"] == "reported"
            && h["key"] == "chw_setpoint_c"
            && h["new"] == json!(8.5)),
        "history has the reported change: {history:?}"
    );

    let (status, body) = api
        .patch_desired(DEVICE, json!({ "chw_setpoint_c": 30.0 }), "too warm")
        .await?;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("chw_setpoint_c"), "{body}");
    let device = api.device(DEVICE).await.expect("device view");
    assert_eq!(
        device["version"].as_u64(),
        Some(version),
        "a refused change leaves desired alone"
    );
    assert_eq!(
        read_holding(sim.addr, CHW_SETPOINT_REGISTER, 1).await?,
        vec![85]
    );
    Ok(())
}
