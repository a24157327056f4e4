//! Who changed what, through the real backend: the API app over [`CloudBackend`], the
//! device registry and actors, and a redb store in a temp dir (the other API tests use the
//! fake backend). History names API tokens with their role and devices by their id, in
//! JSON and in CSV.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::http::StatusCode;
use serde_json::{Value, json};
use shiki_proto::{
    AckResult, Catalog, Connectivity, DeviceId, PROTOCOL_VERSION, ReportedState, ReportedUpdate,
    ScheduleAck, ScheduleSet, Status,
};
use shiki_shared::clock::TestClock;
use tokio::sync::mpsc;

use crate::api::{ApiConfig, ApiState, Backend, NewToken};
use crate::auth::{Role, hash_token};
use crate::backend_impl::CloudBackend;
use crate::device::{
    DeviceConfig, DeviceDeps, DeviceInput, DeviceMetrics, Outbound, Publish, Registry, Route,
};
use crate::ingest::IngestStats;
use crate::notifier::Alert;
use crate::ota::{JobTimeouts, Jobs, JobsActor, MemoryArtifacts};
use crate::schedule::SyncConfig;
use crate::store::testing::PgTestDb;
use crate::store::{PgOptions, PgStore, RedbStore, Store};
use crate::test_support::collector;
use chrono::{DateTime, TimeZone, Utc};
use shiki_cloud_api::testing::{Resp, call, req};

/// "Now" for every test.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0)
        .single()
        .expect("valid date")
}

const OPS: &str = "shiki_opsteam00000000000000000000000000000000000000000000000000000";
const AUDITOR: &str = "shiki_auditor0000000000000000000000000000000000000000000000000000";
const ROOT: &str = "shiki_root00000000000000000000000000000000000000000000000000000000";

/// The real backend with one known, online device `plant-01` and two tokens: `ops-team`
/// (operator) and `auditor` (viewer).
struct Cloud {
    registry: Addr<Registry>,
    store: Arc<dyn Store>,
    state: ApiState,
    published: mpsc::UnboundedReceiver<Publish>,
    device: DeviceId,
    _data: Data,
}

/// Which backend a test's store uses, and where its data lives.
#[derive(Debug, Clone, Copy)]
enum StoreKind {
    Redb,
    Postgres,
}

/// Kept as long as the store: a temporary dir, or a fresh PostgreSQL database.
#[allow(dead_code)]
enum Data {
    Dir(tempfile::TempDir),
    Db(PgTestDb),
}

impl StoreKind {
    fn open(self) -> (Arc<dyn Store>, Data) {
        match self {
            StoreKind::Redb => {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = RedbStore::open(&dir.path().join("c.redb"), 64).expect("store");
                (Arc::new(store), Data::Dir(dir))
            }
            StoreKind::Postgres => {
                let db = PgTestDb::create();
                let options = PgOptions {
                    max_batch: 64,
                    pool_size: 2,
                    retention: None,
                };
                let store = PgStore::open(&db.url, &options).expect("store");
                (Arc::new(store), Data::Db(db))
            }
        }
    }
}

/// Runs each named test (an `async fn(StoreKind)`) over a redb and a PostgreSQL store.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod redb {
            $(#[actix_web::test]
            async fn $name() {
                super::$name(super::StoreKind::Redb).await;
            })*
        }
        mod postgres {
            $(#[actix_web::test]
            async fn $name() {
                super::$name(super::StoreKind::Postgres).await;
            })*
        }
    };
}

on_both_backends!(
    history_names_the_token_with_its_role_and_the_reporting_device_by_id,
    schedule_history_names_the_putting_token_with_its_role_and_the_acking_device,
    a_job_reaches_the_device_and_its_failure_shows_in_the_job_and_the_history,
    a_device_is_registered_with_a_hash_given_a_tenant_retired_and_registered_again,
    a_tenants_token_sees_its_tenants_device_and_no_other,
    an_old_edges_raw_values_are_shown_at_their_resolution,
);

impl Cloud {
    async fn start(backend: StoreKind) -> Cloud {
        let (store, data) = backend.open();
        let (publisher, published) = collector::<Publish>();
        let (alerts, _alerted) = collector::<Alert>();
        let clock = TestClock::at(now());
        let jobs_ctx = Context::<JobsActor>::new();
        let jobs = jobs_ctx.address();
        let deps = DeviceDeps {
            store: store.clone(),
            publisher,
            alerts,
            clock: clock.shared(),
            cfg: DeviceConfig::default(),
            metrics: Arc::new(DeviceMetrics::default()),
            schedule: SyncConfig::default(),
            jobs: Some(jobs.clone().recipient()),
        };
        let registry = Registry::new(deps).start();
        jobs_ctx.run(JobsActor::new(
            Jobs::restore(
                JobTimeouts::default(),
                MemoryArtifacts::with(&["0.2.0"]),
                vec![],
            ),
            store.clone(),
            registry.clone().recipient(),
            collector().0,
            clock.shared(),
        ));
        let backend = Arc::new(
            CloudBackend::new(
                registry.clone(),
                jobs,
                store.clone(),
                Arc::new(IngestStats::default()),
                Arc::new(DeviceMetrics::default()),
            )
            .expect("backend"),
        );
        for (name, role, secret) in [
            ("ops-team", Role::Operator, OPS),
            ("auditor", Role::Viewer, AUDITOR),
            ("root", Role::Admin, ROOT),
        ] {
            backend
                .create_token(NewToken {
                    tenant: None,
                    name: name.into(),
                    role,
                    hash: hash_token(secret),
                    created_at: now(),
                    created_by: "test".into(),
                })
                .await
                .expect("token created");
        }
        let state = ApiState::new(backend, ApiConfig::default())
            .expect("valid api config")
            .with_clock(Arc::new(now));
        let cloud = Cloud {
            registry,
            store,
            state,
            published,
            device: DeviceId::new("plant-01").expect("id"),
            _data: data,
        };
        let catalog: Catalog = serde_json::from_value(json!({"points": [
            {"name": "chw_setpoint", "role": "setting", "kind": "number", "writable": true,
             "min": 5.0, "max": 15.0, "resolution": 0.1},
            {"name": "run", "role": "setting", "kind": "bool", "writable": true}
        ]}))
        .expect("catalog");
        cloud.input(DeviceInput::Catalog(catalog)).await;
        cloud
            .input(DeviceInput::Status(Status {
                v: PROTOCOL_VERSION,
                state: Connectivity::Online,
                software_version: None,
                boot_time: None,
                ts: None,
            }))
            .await;
        cloud
    }

    /// Hands `input` to the device actor as the ingest does, and waits until the actor
    /// has handled it and the store has committed what it wrote.
    async fn input(&self, input: DeviceInput) {
        self.registry
            .send(Route {
                device: self.device.clone(),
                input,
            })
            .await
            .expect("registry alive");
        self.settle().await;
    }

    /// The actor has handled everything sent before, and the store committed its writes
    /// (one writer commits in order, so an empty commit resolves after them).
    async fn settle(&self) {
        Registry::view(&self.registry, self.device.clone())
            .await
            .expect("registry alive")
            .expect("device known");
        self.store.submit(Vec::new()).await.expect("commit");
    }

    async fn next_schedule_set(&mut self) -> ScheduleSet {
        loop {
            let publish = tokio::time::timeout(Duration::from_secs(5), self.published.recv())
                .await
                .expect("a publish within 5 s")
                .expect("publisher open");
            if let Outbound::ScheduleSet(set) = publish.message {
                return *set;
            }
        }
    }
}

fn entry<'a>(history: &'a Value, side: &str, key: &str) -> &'a Value {
    history["history"]
        .as_array()
        .expect("history list")
        .iter()
        .find(|e| e["side"] == side && e["key"] == key)
        .unwrap_or_else(|| panic!("no {side} entry for {key} in {history}"))
}

async fn history_names_the_token_with_its_role_and_the_reporting_device_by_id(backend: StoreKind) {
    let cloud = Cloud::start(backend).await;
    let app = actix_web::test::init_service(crate::api::app(cloud.state.clone())).await;
    let res = call(
        &app,
        req("PATCH", "/api/v1/devices/plant-01/desired", Some(OPS))
            .set_json(json!({"settings": {"chw_setpoint": 8.5}, "comment": "warm week"})),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.json, json!({"version": 1}));
    cloud
        .input(DeviceInput::Reported(Box::new(ReportedUpdate {
            v: PROTOCOL_VERSION,
            state: ReportedState {
                reported: json!({"chw_setpoint": 8.5})
                    .as_object()
                    .cloned()
                    .expect("object"),
            },
            applied_version: Some(1),
            settings: Default::default(),
            expired: Vec::new(),
            schedule: None,
            timestamp: now(),
            client_token: None,
        })))
        .await;

    let res: Resp = call(
        &app,
        req("GET", "/api/v1/devices/plant-01/history", Some(AUDITOR)),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    let desired = entry(&res.json, "desired", "chw_setpoint");
    assert_eq!(
        desired["actor"],
        json!({"kind": "api_key", "name": "ops-team", "role": "operator"})
    );
    assert_eq!(desired["comment"], "warm week");
    assert_eq!(desired["verification"]["outcome"], "verified");
    let reported = entry(&res.json, "reported", "chw_setpoint");
    assert_eq!(
        reported["actor"],
        json!({"kind": "device", "name": "plant-01"}),
        "a device has no role"
    );
    assert_eq!(reported["new"], 8.5);

    let res = call(
        &app,
        req(
            "GET",
            "/api/v1/devices/plant-01/history?format=csv",
            Some(AUDITOR),
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    let text = res.text();
    assert!(
        text.contains(",desired,chw_setpoint,,8.5,1,api_key,ops-team,operator,warm week,verified,"),
        "{text}"
    );
    assert!(
        text.contains(",reported,chw_setpoint,,8.5,1,device,plant-01,,,"),
        "{text}"
    );
}

async fn schedule_history_names_the_putting_token_with_its_role_and_the_acking_device(
    backend: StoreKind,
) {
    let mut cloud = Cloud::start(backend).await;
    let app = actix_web::test::init_service(crate::api::app(cloud.state.clone())).await;
    let document = json!({
        "id": "plant-01-2027", "timezone": "Asia/Tokyo",
        "valid_from": "2027-01-01", "valid_to": "2027-12-31",
        "profiles": {"work": [{"time": "08:00", "settings": {"run": true}},
                              {"time": "20:00", "settings": {"run": false}}],
                     "off": []},
        "seasons": [{"name": "all", "from": "01-01", "to": "12-31",
                     "weekday": "work", "saturday": "off", "sunday": "off"}]
    });
    let res = call(
        &app,
        req("PUT", "/api/v1/devices/plant-01/schedule", Some(OPS)).set_json(document),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    let set = cloud.next_schedule_set().await;
    cloud
        .input(DeviceInput::ScheduleAck(ScheduleAck {
            v: PROTOCOL_VERSION,
            schedule_id: set.schedule_id.clone(),
            hash: set.hash.clone(),
            result: AckResult::Accepted,
            reason: None,
            ts: now(),
        }))
        .await;

    let res = call(
        &app,
        req("GET", "/api/v1/devices/plant-01/history", Some(AUDITOR)),
    )
    .await;
    let history = res.json["history"].as_array().expect("history list");
    let put = history
        .iter()
        .find(|e| e["side"] == "desired")
        .expect("the put is recorded");
    assert_eq!(
        put["actor"],
        json!({"kind": "api_key", "name": "ops-team", "role": "operator"})
    );
    let ack = history
        .iter()
        .find(|e| e["side"] == "reported")
        .expect("the ack is recorded");
    assert_eq!(ack["actor"], json!({"kind": "device", "name": "plant-01"}));
    // The schedule's `set_by` keeps its documented `kind:name` form.
    let res = call(
        &app,
        req("GET", "/api/v1/devices/plant-01/schedule", Some(AUDITOR)),
    )
    .await;
    assert!(
        res.text().contains("\"set_by\":\"api-key:ops-team\""),
        "{}",
        res.text()
    );
}

/// A job over the real backend: the online device gets `jobs/notify` through its actor,
/// its edge's failure shows in the job and in the device's history; unknown versions and
/// devices are 422s naming them.
async fn a_job_reaches_the_device_and_its_failure_shows_in_the_job_and_the_history(
    backend: StoreKind,
) {
    let mut cloud = Cloud::start(backend).await;
    let app = actix_web::test::init_service(crate::api::app(cloud.state.clone())).await;
    for (body, says) in [
        (
            json!({"artifact_version": "9.9.9", "devices": ["plant-01"]}),
            "9.9.9",
        ),
        (
            json!({"artifact_version": "0.2.0", "devices": ["plant-99"]}),
            "plant-99",
        ),
    ] {
        let res = call(&app, req("POST", "/api/v1/jobs", Some(OPS)).set_json(body)).await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            res.json["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(says)),
            "{:?}",
            res.json
        );
    }
    let res = call(
        &app,
        req("POST", "/api/v1/jobs", Some(OPS))
            .set_json(json!({"artifact_version": "0.2.0", "devices": ["plant-01"]})),
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    let id = res.json["id"].as_str().expect("job id").to_owned();
    let notify = loop {
        let publish = tokio::time::timeout(Duration::from_secs(5), cloud.published.recv())
            .await
            .expect("a publish within 5 s")
            .expect("publisher open");
        if let Outbound::JobNotify(n) = publish.message {
            break n;
        }
    };
    assert_eq!(notify.jobs[0].job_id.as_str(), id);

    cloud
        .input(DeviceInput::JobUpdate {
            job: shiki_proto::JobId::new(id.as_str()).expect("job id"),
            update: Box::new(shiki_proto::JobUpdate {
                v: PROTOCOL_VERSION,
                status: shiki_proto::JobStatus::Failed,
                detail: Some("not enough disk: 12 MB free, 40 MB needed".into()),
                step: None,
                progress: None,
                ts: now(),
            }),
        })
        .await;
    let res = call(
        &app,
        req("GET", &format!("/api/v1/jobs/{id}"), Some(AUDITOR)),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        res.json["devices"][0],
        json!({"device": "plant-01", "status": "failed", "progress": 0,
               "reason": "not enough disk: 12 MB free, 40 MB needed",
               "started_at": now(), "finished_at": now()})
    );
    cloud.settle().await;
    let res = call(
        &app,
        req("GET", "/api/v1/devices/plant-01/history", Some(AUDITOR)),
    )
    .await;
    let failed = entry(&res.json, "reported", "ota");
    assert_eq!(
        (&failed["old"], &failed["new"]),
        (&json!("in_progress"), &json!("failed"))
    );
    assert_eq!(
        failed["actor"],
        json!({"kind": "device", "name": "plant-01"})
    );
}

async fn a_device_is_registered_with_a_hash_given_a_tenant_retired_and_registered_again(
    backend: StoreKind,
) {
    let cloud = Cloud::start(backend).await;
    let app = actix_web::test::init_service(crate::api::app(cloud.state.clone())).await;
    let id = DeviceId::new("plant-07").expect("id");
    let register = || {
        req("POST", "/api/v1/devices", Some(ROOT))
            .set_json(json!({"id": "plant-07", "tenant": "acme"}))
    };
    let res = call(&app, register()).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    let password = res.json["mqtt_password"]
        .as_str()
        .expect("password")
        .to_owned();
    let stored = cloud
        .store
        .registered(&id)
        .expect("reads")
        .expect("registered");
    assert_eq!(stored.tenant.as_deref(), Some("acme"));
    assert_eq!(stored.created_by, "root");
    let hash = stored.password_hash.expect("hash");
    assert!(crate::auth::verify_device_password(&hash, &password));
    assert_eq!(call(&app, register()).await.status, StatusCode::CONFLICT);

    let res = call(
        &app,
        req("PATCH", "/api/v1/devices/plant-07", Some(ROOT)).set_json(json!({"tenant": "north"})),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    let stored = cloud
        .store
        .registered(&id)
        .expect("reads")
        .expect("registered");
    assert_eq!(stored.tenant.as_deref(), Some("north"));

    let res = call(&app, req("DELETE", "/api/v1/devices/plant-07", Some(ROOT))).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    let stored = cloud.store.registered(&id).expect("reads").expect("kept");
    assert!(stored.retired_at.is_some() && stored.password_hash.is_none());
    let res = call(
        &app,
        req("POST", "/api/v1/devices/plant-07/credentials", Some(ROOT)),
    )
    .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(call(&app, register()).await.status, StatusCode::CREATED);
    let again = cloud
        .store
        .registered(&id)
        .expect("reads")
        .expect("registered");
    assert!(again.retired_at.is_none() && again.password_hash.is_some());
}

async fn a_tenants_token_sees_its_tenants_device_and_no_other(backend: StoreKind) {
    let cloud = Cloud::start(backend).await;
    let app = actix_web::test::init_service(crate::api::app(cloud.state.clone())).await;
    let res = call(
        &app,
        req("POST", "/api/v1/devices", Some(ROOT))
            .set_json(json!({"id": "plant-01", "tenant": "acme"})),
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    let mut secrets = Vec::new();
    for tenant in ["acme", "globex"] {
        let res = call(
            &app,
            req("POST", "/api/v1/tokens", Some(ROOT)).set_json(
                json!({"name": format!("{tenant}-viewer"), "role": "viewer", "tenant": tenant}),
            ),
        )
        .await;
        assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
        secrets.push(res.json["token"].as_str().expect("secret").to_owned());
    }
    let get = |token: &str| req("GET", "/api/v1/devices/plant-01/history", Some(token));
    assert_eq!(call(&app, get(&secrets[0])).await.status, StatusCode::OK);
    assert_eq!(
        call(&app, get(&secrets[1])).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&app, get(AUDITOR)).await.status,
        StatusCode::OK,
        "staff see all"
    );
    // The tenant survives in the stored token.
    let stored = cloud.store.tokens().expect("tokens");
    assert!(
        stored
            .iter()
            .any(|t| t.name == "acme-viewer" && t.tenant.as_deref() == Some("acme"))
    );
}

/// An edge of an earlier version sends values as the PLC scale made them
/// (`24.400000000000002`); the API shows them at the catalog's resolution, as newer edges
/// send them, in the telemetry list and in the device view.
async fn an_old_edges_raw_values_are_shown_at_their_resolution(backend: StoreKind) {
    let cloud = Cloud::start(backend).await;
    let raw = 244.0 * 0.1;
    assert_eq!(raw.to_string(), "24.400000000000002");
    let sample = shiki_proto::Sample {
        seq: 1,
        ts: now(),
        values: [
            (
                "chw_setpoint".to_owned(),
                shiki_proto::PointValue::Number(raw),
            ),
            (
                "uncatalogued".to_owned(),
                shiki_proto::PointValue::Number(raw),
            ),
        ]
        .into(),
    };
    cloud
        .store
        .submit(vec![crate::store::Write::Telemetry {
            device: cloud.device.clone(),
            samples: vec![crate::store::SampleRow::encode(&sample)],
        }])
        .await
        .expect("stored");
    cloud
        .input(DeviceInput::Telemetry(
            crate::device::SampleJson::of(&sample).expect("json"),
        ))
        .await;
    let app = actix_web::test::init_service(crate::api::app(cloud.state.clone())).await;
    let res = call(
        &app,
        req("GET", "/api/v1/devices/plant-01/telemetry", Some(AUDITOR)),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    let text = String::from_utf8_lossy(&res.body).into_owned();
    assert!(text.contains(r#""chw_setpoint":24.4"#), "{text}");
    assert!(
        text.contains(r#""uncatalogued":24.400000000000002"#),
        "no resolution known: as sent. {text}"
    );
    let res = call(&app, req("GET", "/api/v1/devices/plant-01", Some(AUDITOR))).await;
    assert!(
        String::from_utf8_lossy(&res.body).contains(r#""chw_setpoint":24.4"#),
        "{:?}",
        res.body
    );
}
