//! Offline schedule: the operator loads a yearly schedule through the cloud API; the edge
//! acks it. The link to the broker is cut; a transition of the schedule passes while the
//! edge is offline and the simulator's register follows it all the same (the edge runs the
//! schedule from its own clock). When the link returns, the cloud receives the
//! `schedule_transition` event and the reported state shows the new value with source
//! `schedule`.

use std::time::Duration;

use chrono::{DateTime, Duration as Span, FixedOffset, Timelike, Utc};
use serde_json::{Value, json};
use shiki_e2e::{Cloud, Edge, EdgeOptions, PlcSim, TcpProxy, read_holding, temp_dir, wait_for};

const DEVICE: &str = "plant-offline-schedule";
/// Holding register 40002 (protocol address 1): chw_setpoint_c, raw = value × 10.
const CHW_SETPOINT_REGISTER: u16 = 1;
/// The transition lies at the first whole minute at least this far ahead of the PUT.
const LEAD: Span = Span::seconds(25);

/// A schedule in Asia/Tokyo (UTC+9, no DST) valid from today to tomorrow: 7.0 °C from the
/// start of validity, 9.5 °C from `at` (local wall-clock time) every day.
fn schedule_switching_at(at: DateTime<FixedOffset>) -> Value {
    let today = at.date_naive();
    let profile = json!([{ "time": at.format("%H:%M").to_string(),
                           "settings": { "chw_setpoint_c": 9.5 } }]);
    json!({
        "id": "e2e-offline",
        "timezone": "Asia/Tokyo",
        "valid_from": today.to_string(),
        "valid_to": (today + Span::days(1)).to_string(),
        "defaults": { "chw_setpoint_c": 7.0 },
        "profiles": { "day": profile },
        "seasons": [{ "name": "all-year", "from": "01-01", "to": "12-31",
                      "weekday": "day", "saturday": "day", "sunday": "day" }]
    })
}

fn ts(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_transition_reaches_the_plc_while_offline_and_its_event_arrives_after()
-> anyhow::Result<()> {
    let dir = temp_dir("offline-schedule")?;
    let sim = PlcSim::start(dir.path()).await?;
    let cloud = Cloud::start_embedded("cloud", &dir.path().join("cloud"), dir.path()).await?;
    let proxy = TcpProxy::start(cloud.mqtt.expect("embedded broker")).await?;
    let _edge = Edge::start(
        "edge",
        dir.path(),
        &EdgeOptions::new(DEVICE, format!("mqtt://{}", proxy.addr()), Some(sim.addr))
            .with_password(cloud.api.register_device(DEVICE).await?),
    )
    .await?;
    let api = &cloud.api;
    api.wait_device_ready(DEVICE, Duration::from_secs(30))
        .await?;

    // The next whole minute (Tokyo time) at least LEAD ahead, on today's date: close to
    // local midnight, first let the date turn (the profile's time must lie later today).
    let tokyo = FixedOffset::east_opt(9 * 3600).expect("UTC+9");
    let local_date = |t: DateTime<Utc>| t.with_timezone(&tokyo).date_naive();
    if local_date(Utc::now()) != local_date(Utc::now() + LEAD + Span::minutes(1)) {
        wait_for(
            "the local date to turn",
            Duration::from_secs(120),
            || async {
                let now = Utc::now();
                (local_date(now) == local_date(now + LEAD + Span::minutes(1))).then_some(())
            },
        )
        .await?;
    }
    let ahead = (Utc::now() + LEAD).with_timezone(&tokyo);
    let at = ahead
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .expect("minute")
        + Span::minutes(1);
    let transition = at.with_timezone(&Utc);
    let (status, body) = api
        .put_schedule(DEVICE, Some("current"), &schedule_switching_at(at))
        .await?;
    assert!(matches!(status, 200 | 202), "PUT schedule: {status} {body}");
    let hash = body["schedule"]["current"]["hash"]
        .as_str()
        .expect("hash in the answer")
        .to_owned();
    api.wait_schedule_acked(DEVICE, "current", &hash, Duration::from_secs(20))
        .await?;
    wait_for(
        "the PLC register to hold 70 (7.0 °C, the schedule's value before the transition)",
        Duration::from_secs(20),
        || async {
            (read_holding(sim.addr, CHW_SETPOINT_REGISTER, 1)
                .await
                .ok()?
                == vec![70])
            .then_some(())
        },
    )
    .await?;
    anyhow::ensure!(
        Utc::now() + Span::seconds(3) < transition,
        "the schedule was acked too late to cut the link before its transition at {transition}"
    );

    proxy.cut();
    let until_transition = (transition - Utc::now()).to_std().unwrap_or_default();
    wait_for(
        "the PLC register to hold 95 (9.5 °C) while the link is cut",
        until_transition + Duration::from_secs(30),
        || async {
            (read_holding(sim.addr, CHW_SETPOINT_REGISTER, 1)
                .await
                .ok()?
                == vec![95])
            .then_some(())
        },
    )
    .await?;
    assert!(
        Utc::now() >= transition,
        "the register changed at the transition, not before"
    );
    // The link really is cut: the cloud has heard nothing from the edge since the
    // transition (no sample, no event, reported state unchanged).
    let samples = api.telemetry(DEVICE).await;
    let newest = samples.iter().filter_map(|s| ts(&s["ts"])).max();
    assert!(
        newest.is_some_and(|t| t < transition),
        "no telemetry taken after the transition reached the cloud during the cut ({newest:?})"
    );
    let events = api.events(DEVICE).await;
    assert!(
        !events.iter().any(|e| e["kind"] == "schedule_transition"),
        "no transition event during the cut: {events:?}"
    );
    let device = api.device(DEVICE).await.expect("device view");
    assert_ne!(device["reported"]["chw_setpoint_c"], json!(9.5), "{device}");

    proxy.restore();
    let event = wait_for(
        "the schedule_transition event in the cloud after the link returns",
        Duration::from_secs(60),
        || async {
            api.events(DEVICE).await.into_iter().find(|e| {
                e["kind"] == "schedule_transition"
                    && e["data"]["settings"]["chw_setpoint_c"] == json!(9.5)
            })
        },
    )
    .await?;
    assert_eq!(ts(&event["ts"]), Some(transition), "{event}");
    assert_eq!(
        event["data"]["schedule_id"],
        json!("e2e-offline"),
        "{event}"
    );
    assert_eq!(event["data"]["hash"], json!(hash), "{event}");
    let device = wait_for(
        "reported chw_setpoint_c 9.5 with source schedule",
        Duration::from_secs(30),
        || async {
            let d = api.device(DEVICE).await?;
            (d["reported"]["chw_setpoint_c"] == json!(9.5)
                && d["settings"]["chw_setpoint_c"]["source"] == "schedule")
                .then_some(d)
        },
    )
    .await?;
    assert_eq!(
        read_holding(sim.addr, CHW_SETPOINT_REGISTER, 1).await?,
        vec![95],
        "{device}"
    );
    Ok(())
}
