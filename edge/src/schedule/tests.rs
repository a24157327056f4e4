//! State-machine table tests (no actix) and one actor conversation with a test clock.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use shiki_proto::{
    AckResult, EventKind, PROTOCOL_VERSION, PointInfo, PointRole, ScheduleSet, ScheduleSlot,
    Severity, ValueKind,
};
use shiki_shared::clock::TestClock;
use shiki_shared::schedule::ScheduleDocument;
use tokio::sync::mpsc;

use super::*;
use crate::messages::{RecordEvent, ScheduleSettings};

mod clock;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("test instant")
}

/// Tokyo is UTC+9 all year: 13:07 local on 2027-06-01 (a Tuesday) is 04:07Z.
fn tokyo(local: &str) -> DateTime<Utc> {
    t(&format!("{local}+09:00"))
}

fn point(name: &str, kind: ValueKind, min: Option<f64>, max: Option<f64>) -> PointInfo {
    PointInfo {
        name: name.to_owned(),
        role: PointRole::Setting,
        kind,
        unit: None,
        writable: true,
        min,
        max,
        resolution: None,
        options: Vec::new(),
    }
}

fn catalog() -> Vec<PointInfo> {
    vec![
        point("run", ValueKind::Bool, None, None),
        point("chw_setpoint_c", ValueKind::Number, Some(4.0), Some(15.0)),
    ]
}

/// Weekdays 08:00 run + 7 °C, 13:00 8 °C, 20:00 stop; weekends off.
fn doc(id: &str, from: &str, to: &str, noon_setpoint: f64) -> Value {
    json!({
        "id": id, "timezone": "Asia/Tokyo", "valid_from": from, "valid_to": to,
        "defaults": {"run": false, "chw_setpoint_c": 7.0},
        "profiles": {
            "work": [
                {"time": "08:00", "settings": {"run": true, "chw_setpoint_c": 7.0}},
                {"time": "13:00", "settings": {"chw_setpoint_c": noon_setpoint}},
                {"time": "20:00", "settings": {"run": false}}
            ],
            "off": []
        },
        "seasons": [{"name": "all", "from": "01-01", "to": "12-31",
                     "weekday": "work", "saturday": "off", "sunday": "off"}]
    })
}

fn set_msg(slot: ScheduleSlot, document: Value) -> ScheduleSet {
    let parsed = ScheduleDocument::from_value(&document).expect("test document parses");
    ScheduleSet {
        v: PROTOCOL_VERSION,
        schedule_id: parsed.id.clone(),
        hash: parsed.hash(),
        slot,
        document,
    }
}

fn stored(document: Value) -> StoredSchedule {
    let parsed = ScheduleDocument::from_value(&document).expect("test document parses");
    StoredSchedule {
        id: parsed.id.clone(),
        hash: parsed.hash(),
        document: parsed.to_value(),
    }
}

fn y2027() -> Value {
    doc("tokyo-2027", "2027-01-01", "2027-12-31", 8.0)
}

fn running(now: DateTime<Utc>) -> ScheduleState {
    let pair = StoredSchedules {
        current: Some(stored(y2027())),
        next: None,
    };
    ScheduleState::restore(pair, Some(&catalog()), now).0
}

fn value(settings: &ScheduleSettings, key: &str) -> Value {
    settings.settings[key].value.clone()
}

fn kinds(fx: &Effects) -> Vec<EventKind> {
    fx.events.iter().map(|e| e.kind).collect()
}

#[test]
fn no_schedule_sends_empty_settings_at_start_up() {
    let (state, fx) = ScheduleState::restore(
        StoredSchedules::default(),
        None,
        tokyo("2027-06-01T13:07:00"),
    );
    let settings = fx.settings.expect("settings are always sent at start-up");
    assert_eq!(settings.schedule, None);
    assert!(settings.settings.is_empty());
    assert!(fx.events.is_empty() && fx.persist.is_none());
    assert_eq!(state.next_wakeup(tokyo("2027-06-01T13:07:00")), None);
}

#[test]
fn reboot_at_13_07_restores_the_13_00_settings() {
    let now = tokyo("2027-06-01T13:07:00");
    let pair = StoredSchedules {
        current: Some(stored(y2027())),
        next: None,
    };
    let (_, fx) = ScheduleState::restore(pair, Some(&catalog()), now);
    let s = fx.settings.expect("settings in force now");
    assert_eq!(
        s.schedule.as_ref().map(|a| a.id.as_str()),
        Some("tokyo-2027")
    );
    assert_eq!(value(&s, "chw_setpoint_c"), json!(8.0));
    assert_eq!(
        s.settings["chw_setpoint_c"].since,
        tokyo("2027-06-01T13:00:00")
    );
    assert_eq!(value(&s, "run"), json!(true));
    assert_eq!(s.settings["run"].since, tokyo("2027-06-01T08:00:00"));
    // No transition events for the past at start-up.
    assert!(fx.events.is_empty());
}

#[test]
fn next_change_is_the_next_write_touching_each_key() {
    // (now, key, expected next_change)
    let table = [
        ("2027-06-01T13:07:00", "run", Some("2027-06-01T20:00:00")),
        (
            "2027-06-01T13:07:00",
            "chw_setpoint_c",
            Some("2027-06-02T08:00:00"),
        ),
        // Friday evening: the weekend profile is empty, Monday 08:00 is next.
        ("2027-06-04T21:00:00", "run", Some("2027-06-07T08:00:00")),
        // Last working evening of validity: no write left, the value ends with validity.
        ("2027-12-31T21:00:00", "run", Some("2028-01-01T00:00:00")),
    ];
    for (now, key, expected) in table {
        let pair = StoredSchedules {
            current: Some(stored(y2027())),
            next: None,
        };
        let (_, fx) = ScheduleState::restore(pair, None, tokyo(now));
        let s = fx.settings.expect("settings at start-up");
        assert_eq!(
            s.settings[key].next_change,
            expected.map(tokyo),
            "{now} {key}"
        );
    }
}

#[test]
fn next_wakeup_is_the_next_transition_or_boundary() {
    let table = [
        ("2027-06-01T13:07:00", "2027-06-01T20:00:00"),
        ("2027-06-01T20:00:00", "2027-06-02T08:00:00"),
        ("2027-12-31T20:00:00", "2028-01-01T00:00:00"),
    ];
    for (now, expected) in table {
        let state = running(tokyo(now));
        assert_eq!(
            state.next_wakeup(tokyo(now)),
            Some(tokyo(expected)),
            "{now}"
        );
    }
}

#[test]
fn transitions_since_the_last_tick_become_events_in_order() {
    let mut state = running(tokyo("2027-06-01T07:59:00"));
    let fx = state.on_tick(tokyo("2027-06-01T13:30:00"));
    let transitions: Vec<&RecordEvent> = fx
        .events
        .iter()
        .filter(|e| e.kind == EventKind::ScheduleTransition)
        .collect();
    assert_eq!(transitions.len(), 2);
    assert_eq!(transitions[0].ts, tokyo("2027-06-01T08:00:00"));
    assert_eq!(
        transitions[0].data["settings"],
        json!({"run": true, "chw_setpoint_c": 7.0})
    );
    assert_eq!(transitions[1].ts, tokyo("2027-06-01T13:00:00"));
    assert_eq!(
        transitions[1].data["settings"],
        json!({"chw_setpoint_c": 8.0})
    );
    assert!(
        transitions[1].message.contains("chw_setpoint_c=8.0"),
        "{}",
        transitions[1].message
    );
    let s = fx.settings.expect("settings changed");
    assert_eq!(value(&s, "chw_setpoint_c"), json!(8.0));
    // Same instant again: nothing new, nothing resent.
    assert_eq!(
        state.on_tick(tokyo("2027-06-01T13:30:00")),
        Effects::default()
    );
    // A transition exactly at the tick instant counts once.
    let fx = state.on_tick(tokyo("2027-06-01T20:00:00"));
    assert_eq!(kinds(&fx), vec![EventKind::ScheduleTransition]);
    assert!(
        state
            .on_tick(tokyo("2027-06-01T20:00:01"))
            .events
            .is_empty()
    );
}

#[test]
fn a_long_pause_reports_the_latest_transitions_and_a_summary() {
    let mut state = running(tokyo("2027-01-01T00:00:00"));
    let fx = state.on_tick(tokyo("2027-12-31T23:00:00"));
    assert_eq!(fx.events.len(), MAX_TRANSITION_EVENTS + 1);
    assert_eq!(fx.events[0].severity, Severity::Warning);
    assert!(fx.events[0].message.contains("not reported one by one"));
    assert_eq!(
        fx.events.last().map(|e| e.ts),
        Some(tokyo("2027-12-31T20:00:00"))
    );
}

#[test]
fn accepts_a_valid_schedule_and_applies_it_now() {
    let now = tokyo("2027-06-01T13:07:00");
    let (mut state, _) = ScheduleState::restore(StoredSchedules::default(), None, now);
    let msg = set_msg(ScheduleSlot::Current, y2027());
    let fx = state.on_schedule_set(&msg, Some(&catalog()), now);
    let ack = fx.ack.clone().expect("ack");
    assert_eq!(
        (ack.result, ack.reason.as_deref()),
        (AckResult::Accepted, None)
    );
    assert_eq!(
        (ack.schedule_id.as_str(), ack.hash.as_str()),
        ("tokyo-2027", msg.hash.as_str())
    );
    let persisted = fx.persist.clone().expect("persisted");
    assert_eq!(persisted.current.map(|c| c.hash), Some(msg.hash.clone()));
    assert_eq!(kinds(&fx), vec![EventKind::ScheduleChanged]);
    assert_eq!(
        value(&fx.settings.expect("settings"), "chw_setpoint_c"),
        json!(8.0)
    );
    assert_eq!(state.active(now).map(|a| a.hash), Some(msg.hash.clone()));
    // The cloud retries until it sees the ack: acked again, nothing else.
    let again = state.on_schedule_set(&msg, Some(&catalog()), now);
    assert_eq!(again.ack.map(|a| a.result), Some(AckResult::Accepted));
    assert!(again.persist.is_none() && again.settings.is_none() && again.events.is_empty());
}

#[test]
fn refusals_list_every_problem_and_keep_the_old_schedule_running() {
    let now = tokyo("2027-06-01T13:07:00");
    let mut bad = doc("bad-2027", "2027-01-01", "2027-12-31", 30.0);
    bad["profiles"]["work"][2]["settings"] = json!({"fan": true});
    let mut wrong_hash = set_msg(
        ScheduleSlot::Current,
        doc("other", "2027-01-01", "2027-12-31", 9.0),
    );
    wrong_hash.hash = "00".repeat(32);
    let mut wrong_id = set_msg(
        ScheduleSlot::Current,
        doc("other", "2027-01-01", "2027-12-31", 9.0),
    );
    wrong_id.schedule_id = "someone-else".into();
    let table: Vec<(&str, ScheduleSet, Vec<&str>)> = vec![
        (
            "invalid settings",
            set_msg(ScheduleSlot::Current, bad),
            vec!["30 is above the maximum", "no setting `fan`"],
        ),
        ("hash mismatch", wrong_hash, vec!["hash mismatch"]),
        (
            "id mismatch",
            wrong_id,
            vec!["differs from the document's id"],
        ),
        (
            "not a schedule",
            ScheduleSet {
                document: json!({"id": "x"}),
                ..set_msg(ScheduleSlot::Current, y2027())
            },
            vec!["missing field"],
        ),
        (
            "validity over",
            set_msg(
                ScheduleSlot::Current,
                doc("old", "2026-01-01", "2026-12-31", 8.0),
            ),
            vec!["validity ended on 2026-12-31"],
        ),
        (
            "next never runs",
            set_msg(
                ScheduleSlot::Next,
                doc("short", "2027-01-01", "2027-06-30", 8.0),
            ),
            vec!["would never run"],
        ),
        (
            "unknown slot",
            set_msg(
                ScheduleSlot::Unknown,
                doc("other", "2027-01-01", "2027-12-31", 9.0),
            ),
            vec!["unknown slot"],
        ),
    ];
    for (case, msg, expected) in table {
        let mut state = running(now);
        let fx = state.on_schedule_set(&msg, Some(&catalog()), now);
        let ack = fx.ack.clone().expect("ack");
        assert_eq!(ack.result, AckResult::Rejected, "{case}");
        let reason = ack.reason.unwrap_or_default();
        for needle in expected {
            assert!(
                reason.contains(needle),
                "{case}: `{needle}` not in `{reason}`"
            );
        }
        assert!(fx.persist.is_none() && fx.settings.is_none(), "{case}");
        assert_eq!(fx.events.len(), 1, "{case}");
        assert_eq!(
            (fx.events[0].kind, fx.events[0].severity),
            (EventKind::ScheduleChanged, Severity::Warning)
        );
        assert_eq!(
            state.active(now).map(|a| a.id),
            Some("tokyo-2027".to_owned()),
            "{case}"
        );
    }
}

#[test]
fn next_schedule_takes_over_at_the_boundary_offline() {
    let now = tokyo("2027-12-01T00:00:00");
    let mut state = running(now);
    let next = set_msg(
        ScheduleSlot::Next,
        doc("tokyo-2028", "2028-01-01", "2028-12-31", 9.0),
    );
    let fx = state.on_schedule_set(&next, Some(&catalog()), now);
    assert_eq!(fx.ack.map(|a| a.result), Some(AckResult::Accepted));
    assert!(fx.persist.expect("persisted").next.is_some());
    assert_eq!(
        state.active(now).map(|a| a.id),
        Some("tokyo-2027".to_owned())
    );
    assert_eq!(
        state.next_wakeup(tokyo("2027-12-31T20:00:00")),
        Some(tokyo("2028-01-01T00:00:00"))
    );

    let fx = state.on_tick(tokyo("2027-12-31T23:59:59"));
    assert!(fx.persist.is_none());
    let fx = state.on_tick(tokyo("2028-01-01T00:00:00"));
    let switched = fx
        .events
        .iter()
        .find(|e| e.kind == EventKind::ScheduleChanged)
        .expect("switch event");
    assert!(
        switched
            .message
            .contains("from schedule tokyo-2027 to tokyo-2028"),
        "{}",
        switched.message
    );
    let pair = fx.persist.expect("switch persisted");
    assert_eq!(
        (pair.current.map(|c| c.id), pair.next),
        (Some("tokyo-2028".to_owned()), None)
    );
    // The defaults of the new year are a transition too.
    assert!(
        fx.events.iter().any(
            |e| e.kind == EventKind::ScheduleTransition && e.ts == tokyo("2028-01-01T00:00:00")
        )
    );
    let s = fx.settings.expect("settings of the new year");
    assert_eq!(s.schedule.map(|a| a.id), Some("tokyo-2028".to_owned()));
    // Monday 2028-01-03 13:00 runs the new year's 9 °C.
    let s = state
        .on_tick(tokyo("2028-01-03T13:00:00"))
        .settings
        .expect("settings");
    assert_eq!(value(&s, "chw_setpoint_c"), json!(9.0));
}

#[test]
fn a_next_schedule_without_a_current_one_runs_at_once() {
    let now = tokyo("2027-06-01T13:07:00");
    let (mut state, _) = ScheduleState::restore(StoredSchedules::default(), None, now);
    let fx = state.on_schedule_set(&set_msg(ScheduleSlot::Next, y2027()), None, now);
    assert_eq!(fx.ack.map(|a| a.result), Some(AckResult::Accepted));
    let pair = fx.persist.expect("persisted");
    assert_eq!(
        (pair.current.map(|c| c.id), pair.next),
        (Some("tokyo-2027".to_owned()), None)
    );
    assert_eq!(
        value(&fx.settings.expect("settings"), "chw_setpoint_c"),
        json!(8.0)
    );
}

#[test]
fn a_gateway_off_over_new_year_switches_when_it_boots() {
    let pair = StoredSchedules {
        current: Some(stored(y2027())),
        next: Some(stored(doc("tokyo-2028", "2028-01-01", "2028-12-31", 9.0))),
    };
    let (state, fx) = ScheduleState::restore(pair, Some(&catalog()), tokyo("2028-01-04T13:07:00"));
    assert_eq!(
        fx.persist.and_then(|p| p.current).map(|c| c.id),
        Some("tokyo-2028".to_owned())
    );
    assert_eq!(
        value(&fx.settings.expect("settings"), "chw_setpoint_c"),
        json!(9.0)
    );
    assert!(state.next().is_none());
}

#[test]
fn a_corrupt_stored_schedule_is_dropped_with_a_critical_event() {
    let mut broken = stored(y2027());
    broken.hash = "ff".repeat(32);
    let pair = StoredSchedules {
        current: Some(broken),
        next: None,
    };
    let (state, fx) = ScheduleState::restore(pair, None, tokyo("2027-06-01T13:07:00"));
    assert!(state.current().is_none());
    assert_eq!(fx.events[0].severity, Severity::Critical);
    assert_eq!(fx.persist, Some(StoredSchedules::default()));
    assert_eq!(fx.settings.map(|s| s.schedule), Some(None));
}

#[test]
fn a_stored_schedule_that_no_longer_fits_the_points_keeps_running() {
    let pair = StoredSchedules {
        current: Some(stored(y2027())),
        next: None,
    };
    let only_run = vec![point("run", ValueKind::Bool, None, None)];
    let (state, fx) = ScheduleState::restore(pair, Some(&only_run), tokyo("2027-06-01T13:07:00"));
    assert!(state.current().is_some());
    assert_eq!(fx.events[0].severity, Severity::Warning);
    assert!(fx.settings.expect("settings").schedule.is_some());
}

#[test]
fn dst_days_in_berlin_follow_the_model_policy() {
    // 02:30 every day: on 2027-03-28 it does not exist (fires at 03:00 CEST = 01:00Z); on
    // 2027-10-31 it occurs twice (fires once, at the first, 02:30 CEST = 00:30Z).
    let berlin = json!({
        "id": "berlin-2027", "timezone": "Europe/Berlin",
        "valid_from": "2027-01-01", "valid_to": "2027-12-31",
        "defaults": {"run": false},
        "profiles": {"night": [{"time": "02:30", "settings": {"run": true}},
                               {"time": "12:00", "settings": {"run": false}}]},
        "seasons": [{"name": "all", "from": "01-01", "to": "12-31",
                     "weekday": "night", "saturday": "night", "sunday": "night"}]
    });
    let pair = || StoredSchedules {
        current: Some(stored(berlin.clone())),
        next: None,
    };
    let (mut state, _) = ScheduleState::restore(pair(), None, t("2027-03-28T00:00:00Z"));
    assert_eq!(
        state.next_wakeup(t("2027-03-28T00:00:00Z")),
        Some(t("2027-03-28T01:00:00Z"))
    );
    let fx = state.on_tick(t("2027-03-28T01:00:00Z"));
    assert_eq!(fx.events.len(), 1);
    assert_eq!(fx.events[0].data["local"], json!("2027-03-28T03:00:00"));

    let (mut state, _) = ScheduleState::restore(pair(), None, t("2027-10-30T23:00:00Z"));
    assert_eq!(
        state.next_wakeup(t("2027-10-30T23:00:00Z")),
        Some(t("2027-10-31T00:30:00Z"))
    );
    assert_eq!(state.on_tick(t("2027-10-31T00:30:00Z")).events.len(), 1);
    // The second 02:30 (CET, 01:30Z) does not fire again.
    assert!(state.on_tick(t("2027-10-31T01:45:00Z")).events.is_empty());
    assert_eq!(
        state.next_wakeup(t("2027-10-31T01:45:00Z")),
        Some(t("2027-10-31T11:00:00Z"))
    );
}

// --- actor conversation ---------------------------------------------------------------

#[derive(Debug)]
struct Collect<M>(mpsc::UnboundedSender<M>);

impl<M: Unpin + 'static> Actor for Collect<M> {
    type Context = Context<Self>;
}

impl<M: Message<Result = ()> + Send + Unpin + 'static> Handler<M> for Collect<M> {
    type Result = ();
    fn handle(&mut self, msg: M, _: &mut Context<Self>) {
        let _ = self.0.send(msg);
    }
}

fn collector<M: Message<Result = ()> + Send + Unpin + 'static>()
-> (Recipient<M>, mpsc::UnboundedReceiver<M>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Collect(tx).start().recipient(), rx)
}

async fn recv<M>(rx: &mut mpsc::UnboundedReceiver<M>) -> M {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("message within 5 s")
        .expect("channel open")
}

#[actix::test]
async fn actor_applies_transitions_as_the_clock_moves_and_acks_pushes() {
    let clock = TestClock::at(tokyo("2027-06-01T07:59:00"));
    let store = Arc::new(MemoryScheduleStore::new(StoredSchedules {
        current: Some(stored(y2027())),
        next: None,
    }));
    let (control, mut settings) = collector::<ScheduleSettings>();
    let (events, mut recorded) = collector::<RecordEvent>();
    let (acks, mut published) = collector::<PublishScheduleAck>();
    let config = ScheduleConfig {
        catalog: Some(catalog()),
        ..ScheduleConfig::default()
    };
    let addr = ScheduleActor::new(
        config,
        clock.shared(),
        store.clone(),
        SchedulePeers {
            control,
            events,
            acks,
        },
    )
    .start();

    let at_start = recv(&mut settings).await;
    assert_eq!(value(&at_start, "run"), json!(false));

    clock.set(tokyo("2027-06-01T08:00:05"));
    addr.send(Tick).await.expect("actor alive");
    let after = recv(&mut settings).await;
    assert_eq!(value(&after, "run"), json!(true));
    assert_eq!(after.settings["run"].since, tokyo("2027-06-01T08:00:00"));
    assert_eq!(
        recv(&mut recorded).await.kind,
        EventKind::ScheduleTransition
    );

    // A refused push: acked as rejected, the schedule keeps running.
    let mut bad = set_msg(ScheduleSlot::Current, y2027());
    bad.hash = "ab".repeat(32);
    addr.send(ScheduleSetReceived(bad))
        .await
        .expect("actor alive");
    let ack = recv(&mut published).await.0;
    assert_eq!(ack.result, AckResult::Rejected);
    assert_eq!(recv(&mut recorded).await.severity, Severity::Warning);

    // A push the store cannot save is refused and changes nothing.
    store.fail_saves(Some("disk full"));
    let next = set_msg(
        ScheduleSlot::Current,
        doc("tokyo-2027b", "2027-01-01", "2027-12-31", 9.0),
    );
    addr.send(ScheduleSetReceived(next.clone()))
        .await
        .expect("actor alive");
    let ack = recv(&mut published).await.0;
    assert_eq!(ack.result, AckResult::Rejected);
    assert!(ack.reason.unwrap_or_default().contains("disk full"));
    assert_eq!(
        store.snapshot().current.map(|c| c.id),
        Some("tokyo-2027".to_owned())
    );

    // Saved: acked, stored, and the new setpoint reaches Control at once.
    store.fail_saves(None);
    recv(&mut recorded).await; // the critical event of the refusal above
    clock.set(tokyo("2027-06-01T13:30:00"));
    addr.send(ScheduleSetReceived(next))
        .await
        .expect("actor alive");
    assert_eq!(recv(&mut published).await.0.result, AckResult::Accepted);
    assert_eq!(
        store.snapshot().current.map(|c| c.id),
        Some("tokyo-2027b".to_owned())
    );
    let s = recv(&mut settings).await;
    assert_eq!(value(&s, "chw_setpoint_c"), json!(9.0));
    assert_eq!(s.schedule.map(|a| a.id), Some("tokyo-2027b".to_owned()));
}
