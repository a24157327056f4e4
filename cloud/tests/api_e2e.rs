//! The admin API over HTTP against the real backend: the first admin token, a desired
//! change reaching the device as a delta, 409/422/404, history with the verification, and
//! metrics.

mod common;

use chrono::Utc;
use common::{FakeDevice, eventually};
use serde_json::{Value, json};
use shiki_cloud::CloudConfig;
use shiki_proto::{Catalog, Channel, ReportedState, ReportedUpdate, ShadowDelta, Topics, decode};

#[actix_rt::test]
async fn desired_changes_through_the_http_api_reach_the_device_and_are_verified() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = CloudConfig {
        data_dir: dir.path().to_owned(),
        ..CloudConfig::default()
    };
    cfg.mqtt.listen = "127.0.0.1:0".parse().expect("addr");
    // The fake device registers on first contact.
    cfg.mqtt.allow_unregistered = true;
    cfg.api.listen = "127.0.0.1:0".parse().expect("addr");
    let app = shiki_cloud::start(cfg).await.expect("cloud starts");
    let token = app
        .admin_token
        .clone()
        .expect("first start creates an admin token");
    let base = format!("http://{}/api/v1", app.api_addr);
    let http = reqwest::Client::new();

    let mut dev = FakeDevice::connect(
        "gw-api",
        &Topics::default(),
        "127.0.0.1",
        app.mqtt_addr.expect("embedded").port(),
    )
    .await;
    let catalog: Catalog = serde_json::from_value(json!({"points": [
        {"name": "chw_setpoint", "role": "setting", "kind": "number", "writable": true,
         "min": 5.0, "max": 15.0, "resolution": 0.1}]}))
    .expect("catalog");
    dev.send(Channel::Catalog, &catalog).await;

    let patch = |body: Value, id: &'static str| {
        http.patch(format!("{base}/devices/{id}/desired"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    // Wait until the catalog reached the device actor (422 "no catalog" before).
    let http2 = http.clone();
    let (b2, t2) = (base.clone(), token.clone());
    eventually("catalog known to the API", || {
        let (http, base, token) = (http2.clone(), b2.clone(), t2.clone());
        async move {
            let v: Value = http
                .get(format!("{base}/devices/gw-api"))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            v.get("catalog").filter(|c| !c.is_null()).map(|_| ())
        }
    })
    .await;

    let r = patch(json!({"settings": {"chw_setpoint": 30.0}}), "gw-api")
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 422);
    assert!(r.text().await.expect("body").contains("chw_setpoint"));
    // Finer than the point's resolution (0.1): refused naming the step, not rounded silently.
    let r = patch(json!({"settings": {"chw_setpoint": 7.55}}), "gw-api")
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 422);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["key"], "chw_setpoint");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("7.5 or 7.6")),
        "{body}"
    );
    let r = patch(json!({"settings": {"chw_setpoint": 8.0}}), "nope")
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 404);

    let r = patch(
        json!({"settings": {"chw_setpoint": 8.0}, "expected_version": 0, "comment": "via http"}),
        "gw-api",
    )
    .await
    .expect("sent");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.expect("json")["version"], 1);
    let r = patch(
        json!({"settings": {"chw_setpoint": 9.0}, "expected_version": 0}),
        "gw-api",
    )
    .await
    .expect("sent");
    assert_eq!(r.status().as_u16(), 409);

    let delta: ShadowDelta = decode(&dev.expect(Channel::ShadowDelta).await).expect("delta");
    dev.send(
        Channel::ShadowReported,
        &ReportedUpdate {
            v: 1,
            state: ReportedState {
                reported: delta.state,
            },
            applied_version: Some(delta.version),
            settings: Default::default(),
            expired: vec![],
            schedule: None,
            timestamp: Utc::now(),
            client_token: None,
        },
    )
    .await;
    let (b3, t3) = (base.clone(), token.clone());
    let history: Value = eventually("verified in history", || {
        let (http, base, token) = (http.clone(), b3.clone(), t3.clone());
        async move {
            let v: Value = http
                .get(format!("{base}/devices/gw-api/history"))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let verified = v.to_string().contains("\"verified\"");
            verified.then_some(v)
        }
    })
    .await;
    let text = history.to_string();
    assert!(text.contains("via http"), "{text}");

    let metrics = http
        .get(format!("http://{}/metrics", app.api_addr))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("verified"), "{metrics}");
    app.stop().await;
}
