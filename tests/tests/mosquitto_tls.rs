//! The slice through Mosquitto over TLS with client certificates (generated here), the CN as
//! user name and the per-device ACL that deploy/ ships: a setpoint change reaches the PLC
//! and is verified, and device A's certificate cannot publish on device B's topics.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use shiki_e2e::mosquitto::Mosquitto;
use shiki_e2e::pki::Pki;
use shiki_e2e::probe::MqttProbe;
use shiki_e2e::{Cloud, Edge, EdgeOptions, PlcSim, read_holding, temp_dir, wait_for};

const DEVICE_A: &str = "plant-a";
const DEVICE_B: &str = "plant-b";
const TELEMETRY_EXAMPLE: &str = include_str!("../../proto/examples/telemetry.json");

/// `shiki_ingest_malformed_dropped_total` from the cloud's `/metrics`.
async fn malformed_dropped(cloud: &Cloud) -> Option<f64> {
    let text = reqwest::get(format!("http://{}/metrics", cloud.api.addr))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with("shiki_ingest_malformed_dropped_total"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slice_works_through_mosquitto_with_tls_and_a_device_cannot_publish_as_another()
-> anyhow::Result<()> {
    let dir = temp_dir("mosquitto-tls")?;
    let pki = Pki::new(&dir.path().join("pki"))?;
    let acl = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/mosquitto/shiki.acl");
    let broker = Mosquitto::start_tls(dir.path(), &pki.ca, &pki.server()?, &acl).await?;

    let cloud_cert = pki.client("shiki-cloud")?;
    let cloud_toml = dir.path().join("cloud.toml");
    std::fs::write(
        &cloud_toml,
        format!(
            "[mqtt]\nurl = {:?}\nclient_id = \"shiki-cloud\"\nca_file = {:?}\n\
             cert_file = {:?}\nkey_file = {:?}\n",
            broker.url(),
            pki.ca,
            cloud_cert.cert,
            cloud_cert.key
        ),
    )?;
    let cloud = Cloud::start(
        "cloud",
        &dir.path().join("cloud"),
        dir.path(),
        None,
        Some(&cloud_toml),
    )
    .await?;

    let sim = PlcSim::start(dir.path()).await?;
    let a = pki.client(DEVICE_A)?;
    let mut opts = EdgeOptions::new(DEVICE_A, broker.url(), Some(sim.addr));
    opts.extra_toml = format!(
        "[mqtt]\nreconnect_min = \"200ms\"\nreconnect_max = \"1s\"\nca_file = {:?}\n\
         cert_file = {:?}\nkey_file = {:?}\n",
        pki.ca, a.cert, a.key
    );
    let _edge = Edge::start("edge-a", dir.path(), &opts).await?;

    // The slice over TLS.
    let api = &cloud.api;
    api.wait_device_ready(DEVICE_A, Duration::from_secs(30))
        .await?;
    let (status, body) = api
        .patch_desired(DEVICE_A, json!({ "chw_setpoint_c": 9.5 }), "over TLS")
        .await?;
    assert_eq!(status, 200, "{body}");
    let version = body["version"].as_u64().expect("version");
    wait_for(
        "holding register 40002 = 95",
        Duration::from_secs(30),
        || async { (read_holding(sim.addr, 1, 1).await.ok()? == vec![95]).then_some(()) },
    )
    .await?;
    api.wait_verified(DEVICE_A, "chw_setpoint_c", version, Duration::from_secs(30))
        .await?;

    // An observer with the cloud's identity sees every device's telemetry and events.
    let observer =
        MqttProbe::connect_tls("e2e-observer", broker.port, &pki.ca, &cloud_cert).await?;
    observer.subscribe("shiki/v1/+/telemetry").await?;
    observer.subscribe("shiki/v1/+/events").await?;
    let malformed_before = malformed_dropped(&cloud).await.unwrap_or(0.0);

    // Device A's certificate publishes a well-formed telemetry batch on B's topic, then a
    // marker on its own events topic over the same connection (so in order).
    let intruder = MqttProbe::connect_tls("plant-a-intruder", broker.port, &pki.ca, &a).await?;
    let mut forged: serde_json::Value = serde_json::from_str(TELEMETRY_EXAMPLE)?;
    forged["samples"][0]["seq"] = json!(1);
    forged["samples"][1]["seq"] = json!(2);
    intruder
        .publish(
            &format!("shiki/v1/{DEVICE_B}/telemetry"),
            serde_json::to_vec(&forged)?,
        )
        .await?;
    let marker = format!("shiki/v1/{DEVICE_A}/events");
    intruder
        .publish(&marker, b"e2e marker, not JSON".to_vec())
        .await?;

    wait_for(
        "the marker at the observer",
        Duration::from_secs(10),
        || async {
            observer
                .messages()
                .iter()
                .any(|(t, p)| *t == marker && p.starts_with(b"e2e marker"))
                .then_some(())
        },
    )
    .await?;
    let leaked: Vec<String> = observer
        .messages()
        .into_iter()
        .map(|(t, _)| t)
        .filter(|t| t.contains(DEVICE_B))
        .collect();
    assert!(
        leaked.is_empty(),
        "the broker passed A's publish on B's topic: {leaked:?}"
    );

    // The cloud has processed the marker (dropped as malformed), and never heard of B.
    wait_for(
        "the cloud to drop the marker",
        Duration::from_secs(10),
        || async { (malformed_dropped(&cloud).await? > malformed_before).then_some(()) },
    )
    .await?;
    let (status, _) = api.get(&format!("/devices/{DEVICE_B}")).await?;
    assert_eq!(
        status, 404,
        "the cloud must not know device B from A's forged publish"
    );
    let log = broker.child.output();
    assert!(
        log.contains("Denied PUBLISH"),
        "mosquitto logs the refusal:\n{log}"
    );

    // Positive control: the same kind of batch under B's own identity is stored.
    let b = pki.client(DEVICE_B)?;
    let device_b = MqttProbe::connect_tls(DEVICE_B, broker.port, &pki.ca, &b).await?;
    device_b
        .publish(
            &format!("shiki/v1/{DEVICE_B}/telemetry"),
            TELEMETRY_EXAMPLE.as_bytes().to_vec(),
        )
        .await?;
    let seqs = wait_for(
        "B's own telemetry stored",
        Duration::from_secs(10),
        || async {
            let seqs = api.telemetry_seqs(DEVICE_B).await;
            (seqs.len() >= 2).then_some(seqs)
        },
    )
    .await?;
    assert_eq!(
        seqs,
        vec![1041, 1042],
        "only B's own samples, none of A's forgery"
    );
    Ok(())
}
