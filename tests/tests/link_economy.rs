//! Cellular link economy (#22) across real processes: an edge sending compact telemetry in
//! delayed batches (`telemetry.batch_max_delay`) through a link the test cuts loses and
//! reorders nothing; an edge set to `encoding = "json"` and an older edge's exact payload
//! (version 1: raw floats, nanosecond times, published by hand) are read by the same cloud;
//! the API shows values at their resolution.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use shiki_e2e::{
    Cloud, Edge, EdgeOptions, PlcSim, TcpProxy, assert_contiguous, temp_dir, wait_for,
};

const COMPACT: &str = "plant-compact";
const JSON: &str = "plant-json";
const OLD: &str = "plant-old";
/// How long the link stays down (the scenario's length, not a synchronisation).
const OUTAGE: Duration = Duration::from_secs(3);

fn seqs(samples: &[Value]) -> Vec<u64> {
    samples.iter().filter_map(|s| s["seq"].as_u64()).collect()
}

/// Numbers of points with a resolution of 0.1 or coarser carry at most 2 decimals; times
/// carry at most milliseconds (the interval is 200 ms).
fn assert_at_resolution(device: &str, samples: &[Value]) {
    for s in samples {
        let ts = s["ts"].as_str().unwrap_or_default();
        let frac = ts
            .split('.')
            .nth(1)
            .map_or(0, |f| f.trim_end_matches('Z').len());
        assert!(frac <= 3, "{device}: time {ts} finer than the sampling");
        for (name, v) in s["values"].as_object().into_iter().flatten() {
            if let Some(n) = v.as_f64() {
                let text = n.to_string();
                let decimals = text.split('.').nth(1).map_or(0, str::len);
                assert!(
                    decimals <= 2,
                    "{device}: {name} = {text} is not at its resolution"
                );
            }
        }
    }
}

/// Publishes exactly what an edge of an earlier version sent: a retained catalog and a
/// version-1 batch with raw floats and nanosecond times. Waits for both PUBACKs.
async fn publish_as_an_old_edge(
    broker: std::net::SocketAddr,
    password: String,
) -> anyhow::Result<()> {
    let mut opts = MqttOptions::new(OLD, broker.ip().to_string(), broker.port());
    opts.set_credentials(OLD, password);
    let (client, mut el) = AsyncClient::new(opts, 8);
    let catalog = r#"{"v":1,"points":[{"name":"supply_c","role":"reading","kind":"number","unit":"°C","resolution":0.1},{"name":"running","role":"reading","kind":"bool"}]}"#;
    let batch = r#"{"v":1,"backlog":false,"samples":[{"seq":1,"ts":"2026-07-01T03:00:00.123456789Z","values":{"supply_c":24.400000000000002,"running":true}},{"seq":2,"ts":"2026-07-01T03:01:00.120000001Z","values":{"supply_c":7.1000000000000005,"running":true}}]}"#;
    client
        .publish(
            format!("shiki/v1/{OLD}/catalog"),
            QoS::AtLeastOnce,
            true,
            catalog,
        )
        .await?;
    client
        .publish(
            format!("shiki/v1/{OLD}/telemetry"),
            QoS::AtLeastOnce,
            false,
            batch,
        )
        .await?;
    let mut acks = 0;
    tokio::time::timeout(Duration::from_secs(10), async {
        while acks < 2 {
            match el.poll().await? {
                Event::Incoming(Packet::PubAck(_)) => acks += 1,
                Event::Incoming(Packet::ConnAck(a))
                    if a.code != rumqttc::ConnectReturnCode::Success =>
                {
                    anyhow::bail!("old edge refused: {:?}", a.code)
                }
                _ => {}
            }
        }
        anyhow::Ok(())
    })
    .await??;
    let _ = client.disconnect().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_compact_batches_cross_a_cut_in_order_and_old_payloads_still_read()
-> anyhow::Result<()> {
    let dir = temp_dir("link-economy")?;
    let sim = PlcSim::start(dir.path()).await?;
    let cloud = Cloud::start_embedded("cloud", &dir.path().join("cloud"), dir.path()).await?;
    let broker = cloud.mqtt.expect("embedded broker");
    let proxy = TcpProxy::start(broker).await?;
    let api = cloud.api.clone();

    // Compact, in batches of up to 1 s (5 samples at 200 ms), through the cuttable proxy.
    let mut compact = EdgeOptions::new(COMPACT, format!("mqtt://{}", proxy.addr()), Some(sim.addr))
        .with_password(api.register_device(COMPACT).await?);
    compact.telemetry_interval = "200ms";
    compact.extra_toml = "[telemetry]\nbatch_max_delay = \"1s\"\nencoding = \"compact\"\n\
                          [mqtt]\nreconnect_min = \"200ms\"\nreconnect_max = \"1s\"\n"
        .into();
    let compact_edge = Edge::start("edge-compact", dir.path(), &compact).await?;
    let started = shiki_e2e::stack::strip_ansi(&compact_edge.child.output());
    assert!(
        started.contains("batch_max_delay=1s") && started.contains("encoding=Compact"),
        "the edge runs with the settings under test:\n{started}"
    );
    // Version-1 JSON, every sample at once, straight to the broker.
    let mut json = EdgeOptions::new(JSON, format!("mqtt://{broker}"), Some(sim.addr))
        .with_password(api.register_device(JSON).await?);
    json.telemetry_interval = "200ms";
    json.extra_toml =
        "[telemetry]\nencoding = \"json\"\n[mqtt]\nreconnect_min = \"200ms\"\n".into();
    let _json = Edge::start("edge-json", dir.path(), &json).await?;

    wait_for(
        "compact samples stored",
        Duration::from_secs(30),
        || async { (api.telemetry_seqs(COMPACT).await.len() >= 10).then_some(()) },
    )
    .await?;
    proxy.cut();
    tokio::time::sleep(OUTAGE).await;
    let restored_at = chrono::Utc::now();
    proxy.restore();

    let samples = wait_for(
        "the samples of the cut and later ones stored",
        Duration::from_secs(30),
        || async {
            let samples = api.telemetry(COMPACT).await;
            let after = samples.iter().any(|s| {
                s["ts"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| t > restored_at)
            });
            let seqs = seqs(&samples);
            (after && seqs.len() as u64 == *seqs.last()?).then_some(samples)
        },
    )
    .await?;
    let compact_seqs = seqs(&samples);
    assert_eq!(compact_seqs.first(), Some(&1));
    assert_contiguous(&compact_seqs)?;
    assert!(
        samples.iter().any(|s| s["values"]["supply_c"].is_number()),
        "compact samples carry the PLC's values"
    );
    assert_at_resolution(COMPACT, &samples);

    let json_samples = wait_for("json samples stored", Duration::from_secs(30), || async {
        let samples = api.telemetry(JSON).await;
        (samples.len() >= 5).then_some(samples)
    })
    .await?;
    assert_contiguous(&seqs(&json_samples))?;
    assert!(
        json_samples
            .iter()
            .any(|s| s["values"]["supply_c"].is_number())
    );
    assert_at_resolution(JSON, &json_samples);

    publish_as_an_old_edge(broker, api.register_device(OLD).await?).await?;
    let old = wait_for(
        "the old edge's samples stored",
        Duration::from_secs(30),
        || async {
            // The catalog reaches the device actor beside the samples: wait until the API reads
            // them with it.
            let samples = api.telemetry(OLD).await;
            (samples.len() == 2 && samples[0]["values"]["supply_c"] == serde_json::json!(24.4))
                .then_some(samples)
        },
    )
    .await?;
    assert_eq!(seqs(&old), [1, 2]);
    assert_eq!(
        old[0]["values"]["supply_c"],
        serde_json::json!(24.4),
        "{old:?}"
    );
    assert_eq!(old[1]["values"]["supply_c"], serde_json::json!(7.1));
    assert_eq!(
        old[0]["ts"], "2026-07-01T03:00:00.123456789Z",
        "times as sent"
    );
    Ok(())
}
