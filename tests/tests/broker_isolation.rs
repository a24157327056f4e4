//! The embedded broker is secure by default (issue #18): only registered devices connect,
//! each with its own password, and no device speaks for another. Device A and device B are
//! registered through the API; A tries to connect wrongly, to publish as B, and to read B's
//! commands; B's password is rotated and B is retired. Everything through the cloud's real
//! process, its devices' front and rumqttd behind it.

use std::time::Duration;

use rumqttc::{ConnectReturnCode, SubscribeReasonCode};
use serde_json::json;
use shiki_e2e::probe::{Credentials, MqttProbe, connect_answer_plain};
use shiki_e2e::{Api, Cloud, temp_dir, wait_for};

const A: &str = "plant-a";
const B: &str = "plant-b";
const TELEMETRY_EXAMPLE: &str = include_str!("../../proto/examples/telemetry.json");
const CATALOG_EXAMPLE: &str = include_str!("../../proto/examples/catalog.json");
const REPORTED_EXAMPLE: &str = include_str!("../../proto/examples/shadow-reported.json");
const STATUS_EXAMPLE: &str = include_str!("../../proto/examples/status-online.json");
/// Seq of the forged samples (the real ones use the example's).
const FORGED_SEQ: u64 = 777_001;
/// The setpoint A claims B reports.
const FORGED_SETPOINT: f64 = 11.75;

/// A reported-state update for B that B never sent.
fn forged_report() -> Vec<u8> {
    let mut r: serde_json::Value = serde_json::from_str(REPORTED_EXAMPLE).expect("example");
    r["state"]["reported"] = json!({ "chw_setpoint_c": FORGED_SETPOINT });
    r["timestamp"] = json!(chrono::Utc::now().to_rfc3339());
    serde_json::to_vec(&r).expect("json")
}

fn topic(device: &str, channel: &str) -> String {
    format!("shiki/v1/{device}/{channel}")
}

/// A telemetry batch whose one sample has `seq`.
fn telemetry(seq: u64) -> Vec<u8> {
    let mut t: serde_json::Value = serde_json::from_str(TELEMETRY_EXAMPLE).expect("example");
    t["samples"] = json!([{ "seq": seq, "ts": chrono::Utc::now().to_rfc3339(),
                            "values": { "supply_c": 7.1 } }]);
    serde_json::to_vec(&t).expect("json")
}

/// A user name and password.
fn as_dev<'a>(user: &'a str, password: &'a str) -> Credentials<'a> {
    Credentials::Password { user, password }
}

/// A counter from the cloud's `/metrics`: the sample whose line starts with `prefix`.
async fn metric(api: &Api, prefix: &str) -> f64 {
    let Ok(r) = reqwest::get(format!("http://{}/metrics", api.addr)).await else {
        return 0.0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or(0.0)
}

async fn refused_for(api: &Api, reason: &str) -> f64 {
    metric(
        api,
        &format!("shiki_mqtt_connections_refused_total{{reason=\"{reason}\"}}"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_registered_devices_connect_and_none_speaks_for_or_listens_to_another()
-> anyhow::Result<()> {
    let dir = temp_dir("broker-isolation")?;
    let cloud = Cloud::start_embedded("cloud", &dir.path().join("cloud"), dir.path()).await?;
    let api = &cloud.api;
    let port = cloud.mqtt.expect("embedded broker").port();
    let pw_a = api.register_device(A).await?;
    let pw_b = api.register_device(B).await?;
    let (pw_a, pw_b) = (pw_a.as_str(), pw_b.as_str());

    // Refused: anonymous, a wrong password, another device's password, an unknown device,
    // a user name that is not the client id.
    for (client, creds, reason) in [
        (A, Credentials::Anonymous, "no_password"),
        (A, as_dev(A, "not-the-password"), "wrong_password"),
        (A, as_dev(A, pw_b), "wrong_password"),
        ("plant-zz", as_dev("plant-zz", pw_a), "unknown_device"),
        (A, as_dev(B, pw_b), "username_mismatch"),
    ] {
        let before = refused_for(api, reason).await;
        let code = connect_answer_plain(client, port, creds).await?;
        assert_eq!(code, ConnectReturnCode::NotAuthorized, "{client} {creds:?}");
        assert!(refused_for(api, reason).await > before, "{reason} counted");
    }
    let log = cloud.child.output();
    assert!(
        log.contains("MQTT connection refused: not authorized") && log.contains("peer=127.0.0.1:"),
        "refusals are logged with the address:\n{log}"
    );

    // B connects with its own password, makes itself known and listens to its commands.
    let b = MqttProbe::connect_plain(B, port, as_dev(B, pw_b)).await?;
    b.subscribe(&topic(B, "shadow/delta")).await?;
    b.publish(&topic(B, "catalog"), CATALOG_EXAMPLE.as_bytes().to_vec())
        .await?;
    b.publish(&topic(B, "status"), STATUS_EXAMPLE.as_bytes().to_vec())
        .await?;
    b.publish(&topic(B, "telemetry"), telemetry(1)).await?;
    wait_for(
        "B's first sample stored",
        Duration::from_secs(20),
        || async { (api.telemetry_seqs(B).await == [1]).then_some(()) },
    )
    .await?;

    // A, connected as itself, may not read B's commands: each such filter is refused in
    // the SUBACK, its own subtree is granted.
    let a = MqttProbe::connect_plain(A, port, as_dev(A, pw_a)).await?;
    for filter in [
        topic(B, "shadow/delta"),
        topic(B, "#"),
        "shiki/v1/+/shadow/delta".to_owned(),
        "shiki/v1/#".to_owned(),
        "#".to_owned(),
    ] {
        let codes = a.subscribe_answer(&filter).await?;
        assert_eq!(codes, [SubscribeReasonCode::Failure], "{filter}");
    }
    let codes = a.subscribe_answer(&topic(A, "#")).await?;
    assert!(
        matches!(codes.as_slice(), [SubscribeReasonCode::Success(_)]),
        "{codes:?}"
    );
    // One SUBSCRIBE with an allowed and a refused filter: each gets its own answer.
    let codes = a
        .subscribe_many_answer(&[&topic(A, "shadow/delta"), &topic(B, "schedule/set")])
        .await?;
    assert!(
        matches!(
            codes.as_slice(),
            [
                SubscribeReasonCode::Success(_),
                SubscribeReasonCode::Failure
            ]
        ),
        "{codes:?}"
    );
    // The cloud sends B a delta: B receives it (the path works), A does not.
    let (status, body) = api
        .patch_desired(B, json!({ "chw_setpoint_c": 8.5 }), "isolation test")
        .await?;
    assert_eq!(status, 200, "{body}");
    wait_for("B's delta", Duration::from_secs(20), || async {
        b.messages()
            .iter()
            .any(|(t, _)| *t == topic(B, "shadow/delta"))
            .then_some(())
    })
    .await?;
    // A's own command arrives after B's (the cloud publishes in order): once A has it,
    // B's would have arrived too, had the front let it through.
    a.publish(&topic(A, "catalog"), CATALOG_EXAMPLE.as_bytes().to_vec())
        .await?;
    wait_for("A's catalog known", Duration::from_secs(20), || async {
        (!api.device(A).await?["catalog"].is_null()).then_some(())
    })
    .await?;
    let (status, body) = api
        .patch_desired(A, json!({ "chw_setpoint_c": 8.0 }), "isolation test")
        .await?;
    assert_eq!(status, 200, "{body}");
    wait_for("A's own delta", Duration::from_secs(20), || async {
        a.messages()
            .iter()
            .any(|(t, _)| *t == topic(A, "shadow/delta"))
            .then_some(())
    })
    .await?;
    let foreign: Vec<String> = a
        .messages()
        .into_iter()
        .map(|(t, _)| t)
        .filter(|t| !t.starts_with(&topic(A, "")))
        .collect();
    assert!(foreign.is_empty(), "A received B's commands: {foreign:?}");
    assert!(metric(api, "shiki_mqtt_subscriptions_refused_total").await >= 5.0);

    // A publishes telemetry and reported state on B's topics: the front closes A's
    // connection at each, and nothing reaches the cloud for B.
    for (channel, payload) in [
        ("telemetry", telemetry(FORGED_SEQ)),
        ("shadow/reported", forged_report()),
    ] {
        let before = metric(api, "shiki_mqtt_publishes_refused_total").await;
        let intruder = MqttProbe::connect_plain(A, port, as_dev(A, pw_a)).await?;
        intruder.publish(&topic(B, channel), payload).await?;
        wait_for(
            &format!("A's publish on B's {channel} refused"),
            Duration::from_secs(10),
            || async {
                (metric(api, "shiki_mqtt_publishes_refused_total").await > before
                    && intruder.disconnects() > 0)
                    .then_some(())
            },
        )
        .await?;
    }
    // B's next sample is stored, the forged one never is.
    b.publish(&topic(B, "telemetry"), telemetry(2)).await?;
    wait_for(
        "B's second sample stored",
        Duration::from_secs(20),
        || async { (api.telemetry_seqs(B).await.contains(&2)).then_some(()) },
    )
    .await?;
    assert_eq!(
        api.telemetry_seqs(B).await,
        [1, 2],
        "nothing forged stored for B"
    );
    let reported = api.device(B).await.expect("B known");
    assert!(
        !reported.to_string().contains(&FORGED_SETPOINT.to_string()),
        "B's shadow shows the forged report: {reported}"
    );

    // B's password is rotated: its live connection closes, the old password is refused,
    // the new one works.
    let (status, rotated) = api.post_empty(&format!("/devices/{B}/credentials")).await?;
    assert_eq!(status, 200, "{rotated}");
    let new_pw = rotated["mqtt_password"]
        .as_str()
        .expect("password")
        .to_owned();
    let new_pw = new_pw.as_str();
    wait_for(
        "B's old connection closed",
        Duration::from_secs(10),
        || async { (b.disconnects() > 0).then_some(()) },
    )
    .await?;
    assert_eq!(
        connect_answer_plain("plant-b", port, as_dev(B, pw_b)).await?,
        ConnectReturnCode::NotAuthorized
    );
    assert_eq!(
        connect_answer_plain("plant-b", port, as_dev(B, new_pw)).await?,
        ConnectReturnCode::Success
    );
    // Retired: refused, its data kept.
    let (status, _) = api.delete(&format!("/devices/{B}")).await?;
    assert_eq!(status, 204);
    assert_eq!(
        connect_answer_plain("plant-b", port, as_dev(B, new_pw)).await?,
        ConnectReturnCode::NotAuthorized
    );
    assert!(refused_for(api, "retired").await >= 1.0);
    assert_eq!(api.telemetry_seqs(B).await, [1, 2]);
    Ok(())
}
