//! The demo: `shiki-demo` starts the cloud and three edges, prints the admin API address,
//! the token and four curl commands; the printed commands work as printed, the yearly
//! schedules the demo loads are acked by the device, and SIGTERM (like Ctrl-C) stops
//! everything cleanly.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use shiki_e2e::stack::strip_ansi;
use shiki_e2e::{Child, temp_dir, wait_for};

/// Runs one printed command line with `sh -c` and parses its JSON answer.
fn run_printed(command: &str) -> anyhow::Result<Value> {
    let out = std::process::Command::new("sh")
        .args(["-c", command])
        .output()?;
    anyhow::ensure!(out.status.success(), "{command} failed: {out:?}");
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_prints_curl_commands_that_work_and_stops_cleanly() -> anyhow::Result<()> {
    let dir = temp_dir("demo")?;
    let data = dir.path().join("data");
    let data_s = data.display().to_string();
    let mut demo = Child::spawn(
        "shiki-demo",
        Path::new(env!("CARGO_BIN_EXE_shiki-demo")),
        &[
            "--data-dir",
            &data_s,
            "--api-listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--telemetry-interval",
            "1s",
        ],
        &[("NO_COLOR", "1")],
        dir.path(),
    )?;
    let banner = wait_for("the demo banner", Duration::from_secs(60), || {
        let out = strip_ansi(&demo.output());
        async move { out.contains("Ctrl-C stops everything").then_some(out) }
    })
    .await?;
    let curls: Vec<&str> = banner
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("curl "))
        .collect();
    assert_eq!(curls.len(), 4, "four curl commands:\n{banner}");
    assert!(banner.contains("admin token   shiki_"), "{banner}");

    let devices = run_printed(curls[0])?;
    let ids: Vec<&str> = devices["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(ids, ["demo-chiller-1", "demo-chiller-2", "demo-chiller-3"]);

    let patched = run_printed(curls[1])?;
    let version = patched["version"].as_u64().expect("new desired version");
    let verified = wait_for(
        "the printed history to show verified",
        Duration::from_secs(60),
        || async {
            let history = run_printed(curls[2]).ok()?;
            history["history"].as_array()?.iter().find_map(|h| {
                (h["side"] == "desired"
                    && h["key"] == "chw_setpoint_c"
                    && h["version"] == version
                    && h["verification"]["outcome"] == "verified")
                    .then(|| h.clone())
            })
        },
    )
    .await?;
    assert_eq!(verified["new"], serde_json::json!(8.5));

    let schedules = wait_for(
        "the printed schedule status to show both slots acked",
        Duration::from_secs(60),
        || async {
            let s = run_printed(curls[3]).ok()?;
            (s["current"]["status"]["state"] == "acked" && s["next"]["status"]["state"] == "acked")
                .then_some(s)
        },
    )
    .await?;
    assert_eq!(schedules["current"]["id"], "demo-now", "{schedules}");
    assert_eq!(schedules["next"]["id"], "sapporo-2027", "{schedules}");
    assert_eq!(
        schedules["current"]["status"]["hash"], schedules["current"]["hash"],
        "{schedules}"
    );
    // The chiller follows the schedule: its demand limit comes from it.
    let device_url = curls[2].trim_end_matches("/history");
    let device = wait_for(
        "the demand limit reported with source schedule",
        Duration::from_secs(30),
        || async {
            let d = run_printed(device_url).ok()?;
            (d["settings"]["demand_limit_pct"]["source"] == "schedule"
                && d["reported"]["demand_limit_pct"].is_number())
            .then_some(d)
        },
    )
    .await?;
    assert!(
        [60.0, 80.0, 100.0].contains(
            &device["reported"]["demand_limit_pct"]
                .as_f64()
                .unwrap_or(0.0)
        ),
        "{device}"
    );

    assert_eq!(demo.terminate()?, Some(0), "{}", demo.output());
    assert!(
        demo.output().contains("stopped cleanly"),
        "{}",
        demo.output()
    );
    assert!(data.join("cloud").join("shiki-cloud.redb").exists());
    Ok(())
}
