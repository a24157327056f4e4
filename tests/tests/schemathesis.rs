//! schemathesis (property-based API testing from the OpenAPI document, PyPI) against the
//! `/api/v1/openapi.json` of a real `shiki-cloud serve`, with the admin token: no answer
//! may be a 5xx (`not_a_server_error`) and every answer must match the document
//! (`response_schema_conformance`, and its status, content type and headers); a method a
//! route does not serve is 405 with `Allow` (`unsupported_method`).
//!
//! The run is bounded (a fixed seed, a few examples per operation) to stay within a couple
//! of minutes. schemathesis must be installed (`.ci/run` installs it); when it is not,
//! the test fails saying how to install it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use shiki_e2e::probe::{Credentials, MqttProbe};
use shiki_e2e::stack::{ADMIN_TOKEN, START_TIMEOUT};
use shiki_e2e::{Cloud, temp_dir, wait_for};

/// What to run: `$SHIKI_SCHEMATHESIS`, or `schemathesis` / `st` on the PATH.
fn schemathesis() -> anyhow::Result<String> {
    let candidates: Vec<String> = std::env::var("SHIKI_SCHEMATHESIS")
        .into_iter()
        .chain(["schemathesis".to_owned(), "st".to_owned()])
        .collect();
    for candidate in &candidates {
        let works = Command::new(candidate)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if works {
            return Ok(candidate.clone());
        }
    }
    anyhow::bail!(
        "schemathesis is not installed (tried {candidates:?}): install it with \
         `python3 -m pip install 'schemathesis>=4,<5'` (as .ci/run does), or name the \
         executable in SHIKI_SCHEMATHESIS"
    )
}

/// Examples per API operation and phase; with the coverage phase's own cases this keeps
/// the run to a minute or two on two cores.
const MAX_EXAMPLES: &str = "60";
/// A fixed seed: a failure replays with the same command.
const SEED: &str = "21";

/// The device the routes under `/devices/{id}` are tested with.
const DEVICE: &str = "plant-01";

/// schemathesis' configuration: the routes of one device use [`DEVICE`] (a random id only
/// finds 404), except its retirement, so that the rest keeps finding it.
const CONFIG: &str = r#"
[[operations]]
include-path-regex = '^/api/v1/devices/\{id\}'
exclude-method = "DELETE"
parameters = { "path.id" = "plant-01" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_openapi_document()
-> anyhow::Result<()> {
    let st = schemathesis()?;
    let dir = temp_dir("schemathesis")?;
    let cloud = Cloud::start(
        "cloud",
        &dir.path().join("data"),
        dir.path(),
        Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        None,
    )
    .await?;
    seed_device(&cloud).await?;
    std::fs::write(dir.path().join("schemathesis.toml"), CONFIG)?;

    let started = Instant::now();
    let out = run(&st, cloud.api.addr, dir.path()).await?;
    let elapsed = started.elapsed();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found problems (after {elapsed:?}; the cloud's log is in {}):\n{text}",
        dir.path().display()
    );
    assert!(
        text.contains(" passed"),
        "schemathesis ran no tests:\n{text}"
    );
    assert!(
        elapsed < Duration::from_secs(240),
        "schemathesis took {elapsed:?}: lower MAX_EXAMPLES"
    );
    Ok(())
}

/// Registers [`DEVICE`] and has it say what an edge says on connecting (catalog, status,
/// a telemetry batch, events, a reported state), so that its routes have data to show.
async fn seed_device(cloud: &Cloud) -> anyhow::Result<()> {
    let password = cloud.api.register_device(DEVICE).await?;
    let port = cloud
        .mqtt
        .context("the cloud runs its embedded broker")?
        .port();
    let device = MqttProbe::connect_plain(
        DEVICE,
        port,
        Credentials::Password {
            user: DEVICE,
            password: &password,
        },
    )
    .await?;
    for (channel, example) in [
        ("catalog", include_str!("../../proto/examples/catalog.json")),
        (
            "status",
            include_str!("../../proto/examples/status-online.json"),
        ),
        (
            "telemetry",
            include_str!("../../proto/examples/telemetry.json"),
        ),
        ("events", include_str!("../../proto/examples/events.json")),
        (
            "shadow/reported",
            include_str!("../../proto/examples/shadow-reported.json"),
        ),
    ] {
        device
            .publish(
                &format!("shiki/v1/{DEVICE}/{channel}"),
                example.as_bytes().to_vec(),
            )
            .await?;
    }
    wait_for(
        "the device's telemetry in the API",
        START_TIMEOUT,
        || async {
            let seqs = cloud.api.telemetry_seqs(DEVICE).await;
            (!seqs.is_empty()).then_some(())
        },
    )
    .await
}

/// Runs schemathesis against the API at `addr`, in `dir` (its example database and
/// reports stay there).
async fn run(st: &str, addr: SocketAddr, dir: &Path) -> anyhow::Result<std::process::Output> {
    let mut cmd = tokio::process::Command::new(st);
    cmd.current_dir(dir)
        .env("NO_COLOR", "1")
        .args([
            "--config-file",
            "schemathesis.toml",
            "run",
            &format!("http://{addr}/api/v1/openapi.json"),
            "--header",
            &format!("Authorization: Bearer {ADMIN_TOKEN}"),
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,\
             content_type_conformance,response_headers_conformance,unsupported_method",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            SEED,
            // One worker: with more, schemathesis 4.32 under CPython 3.11 sometimes fails
            // inside hypothesis ("AST constructor recursion depth mismatch").
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--generation-database",
            "none",
            "--suppress-health-check",
            "all",
            "--no-color",
        ])
        .kill_on_drop(true);
    cmd.output()
        .await
        .with_context(|| format!("running {st} run"))
}
