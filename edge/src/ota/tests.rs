//! The Ota actor as a conversation: a job in, updates out to a stand-in uplink, the
//! verified artifact handed over for install; a decided trial reported after a restart.

use std::time::Duration;

use shiki_proto::{
    JobDocument, JobId, JobNotify, JobOperation, JobStatus, JobStep, PROTOCOL_VERSION,
};
use shiki_shared::clock::SystemClock;
use shiki_shared::ota::{Manifest, ReleaseKey, TrustedKeys};

use super::download_tests::{Answer, Server, artifact};
use super::trial::{TrialRecord, TrialState};
use super::*;
use crate::test_support::{WAIT, next, next_matching, probe};

fn start(
    dir: &std::path::Path,
    key: &ReleaseKey,
) -> (
    Addr<Ota>,
    mpsc::UnboundedReceiver<PublishJobUpdate>,
    mpsc::UnboundedReceiver<Install>,
) {
    let (updates, updates_rx) = probe::<PublishJobUpdate>();
    let (install, install_rx) = mpsc::unbounded_channel();
    let cfg = OtaConfig {
        paths: OtaPaths(dir.join("ota")),
        rules: OtaRules {
            running_version: "0.1.0".into(),
            keys: TrustedKeys::parse(&[key.public_base64()]).expect("key"),
            installs: true,
        },
        health_window: Duration::from_secs(5),
        retry: download::Retry {
            min: Duration::from_millis(1),
            max: Duration::from_millis(5),
            attempts: 4,
        },
    };
    let ota = Ota::new(cfg, OtaPeers { updates, install }, SystemClock::shared()).start();
    (ota, updates_rx, install_rx)
}

fn notify(url: &str, bytes: &[u8], key: &ReleaseKey) -> JobsReceived {
    let m = Manifest::for_bytes("0.2.0", bytes);
    JobsReceived(JobNotify {
        v: PROTOCOL_VERSION,
        jobs: vec![JobDocument {
            job_id: JobId::new("ota-1").expect("id"),
            operation: JobOperation::Ota {
                software_version: "0.2.0".into(),
                url: url.into(),
                size: m.size,
                sha256: m.sha256.clone(),
                signature: key.sign(&m),
                url_expires: None,
                allow_downgrade: false,
            },
        }],
    })
}

#[actix::test]
async fn a_job_is_downloaded_checked_and_handed_over_for_install() {
    let dir = tempfile::tempdir().expect("tmp");
    let key = ReleaseKey::generate();
    let bytes = artifact();
    let server = Server::start(bytes.clone(), vec![Answer::CutAfter(60_000)]).await;
    let (ota, mut updates, mut installs) = start(dir.path(), &key);
    ota.do_send(notify(&server.url, &bytes, &key));

    let first = next(&mut updates).await;
    assert_eq!(first.job_id.as_str(), "ota-1");
    assert_eq!(first.update.step, Some(JobStep::Downloading));
    let installing =
        next_matching(&mut updates, |u| u.update.step == Some(JobStep::Installing)).await;
    assert_eq!(installing.update.progress, Some(100));
    let install = tokio::time::timeout(WAIT, installs.recv())
        .await
        .expect("install within the wait")
        .expect("install");
    assert_eq!(
        (install.from.as_str(), install.to.as_str()),
        ("0.1.0", "0.2.0")
    );
    assert_eq!(std::fs::read(&install.artifact).expect("artifact"), bytes);
    let saved: Saved =
        serde_json::from_slice(&std::fs::read(dir.path().join("ota/jobs.json")).expect("saved"))
            .expect("decodes");
    assert_eq!(
        saved.active.map(|a| a.phase),
        Some(state::Phase::Installing)
    );
}

#[actix::test]
async fn a_notify_without_the_job_stops_its_download_and_deletes_the_partial_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let key = ReleaseKey::generate();
    let bytes = artifact();
    // The response stalls after 60 kB: the download is running when the job goes away.
    let server = Server::start(bytes.clone(), vec![Answer::Stall(60_000)]).await;
    let (ota, mut updates, mut installs) = start(dir.path(), &key);
    ota.do_send(notify(&server.url, &bytes, &key));
    next_matching(&mut updates, |u| u.update.progress.unwrap_or(0) > 0).await;
    ota.do_send(JobsReceived(JobNotify {
        v: PROTOCOL_VERSION,
        jobs: vec![],
    }));
    // The actor handled the cancel when it answers the next message.
    ota.send(JobsReceived(JobNotify {
        v: PROTOCOL_VERSION,
        jobs: vec![],
    }))
    .await
    .expect("actor alive");
    assert!(!dir.path().join("ota/ota-1.part").exists());
    assert!(installs.try_recv().is_err(), "nothing to install");
}

#[actix::test]
async fn a_restarted_agent_reports_the_trial_outcome_and_deletes_the_record() {
    let dir = tempfile::tempdir().expect("tmp");
    let key = ReleaseKey::generate();
    let record = TrialRecord {
        job_id: JobId::new("ota-9").expect("id"),
        from: "0.1.0".into(),
        to: "0.2.0".into(),
        deadline: chrono::Utc::now(),
        state: TrialState::RolledBack {
            reason: "exited with status 1 after 0.2 s".into(),
        },
    };
    let paths = OtaPaths(dir.path().join("ota"));
    trial::write_atomically(
        &paths.trial(),
        &serde_json::to_vec(&record).expect("encode"),
    )
    .expect("write record");
    let (_ota, mut updates, _installs) = start(dir.path(), &key);
    let u = next(&mut updates).await;
    assert_eq!(u.job_id.as_str(), "ota-9");
    assert_eq!(u.update.status, JobStatus::RolledBack);
    let detail = u.update.detail.unwrap_or_default();
    assert!(
        detail.contains("0.2.0 rolled back to 0.1.0: exited with status 1"),
        "{detail}"
    );
    assert!(!paths.trial().exists());
}
