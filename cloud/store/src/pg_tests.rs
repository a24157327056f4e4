//! Tests of the PostgreSQL backend alone: schema versions, partitions and retention, the
//! hourly rollup, a dropped connection, and the Grafana role. (Every behaviour the two
//! backends share is tested on both in `tests`.)

use chrono::{DateTime, Duration, DurationRound, Utc};
use shiki_proto::{DeviceId, Sample};

use crate::testing::{PgTestDb, stored_seqs};
use crate::{PgOptions, PgStore, Store, TimeQuery, Write};

fn dev(s: &str) -> DeviceId {
    DeviceId::new(s).expect("valid test id")
}

fn open(db: &PgTestDb, retention: Option<std::time::Duration>) -> PgStore {
    PgStore::open(
        &db.url,
        &PgOptions {
            max_batch: 1024,
            pool_size: 2,
            retention,
        },
    )
    .expect("store opens")
}

/// A sample `seq` at `ts` with a number, a boolean and a text point.
fn sample(seq: u64, ts: DateTime<Utc>, supply: f64, running: bool) -> Sample {
    Sample {
        seq,
        ts,
        values: [
            ("supply_c".to_owned(), supply.into()),
            ("running".to_owned(), running.into()),
            ("mode".to_owned(), "cooling".into()),
        ]
        .into(),
    }
}

fn write(store: &PgStore, device: &DeviceId, samples: impl IntoIterator<Item = Sample>) {
    store
        .submit(vec![Write::telemetry(device.clone(), samples)])
        .wait_blocking()
        .expect("commit");
}

fn hour(ts: DateTime<Utc>) -> DateTime<Utc> {
    ts.duration_trunc(Duration::hours(1)).expect("truncates")
}

#[test]
fn a_database_migrated_by_a_newer_version_is_refused_with_a_clear_error() {
    let db = PgTestDb::create();
    drop(open(&db, None));
    assert_eq!(
        db.query("SELECT max(version) FROM shiki.schema_history")
            .expect("history"),
        vec![crate::SCHEMA_VERSION.to_string()]
    );
    // Opening again applies nothing and works.
    drop(open(&db, None));
    db.query(
        "INSERT INTO shiki.schema_history (version, name, applied_on, checksum) \
         VALUES (99, 'from_the_future', '2027-01-01T00:00:00Z', '0')",
    )
    .expect("insert");
    let err = PgStore::open(&db.url, &PgOptions::default()).expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("version 99") && text.contains("newer than this shiki-cloud"),
        "{text}"
    );
    assert!(!text.contains("password"), "{text}");
}

#[test]
fn a_30_day_backfill_lands_in_its_old_partition_and_a_time_range_is_an_index_range_scan() {
    let db = PgTestDb::create();
    let store = open(&db, None);
    let (a, b) = (dev("gw-a"), dev("gw-b"));
    let now = Utc::now().duration_trunc(Duration::minutes(1)).expect("ts");
    // Two days of live samples for two devices, a minute apart.
    for d in [&a, &b] {
        write(
            &store,
            d,
            (0..2880).map(|i| {
                sample(
                    10_000 + i,
                    now - Duration::minutes(2880 - i as i64),
                    7.0,
                    true,
                )
            }),
        );
    }
    let partition_of = |seq: u64| {
        db.query(&format!(
            "SELECT tableoid::regclass::text FROM shiki.telemetry WHERE device = 'gw-a' AND seq = {seq}"
        ))
        .expect("query")
    };
    let live = partition_of(12_879);
    let files_before = db
        .query("SELECT relname || '=' || relfilenode FROM pg_class WHERE relname LIKE 'telemetry_y%' ORDER BY 1")
        .expect("files");
    // The edge comes back after 30 days offline and replays its backlog, oldest first.
    let back = now - Duration::days(30);
    write(
        &store,
        &a,
        (0..60).map(|i| sample(1 + i, back + Duration::minutes(i as i64), 6.5, false)),
    );
    let old = partition_of(1);
    assert_eq!(
        old,
        vec![format!("shiki.telemetry_y{}", back.format("%Ym%m"))]
    );
    assert_eq!(
        live,
        vec![format!("shiki.telemetry_y{}", now.format("%Ym%m"))]
    );
    // No partition was rewritten (a rewrite gives a table a new file).
    let files_after = db
        .query("SELECT relname || '=' || relfilenode FROM pg_class WHERE relname LIKE 'telemetry_y%' ORDER BY 1")
        .expect("files");
    for f in &files_before {
        assert!(
            files_after.contains(f),
            "{f} was rewritten: {files_after:?}"
        );
    }
    assert_eq!(
        store
            .telemetry(
                &a,
                &TimeQuery {
                    from: Some(back),
                    to: Some(back + Duration::minutes(59)),
                    limit: None,
                    newest_first: false,
                }
            )
            .expect("reads")
            .len(),
        60
    );
    db.query("ANALYZE shiki.telemetry").expect("analyze");
    let plan = db
        .query(&format!(
            "EXPLAIN SELECT body FROM shiki.telemetry WHERE device = 'gw-a' \
             AND ts >= '{}' AND ts <= '{}' ORDER BY ts, seq",
            (now - Duration::hours(1)).to_rfc3339(),
            now.to_rfc3339()
        ))
        .expect("explain")
        .join("\n");
    assert!(
        plan.contains("Index Scan") || plan.contains("Index Only Scan"),
        "{plan}"
    );
    assert!(!plan.contains("Seq Scan"), "{plan}");
    if back.format("%Y%m").to_string() != now.format("%Y%m").to_string() {
        assert!(
            !plan.contains(&format!("telemetry_y{}", back.format("%Ym%m"))),
            "the old month is pruned: {plan}"
        );
    }
}

#[test]
fn retention_drops_whole_old_months_with_their_hourly_rollups() {
    let db = PgTestDb::create();
    let store = open(&db, Some(std::time::Duration::from_secs(60 * 86_400)));
    let d = dev("gw-1");
    let now = Utc::now();
    let old = now - Duration::days(100);
    let recent = now - Duration::days(10);
    write(
        &store,
        &d,
        [sample(1, old, 7.0, true), sample(2, recent, 8.0, true)],
    );
    let rollups = || {
        db.query("SELECT count(*) FROM shiki.telemetry_hourly")
            .expect("count")
    };
    // Per sample and hour: supply_c and running (text points have none).
    assert_eq!(rollups(), vec!["4"]);
    store.maintain(now).expect("maintenance");
    assert_eq!(stored_seqs(&store, &d), vec![2]);
    let partitions = db
        .query("SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid ORDER BY 1")
        .expect("partitions");
    assert!(
        !partitions.contains(&format!("telemetry_y{}", old.format("%Ym%m"))),
        "{partitions:?}"
    );
    assert!(partitions.contains(&format!("telemetry_y{}", recent.format("%Ym%m"))));
    // Created ahead: this month and the next two.
    for ahead in 0..=2 {
        let m = now
            .date_naive()
            .checked_add_months(chrono::Months::new(ahead))
            .expect("month");
        assert!(
            partitions.contains(&format!("telemetry_y{}", m.format("%Ym%m"))),
            "{partitions:?}"
        );
    }
    assert_eq!(rollups(), vec!["2"]);
}

/// A sample a gateway stamped 1970 (its RTC reset after a power cut) lands in a partition
/// made on demand and is kept by retention, which drops only months since the first release
/// (issue #21: never lost silently; the ingest counts and logs it).
#[test]
fn retention_keeps_samples_stamped_before_any_release() {
    let db = PgTestDb::create();
    let store = open(&db, Some(std::time::Duration::from_secs(60 * 86_400)));
    let d = dev("gw-rtc");
    let now = Utc::now();
    let rtc = DateTime::<Utc>::UNIX_EPOCH + Duration::minutes(1);
    let old = now - Duration::days(100);
    write(
        &store,
        &d,
        [
            sample(1, old, 7.0, true),
            sample(2, rtc, 7.1, true),
            sample(3, now, 7.2, true),
        ],
    );
    store.maintain(now).expect("maintenance");
    assert_eq!(
        stored_seqs(&store, &d),
        vec![2, 3],
        "the old month went, 1970 stayed"
    );
    let kept = store.telemetry(&d, &TimeQuery::default()).expect("reads");
    assert_eq!(kept.first().map(|s| (s.seq, s.ts)), Some((2, rtc)));
    let partitions = db
        .query("SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid ORDER BY 1")
        .expect("partitions");
    assert!(
        partitions.contains(&"telemetry_y1970m01".to_owned()),
        "{partitions:?}"
    );
    let rollups = db
        .query("SELECT count(*) FROM shiki.telemetry_hourly WHERE hour < '2000-01-01'")
        .expect("count");
    assert_eq!(rollups, vec!["2"], "its hourly rollups stay with it");
}

#[test]
fn the_hourly_rollup_counts_each_stored_sample_once() {
    let db = PgTestDb::create();
    let store = open(&db, None);
    let d = dev("gw-1");
    let at = hour(Utc::now() - Duration::hours(5));
    let samples: Vec<Sample> = (0..4)
        .map(|i| {
            sample(
                i + 1,
                at + Duration::minutes(i as i64 * 10),
                6.0 + i as f64,
                i % 2 == 0,
            )
        })
        .collect();
    write(&store, &d, samples.clone());
    // Replayed, with one more sample in the next hour.
    let mut replay = samples;
    replay.push(sample(5, at + Duration::minutes(70), 9.5, true));
    write(&store, &d, replay);
    let rows = db
        .query(
            "SELECT point || ' ' || n || ' ' || sum || ' ' || min || ' ' || max \
             FROM shiki.telemetry_hourly ORDER BY hour, point",
        )
        .expect("rollups");
    assert_eq!(
        rows,
        vec![
            "running 4 2 0 1",
            "supply_c 4 30 6 9",
            "running 1 1 1 1",
            "supply_c 1 9.5 9.5 9.5"
        ]
    );
    let s = store.stats();
    assert_eq!((s.samples_stored, s.duplicates_dropped), (5, 4));
    // The Grafana views read the same.
    let hourly = db
        .query(&format!(
            "SELECT value FROM grafana.samples_hourly WHERE device = 'gw-1' \
             AND point = 'supply_c' AND time = '{}'",
            at.to_rfc3339()
        ))
        .expect("view");
    assert_eq!(hourly, vec!["7.5"]);
    let raw = db
        .query("SELECT count(*) FROM grafana.samples WHERE device = 'gw-1'")
        .expect("view");
    assert_eq!(raw, vec!["10"], "numbers and booleans, not text");
}

#[test]
fn a_dropped_connection_while_ingesting_loses_nothing() {
    let db = PgTestDb::create();
    let store = open(&db, None);
    let d = dev("gw-1");
    let now = Utc::now();
    write(
        &store,
        &d,
        (1..=10).map(|i| sample(i, now + Duration::seconds(i as i64), 7.0, true)),
    );
    assert!(store.telemetry(&d, &TimeQuery::default()).is_ok());
    // Every connection of the store goes, as in a PostgreSQL restart.
    let killed = db
        .query(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .expect("terminate");
    assert_ne!(killed, vec!["0"], "the store had connections to drop");
    write(
        &store,
        &d,
        (11..=20).map(|i| sample(i, now + Duration::seconds(i as i64), 7.0, true)),
    );
    assert_eq!(stored_seqs(&store, &d), (1..=20).collect::<Vec<_>>());
    assert_eq!(store.stats().failed_commits, 0);
    // And reads find a connection again.
    assert_eq!(
        store.last_sample(&d).expect("reads").map(|s| s.seq),
        Some(20)
    );
}

#[test]
fn the_grafana_role_reads_the_views_and_nothing_else() {
    let db = PgTestDb::create();
    let store = open(&db, None);
    write(&store, &dev("gw-1"), [sample(1, Utc::now(), 7.0, true)]);
    let role = format!("{}_grafana", db.name());
    let missing = store.grant_grafana(&role).expect_err("no such role yet");
    assert!(missing.to_string().contains("CREATE ROLE"), "{missing}");
    db.query(&format!("CREATE ROLE {role} LOGIN"))
        .expect("role");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.grant_grafana(&role).expect("granted");
        assert_eq!(
            db.query_as(&role, "SELECT count(*) FROM grafana.samples")
                .expect("reads the view"),
            vec!["2"]
        );
        for view in ["devices", "events", "settings_history", "samples_hourly"] {
            db.query_as(&role, &format!("SELECT * FROM grafana.{view} LIMIT 1"))
                .expect("reads the view");
        }
        let refused = db
            .query_as(&role, "SELECT count(*) FROM shiki.telemetry")
            .expect_err("no access to the tables");
        assert!(refused.contains("permission denied"), "{refused}");
        let refused = db
            .query_as(&role, "DELETE FROM grafana.samples_hourly")
            .expect_err("read only");
        assert!(refused.contains("permission denied"), "{refused}");
    }));
    drop(store);
    let name = db.name().to_owned();
    drop(db);
    // Roles belong to the server, not the database: drop it once the database is gone.
    let admin = PgTestDb::create();
    admin
        .query(&format!("DROP ROLE IF EXISTS {role}"))
        .unwrap_or_else(|e| panic!("drop role {role} after {name}: {e}"));
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn a_lease_is_claimed_once_renewed_only_by_its_holder_and_free_again_when_released() {
    let db = PgTestDb::create();
    let store = open(&db, None);
    let cluster = store.cluster();
    let ttl = std::time::Duration::from_secs(30);
    rt().block_on(async {
        cluster.ensure_shards(4).await.expect("shards");
        cluster
            .ensure_shards(4)
            .await
            .expect("again: nothing changes");
        let a = cluster.claim(1, "a", ttl).await.expect("claim");
        assert_eq!(a, Some(1), "first claim is epoch 1");
        assert_eq!(cluster.claim(1, "b", ttl).await.expect("claim"), None);
        let fence = crate::Fence { shard: 1, epoch: 1 };
        let stale = crate::Fence { shard: 1, epoch: 0 };
        assert_eq!(
            cluster
                .renew("a", &[fence, stale], ttl)
                .await
                .expect("renew"),
            vec![1]
        );
        assert_eq!(
            cluster.renew("b", &[fence], ttl).await.expect("renew"),
            Vec::<u32>::new()
        );
        assert!(cluster.release("a", fence).await.expect("release"));
        assert_eq!(cluster.claim(1, "b", ttl).await.expect("claim"), Some(2));
        // The old holder can neither renew nor release the new epoch's lease.
        assert_eq!(
            cluster.renew("a", &[fence], ttl).await.expect("renew"),
            Vec::<u32>::new()
        );
        assert!(!cluster.release("a", fence).await.expect("release"));
        let snap = cluster.snapshot().await.expect("snapshot");
        // The four shards', then the jobs lease (migration V4).
        assert_eq!(snap.leases.len(), 5);
        assert_eq!(snap.leases[4].shard, crate::JOBS_LEASE);
        assert_eq!(snap.leases[1].owner.as_deref(), Some("b"));
        assert_eq!(snap.leases[1].epoch, 2);
    });
}

#[test]
fn an_expired_lease_is_not_renewed_and_goes_to_whoever_claims_it() {
    let db = PgTestDb::create();
    let store = open(&db, None);
    let cluster = store.cluster();
    rt().block_on(async {
        cluster.ensure_shards(1).await.expect("shards");
        let short = std::time::Duration::from_millis(1);
        assert_eq!(cluster.claim(0, "a", short).await.expect("claim"), Some(1));
        // Wait for the database's clock to pass the expiry.
        loop {
            let snap = cluster.snapshot().await.expect("snapshot");
            if snap.leases[0].expires_at <= snap.now {
                break;
            }
        }
        let fence = crate::Fence { shard: 0, epoch: 1 };
        let ttl = std::time::Duration::from_secs(30);
        assert_eq!(
            cluster.renew("a", &[fence], ttl).await.expect("renew"),
            Vec::<u32>::new()
        );
        assert_eq!(cluster.claim(0, "b", ttl).await.expect("claim"), Some(2));
    });
}

#[test]
fn a_fenced_write_is_stored_while_its_lease_holds_and_refused_once_another_node_claims_it() {
    let db = PgTestDb::create();
    let store = open(&db, None);
    let cluster = store.cluster();
    let d = dev("gw-fenced");
    let short = std::time::Duration::from_millis(1);
    let epoch = rt().block_on(async {
        cluster.ensure_shards(2).await.expect("shards");
        cluster.claim(0, "a", short).await.expect("claim")
    });
    let fence = crate::Fence {
        shard: 0,
        epoch: epoch.expect("claimed"),
    };
    let at = Utc::now();
    store
        .submit_fenced(fence, vec![Write::FleetLastRun(at)])
        .wait_blocking()
        .expect("stored while held");
    assert_eq!(store.fleet_last_run().expect("read"), Some(at));
    // Another node takes the (expired) lease: the old holder's writes are refused, the
    // unfenced telemetry of the same group is stored.
    rt().block_on(async {
        loop {
            let snap = cluster.snapshot().await.expect("snapshot");
            if snap.leases[0].expires_at <= snap.now {
                break;
            }
        }
        let ttl = std::time::Duration::from_secs(30);
        assert_eq!(cluster.claim(0, "b", ttl).await.expect("claim"), Some(2));
    });
    let later = at + Duration::hours(1);
    let fenced = store.submit_fenced(fence, vec![Write::FleetLastRun(later)]);
    let plain = store.submit(vec![Write::telemetry(
        d.clone(),
        [sample(1, at, 7.0, true)],
    )]);
    let err = fenced.wait_blocking().expect_err("refused");
    assert!(
        matches!(err, crate::StoreError::Fenced { shard: 0, epoch: 1 }),
        "{err}"
    );
    assert!(err.to_string().contains("another node owns"), "{err}");
    plain.wait_blocking().expect("telemetry needs no lease");
    assert_eq!(store.fleet_last_run().expect("read"), Some(at));
    assert_eq!(stored_seqs(&store, &d), vec![1]);
    assert_eq!(store.stats().fenced_submissions, 1);
}

/// Waits until the database's clock has passed every lease's expiry.
async fn until_expired(cluster: &crate::ClusterDb, lease: u32) {
    loop {
        let snap = cluster.snapshot().await.expect("snapshot");
        let row = snap
            .leases
            .iter()
            .find(|l| l.shard == lease)
            .expect("lease row");
        if row.expires_at <= snap.now {
            break;
        }
    }
}

fn job(id: &str, device: &DeviceId, progress: u8) -> crate::JobRecord {
    let mut execution = crate::ExecutionRecord::queued(device.clone());
    execution.status = crate::ExecutionStatus::InProgress;
    execution.progress = progress;
    crate::JobRecord {
        id: shiki_proto::JobId::new(id).expect("valid job id"),
        artifact: crate::JobArtifact {
            version: "0.2.0".into(),
            sha256: "ab".repeat(32),
            size: 1234,
            signature: "c2ln".into(),
        },
        created_at: Utc::now(),
        created_by: crate::Author::Operator("ops".into()),
        rollout: crate::Rollout::default(),
        executions: vec![execution],
        canceled_by: None,
    }
}

#[test]
fn the_jobs_lease_exists_beside_the_shards_and_fences_job_writes_like_a_shard() {
    let db = PgTestDb::create();
    let store = open(&db, None);
    let cluster = store.cluster();
    let d = dev("gw-job");
    let short = std::time::Duration::from_secs(1);
    let ttl = std::time::Duration::from_secs(30);
    let epoch = rt().block_on(async {
        cluster.ensure_shards(2).await.expect("shards");
        let snap = cluster.snapshot().await.expect("snapshot");
        let shards: Vec<u32> = snap.leases.iter().map(|l| l.shard).collect();
        assert_eq!(
            shards,
            vec![0, 1, crate::JOBS_LEASE],
            "the migration made it"
        );
        assert_eq!(
            cluster
                .claim(crate::JOBS_LEASE, "a", short)
                .await
                .expect("claim"),
            Some(1)
        );
        assert_eq!(
            cluster
                .claim(crate::JOBS_LEASE, "b", ttl)
                .await
                .expect("claim"),
            None,
            "held by a"
        );
        1
    });
    let fence = crate::Fence {
        shard: crate::JOBS_LEASE,
        epoch,
    };
    store
        .submit_fenced(fence, vec![Write::Job(Box::new(job("ota-1", &d, 10)))])
        .wait_blocking()
        .expect("stored while held");
    // b takes the expired jobs lease: a's job change is refused, b's is stored.
    rt().block_on(async {
        until_expired(&cluster, crate::JOBS_LEASE).await;
        assert_eq!(
            cluster
                .claim(crate::JOBS_LEASE, "b", ttl)
                .await
                .expect("claim"),
            Some(2)
        );
    });
    let err = store
        .submit_fenced(fence, vec![Write::Job(Box::new(job("ota-1", &d, 90)))])
        .wait_blocking()
        .expect_err("refused");
    assert!(
        matches!(
            err,
            crate::StoreError::Fenced {
                shard: crate::JOBS_LEASE,
                epoch: 1
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("jobs lease"), "{err}");
    assert!(
        err.to_string().contains("another node owns the OTA jobs"),
        "{err}"
    );
    assert_eq!(store.jobs().expect("jobs")[0].executions[0].progress, 10);
    let b = crate::Fence {
        shard: crate::JOBS_LEASE,
        epoch: 2,
    };
    store
        .submit_fenced(b, vec![Write::Job(Box::new(job("ota-1", &d, 50)))])
        .wait_blocking()
        .expect("the new holder's change is stored");
    assert_eq!(store.jobs().expect("jobs")[0].executions[0].progress, 50);
    // Renewed only by its holder; released, it is free for the next claim.
    rt().block_on(async {
        assert_eq!(
            cluster.renew("a", &[fence], ttl).await.expect("renew"),
            Vec::<u32>::new()
        );
        assert_eq!(
            cluster.renew("b", &[b], ttl).await.expect("renew"),
            vec![crate::JOBS_LEASE]
        );
        assert!(cluster.release("b", b).await.expect("release"));
        assert_eq!(
            cluster
                .claim(crate::JOBS_LEASE, "a", ttl)
                .await
                .expect("claim"),
            Some(3)
        );
    });
}

#[test]
fn record_ids_are_unique_across_two_stores_on_one_database() {
    let db = PgTestDb::create();
    let a = open(&db, None);
    let b = open(&db, None);
    let mut ids: Vec<u64> = (0..1500).flat_map(|_| [a.next_id(), b.next_id()]).collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "two nodes handed out the same id");
}
