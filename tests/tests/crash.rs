//! Crash: the edge builds a backlog while its link is down, then is SIGKILLed while it
//! drains that backlog over a slow link. Restarted on the same data dir, it finishes the
//! drain: the cloud holds every telemetry seq exactly once, in order, with no gap.

use std::time::Duration;

use shiki_e2e::{
    Cloud, Edge, EdgeOptions, PlcSim, TcpProxy, assert_contiguous, temp_dir, wait_for,
};

const DEVICE: &str = "plant-crash";
/// Samples to buffer before the link returns (100 ms apart).
const BACKLOG: u64 = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_killed_while_draining_its_backlog_still_delivers_every_sample_exactly_once()
-> anyhow::Result<()> {
    let dir = temp_dir("crash")?;
    let sim = PlcSim::start(dir.path()).await?;
    let cloud = Cloud::start_embedded("cloud", &dir.path().join("cloud"), dir.path()).await?;
    let proxy = TcpProxy::start(cloud.mqtt.expect("embedded broker")).await?;
    let mut opts = EdgeOptions::new(DEVICE, format!("mqtt://{}", proxy.addr()), Some(sim.addr))
        .with_password(cloud.api.register_device(DEVICE).await?);
    opts.telemetry_interval = "100ms";
    // Small backlog batches, one at a time: the drain takes several round trips.
    opts.extra_toml = "[mqtt]\nreconnect_min = \"200ms\"\nreconnect_max = \"1s\"\n\
                       max_inflight_batches = 1\nbacklog_batch_bytes = 16384\n"
        .into();
    let mut edge = Edge::start("edge-1", dir.path(), &opts).await?;
    let api = &cloud.api;
    api.wait_device_ready(DEVICE, Duration::from_secs(30))
        .await?;

    proxy.cut();
    let stored_before = api.telemetry_seqs(DEVICE).await.len() as u64;
    // The backlog grows on the edge while the link is down; its own log does not count
    // samples, so wait for the time that BACKLOG samples take (the scenario, not a sync).
    tokio::time::sleep(Duration::from_millis(100 * BACKLOG)).await;

    // A slow link: every chunk is held back, so the drain spans many round trips.
    proxy.set_delay(Duration::from_millis(400));
    proxy.restore();
    let partial = wait_for("the drain to start", Duration::from_secs(60), || async {
        let n = api.telemetry_seqs(DEVICE).await.len() as u64;
        (n > stored_before + 5).then_some(n)
    })
    .await?;
    edge.child.kill9();
    let after_kill = api.telemetry_seqs(DEVICE).await.len() as u64;
    assert!(
        after_kill < stored_before + BACKLOG,
        "the edge was killed during the drain ({partial} → {after_kill} of ~{} stored)",
        stored_before + BACKLOG
    );
    drop(edge);

    proxy.set_delay(Duration::ZERO);
    let restarted_at = chrono::Utc::now();
    let _edge = Edge::start("edge-2", dir.path(), &opts).await?;
    let samples = wait_for(
        "the rest of the backlog and live samples after the restart",
        Duration::from_secs(60),
        || async {
            let samples = api.telemetry(DEVICE).await;
            let live = samples.iter().any(|s| {
                s["ts"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| t > restarted_at)
            });
            let last = samples.last()?["seq"].as_u64()?;
            (live && samples.len() as u64 == last).then_some(samples)
        },
    )
    .await?;
    let seqs: Vec<u64> = samples.iter().filter_map(|s| s["seq"].as_u64()).collect();
    assert_contiguous(&seqs)?;

    // Events are a stream of their own: both boots arrive, each event once, in order.
    let events = wait_for("both boot events", Duration::from_secs(30), || async {
        let events = api.events(DEVICE).await;
        let boots = events.iter().filter(|e| e["kind"] == "boot").count();
        (boots >= 2).then_some(events)
    })
    .await?;
    let event_seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_contiguous(&event_seqs)?;
    assert!(
        seqs.len() as u64 >= stored_before + BACKLOG / 2,
        "the backlog was delivered ({} samples)",
        seqs.len()
    );
    Ok(())
}
