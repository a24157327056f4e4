//! The PostgreSQL store end to end: a cloud storing in PostgreSQL, behind a Mosquitto of the
//! test's own, and an edge streaming samples from a simulated PLC. PostgreSQL goes away
//! twice while samples flow: once every connection is dropped (as in a server restart),
//! once the database refuses connections for several seconds, longer than the writer's
//! retries. The cloud acknowledges each message only after its commit, so afterwards it
//! holds every seq exactly once, without a gap.

use std::time::Duration;

use shiki_cloud_store::testing::PgTestDb;
use shiki_e2e::mosquitto::Mosquitto;
use shiki_e2e::{Cloud, Edge, EdgeOptions, PlcSim, assert_contiguous, temp_dir, wait_for};

const DEVICE: &str = "plant-pg";
/// How long the database refuses connections (longer than the writer retries a commit).
const REFUSAL: Duration = Duration::from_secs(8);

/// Drops every connection to the test database.
fn drop_connections(db: &PgTestDb) -> anyhow::Result<()> {
    db.query_admin(&format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = '{}'",
        db.name()
    ))
    .map_err(anyhow::Error::msg)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_stream_into_postgresql_exactly_once_across_dropped_connections_and_an_outage()
-> anyhow::Result<()> {
    let dir = temp_dir("postgres")?;
    let db = PgTestDb::create();
    let mosquitto = Mosquitto::start_plain(dir.path()).await?;
    let config = dir.path().join("cloud.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = {:?}\n\n[mqtt]\nurl = {:?}\n",
            db.url,
            mosquitto.url()
        ),
    )?;
    let sim = PlcSim::start(dir.path()).await?;
    let cloud = Cloud::start(
        "cloud",
        &dir.path().join("cloud-data"),
        dir.path(),
        None,
        Some(&config),
    )
    .await?;
    let _edge = Edge::start(
        "edge",
        dir.path(),
        &EdgeOptions::new(DEVICE, mosquitto.url(), Some(sim.addr)),
    )
    .await?;
    let api = &cloud.api;
    api.wait_device_ready(DEVICE, Duration::from_secs(30))
        .await?;
    let stored_at_least = |n: usize| async move {
        wait_for(
            &format!("{n} samples stored"),
            Duration::from_secs(60),
            || async { (api.telemetry_seqs(DEVICE).await.len() >= n).then_some(()) },
        )
        .await
    };
    stored_at_least(3).await?;

    // A restart of the server, as the store sees it.
    drop_connections(&db)?;
    let after_drop = api.telemetry_seqs(DEVICE).await.len();
    stored_at_least(after_drop + 3).await?;

    // The database refuses connections for longer than a commit is retried.
    db.query_admin(&format!(
        "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false",
        db.name()
    ))
    .map_err(anyhow::Error::msg)?;
    drop_connections(&db)?;
    let refused_at = chrono::Utc::now();
    tokio::time::sleep(REFUSAL).await;
    db.query_admin(&format!(
        "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
        db.name()
    ))
    .map_err(anyhow::Error::msg)?;
    let restored_at = chrono::Utc::now();

    let samples = wait_for(
        "the samples of the outage and newer ones stored",
        Duration::from_secs(90),
        || async {
            let samples = api.telemetry(DEVICE).await;
            let seqs: Vec<u64> = samples.iter().filter_map(|s| s["seq"].as_u64()).collect();
            let newer = samples.iter().any(|s| {
                s["ts"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| t > restored_at + chrono::Duration::seconds(2))
            });
            (newer && seqs.len() as u64 == *seqs.last()?).then_some(samples)
        },
    )
    .await?;
    let seqs: Vec<u64> = samples.iter().filter_map(|s| s["seq"].as_u64()).collect();
    assert_contiguous(&seqs)?;
    let during = samples
        .iter()
        .filter(|s| {
            s["ts"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t > refused_at && t < restored_at)
        })
        .count();
    assert!(
        during >= 4,
        "samples taken while PostgreSQL refused connections were stored ({during})"
    );
    let log = cloud.child.output();
    assert!(
        log.contains("store commit failed"),
        "the outage outlasted the writer's retries:\n{log}"
    );
    Ok(())
}
