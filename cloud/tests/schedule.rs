//! Yearly schedule sync end to end: the whole cloud in-process with its embedded broker,
//! the admin API over a real socket, and a raw rumqttc client playing the device.

mod common;

use std::time::Duration;

use chrono::{Datelike, Utc};
use common::{FakeDevice, eventually, webhook, within};
use serde_json::{Value, json};
use shiki_cloud::CloudConfig;
use shiki_cloud::ingest::DropReason;
use shiki_proto::{
    AckResult, Catalog, Channel, Connectivity, ScheduleAck, ScheduleSet, ScheduleSlot, Status,
    Topics, decode,
};

const DEVICE: &str = "sapporo-01";

fn config(dir: &tempfile::TempDir) -> CloudConfig {
    let mut c = CloudConfig {
        data_dir: dir.path().to_owned(),
        ..CloudConfig::default()
    };
    c.mqtt.listen = "127.0.0.1:0".parse().expect("addr");
    c.api.listen = "127.0.0.1:0".parse().expect("addr");
    c.mqtt.client_id = format!("shiki-cloud-test-{}", rand::random::<u32>());
    c.notifier.retry_delay = Duration::from_millis(10);
    c
}

fn catalog() -> Catalog {
    serde_json::from_value(json!({"points": [
        {"name": "run", "role": "setting", "kind": "bool", "writable": true},
        {"name": "chw_setpoint_c", "role": "setting", "kind": "number", "writable": true,
         "min": 4.0, "max": 15.0, "resolution": 0.1}
    ]}))
    .expect("catalog")
}

fn online() -> Status {
    Status {
        v: 1,
        state: Connectivity::Online,
        software_version: Some("0.1.0".into()),
        boot_time: None,
        ts: None,
    }
}

fn doc(id: &str, year: i32) -> Value {
    json!({
        "id": id, "timezone": "Asia/Tokyo",
        "valid_from": format!("{year}-01-01"), "valid_to": format!("{year}-12-31"),
        "defaults": {"run": false, "chw_setpoint_c": 7.0},
        "profiles": {"work": [{"time": "08:00", "settings": {"run": true}},
                              {"time": "20:00", "settings": {"run": false}}],
                     "off": []},
        "seasons": [{"name": "all", "from": "01-01", "to": "12-31",
                     "weekday": "work", "saturday": "off", "sunday": "off"}]
    })
}

fn ack(set: &ScheduleSet, result: AckResult, reason: Option<&str>) -> ScheduleAck {
    ScheduleAck {
        v: 1,
        schedule_id: set.schedule_id.clone(),
        hash: set.hash.clone(),
        result,
        reason: reason.map(str::to_owned),
        ts: Utc::now(),
    }
}

/// The admin API over its socket.
struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let res = r.send().await.expect("API answers");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    /// Polls the schedule view until `pred` holds for it.
    async fn schedule_until(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let path = format!("/api/v1/devices/{DEVICE}/schedule");
        eventually(what, || async {
            let v = self.get(&path).await;
            pred(&v).then_some(v)
        })
        .await
    }
}

#[actix_rt::test]
async fn a_put_schedule_reaches_the_device_its_acks_show_in_the_api_and_survive_a_restart() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let (hook, mut alerts) = webhook(0).await;
    let mut cfg = config(&dir);
    // The fake device registers on first contact.
    cfg.mqtt.allow_unregistered = true;
    cfg.notifier.webhook_url = Some(hook);
    let app = shiki_cloud::start(cfg.clone()).await.expect("cloud starts");
    let api = Api {
        base: format!("http://{}", app.api_addr),
        token: app
            .admin_token
            .clone()
            .expect("first start creates a token"),
        http: reqwest::Client::new(),
    };
    let topics = Topics::new(&cfg.topic_prefix).expect("prefix");
    let port = app.mqtt_addr.expect("embedded broker").port();
    let mut device = FakeDevice::connect(DEVICE, &topics, "127.0.0.1", port).await;
    device.send(Channel::Catalog, &catalog()).await;
    device.send(Channel::Status, &online()).await;
    eventually("device online with its catalog", || async {
        let (status, v) = api
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/devices/{DEVICE}"),
                None,
            )
            .await;
        (status == 200 && v["online"] == true && v["catalog"].is_object()).then_some(())
    })
    .await;

    // An invalid document: 422 with every problem, nothing pushed.
    let mut bad = doc("broken", Utc::now().year() + 1);
    bad["seasons"][0]["weekday"] = json!("no-such-profile");
    bad["defaults"]["chw_setpoint_c"] = json!(99.0);
    let (status, body) = api
        .put(&format!("/api/v1/devices/{DEVICE}/schedule"), bad)
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_schedule");
    let problems = body["error"]["problems"].as_array().expect("problems");
    assert!(problems.len() >= 2, "{body}");
    assert!(problems.iter().all(|p| p["path"].is_string()), "{body}");

    // PUT → schedule/set with the same hash → Accepted → acked.
    let year = Utc::now().year() + 1;
    let (status, put) = api
        .put(
            &format!("/api/v1/devices/{DEVICE}/schedule"),
            doc(&format!("sapporo-{year}"), year),
        )
        .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["pushed"], true);
    let hash = put["schedule"]["current"]["hash"]
        .as_str()
        .expect("hash")
        .to_owned();
    let set: ScheduleSet = decode(&device.expect(Channel::ScheduleSet).await).expect("set");
    assert_eq!(set.hash, hash);
    assert_eq!(set.slot, ScheduleSlot::Current);
    assert_eq!(set.document["id"], format!("sapporo-{year}"));
    // A malformed ack is counted and dropped; the real one follows.
    device
        .send_raw(Channel::ScheduleAck, b"{not an ack".to_vec())
        .await;
    device
        .send(Channel::ScheduleAck, &ack(&set, AckResult::Accepted, None))
        .await;
    let view = api
        .schedule_until("current schedule acked", |v| {
            v["current"]["status"]["state"] == "acked"
        })
        .await;
    assert_eq!(view["current"]["status"]["hash"], hash.as_str());
    assert!(app.ingest_stats.dropped_count(DropReason::Malformed) >= 1);

    // Next year's schedule, refused by the edge → failed with the reason, and an alert.
    let (status, put) = api
        .put(
            &format!("/api/v1/devices/{DEVICE}/schedule?slot=next"),
            doc(&format!("sapporo-{}", year + 1), year + 1),
        )
        .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["slot"], "next");
    let next: ScheduleSet = decode(&device.expect(Channel::ScheduleSet).await).expect("set");
    assert_eq!(next.slot, ScheduleSlot::Next);
    let reason = "profile `work` runs `run` which this PLC does not have";
    device
        .send(
            Channel::ScheduleAck,
            &ack(&next, AckResult::Rejected, Some(reason)),
        )
        .await;
    let view = api
        .schedule_until("next schedule failed", |v| {
            v["next"]["status"]["state"] == "failed"
        })
        .await;
    assert_eq!(view["next"]["status"]["reason"], reason);
    let alert = within(alerts.recv(), "refusal alert")
        .await
        .expect("alert body");
    let text = alert["text"].as_str().expect("slack text");
    assert!(text.contains(DEVICE) && text.contains(reason), "{text}");

    // History: who put which slot, and the device's answers (written behind the view).
    let history_path = format!("/api/v1/devices/{DEVICE}/history");
    eventually("schedule history", || async {
        let history = api.get(&history_path).await;
        let entries = history["history"].as_array().cloned().unwrap_or_default();
        let put_by_admin = entries
            .iter()
            .any(|e| e["key"] == "schedule.current" && e["actor"]["name"] == "admin");
        let refused = entries
            .iter()
            .any(|e| e["key"] == "schedule.next" && e["actor"]["kind"] == "device");
        (put_by_admin && refused).then_some(())
    })
    .await;

    // Restart: the schedule state comes back from the store.
    app.stop().await;
    let app = shiki_cloud::start(cfg).await.expect("cloud restarts");
    let api = Api {
        base: format!("http://{}", app.api_addr),
        ..api
    };
    let view = api.get(&format!("/api/v1/devices/{DEVICE}/schedule")).await;
    assert_eq!(view["current"]["status"]["state"], "acked", "{view}");
    assert_eq!(view["current"]["hash"], hash.as_str());
    assert_eq!(view["next"]["status"]["state"], "failed", "{view}");
    assert_eq!(view["next"]["status"]["reason"], reason);
    app.stop().await;
}
