//! The residency benchmark: N device actors started through the registry, one round trip
//! to each, and the memory they hold.

use std::time::Instant;

use chrono::Utc;
use shiki_cloud::device::{DeviceCount, DeviceInput, GetView, ListDevices, Route, SampleJson};
use shiki_proto::{DeviceId, Sample};

use super::shared::{bench_config, out, temp_dir};

/// Starts `n` device actors (one telemetry sample each), sends each one `GetView`, and
/// prints the times and the RSS per actor.
pub(super) async fn run(n: usize) -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let app = shiki_cloud::start(bench_config(&dir)).await?;
    let before = rss_mb();
    let started = Instant::now();
    let sample = SampleJson::of(&Sample {
        seq: 1,
        ts: Utc::now(),
        values: [("supply_temp".to_owned(), 7.0.into())].into(),
    })
    .expect("a sample of numbers encodes");
    for i in 0..n {
        let device = DeviceId::new(format!("dev-{i:07}")).expect("generated ids are valid");
        app.registry.do_send(Route {
            device,
            input: DeviceInput::Telemetry(sample.clone()),
        });
    }
    let count = app.registry.send(DeviceCount).await.unwrap_or(0);
    let spawn = started.elapsed();
    // One round trip to every actor.
    let rt = Instant::now();
    let devices = app.registry.send(ListDevices).await.unwrap_or_default();
    for chunk in devices.chunks(10_000) {
        let _ = futures::future::join_all(chunk.iter().map(|(_, a)| a.send(GetView))).await;
    }
    let round_trip = rt.elapsed();
    let after = rss_mb();
    let fleet_page = fleet_page_ms(&app, count).await;
    out(&format!(
        "actors: {count} device actors resident; started in {:.0} ms, one round trip each in {:.0} ms; \
         RSS {after:.1} MB total ({before:.1} MB before, {:.0} bytes per actor)",
        spawn.as_secs_f64() * 1e3,
        round_trip.as_secs_f64() * 1e3,
        (after - before) * 1024.0 * 1024.0 / count.max(1) as f64
    ));
    match fleet_page {
        Ok((p50, p95)) => out(&format!(
            "actors: the console's fleet page (GET /api/v1/devices?limit=50, from the middle of \
             {count} devices) p50 {p50:.1} ms, p95 {p95:.1} ms"
        )),
        Err(e) => out(&format!("actors: fleet page not measured: {e}")),
    }
    drop(devices);
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The console's fleet page over HTTP, 20 times: (p50, p95) in ms.
async fn fleet_page_ms(app: &shiki_cloud::App, count: usize) -> anyhow::Result<(f64, f64)> {
    let token = app
        .admin_token
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no bootstrap admin token"))?;
    shiki_shared::tls::install_crypto_provider();
    let http = reqwest::Client::new();
    let url = format!(
        "http://{}/api/v1/devices?limit=50&offset={}",
        app.api_addr,
        count / 2
    );
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let res = http.get(&url).bearer_auth(&token).send().await?;
        anyhow::ensure!(res.status().is_success(), "HTTP {}", res.status());
        let _ = res.bytes().await?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[times.len() * 95 / 100]))
}

/// Resident memory of this process in MB (`VmRSS` of `/proc/self/status`; 0 without it).
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
