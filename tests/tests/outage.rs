//! Outage: the edge reaches the broker through a proxy the test cuts. During the cut the
//! cloud restarts (same data dir, same broker port). After the link returns, the cloud holds
//! every telemetry seq exactly once, in order, with no gap — including the samples taken
//! while the link was down.

use std::time::Duration;

use shiki_e2e::{
    Cloud, Edge, EdgeOptions, PlcSim, TcpProxy, assert_contiguous, temp_dir, wait_for,
};

const DEVICE: &str = "plant-outage";
/// How long the link stays down (the scenario's length, not a synchronisation).
const OUTAGE: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_taken_during_an_outage_and_a_cloud_restart_arrive_exactly_once_in_order()
-> anyhow::Result<()> {
    let dir = temp_dir("outage")?;
    let cloud_dir = dir.path().join("cloud");
    let sim = PlcSim::start(dir.path()).await?;
    let mut cloud = Cloud::start_embedded("cloud-1", &cloud_dir, dir.path()).await?;
    let broker = cloud.mqtt.expect("embedded broker");
    let proxy = TcpProxy::start(broker).await?;
    let _edge = Edge::start(
        "edge",
        dir.path(),
        &EdgeOptions::new(DEVICE, format!("mqtt://{}", proxy.addr()), Some(sim.addr))
            .with_password(cloud.api.register_device(DEVICE).await?),
    )
    .await?;
    cloud
        .api
        .wait_device_ready(DEVICE, Duration::from_secs(30))
        .await?;
    let api = cloud.api.clone();
    wait_for("three samples stored", Duration::from_secs(30), || async {
        (api.telemetry_seqs(DEVICE).await.len() >= 3).then_some(())
    })
    .await?;

    proxy.cut();
    let cut_at = chrono::Utc::now();
    let before_restart = cloud.api.telemetry_seqs(DEVICE).await;
    let last_before = *before_restart.last().expect("samples before the cut");
    assert_eq!(cloud.child.terminate()?, Some(0), "the cloud stops cleanly");
    drop(cloud);
    let cloud = Cloud::start("cloud-2", &cloud_dir, dir.path(), Some(broker), None).await?;
    tokio::time::sleep(OUTAGE).await;
    let restored_at = chrono::Utc::now();
    proxy.restore();

    let api = &cloud.api;
    let seqs = wait_for(
        "the outage backlog and new live samples stored",
        Duration::from_secs(60),
        || async {
            let samples = api.telemetry(DEVICE).await;
            let live_after_restore = samples.iter().any(|s| {
                s["ts"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| t > restored_at)
            });
            let seqs: Vec<u64> = samples.iter().filter_map(|s| s["seq"].as_u64()).collect();
            (live_after_restore && seqs.len() as u64 == *seqs.last()?).then_some(samples)
        },
    )
    .await?;
    let seq_list: Vec<u64> = seqs.iter().filter_map(|s| s["seq"].as_u64()).collect();
    assert_contiguous(&seq_list)?;
    let during_outage = seqs
        .iter()
        .filter(|s| {
            s["ts"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t > cut_at && t < restored_at)
        })
        .count();
    assert!(
        during_outage >= 4,
        "samples taken during the {OUTAGE:?} outage were delivered ({during_outage})"
    );
    assert!(seq_list.len() as u64 > last_before + 4);
    Ok(())
}
