//! Table tests for the per-device sync, the yearly cron and the New Year check, and one
//! actor conversation.

use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use shiki_proto::{
    AckResult, ActiveSchedule, PROTOCOL_VERSION, PointInfo, PointRole, ScheduleAck, ScheduleSlot,
    Severity, ValueKind,
};
use shiki_shared::clock::{Clock, TestClock};
use tokio::sync::mpsc;

use super::*;
use crate::test_support::collector;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("test instant")
}

fn tokyo(local: &str) -> DateTime<Utc> {
    t(&format!("{local}+09:00"))
}

fn catalog() -> Vec<PointInfo> {
    let point = |name: &str, kind, min, max| PointInfo {
        name: name.to_owned(),
        role: PointRole::Setting,
        kind,
        unit: None,
        writable: true,
        min,
        max,
        resolution: None,
        options: Vec::new(),
    };
    vec![
        point("run", ValueKind::Bool, None, None),
        point("chw_setpoint_c", ValueKind::Number, Some(4.0), Some(15.0)),
    ]
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

fn sync() -> ScheduleSync {
    ScheduleSync::new(
        "sapporo-01",
        SyncConfig::default(),
        DeviceSchedules::default(),
    )
}

fn put(
    s: &mut ScheduleSync,
    choice: SlotChoice,
    d: Value,
    now: DateTime<Utc>,
    online: bool,
) -> SyncEffects {
    s.set(choice, &d, "operator:alice", Some(&catalog()), now, online)
        .expect("valid schedule accepted")
}

/// Puts `d` into the slot its validity chooses, with the device online.
fn put_auto(s: &mut ScheduleSync, d: Value, now: DateTime<Utc>) -> SyncEffects {
    put(s, SlotChoice::Auto, d, now, true)
}

fn ack(
    s: &ScheduleSync,
    slot: ScheduleSlot,
    result: AckResult,
    reason: Option<&str>,
) -> ScheduleAck {
    let held = match slot {
        ScheduleSlot::Next => s.next(),
        _ => s.current(),
    }
    .expect("slot holds a schedule");
    ScheduleAck {
        v: PROTOCOL_VERSION,
        schedule_id: held.schedule.id.clone(),
        hash: held.schedule.hash.clone(),
        result,
        reason: reason.map(str::to_owned),
        ts: t("2027-06-01T00:00:00Z"),
    }
}

fn pending(s: Option<&SlotSync>) -> (u32, DateTime<Utc>) {
    match s.map(|s| &s.status) {
        Some(SyncStatus::Pending {
            attempts,
            next_retry,
        }) => (*attempts, *next_retry),
        other => panic!("expected pending, got {other:?}"),
    }
}

#[test]
fn a_valid_put_is_stored_recorded_and_pushed() {
    let now = tokyo("2027-06-01T10:00:00");
    let mut s = sync();
    let fx = put_auto(&mut s, doc("sapporo-2027", 2027), now);
    assert_eq!(fx.slot, Some(ScheduleSlot::Current));
    assert_eq!(fx.publish.len(), 1);
    let set = &fx.publish[0];
    assert_eq!(
        (set.schedule_id.as_str(), set.slot),
        ("sapporo-2027", ScheduleSlot::Current)
    );
    let stored = &s.current().expect("current").schedule;
    assert_eq!(set.hash, stored.hash);
    assert_eq!(stored.hash.len(), 64);
    assert_eq!(
        (stored.start, stored.end),
        (tokyo("2027-01-01T00:00:00"), tokyo("2028-01-01T00:00:00"))
    );
    assert_eq!(pending(s.current()), (1, now + TimeDelta::minutes(1)));
    assert_eq!(fx.history.len(), 1);
    assert_eq!(
        (fx.history[0].actor.as_str(), fx.history[0].key.as_str()),
        ("operator:alice", "schedule.current")
    );
    assert_eq!(fx.history[0].old, Value::Null);
    assert!(fx.persist.is_some());
    let view = serde_json::to_value(ScheduleView::from(&s)).expect("view serialises");
    assert_eq!(view["current"]["status"]["state"], json!("pending"));
    assert_eq!(view["current"]["valid_to"], json!("2027-12-31"));
    assert_eq!(view["next"], Value::Null);
}

#[test]
fn invalid_puts_are_refused_with_every_problem_and_change_nothing() {
    let now = tokyo("2027-06-01T10:00:00");
    let mut bad = doc("bad", 2027);
    bad["profiles"]["work"][0] = json!({"time": "25:00", "settings": {"fan": true}});
    bad["seasons"][0]["sunday"] = json!("nope");
    let mut s = sync();
    match s.set(
        SlotChoice::Auto,
        &bad,
        "operator:alice",
        Some(&catalog()),
        now,
        true,
    ) {
        Err(SetError::Invalid { problems }) => {
            let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
            for needle in [
                "profiles.work[0].time",
                "profiles.work[0].settings.fan",
                "seasons[0].sunday",
            ] {
                assert!(
                    paths.iter().any(|p| p.contains(needle)),
                    "{needle} not in {paths:?}"
                );
            }
        }
        other => panic!("expected 422, got {other:?}"),
    }
    // A wrong shape is a problem with its location, like the semantic ones.
    let mut wrong = doc("shape", 2027);
    wrong["profiles"]["work"][0]["time"] = json!(730);
    match s.set(SlotChoice::Auto, &wrong, "op", None, now, true) {
        Err(SetError::Invalid { problems }) => {
            assert_eq!(problems.len(), 1);
            assert_eq!(problems[0].path, "profiles.work[0].time", "{problems:?}");
            assert_eq!(
                problems[0].kind,
                shiki_shared::schedule::ProblemKind::Structure
            );
        }
        other => panic!("expected 422, got {other:?}"),
    }
    match s.set(SlotChoice::Auto, &json!({"id": 1}), "op", None, now, true) {
        Err(SetError::Invalid { problems }) => assert_eq!(problems[0].path, "id"),
        other => panic!("expected 422, got {other:?}"),
    }
    match s.set(SlotChoice::Auto, &doc("old", 2026), "op", None, now, true) {
        Err(SetError::Invalid { problems }) => {
            assert!(problems[0].message.contains("validity ended"))
        }
        other => panic!("expected 422, got {other:?}"),
    }
    assert!(s.current().is_none());
}

#[test]
fn the_slot_follows_the_validity_unless_asked() {
    let now = tokyo("2027-11-20T10:00:00");
    // (already running, put, choice, expected slot or 422)
    let table: Vec<(Option<i32>, i32, SlotChoice, Option<ScheduleSlot>)> = vec![
        (None, 2027, SlotChoice::Auto, Some(ScheduleSlot::Current)),
        (None, 2028, SlotChoice::Auto, Some(ScheduleSlot::Current)),
        (None, 2028, SlotChoice::Next, Some(ScheduleSlot::Current)),
        (Some(2027), 2028, SlotChoice::Auto, Some(ScheduleSlot::Next)),
        (
            Some(2027),
            2027,
            SlotChoice::Auto,
            Some(ScheduleSlot::Current),
        ),
        (
            Some(2027),
            2028,
            SlotChoice::Current,
            Some(ScheduleSlot::Current),
        ),
        (Some(2027), 2027, SlotChoice::Next, None),
    ];
    for (running, year, choice, expected) in table {
        let mut s = sync();
        if let Some(y) = running {
            put_auto(&mut s, doc(&format!("run-{y}"), y), now);
        }
        let got = s
            .set(
                choice,
                &doc(&format!("new-{year}"), year),
                "op",
                None,
                now,
                true,
            )
            .ok()
            .and_then(|fx| fx.slot);
        assert_eq!(got, expected, "{running:?} {year} {choice:?}");
    }
}

#[test]
fn acks_are_matched_by_hash() {
    let now = tokyo("2027-06-01T10:00:00");
    let mut s = sync();
    put_auto(&mut s, doc("sapporo-2027", 2027), now);
    // An ack for another (older) hash leaves the slot pending.
    let mut stale = ack(&s, ScheduleSlot::Current, AckResult::Accepted, None);
    stale.hash = "00".repeat(32);
    assert_eq!(s.on_ack(&stale, now), SyncEffects::default());
    assert_eq!(pending(s.current()).0, 1);

    let fx = s.on_ack(
        &ack(&s, ScheduleSlot::Current, AckResult::Accepted, None),
        now,
    );
    let hash = s.current().expect("current").schedule.hash.clone();
    assert_eq!(
        s.current().map(|c| &c.status),
        Some(&SyncStatus::Acked { hash, at: now })
    );
    assert_eq!(fx.history[0].actor, "device");
    assert!(fx.persist.is_some() && fx.alerts.is_empty());
    // A duplicate ack changes nothing; acked slots are not pushed again.
    assert_eq!(
        s.on_ack(
            &ack(&s, ScheduleSlot::Current, AckResult::Accepted, None),
            now
        ),
        SyncEffects::default()
    );
    assert!(
        s.on_tick(now + TimeDelta::hours(2), true)
            .publish
            .is_empty()
    );
}

#[test]
fn a_refusal_fails_the_slot_alerts_once_and_stops_retrying() {
    let now = tokyo("2027-06-01T10:00:00");
    let mut s = sync();
    put_auto(&mut s, doc("sapporo-2027", 2027), now);
    let refusal = ack(
        &s,
        ScheduleSlot::Current,
        AckResult::Rejected,
        Some("the device has no setting `chw_setpoint_c`"),
    );
    let fx = s.on_ack(&refusal, now);
    assert_eq!(fx.alerts.len(), 1);
    assert_eq!(
        (fx.alerts[0].kind, fx.alerts[0].severity),
        (AlertKind::Refused, Severity::Critical)
    );
    assert!(fx.alerts[0].message.contains("no setting `chw_setpoint_c`"));
    assert!(
        matches!(s.current().map(|c| &c.status), Some(SyncStatus::Failed { reason, .. }) if reason.contains("chw"))
    );
    assert!(s.on_ack(&refusal, now).alerts.is_empty());
    assert!(
        s.on_tick(now + TimeDelta::hours(5), true)
            .publish
            .is_empty()
    );
    assert!(s.on_connect(now + TimeDelta::hours(5)).publish.is_empty());
}

#[test]
fn retries_back_off_to_one_hour_and_alert_after_eight_pushes() {
    let start = tokyo("2027-06-01T10:00:00");
    let mut s = sync();
    put_auto(&mut s, doc("sapporo-2027", 2027), start);
    // (attempts after the push, minutes until the next retry)
    let table = [
        (2, 2),
        (3, 4),
        (4, 8),
        (5, 16),
        (6, 32),
        (7, 60),
        (8, 60),
        (9, 60),
    ];
    let (_, mut due) = pending(s.current());
    assert!(
        s.on_tick(due - TimeDelta::seconds(1), true)
            .publish
            .is_empty()
    );
    for (attempts, wait) in table {
        let fx = s.on_tick(due, true);
        assert_eq!(fx.publish.len(), 1, "push {attempts}");
        assert_eq!(
            fx.alerts.len(),
            usize::from(attempts == 8),
            "push {attempts}"
        );
        let (a, next) = pending(s.current());
        assert_eq!((a, next - due), (attempts, TimeDelta::minutes(wait)));
        due = next;
    }
}

#[test]
fn nothing_is_pushed_while_offline_and_everything_pending_on_connect() {
    let now = tokyo("2027-06-01T10:00:00");
    let mut s = sync();
    let fx = put(
        &mut s,
        SlotChoice::Auto,
        doc("sapporo-2027", 2027),
        now,
        false,
    );
    assert!(fx.publish.is_empty());
    assert_eq!(pending(s.current()), (0, now));
    assert_eq!(s.next_wakeup(false), None);
    assert!(
        s.on_tick(now + TimeDelta::hours(3), false)
            .publish
            .is_empty()
    );
    let fx = s.on_connect(now + TimeDelta::hours(3));
    assert_eq!(fx.publish.len(), 1);
    assert_eq!(pending(s.current()).0, 1);
}

#[test]
fn next_becomes_current_at_the_boundary() {
    let mut s = sync();
    put_auto(
        &mut s,
        doc("sapporo-2027", 2027),
        tokyo("2027-12-01T00:00:00"),
    );
    put_auto(
        &mut s,
        doc("sapporo-2028", 2028),
        tokyo("2027-12-01T00:00:00"),
    );
    assert_eq!(s.next_wakeup(false), Some(tokyo("2028-01-01T00:00:00")));
    assert!(
        s.on_tick(tokyo("2027-12-31T23:59:59"), false)
            .history
            .is_empty()
    );
    let fx = s.on_tick(tokyo("2028-01-01T00:00:00"), false);
    assert_eq!(fx.history[0].actor, "schedule");
    assert_eq!(
        s.current().map(|c| c.schedule.id.as_str()),
        Some("sapporo-2028")
    );
    assert!(s.next().is_none());
}

#[test]
fn a_device_running_another_schedule_gets_it_pushed_again() {
    let now = tokyo("2027-06-01T10:00:00");
    let mut s = sync();
    put_auto(&mut s, doc("sapporo-2027", 2027), now);
    s.on_ack(
        &ack(&s, ScheduleSlot::Current, AckResult::Accepted, None),
        now,
    );
    let hash = s.current().expect("current").schedule.hash.clone();
    let same = ActiveSchedule {
        id: "sapporo-2027".into(),
        hash,
    };
    assert_eq!(
        s.on_reported(Some(&same), now, true),
        SyncEffects::default()
    );
    let fx = s.on_reported(None, now, true);
    assert_eq!(fx.publish.len(), 1);
    assert_eq!(pending(s.current()).0, 1);
}

#[test]
fn the_yearly_cron_fires_on_1_december_in_tokyo() {
    let cron = parse_cron(DEFAULT_PUSH_CRON).expect("default cron parses");
    let tz = chrono_tz::Asia::Tokyo;
    let table = [
        ("2027-06-01T00:00:00Z", "2027-11-30T15:00:00Z"),
        ("2027-11-30T15:00:00Z", "2028-11-30T15:00:00Z"),
        ("2027-12-15T00:00:00Z", "2028-11-30T15:00:00Z"),
    ];
    for (after, expected) in table {
        assert_eq!(next_fire(&cron, tz, t(after)), Some(t(expected)), "{after}");
    }
    let five = parse_cron("0 6 15 11 *").expect("5-field crontab accepted");
    assert_eq!(
        next_fire(&five, tz, t("2027-01-01T00:00:00Z")),
        Some(tokyo("2027-11-15T06:00:00"))
    );
    let err = FleetScheduler::new(
        &FleetConfig {
            push_cron: "every december".into(),
            ..FleetConfig::default()
        },
        t("2027-01-01T00:00:00Z"),
    )
    .expect_err("bad cron refused");
    assert!(err.to_string().contains("schedule.push_cron"));
    assert_eq!(
        next_new_year(tz, t("2027-12-31T14:59:59Z")),
        Some(t("2027-12-31T15:00:00Z"))
    );
}

fn fleet() -> Vec<ScheduleSync> {
    let then = tokyo("2027-11-20T10:00:00");
    let mut pending_next = ScheduleSync::new(
        "pending-next",
        SyncConfig::default(),
        DeviceSchedules::default(),
    );
    put_auto(&mut pending_next, doc("a-2027", 2027), then);
    put(
        &mut pending_next,
        SlotChoice::Auto,
        doc("a-2028", 2028),
        then,
        false,
    );
    let mut no_next =
        ScheduleSync::new("no-next", SyncConfig::default(), DeviceSchedules::default());
    put_auto(&mut no_next, doc("b-2027", 2027), then);
    let mut ready = ScheduleSync::new("ready", SyncConfig::default(), DeviceSchedules::default());
    put_auto(&mut ready, doc("c-2027", 2027), then);
    put_auto(&mut ready, doc("c-2028", 2028), then);
    let acked = ack(&ready, ScheduleSlot::Next, AckResult::Accepted, None);
    ready.on_ack(&acked, then);
    vec![pending_next, no_next, ready]
}

#[test]
fn the_yearly_job_pushes_missing_schedules_and_notes_devices_without_one() {
    let tz = chrono_tz::Asia::Tokyo;
    let mut scheduler =
        FleetScheduler::new(&FleetConfig::default(), tokyo("2027-11-20T10:00:00")).expect("config");
    assert_eq!(scheduler.next_wakeup(), Some(tokyo("2027-12-01T00:00:00")));
    assert!(scheduler.due(tokyo("2027-11-30T23:59:59")).is_empty());
    let jobs = scheduler.due(tokyo("2027-12-01T00:00:05"));
    assert_eq!(
        jobs,
        vec![FleetJob::YearlyPush {
            at: tokyo("2027-12-01T00:00:00"),
            year: 2028
        }]
    );
    assert!(
        scheduler.due(tokyo("2027-12-01T00:10:00")).is_empty(),
        "once only"
    );

    let devices = fleet();
    let now = tokyo("2027-12-01T00:00:05");
    let p = plan(&jobs, &devices, tz, now);
    assert_eq!(
        p.pushes,
        vec![("pending-next".to_owned(), ScheduleSlot::Next)]
    );
    assert_eq!(p.alerts.len(), 1);
    assert_eq!(
        (p.alerts[0].device_id.as_str(), p.alerts[0].kind),
        ("no-next", AlertKind::MissingNextYear)
    );

    // The device actor carries the job out itself.
    let mut device = devices.into_iter().next().expect("first device");
    let fx = device.on_fleet_job(&jobs[0], tz, now, true);
    assert_eq!(fx.publish.len(), 1);
    assert_eq!(fx.publish[0].slot, ScheduleSlot::Next);
}

#[test]
fn a_device_entering_the_new_year_without_its_schedule_raises_an_alert() {
    let tz = chrono_tz::Asia::Tokyo;
    let mut scheduler =
        FleetScheduler::new(&FleetConfig::default(), tokyo("2027-12-31T23:00:00")).expect("config");
    let jobs = scheduler.due(tokyo("2028-01-01T00:00:30"));
    assert_eq!(
        jobs,
        vec![FleetJob::NewYearCheck {
            at: tokyo("2028-01-01T00:00:00"),
            year: 2028
        }]
    );
    let devices = fleet();
    let p = plan(&jobs, &devices, tz, tokyo("2028-01-01T00:00:30"));
    let alerted: Vec<&str> = p.alerts.iter().map(|a| a.device_id.as_str()).collect();
    assert_eq!(alerted, vec!["pending-next", "no-next"]);
    assert!(p.alerts.iter().all(
        |a| a.kind == AlertKind::EnteredYearWithoutSchedule && a.severity == Severity::Critical
    ));
    assert!(
        p.alerts[1]
            .message
            .starts_with("device no-next entered 2028 without its schedule"),
        "{}",
        p.alerts[1].message
    );
    assert!(
        p.alerts[0]
            .message
            .contains("a-2028 is not confirmed by the device (not pushed yet: device offline)"),
        "{}",
        p.alerts[0].message
    );
    assert!(p.pushes.is_empty());
}

#[test]
fn each_device_enters_the_new_year_in_its_own_time_zone() {
    // The fleet runs on Tokyo time; this site is in Berlin. At Tokyo's midnight Berlin is
    // still in 2027, but the question is whether Berlin's 2028 is covered.
    let berlin = |id: &str, year: i32| {
        let mut d = doc(id, year);
        d["timezone"] = json!("Europe/Berlin");
        d
    };
    let then = t("2027-11-20T10:00:00Z");
    let mut only_2027 = ScheduleSync::new(
        "berlin-01",
        SyncConfig::default(),
        DeviceSchedules::default(),
    );
    put_auto(&mut only_2027, berlin("berlin-2027", 2027), then);
    let acked = ack(&only_2027, ScheduleSlot::Current, AckResult::Accepted, None);
    only_2027.on_ack(&acked, then);
    let job = FleetJob::NewYearCheck {
        at: tokyo("2028-01-01T00:00:00"),
        year: 2028,
    };
    let (_, alerts) =
        only_2027.fleet_actions(&job, chrono_tz::Asia::Tokyo, tokyo("2028-01-01T00:00:00"));
    assert_eq!(alerts.len(), 1, "Berlin's 2028 has no schedule");

    let mut both = only_2027.clone();
    put_auto(&mut both, berlin("berlin-2028", 2028), then);
    let acked = ack(&both, ScheduleSlot::Next, AckResult::Accepted, None);
    both.on_ack(&acked, then);
    let (_, alerts) =
        both.fleet_actions(&job, chrono_tz::Asia::Tokyo, tokyo("2028-01-01T00:00:00"));
    assert!(alerts.is_empty(), "{alerts:?}");
}

// --- actor conversation ---------------------------------------------------------------

async fn recv<M>(rx: &mut mpsc::UnboundedReceiver<M>) -> M {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("message within 5 s")
        .expect("channel open")
}

#[actix::test]
async fn fleet_actor_announces_the_yearly_push_when_the_clock_reaches_it() {
    let clock = TestClock::at(tokyo("2027-11-30T23:59:00"));
    let scheduler = FleetScheduler::new(&FleetConfig::default(), clock.now()).expect("config");
    let (jobs, mut due) = collector::<FleetJobsDue>();
    let addr = FleetScheduleActor::new(scheduler, clock.shared(), jobs).start();
    addr.send(ScheduleTick).await.expect("actor alive");
    assert!(due.try_recv().is_err(), "nothing due before 1 December");
    clock.set(tokyo("2027-12-01T00:00:01"));
    addr.send(ScheduleTick).await.expect("actor alive");
    let msg = recv(&mut due).await;
    assert_eq!(
        msg.jobs,
        vec![FleetJob::YearlyPush {
            at: tokyo("2027-12-01T00:00:00"),
            year: 2028
        }]
    );
    assert_eq!(msg.last_run, tokyo("2027-12-01T00:00:01"));
}
