//! The [`Jobs`] state machine with a test clock: transitions, timeouts, rollout and abort,
//! offline devices, re-notify on reconnect, expired URLs. No actix.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use shiki_proto::{DeviceId, JobId, JobOperation, JobStatus, JobStep, JobUpdate, PROTOCOL_VERSION};
use shiki_shared::clock::{Clock, TestClock};

use super::artifacts::{ArtifactInfo, Artifacts};
use super::state::{JobEffects, JobError, JobTimeouts, Jobs, NewJob, Presence};
use crate::notifier::AlertKind;
use crate::store::{Author, ExecutionStatus, JobRecord, Rollout};

/// Artifacts in memory; URLs carry the signing instant, valid 10 minutes.
#[derive(Debug, Default)]
pub(crate) struct MemoryArtifacts(Mutex<BTreeMap<String, ArtifactInfo>>);

impl MemoryArtifacts {
    pub(crate) fn with(versions: &[&str]) -> Arc<Self> {
        let a = Self::default();
        for v in versions {
            a.0.lock().expect("lock").insert(
                (*v).to_owned(),
                ArtifactInfo {
                    version: (*v).to_owned(),
                    sha256: format!("{:0>64}", v.replace('.', "")),
                    size: 1000,
                    signature: format!("sig-{v}"),
                },
            );
        }
        Arc::new(a)
    }
}

impl Artifacts for MemoryArtifacts {
    fn lookup(&self, version: &str) -> Result<Option<ArtifactInfo>, String> {
        Ok(self.0.lock().expect("lock").get(version).cloned())
    }

    fn signed_url(&self, sha256: &str, now: DateTime<Utc>) -> (String, DateTime<Utc>) {
        (
            format!("http://cloud/artifacts/{sha256}?signed={}", now.timestamp()),
            now + chrono::Duration::minutes(10),
        )
    }
}

pub(super) fn dev(s: &str) -> DeviceId {
    DeviceId::new(s).expect("valid device id")
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0)
        .single()
        .expect("valid date")
}

pub(super) fn online(version: &str) -> Presence {
    Presence {
        online: true,
        software_version: Some(version.to_owned()),
    }
}

fn offline() -> Presence {
    Presence {
        online: false,
        software_version: Some("0.1.0".into()),
    }
}

pub(super) fn update(
    status: JobStatus,
    step: Option<JobStep>,
    progress: Option<u8>,
    detail: Option<&str>,
) -> JobUpdate {
    JobUpdate {
        v: PROTOCOL_VERSION,
        status,
        detail: detail.map(str::to_owned),
        step,
        progress,
        ts: start(),
    }
}

fn operator() -> Author {
    Author::api_key("ops", shiki_cloud_model::Role::Operator)
}

/// Jobs over an artifact `0.2.0`, a test clock at 09:00.
struct World {
    jobs: Jobs,
    clock: TestClock,
}

impl World {
    fn new() -> Self {
        Self {
            jobs: Jobs::restore(
                JobTimeouts::default(),
                MemoryArtifacts::with(&["0.2.0"]),
                vec![],
            ),
            clock: TestClock::at(start()),
        }
    }

    /// A job for `devices` (each with its presence) with `rollout`.
    fn create(&mut self, devices: &[(&str, Presence)], rollout: Rollout) -> (JobId, JobEffects) {
        let job = NewJob {
            artifact_version: "0.2.0".into(),
            devices: devices.iter().map(|(d, _)| dev(d)).collect(),
            rollout,
            author: operator(),
        };
        let presence = devices.iter().map(|(d, p)| (dev(d), p.clone())).collect();
        self.jobs
            .create(job, presence, self.clock.now())
            .expect("job created")
    }

    fn update(&mut self, job: &JobId, device: &str, u: JobUpdate) -> JobEffects {
        self.jobs.on_update(&dev(device), job, &u, self.clock.now())
    }

    fn presence(&mut self, device: &str, p: Presence) -> JobEffects {
        self.jobs.on_presence(&dev(device), p, self.clock.now())
    }

    fn after(&mut self, d: Duration) -> JobEffects {
        self.clock.advance(d);
        self.jobs.on_tick(self.clock.now())
    }

    fn job(&self, id: &JobId) -> &JobRecord {
        self.jobs.job(id.as_str()).expect("job exists")
    }

    fn status(&self, id: &JobId, device: &str) -> (ExecutionStatus, Option<String>) {
        let e = self
            .job(id)
            .executions
            .iter()
            .find(|e| e.device.as_str() == device)
            .expect("device in job");
        (e.status, e.reason.clone())
    }

    /// Drives `device` through download and install to `succeeded` and the new version.
    fn succeed(&mut self, job: &JobId, device: &str) {
        self.update(job, device, update(JobStatus::Succeeded, None, None, None));
        self.presence(device, online("0.2.0"));
        assert_eq!(self.status(job, device).0, ExecutionStatus::Succeeded);
    }
}

fn notified(fx: &JobEffects) -> Vec<(String, Vec<String>)> {
    fx.notify
        .iter()
        .map(|(d, n)| {
            (
                d.to_string(),
                n.jobs.iter().map(|j| j.job_id.to_string()).collect(),
            )
        })
        .collect()
}

fn url_of(fx: &JobEffects) -> String {
    match &fx.notify[0].1.jobs[0].operation {
        JobOperation::Ota { url, .. } => url.clone(),
        other => panic!("not an OTA job: {other:?}"),
    }
}

fn minutes(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

#[test]
fn an_online_device_gets_the_job_with_the_signed_artifact_at_once() {
    let mut w = World::new();
    let (id, fx) = w.create(&[("plant-01", online("0.1.0"))], Rollout::default());
    assert_eq!(id.as_str(), "ota-20261201-090000");
    assert_eq!(w.status(&id, "plant-01").0, ExecutionStatus::InProgress);
    let doc = &fx.notify[0].1.jobs[0];
    let JobOperation::Ota {
        software_version,
        size,
        signature,
        url_expires,
        allow_downgrade,
        ..
    } = &doc.operation
    else {
        panic!("OTA job expected");
    };
    assert_eq!(software_version, "0.2.0");
    assert_eq!(
        (*size, signature.as_str(), *allow_downgrade),
        (1000, "sig-0.2.0", false)
    );
    assert_eq!(*url_expires, Some(start() + chrono::Duration::minutes(10)));
    let to: Vec<_> = fx.transitions.iter().map(|t| (t.from, t.to)).collect();
    assert_eq!(
        to,
        vec![
            (None, ExecutionStatus::Queued),
            (Some(ExecutionStatus::Queued), ExecutionStatus::InProgress)
        ]
    );
    assert_eq!(fx.persist.len(), 1, "the job is persisted once per input");
    // A second job in the same second gets its own id.
    let (second, _) = w.create(&[("plant-02", offline())], Rollout::default());
    assert_eq!(second.as_str(), "ota-20261201-090000-2");
}

#[test]
fn the_transitions_of_an_execution_follow_the_edge_and_the_device_status() {
    struct Case {
        name: &'static str,
        updates: Vec<JobUpdate>,
        then_version: Option<&'static str>,
        expect: (ExecutionStatus, Option<&'static str>),
    }
    let cases = [
        Case {
            name: "progress keeps it in progress",
            updates: vec![update(
                JobStatus::InProgress,
                Some(JobStep::Downloading),
                Some(40),
                None,
            )],
            then_version: None,
            expect: (ExecutionStatus::InProgress, None),
        },
        Case {
            name: "succeeded waits for the version",
            updates: vec![update(JobStatus::Succeeded, None, None, None)],
            then_version: None,
            expect: (ExecutionStatus::InProgress, None),
        },
        Case {
            name: "succeeded then the new version",
            updates: vec![update(JobStatus::Succeeded, None, None, None)],
            then_version: Some("0.2.0"),
            expect: (ExecutionStatus::Succeeded, None),
        },
        Case {
            name: "succeeded but the old version comes back",
            updates: vec![update(JobStatus::Succeeded, None, None, None)],
            then_version: Some("0.1.0"),
            expect: (ExecutionStatus::InProgress, None),
        },
        Case {
            name: "failed with the edge's detail",
            updates: vec![update(
                JobStatus::Failed,
                None,
                None,
                Some("disk full: 12 MB free, 40 MB needed"),
            )],
            then_version: None,
            expect: (
                ExecutionStatus::Failed,
                Some("disk full: 12 MB free, 40 MB needed"),
            ),
        },
        Case {
            name: "rejected is a failure",
            updates: vec![update(
                JobStatus::Rejected,
                None,
                None,
                Some("signature does not verify"),
            )],
            then_version: None,
            expect: (ExecutionStatus::Failed, Some("signature does not verify")),
        },
        Case {
            name: "rolled back with the edge's detail",
            updates: vec![update(
                JobStatus::RolledBack,
                None,
                None,
                Some("new version exited with status 1"),
            )],
            then_version: None,
            expect: (
                ExecutionStatus::RolledBack,
                Some("new version exited with status 1"),
            ),
        },
        Case {
            name: "a failure without detail says so",
            updates: vec![update(JobStatus::Failed, None, None, None)],
            then_version: None,
            expect: (
                ExecutionStatus::Failed,
                Some("the edge reported failed without a reason"),
            ),
        },
        Case {
            name: "nothing changes a finished execution",
            updates: vec![
                update(JobStatus::RolledBack, None, None, Some("crashed")),
                update(JobStatus::Succeeded, None, None, None),
            ],
            then_version: Some("0.2.0"),
            expect: (ExecutionStatus::RolledBack, Some("crashed")),
        },
    ];
    for case in cases {
        let mut w = World::new();
        let (id, _) = w.create(&[("plant-01", online("0.1.0"))], Rollout::default());
        for u in case.updates {
            w.update(&id, "plant-01", u);
        }
        if let Some(v) = case.then_version {
            w.presence("plant-01", online(v));
        }
        let (status, reason) = w.status(&id, "plant-01");
        assert_eq!((status, reason.as_deref()), case.expect, "{}", case.name);
    }
}

#[test]
fn only_a_version_reported_after_the_start_counts_and_it_may_come_before_the_edges_success() {
    let mut w = World::new();
    // The device already ran 0.2.0 before the job: that status does not count.
    let (id, _) = w.create(&[("plant-01", online("0.2.0"))], Rollout::default());
    w.update(
        &id,
        "plant-01",
        update(JobStatus::Succeeded, None, None, None),
    );
    assert_eq!(w.status(&id, "plant-01").0, ExecutionStatus::InProgress);

    let mut w = World::new();
    let (id, _) = w.create(&[("plant-01", online("0.1.0"))], Rollout::default());
    // The new binary connects (status 0.2.0) on trial, then reports success.
    w.presence("plant-01", offline());
    w.presence("plant-01", online("0.2.0"));
    assert_eq!(w.status(&id, "plant-01").0, ExecutionStatus::InProgress);
    let fx = w.update(
        &id,
        "plant-01",
        update(JobStatus::Succeeded, None, None, None),
    );
    assert_eq!(w.status(&id, "plant-01").0, ExecutionStatus::Succeeded);
    assert_eq!(w.job(&id).executions[0].progress, 100);
    assert!(fx.alerts.is_empty());
}

#[test]
fn progress_is_recorded_and_an_expired_url_is_sent_again_freshly_signed() {
    let mut w = World::new();
    let (id, fx) = w.create(&[("plant-01", online("0.1.0"))], Rollout::default());
    let first = url_of(&fx);
    w.clock.advance(minutes(11));
    let fx = w.update(
        &id,
        "plant-01",
        update(
            JobStatus::InProgress,
            Some(JobStep::Downloading),
            Some(30),
            None,
        ),
    );
    assert!(fx.notify.is_empty(), "progress needs no notify");
    let e = &w.job(&id).executions[0];
    assert_eq!((e.progress, e.step), (30, Some(JobStep::Downloading)));
    let fx = w.update(
        &id,
        "plant-01",
        update(JobStatus::InProgress, Some(JobStep::UrlExpired), None, None),
    );
    let fresh = url_of(&fx);
    assert_ne!(fresh, first);
    assert!(fresh.ends_with(&format!("signed={}", w.clock.now().timestamp())));
    assert_eq!(
        w.job(&id).executions[0].progress,
        30,
        "the step url_expired keeps the progress"
    );
}

#[test]
fn an_offline_device_keeps_its_job_queued_and_gets_it_when_it_comes_online() {
    let mut w = World::new();
    let (id, fx) = w.create(&[("plant-01", offline())], Rollout::default());
    assert!(fx.notify.is_empty());
    assert_eq!(w.status(&id, "plant-01").0, ExecutionStatus::Queued);
    w.clock.advance(Duration::from_secs(3 * 3600));
    let fx = w.presence("plant-01", online("0.1.0"));
    assert_eq!(
        notified(&fx),
        vec![("plant-01".into(), vec![id.to_string()])]
    );
    assert_eq!(w.status(&id, "plant-01").0, ExecutionStatus::InProgress);
}

#[test]
fn an_in_progress_job_is_sent_again_when_its_device_reconnects() {
    let mut w = World::new();
    let (id, _) = w.create(&[("plant-01", online("0.1.0"))], Rollout::default());
    w.update(
        &id,
        "plant-01",
        update(
            JobStatus::InProgress,
            Some(JobStep::Downloading),
            Some(50),
            None,
        ),
    );
    assert!(w.presence("plant-01", offline()).notify.is_empty());
    // Offline longer than the no-update timeout: that timeout waits for the device.
    assert!(w.after(minutes(40)).transitions.is_empty());
    let fx = w.presence("plant-01", online("0.1.0"));
    assert_eq!(
        notified(&fx),
        vec![("plant-01".into(), vec![id.to_string()])]
    );
    // A repeated online status is no reconnect.
    assert!(w.presence("plant-01", online("0.1.0")).notify.is_empty());
}

#[test]
fn every_state_times_out() {
    let cfg = JobTimeouts::default();
    // queued: the device never comes online.
    let mut w = World::new();
    let (id, _) = w.create(&[("plant-01", offline())], Rollout::default());
    assert_eq!(
        w.jobs.next_deadline(),
        Some(start() + chrono::Duration::days(7))
    );
    w.after(cfg.queued - Duration::from_secs(1));
    assert_eq!(w.status(&id, "plant-01").0, ExecutionStatus::Queued);
    let fx = w.after(Duration::from_secs(1));
    let (status, reason) = w.status(&id, "plant-01");
    assert_eq!(status, ExecutionStatus::TimedOut);
    assert!(reason.expect("reason").contains("device offline"));
    assert_eq!(fx.alerts[0].kind, AlertKind::Ota);

    // in progress: no update for 15 min (each update restarts the wait).
    let mut w = World::new();
    let (id, _) = w.create(&[("plant-01", online("0.1.0"))], Rollout::default());
    w.after(minutes(10));
    w.update(
        &id,
        "plant-01",
        update(
            JobStatus::InProgress,
            Some(JobStep::Downloading),
            Some(20),
            None,
        ),
    );
    w.after(minutes(14));
    assert_eq!(w.status(&id, "plant-01").0, ExecutionStatus::InProgress);
    w.after(minutes(1));
    let (status, reason) = w.status(&id, "plant-01");
    assert_eq!(status, ExecutionStatus::TimedOut);
    assert_eq!(
        reason.as_deref(),
        Some("no update from the edge for 15m (last step: downloading, 20 %)")
    );

    // succeeded but the version never shows.
    let mut w = World::new();
    let (id, _) = w.create(&[("plant-01", online("0.1.0"))], Rollout::default());
    w.update(
        &id,
        "plant-01",
        update(JobStatus::Succeeded, None, None, None),
    );
    w.after(cfg.verify);
    let (status, reason) = w.status(&id, "plant-01");
    assert_eq!(status, ExecutionStatus::TimedOut);
    assert!(
        reason
            .expect("reason")
            .contains("did not report version 0.2.0")
    );

    // the whole execution: updates keep coming, but 6 h is the end.
    let mut w = World::new();
    let (id, _) = w.create(&[("plant-01", online("0.1.0"))], Rollout::default());
    for _ in 0..36 {
        w.after(minutes(10));
        w.update(
            &id,
            "plant-01",
            update(
                JobStatus::InProgress,
                Some(JobStep::Downloading),
                Some(1),
                None,
            ),
        );
    }
    let (status, reason) = w.status(&id, "plant-01");
    assert_eq!(status, ExecutionStatus::TimedOut);
    assert_eq!(
        reason.as_deref(),
        Some("not finished within 6h of its start")
    );
    assert_eq!(w.jobs.next_deadline(), None, "nothing left to time out");
}

#[test]
fn the_rollout_keeps_at_most_max_in_progress_and_starts_the_next_as_one_finishes() {
    let mut w = World::new();
    let devices: Vec<(String, Presence)> = (1..=4)
        .map(|i| (format!("plant-0{i}"), online("0.1.0")))
        .collect();
    let refs: Vec<(&str, Presence)> = devices
        .iter()
        .map(|(d, p)| (d.as_str(), p.clone()))
        .collect();
    let rollout = Rollout {
        max_in_progress: 2,
        ..Rollout::default()
    };
    let (id, fx) = w.create(&refs, rollout);
    let started: Vec<_> = notified(&fx).into_iter().map(|(d, _)| d).collect();
    assert_eq!(started, vec!["plant-01", "plant-02"]);
    w.succeed(&id, "plant-01");
    let e = &w.job(&id).executions;
    assert_eq!(
        e.iter().map(|e| e.status).collect::<Vec<_>>(),
        vec![
            ExecutionStatus::Succeeded,
            ExecutionStatus::InProgress,
            ExecutionStatus::InProgress,
            ExecutionStatus::Queued
        ]
    );
}

#[test]
fn a_device_runs_one_job_at_a_time() {
    let mut w = World::new();
    let (first, _) = w.create(&[("plant-01", online("0.1.0"))], Rollout::default());
    let (second, fx) = w.create(&[("plant-01", online("0.1.0"))], Rollout::default());
    assert!(fx.notify.is_empty());
    assert_eq!(w.status(&second, "plant-01").0, ExecutionStatus::Queued);
    let fx = w.update(
        &first,
        "plant-01",
        update(JobStatus::Failed, None, None, Some("no space")),
    );
    assert_eq!(
        notified(&fx),
        vec![("plant-01".into(), vec![second.to_string()])]
    );
}

#[test]
fn too_many_failures_abort_the_rest_of_the_rollout() {
    let mut w = World::new();
    let devices = ["plant-01", "plant-02", "plant-03", "plant-04"];
    let refs: Vec<(&str, Presence)> = devices.iter().map(|d| (*d, online("0.1.0"))).collect();
    let rollout = Rollout {
        max_in_progress: 2,
        abort_failure_ratio: 0.5,
        allow_downgrade: false,
    };
    let (id, _) = w.create(&refs, rollout);
    // One failure of one finished: not yet (at least two must have finished).
    w.update(
        &id,
        "plant-01",
        update(JobStatus::RolledBack, None, None, Some("crashed at start")),
    );
    assert_eq!(w.status(&id, "plant-03").0, ExecutionStatus::InProgress);
    // Two of two failed: 100 % > 50 %, the queued one is canceled, the running one goes on.
    let fx = w.update(
        &id,
        "plant-02",
        update(JobStatus::Failed, None, None, Some("disk full")),
    );
    let (status, reason) = w.status(&id, "plant-04");
    assert_eq!(status, ExecutionStatus::Canceled);
    assert_eq!(
        reason.as_deref(),
        Some("rollout aborted: 2 of 2 finished executions failed (more than 50 %)")
    );
    assert_eq!(w.status(&id, "plant-03").0, ExecutionStatus::InProgress);
    assert_eq!(
        fx.alerts.len(),
        1,
        "an alert for the failure, none for the canceled"
    );
}

#[test]
fn a_failure_ratio_at_the_limit_does_not_abort() {
    let mut w = World::new();
    let refs: Vec<(&str, Presence)> = ["a", "b", "c"]
        .iter()
        .map(|d| (*d, online("0.1.0")))
        .collect();
    let (id, _) = w.create(
        &refs,
        Rollout {
            max_in_progress: 2,
            ..Rollout::default()
        },
    );
    w.succeed(&id, "a");
    w.update(&id, "b", update(JobStatus::Failed, None, None, Some("x")));
    // 1 of 2 = 50 %, not more: c starts.
    assert_eq!(w.status(&id, "c").0, ExecutionStatus::InProgress);
}

#[test]
fn cancel_ends_what_has_not_finished_and_tells_devices_in_progress() {
    let mut w = World::new();
    let (id, _) = w.create(
        &[
            ("plant-01", online("0.1.0")),
            ("plant-02", offline()),
            ("plant-03", online("0.1.0")),
        ],
        Rollout::default(),
    );
    w.succeed(&id, "plant-03");
    let alice = Author::Operator("alice".into());
    let fx = w
        .jobs
        .cancel(id.as_str(), alice.clone(), w.clock.now())
        .expect("cancel");
    assert_eq!(
        notified(&fx),
        vec![("plant-01".into(), vec![])],
        "a notify without the job"
    );
    for (device, status) in [
        ("plant-01", ExecutionStatus::Canceled),
        ("plant-02", ExecutionStatus::Canceled),
        ("plant-03", ExecutionStatus::Succeeded),
    ] {
        assert_eq!(w.status(&id, device).0, status, "{device}");
    }
    assert_eq!(
        w.status(&id, "plant-01").1.as_deref(),
        Some("canceled by operator:alice")
    );
    assert!(fx.transitions.iter().all(|t| t.author == alice));
    assert!(fx.alerts.is_empty());
    assert_eq!(w.job(&id).canceled_by, Some(alice));
    assert_eq!(
        w.jobs.cancel("ota-nope", operator(), w.clock.now()).err(),
        Some(JobError::NotFound("ota-nope".into()))
    );
}

#[test]
fn bad_jobs_are_refused_with_what_to_fix() {
    let mut w = World::new();
    let job = |version: &str, devices: &[&str], rollout| NewJob {
        artifact_version: version.into(),
        devices: devices.iter().map(|d| dev(d)).collect(),
        rollout,
        author: operator(),
    };
    let ok = Rollout::default();
    for (new, expected) in [
        (
            job("9.9.9", &["a"], ok),
            JobError::UnknownVersion("9.9.9".into()),
        ),
        (job("0.2.0", &[], ok), JobError::NoDevices),
        (
            job("0.2.0", &["a", "a"], ok),
            JobError::DuplicateDevice("a".into()),
        ),
        (
            job(
                "0.2.0",
                &["a"],
                Rollout {
                    max_in_progress: 0,
                    ..ok
                },
            ),
            JobError::NoSlots,
        ),
        (
            job(
                "0.2.0",
                &["a"],
                Rollout {
                    abort_failure_ratio: 1.5,
                    ..ok
                },
            ),
            JobError::Ratio(1.5),
        ),
    ] {
        assert_eq!(
            w.jobs.create(new, vec![], start()).err(),
            Some(expected.clone()),
            "{expected}"
        );
    }
    assert_eq!(
        JobError::UnknownVersion("9.9.9".into()).to_string(),
        "no artifact with version \"9.9.9\"; upload it first (PUT /api/v1/artifacts/9.9.9)"
    );
}

#[test]
fn restored_jobs_go_on_where_they_stopped() {
    let mut w = World::new();
    let (id, _) = w.create(
        &[("plant-01", online("0.1.0")), ("plant-02", offline())],
        Rollout::default(),
    );
    let records: Vec<JobRecord> = w.jobs.list().into_iter().cloned().collect();
    let mut restored = Jobs::restore(
        JobTimeouts::default(),
        MemoryArtifacts::with(&["0.2.0"]),
        records,
    );
    // After the restart the retained statuses arrive again.
    let fx = restored.on_presence(&dev("plant-01"), online("0.1.0"), w.clock.now());
    assert_eq!(
        notified(&fx),
        vec![("plant-01".into(), vec![id.to_string()])],
        "re-notified"
    );
    let fx = restored.on_presence(&dev("plant-02"), online("0.1.0"), w.clock.now());
    assert_eq!(
        notified(&fx),
        vec![("plant-02".into(), vec![id.to_string()])],
        "started"
    );
}

#[test]
fn jobs_are_listed_newest_first() {
    let mut w = World::new();
    let (a, _) = w.create(&[("plant-01", offline())], Rollout::default());
    w.clock.advance(minutes(1));
    let (b, _) = w.create(&[("plant-01", offline())], Rollout::default());
    let ids: Vec<_> = w.jobs.list().iter().map(|j| j.id.clone()).collect();
    assert_eq!(ids, vec![b, a]);
}
