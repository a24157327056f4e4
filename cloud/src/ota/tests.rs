//! The [`JobsActor`] as a conversation: simulated device actors and notifier, a real redb
//! store in a temp dir, a test clock.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{TimeZone, Utc};
use shiki_proto::{JobStatus, JobStep};
use shiki_shared::clock::{Clock, TestClock};
use tokio::sync::mpsc;

use super::state_tests::{MemoryArtifacts, dev, online, update};
use super::*;
use crate::notifier::{Alert, AlertKind};
use crate::store::{ExecutionStatus, RedbStore, Rollout, TimeQuery};
use crate::test_support::collector;

async fn recv<M>(rx: &mut mpsc::UnboundedReceiver<M>) -> M {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("message within 5 s")
        .expect("channel open")
}

fn offline() -> Presence {
    Presence {
        online: false,
        software_version: Some("0.1.0".into()),
    }
}

#[actix::test]
async fn a_job_goes_from_notify_to_succeeded_and_a_rollback_is_recorded_and_alerted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(RedbStore::open(&dir.path().join("c.redb"), 64).expect("store"));
    let clock = TestClock::at(
        Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0)
            .single()
            .expect("valid date"),
    );
    let (devices, mut notified) = collector::<NotifyDevice>();
    let (alerts, mut alerted) = collector::<Alert>();
    let artifacts = MemoryArtifacts::with(&["0.2.0"]);
    let jobs = Jobs::restore(JobTimeouts::default(), artifacts.clone(), vec![]);
    let addr = JobsActor::new(jobs, store.clone(), devices, alerts, clock.shared()).start();
    let (p1, p2) = (dev("plant-01"), dev("plant-02"));
    let ops = crate::store::Author::api_key("ops", shiki_cloud_model::Role::Operator);
    let id = addr
        .send(CreateJob {
            job: NewJob {
                artifact_version: "0.2.0".into(),
                devices: vec![p1.clone(), p2.clone()],
                rollout: Rollout::default(),
                author: ops.clone(),
            },
            presence: vec![(p1.clone(), offline()), (p2.clone(), offline())],
        })
        .await
        .expect("actor alive")
        .expect("job created");
    let input = |device: &shiki_proto::DeviceId, input| DeviceJobInput {
        device: device.clone(),
        input,
    };
    let job_update = |status, step, progress, detail| JobInput::Update {
        job: id.clone(),
        update: update(status, step, progress, detail),
    };

    // plant-01 comes online: it gets the job, downloads, installs, restarts on 0.2.0.
    addr.do_send(input(&p1, JobInput::Presence(online("0.1.0"))));
    let n = recv(&mut notified).await;
    assert_eq!(n.device, p1);
    assert_eq!(n.notify.jobs[0].job_id, id);
    addr.do_send(input(
        &p1,
        job_update(
            JobStatus::InProgress,
            Some(JobStep::Downloading),
            Some(50),
            None,
        ),
    ));
    addr.do_send(input(
        &p1,
        job_update(JobStatus::Succeeded, None, None, None),
    ));
    addr.do_send(input(&p1, JobInput::Presence(offline())));
    addr.do_send(input(&p1, JobInput::Presence(online("0.2.0"))));
    let job = addr
        .send(GetJob(id.to_string()))
        .await
        .expect("actor alive")
        .expect("alone, it drives the jobs")
        .expect("job exists");
    assert_eq!(job.executions[0].status, ExecutionStatus::Succeeded);
    assert_eq!(job.executions[0].progress, 100);

    // plant-02 comes online and its new version does not prove healthy.
    addr.do_send(input(&p2, JobInput::Presence(online("0.1.0"))));
    assert_eq!(recv(&mut notified).await.device, p2);
    addr.do_send(input(
        &p2,
        job_update(
            JobStatus::RolledBack,
            None,
            None,
            Some("health check: PLC not read within 120 s"),
        ),
    ));
    let alert = recv(&mut alerted).await;
    assert_eq!(
        (alert.device.clone(), alert.kind),
        (p2.clone(), AlertKind::Ota)
    );
    assert!(alert.text.contains(id.as_str()), "{}", alert.text);
    assert!(
        alert
            .text
            .contains("rolled_back: health check: PLC not read within 120 s"),
        "{}",
        alert.text
    );

    // Everything the actor queued is committed once a later write is.
    let listed = addr
        .send(ListJobs)
        .await
        .expect("actor alive")
        .expect("alone, it drives the jobs");
    assert_eq!(listed.len(), 1);
    store
        .submit(vec![crate::store::Write::FleetLastRun(clock.now())])
        .await
        .expect("commit");
    let history = store.history(&p2, &TimeQuery::default()).expect("history");
    let ota: Vec<_> = history
        .iter()
        .rev()
        .filter(|h| h.entry.key == HISTORY_KEY)
        .map(|h| (h.entry.new.clone(), h.entry.actor.clone()))
        .collect();
    assert_eq!(
        ota,
        vec![
            ("queued".into(), ops.clone()),
            ("in_progress".into(), ops.clone()),
            (
                "rolled_back".into(),
                crate::store::Author::Device(p2.clone())
            ),
        ]
    );
    let last = &history[0].entry;
    assert_eq!(last.old, serde_json::json!("in_progress"));
    assert!(
        last.comment
            .as_deref()
            .is_some_and(|c| c.contains("health check")),
        "{last:?}"
    );

    // The jobs survive a restart.
    let restored = Jobs::restore(
        JobTimeouts::default(),
        artifacts,
        store.jobs().expect("jobs"),
    );
    let job = restored.job(id.as_str()).expect("job stored");
    let statuses: Vec<_> = job.executions.iter().map(|e| e.status).collect();
    assert_eq!(
        statuses,
        vec![ExecutionStatus::Succeeded, ExecutionStatus::RolledBack]
    );
}

/// Commits everything queued before it (the writer commits in order) and returns the
/// stored progress of the first execution of the only job.
async fn stored_progress(store: &crate::store::PgStore) -> u8 {
    store
        .submit(vec![crate::store::Write::FleetLastRun(Utc::now())])
        .await
        .expect("commit");
    store.jobs().expect("jobs")[0].executions[0].progress
}

#[actix::test]
async fn a_cluster_node_drives_the_jobs_only_under_the_jobs_lease_and_a_stale_driver_stores_nothing()
 {
    use crate::store::{Fence, JOBS_LEASE, PgOptions, PgStore, testing::PgTestDb};
    let db = PgTestDb::create();
    let options = PgOptions {
        max_batch: 64,
        pool_size: 2,
        retention: None,
    };
    let store = Arc::new(PgStore::open(&db.url, &options).expect("store"));
    let cluster = store.cluster();
    cluster.ensure_shards(1).await.expect("shards");
    let a = Fence {
        shard: JOBS_LEASE,
        epoch: cluster
            .claim(JOBS_LEASE, "a", Duration::from_secs(1))
            .await
            .expect("claim")
            .expect("free"),
    };
    let clock = TestClock::at(Utc::now());
    let (devices, mut notified) = collector::<NotifyDevice>();
    let (alerts, _alerted) = collector::<Alert>();
    let jobs = Jobs::restore(
        JobTimeouts::default(),
        MemoryArtifacts::with(&["0.2.0"]),
        vec![],
    );
    let addr = JobsActor::new(jobs, store.clone(), devices, alerts, clock.shared())
        .standby()
        .start();
    let p1 = dev("plant-01");
    let create = CreateJob {
        job: NewJob {
            artifact_version: "0.2.0".into(),
            devices: vec![p1.clone()],
            rollout: Rollout::default(),
            author: crate::store::Author::Operator("ops".into()),
        },
        presence: vec![],
    };
    // Without the lease: refused.
    let refused = addr.send(create.clone()).await.expect("alive");
    assert_eq!(refused, Err(JobError::NotDriving));
    assert_eq!(
        addr.send(ListJobs).await.expect("alive"),
        Err(JobError::NotDriving)
    );

    // With it: the device's presence (from the lease's session), then the job.
    addr.send(DriveJobs {
        fence: a,
        records: vec![],
    })
    .await
    .expect("alive");
    addr.do_send(DeviceJobInput {
        device: p1.clone(),
        input: JobInput::Presence(online("0.1.0")),
    });
    let id = addr
        .send(create)
        .await
        .expect("alive")
        .expect("created while driving");
    assert_eq!(recv(&mut notified).await.device, p1);
    assert_eq!(stored_progress(&store).await, 0);
    let progress = |p| DeviceJobInput {
        device: p1.clone(),
        input: JobInput::Update {
            job: id.clone(),
            update: update(
                JobStatus::InProgress,
                Some(JobStep::Downloading),
                Some(p),
                None,
            ),
        },
    };
    addr.send(progress(20)).await.expect("alive");
    assert_eq!(stored_progress(&store).await, 20);

    // Another node takes the expired lease; this one has not noticed yet: its change is
    // refused by the fence in the writer's transaction.
    loop {
        let snap = cluster.snapshot().await.expect("snapshot");
        let row = snap.leases.iter().find(|l| l.shard == JOBS_LEASE);
        if row.is_some_and(|l| l.expires_at <= snap.now) {
            break;
        }
    }
    let b = Fence {
        shard: JOBS_LEASE,
        epoch: cluster
            .claim(JOBS_LEASE, "b", Duration::from_secs(30))
            .await
            .expect("claim")
            .expect("expired"),
    };
    addr.send(progress(50)).await.expect("alive");
    assert_eq!(
        stored_progress(&store).await,
        20,
        "the stale driver's change"
    );
    assert!(store.stats().fenced_submissions >= 1);

    // Told, it stands by: nothing is served or published.
    addr.send(StandBy).await.expect("alive");
    assert_eq!(
        addr.send(GetJob(id.to_string())).await.expect("alive"),
        Err(JobError::NotDriving)
    );
    addr.send(progress(70)).await.expect("alive");
    assert!(notified.try_recv().is_err(), "nothing published on standby");

    // Driving again under the new epoch, from what is stored.
    addr.send(DriveJobs {
        fence: b,
        records: store.jobs().expect("jobs"),
    })
    .await
    .expect("alive");
    let job = addr
        .send(GetJob(id.to_string()))
        .await
        .expect("alive")
        .expect("driving")
        .expect("restored");
    assert_eq!(job.executions[0].status, ExecutionStatus::InProgress);
    assert_eq!(job.executions[0].progress, 20);
    addr.send(progress(60)).await.expect("alive");
    assert_eq!(stored_progress(&store).await, 60);
}
