//! The OTA state machine with a test clock: checks, progress, expiry, cancel, restarts.

use std::cmp::Ordering;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use shiki_proto::{JobDocument, JobId, JobOperation, JobStatus, JobStep, JobUpdate};
use shiki_shared::ota::{Manifest, ReleaseKey, TrustedKeys};

use super::state::*;

const SIZE: u64 = 1_000_000;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0)
        .single()
        .expect("valid")
}

struct Fixture {
    key: ReleaseKey,
    state: OtaState,
}

fn fixture_with(keys: &[String], installs: bool, key: ReleaseKey) -> Fixture {
    let state = OtaState::new(
        OtaRules {
            running_version: "1.4.0".into(),
            keys: TrustedKeys::parse(keys).expect("keys"),
            installs,
        },
        Saved::default(),
    );
    Fixture { key, state }
}

fn fixture() -> Fixture {
    let key = ReleaseKey::generate();
    fixture_with(&[key.public_base64()], true, key)
}

fn doc(f: &Fixture, id: &str, version: &str, url: &str) -> JobDocument {
    let manifest = Manifest {
        version: version.into(),
        sha256: "ab".repeat(32),
        size: SIZE,
    };
    JobDocument {
        job_id: JobId::new(id).expect("job id"),
        operation: JobOperation::Ota {
            software_version: version.into(),
            url: url.into(),
            size: SIZE,
            sha256: manifest.sha256.clone(),
            signature: f.key.sign(&manifest),
            url_expires: None,
            allow_downgrade: false,
        },
    }
}

fn id(s: &str) -> JobId {
    JobId::new(s).expect("job id")
}

fn published(fx: &[Effect]) -> Vec<JobUpdate> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Publish { update, .. } => Some(update.clone()),
            _ => None,
        })
        .collect()
}

fn terminal(fx: &[Effect]) -> (JobStatus, String) {
    let u = published(fx).pop().expect("an update");
    (u.status, u.detail.unwrap_or_default())
}

fn downloads(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Download(j) => Some(j.url.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_signed_newer_version_starts_downloading_and_reports_zero_percent() {
    let mut f = fixture();
    let d = doc(&f, "ota-1", "1.5.0", "http://a/1");
    let fx = f.state.notify(vec![d], t0());
    assert_eq!(downloads(&fx), vec!["http://a/1"]);
    let u = published(&fx);
    assert_eq!(u.len(), 1);
    assert_eq!(
        (u[0].status, u[0].step, u[0].progress),
        (JobStatus::InProgress, Some(JobStep::Downloading), Some(0))
    );
    assert!(fx.contains(&Effect::Persist));
    assert_eq!(f.state.active().map(|a| a.phase), Some(Phase::Downloading));
}

#[test]
fn a_bad_signature_is_rejected_with_the_reason_and_nothing_is_downloaded() {
    let mut f = fixture();
    let mut d = doc(&f, "ota-1", "1.5.0", "http://a/1");
    if let JobOperation::Ota { size, .. } = &mut d.operation {
        *size += 1; // the bytes changed after signing
    }
    let fx = f.state.notify(vec![d], t0());
    assert!(downloads(&fx).is_empty());
    let (status, detail) = terminal(&fx);
    assert_eq!(status, JobStatus::Rejected);
    assert!(detail.contains("does not verify"), "{detail}");
}

#[test]
fn without_configured_keys_every_job_is_rejected_saying_to_configure_them() {
    let key = ReleaseKey::generate();
    let mut f = fixture_with(&[], true, key);
    let fx = f.state.notify(vec![doc(&f, "ota-1", "1.5.0", "u")], t0());
    let (status, detail) = terminal(&fx);
    assert_eq!(status, JobStatus::Rejected);
    assert!(detail.contains("[ota] public_keys"), "{detail}");
}

#[test]
fn an_in_process_agent_rejects_jobs_it_cannot_install() {
    let key = ReleaseKey::generate();
    let mut f = fixture_with(&[key.public_base64()], false, key);
    let fx = f.state.notify(vec![doc(&f, "ota-1", "1.5.0", "u")], t0());
    let (status, detail) = terminal(&fx);
    assert_eq!(status, JobStatus::Rejected);
    assert!(detail.contains("in-process"), "{detail}");
}

#[test]
fn a_downgrade_is_refused_unless_the_job_allows_it_and_the_same_version_succeeds() {
    let mut f = fixture();
    let fx = f.state.notify(vec![doc(&f, "old", "1.3.9", "u")], t0());
    let (status, detail) = terminal(&fx);
    assert_eq!(status, JobStatus::Rejected);
    assert!(detail.contains("downgrade from 1.4.0 to 1.3.9"), "{detail}");

    let mut allowed = doc(&f, "old-ok", "1.3.9", "u");
    if let JobOperation::Ota {
        allow_downgrade, ..
    } = &mut allowed.operation
    {
        *allow_downgrade = true;
    }
    let fx = f.state.notify(vec![allowed], t0());
    assert_eq!(downloads(&fx), vec!["u"]);

    let mut g = fixture();
    let fx = g.state.notify(vec![doc(&g, "same", "1.4.0", "u")], t0());
    let (status, detail) = terminal(&fx);
    assert_eq!(status, JobStatus::Succeeded);
    assert!(detail.contains("already installed"), "{detail}");
}

#[test]
fn progress_is_reported_at_most_every_ten_points_or_thirty_seconds() {
    let mut f = fixture();
    let j = id("ota-1");
    f.state.notify(vec![doc(&f, "ota-1", "1.5.0", "u")], t0());
    let at = |s: i64| t0() + TimeDelta::seconds(s);
    let pct = |p: u64| SIZE * p / 100;
    assert!(f.state.progress(&j, pct(5), at(1)).is_empty());
    assert!(f.state.progress(&j, pct(9), at(2)).is_empty());
    let u = published(&f.state.progress(&j, pct(10), at(3)));
    assert_eq!(u[0].progress, Some(10));
    // 30 s later a smaller step is reported…
    assert!(f.state.progress(&j, pct(12), at(20)).is_empty());
    let u = published(&f.state.progress(&j, pct(13), at(33)));
    assert_eq!(u[0].progress, Some(13));
    // …but not without progress.
    assert!(f.state.progress(&j, pct(13), at(100)).is_empty());
    let u = published(&f.state.progress(&j, SIZE, at(101)));
    assert_eq!(u[0].progress, Some(100));
    // Progress of another job is ignored.
    assert!(f.state.progress(&id("other"), SIZE, at(200)).is_empty());
}

#[test]
fn an_expired_url_waits_for_a_fresh_notify_and_then_resumes() {
    let mut f = fixture();
    let j = id("ota-1");
    f.state
        .notify(vec![doc(&f, "ota-1", "1.5.0", "http://a/old")], t0());
    f.state.progress(&j, SIZE / 2, t0());
    let fx = f.state.download_ended(&j, DownloadEnd::UrlExpired, t0());
    let u = published(&fx);
    assert_eq!(
        (u[0].status, u[0].step, u[0].progress),
        (JobStatus::InProgress, Some(JobStep::UrlExpired), Some(50))
    );
    assert_eq!(
        f.state.active().map(|a| a.phase),
        Some(Phase::WaitingForUrl)
    );
    // A notify while waiting retries with the (fresh) URL it carries.
    let fx = f
        .state
        .notify(vec![doc(&f, "ota-1", "1.5.0", "http://a/fresh")], t0());
    assert_eq!(downloads(&fx), vec!["http://a/fresh"]);
    // A notify while downloading does not start a second download.
    let fx = f
        .state
        .notify(vec![doc(&f, "ota-1", "1.5.0", "http://a/fresh")], t0());
    assert!(downloads(&fx).is_empty());
}

#[test]
fn a_notify_that_no_longer_lists_the_job_cancels_its_download() {
    let mut f = fixture();
    f.state.notify(vec![doc(&f, "ota-1", "1.5.0", "u")], t0());
    let fx = f.state.notify(vec![], t0());
    assert!(fx.contains(&Effect::StopDownload(id("ota-1"))));
    assert!(f.state.active().is_none());
    // A late end of the stopped download changes nothing.
    assert!(
        f.state
            .download_ended(&id("ota-1"), DownloadEnd::Ready, t0())
            .is_empty()
    );
}

#[test]
fn a_ready_download_installs_and_a_bad_one_ends_the_job_with_the_reason() {
    let mut f = fixture();
    f.state.notify(vec![doc(&f, "ota-1", "1.5.0", "u")], t0());
    let fx = f
        .state
        .download_ended(&id("ota-1"), DownloadEnd::Ready, t0());
    assert!(matches!(fx.last(), Some(Effect::Install(j)) if j.version == "1.5.0"));
    assert_eq!(published(&fx)[0].step, Some(JobStep::Installing));
    // Installing is not cancelled by a notify (the agent is stopping to install).
    assert!(f.state.notify(vec![], t0()).is_empty());

    let mut g = fixture();
    g.state.notify(vec![doc(&g, "ota-2", "1.5.0", "u")], t0());
    let fx = g.state.download_ended(
        &id("ota-2"),
        DownloadEnd::Rejected("sha256 differs".into()),
        t0(),
    );
    assert_eq!(
        terminal(&fx),
        (JobStatus::Rejected, "sha256 differs".into())
    );
}

#[test]
fn a_finished_job_listed_again_gets_its_terminal_update_and_the_next_job_starts() {
    let mut f = fixture();
    let a = doc(&f, "a", "1.5.0", "ua");
    let b = doc(&f, "b", "1.6.0", "ub");
    let fx = f.state.notify(vec![a.clone(), b.clone()], t0());
    assert_eq!(downloads(&fx), vec!["ua"], "one job at a time");
    let fx = f
        .state
        .download_ended(&id("a"), DownloadEnd::Failed("no space".into()), t0());
    assert_eq!(published(&fx)[0].status, JobStatus::Failed);
    assert_eq!(downloads(&fx), vec!["ub"], "the next listed job starts");
    let fx = f.state.notify(vec![a, b], t0());
    assert_eq!(
        published(&fx).iter().map(|u| u.status).collect::<Vec<_>>(),
        vec![JobStatus::Failed],
        "a's terminal update again, b keeps downloading"
    );
    assert!(downloads(&fx).is_empty());
}

#[test]
fn a_restart_resumes_the_saved_download_and_reports_the_trial_outcome() {
    let mut f = fixture();
    f.state.notify(vec![doc(&f, "ota-1", "1.5.0", "u")], t0());
    let saved = f.state.saved();
    let text = serde_json::to_string(&saved).expect("encode");
    let back: Saved = serde_json::from_str(&text).expect("decode");
    let mut again = OtaState::new(
        OtaRules {
            running_version: "1.4.0".into(),
            keys: TrustedKeys::default(),
            installs: true,
        },
        back,
    );
    assert_eq!(downloads(&again.resume(t0())), vec!["u"]);

    let fx = again.trial_ended(
        id("ota-1"),
        JobStatus::RolledBack,
        Some("exited with status 1 after 0.2 s".into()),
        t0(),
    );
    assert_eq!(
        terminal(&fx),
        (
            JobStatus::RolledBack,
            "exited with status 1 after 0.2 s".into()
        )
    );
    assert!(again.active().is_none());
}

#[test]
fn versions_compare_number_by_number_with_pre_releases_below_releases() {
    use Ordering::*;
    for (a, b, want) in [
        ("1.10.0", "1.9.2", Greater),
        ("1.0", "1.0.0", Equal),
        ("v2.0.0", "2.0.0", Equal),
        ("1.0.0-rc1", "1.0.0", Less),
        ("1.0.0-rc2", "1.0.0-rc1", Greater),
        ("0.1.0", "0.2.0", Less),
        ("1.2.x", "1.2.9", Greater),
    ] {
        assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
    }
}

#[test]
fn percent_is_whole_and_capped() {
    assert_eq!(percent(0, 10), 0);
    assert_eq!(percent(5, 10), 50);
    assert_eq!(percent(11, 10), 100);
    assert_eq!(percent(0, 0), 100);
}
