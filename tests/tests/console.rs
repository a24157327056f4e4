//! The operator console in a real headless Chromium (issue #19): cloud, edge and PLC
//! simulator as processes; `tests/browser/console.mjs` (Playwright driving Debian's
//! Chromium) signs in, sees the device online, opens it, sees a chart with data, changes
//! the setpoint through the form and sees it verified and in history, sees the API's 422
//! beside the field, uploads a broken schedule and sees its problems, then a good one and
//! sees what it puts in force and the calendar. Screenshots of
//! each page land in `target/tmp/console/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use shiki_e2e::stack::ADMIN_TOKEN;
use shiki_e2e::{Cloud, Edge, EdgeOptions, PlcSim, temp_dir};

const DEVICE: &str = "plant-console";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// A schedule the API refuses: a season names a profile that does not exist, and the
/// time zone is not one.
fn broken_schedule() -> Value {
    let mut doc: Value =
        serde_json::from_str(include_str!("../../deploy/schedule.example.json")).expect("example");
    doc["timezone"] = json!("Mars/Olympus_Mons");
    doc
}

/// A schedule covering now (Asia/Tokyo): 10 days back to 40 ahead, work days and weekends,
/// a holiday in three days.
fn good_schedule() -> Value {
    let tokyo = chrono::FixedOffset::east_opt(9 * 3600).expect("UTC+9");
    let today = chrono::Utc::now().with_timezone(&tokyo).date_naive();
    let day = |d: i64| (today + chrono::Duration::days(d)).to_string();
    json!({
        "id": "console-now",
        "timezone": "Asia/Tokyo",
        "valid_from": day(-10),
        "valid_to": day(40),
        "defaults": { "run": false, "mode": "cooling", "chw_setpoint_c": 7.0 },
        "profiles": {
            "work": [{ "time": "08:00", "settings": { "run": true } },
                     { "time": "20:00", "settings": { "run": false } }],
            "off": []
        },
        "seasons": [{ "name": "all", "from": "01-01", "to": "12-31",
                      "weekday": "work", "saturday": "off", "sunday": "off" }],
        "holidays": [{ "date": day(3), "name": "Console test day" }]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_uses_the_console_in_a_real_browser() -> anyhow::Result<()> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    anyhow::ensure!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: apt-get install chromium (.ci/run does)"
    );
    anyhow::ensure!(
        browser_dir().join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: npm ci --prefix tests/browser (.ci/run does)"
    );
    let dir = temp_dir("console")?;
    let sim = PlcSim::start(dir.path()).await?;
    let cloud = Cloud::start_embedded("cloud", &dir.path().join("cloud"), dir.path()).await?;
    let opts = EdgeOptions::new(DEVICE, cloud.mqtt_url()?, Some(sim.addr))
        .with_password(cloud.api.register_device(DEVICE).await?);
    let _edge = Edge::start("edge", dir.path(), &opts).await?;
    let api = &cloud.api;
    api.wait_device_ready(DEVICE, Duration::from_secs(30))
        .await?;
    // Samples over 30 s: the last hour's chart (12 s per bucket) draws a line, not a dot.
    shiki_e2e::wait_for("30 s of samples", Duration::from_secs(60), || async {
        let rows = api.telemetry(DEVICE).await;
        let ts = |v: &Value| {
            v["ts"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        };
        let (first, last) = (ts(rows.first()?)?, ts(rows.last()?)?);
        ((last - first).num_seconds() >= 30).then_some(())
    })
    .await?;

    // What the API answers to the refused inputs (the browser must show the same).
    let (status, refused) = api
        .patch_desired(DEVICE, json!({ "chw_setpoint_c": 30.0 }), "probe")
        .await?;
    anyhow::ensure!(status == 422, "30 °C should be refused: {status} {refused}");
    let expect_422 = refused["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let good = dir.path().join("schedule.json");
    std::fs::write(&good, serde_json::to_vec_pretty(&good_schedule())?)?;
    let bad = dir.path().join("broken-schedule.json");
    std::fs::write(&bad, serde_json::to_vec_pretty(&broken_schedule())?)?;
    let (status, problems) = api.put_schedule(DEVICE, None, &broken_schedule()).await?;
    anyhow::ensure!(
        status == 422,
        "the broken schedule should be refused: {status} {problems}"
    );
    let first = &problems["error"]["problems"][0];
    let problem = format!(
        "{}: {}",
        first["path"].as_str().unwrap_or_default(),
        first["message"].as_str().unwrap_or_default()
    );

    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console");
    let _ = std::fs::remove_dir_all(&out);
    let run = tokio::task::spawn_blocking({
        let (out, bad, good) = (out.clone(), bad.clone(), good.clone());
        let url = format!("http://{}/", api.addr);
        move || {
            Command::new("node")
                .arg(browser_dir().join("console.mjs"))
                .env("CHROMIUM", chromium)
                .env("SHIKI_URL", url)
                .env("SHIKI_TOKEN", ADMIN_TOKEN)
                .env("SHIKI_DEVICE", DEVICE)
                .env("SHIKI_OUT", &out)
                .env("SHIKI_EXPECT_422", expect_422)
                .env("SHIKI_BAD_SCHEDULE", &bad)
                .env("SHIKI_GOOD_SCHEDULE", &good)
                .env("SHIKI_SCHEDULE_PROBLEM", problem)
                .output()
        }
    })
    .await??;
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    anyhow::ensure!(
        run.status.success(),
        "the browser test failed (screenshots in {}):\n{stdout}\n{stderr}",
        out.display()
    );
    assert!(stdout.contains("all steps passed"), "{stdout}");
    for page in [
        "fleet", "device", "verified", "refused", "schedule", "tablet",
    ] {
        let png = out.join(format!("{page}.png"));
        let bytes = std::fs::read(&png)?;
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 5_000,
            "{} is not a screenshot",
            png.display()
        );
    }
    Ok(())
}
