//! The schedule under a stepping clock (issue #21): forwards past transitions, backwards
//! across one, to 1970 (an RTC reset after a power cut) and back (NTP), to 2100 and back.
//! The behaviour is documented in `state.rs` ("When the clock steps") and docs/operations.md §2.

use super::*;
use chrono::TimeDelta;

const EPOCH: DateTime<Utc> = DateTime::<Utc>::UNIX_EPOCH;

fn transitions_of(fx: &Effects) -> Vec<&RecordEvent> {
    fx.events
        .iter()
        .filter(|e| e.kind == EventKind::ScheduleTransition)
        .collect()
}

fn clock_events(fx: &Effects) -> Vec<&RecordEvent> {
    fx.events
        .iter()
        .filter(|e| e.kind == EventKind::ClockStep)
        .collect()
}

#[test]
fn a_step_forward_past_transitions_applies_the_state_after_it_once_and_reports_each_late() {
    let mut state = running(tokyo("2027-06-01T07:59:00"));
    // NTP steps the clock from 07:59:30 to 13:30 (past 08:00 and 13:00).
    assert_eq!(
        state.on_tick(tokyo("2027-06-01T07:59:30")),
        Effects::default()
    );
    let fx = state.on_tick(tokyo("2027-06-01T13:30:00"));
    let s = fx
        .settings
        .clone()
        .expect("the settings in force after the step");
    assert_eq!(value(&s, "run"), json!(true));
    assert_eq!(
        value(&s, "chw_setpoint_c"),
        json!(8.0),
        "the latest write wins"
    );
    assert!(!s.held);
    // Both skipped transitions are reported at their own instants, marked late.
    let events = transitions_of(&fx);
    let at: Vec<_> = events.iter().map(|e| e.ts).collect();
    assert_eq!(
        at,
        vec![tokyo("2027-06-01T08:00:00"), tokyo("2027-06-01T13:00:00")]
    );
    for e in &events {
        assert_eq!(e.data["applied_at"], json!(tokyo("2027-06-01T13:30:00")));
        assert!(e.message.contains("after a clock step"), "{}", e.message);
    }
    // Nothing is applied or reported twice afterwards.
    assert_eq!(
        state.on_tick(tokyo("2027-06-01T13:30:05")),
        Effects::default()
    );
    // A transition reached on time is not late.
    let fx = state.on_tick(tokyo("2027-06-01T20:00:00"));
    let on_time = transitions_of(&fx);
    assert_eq!(on_time.len(), 1);
    assert!(on_time[0].data.get("applied_at").is_none());
}

#[test]
fn a_step_back_across_a_transition_applies_the_earlier_value_once_then_the_transition_again() {
    let mut state = running(tokyo("2027-06-01T13:05:00"));
    assert_eq!(
        state.on_tick(tokyo("2027-06-01T13:05:30")),
        Effects::default()
    );
    // NTP steps the clock back 10 minutes, across 13:00 (7 °C → 8 °C).
    let fx = state.on_tick(tokyo("2027-06-01T12:55:30"));
    let s = fx.settings.expect("the value in force at the earlier time");
    assert_eq!(value(&s, "chw_setpoint_c"), json!(7.0));
    assert_eq!(
        s.settings["chw_setpoint_c"].next_change,
        Some(tokyo("2027-06-01T13:00:00"))
    );
    assert!(fx.events.is_empty(), "no transition is reported going back");
    // Sent once: the minutes before 13:00 change nothing.
    assert_eq!(
        state.on_tick(tokyo("2027-06-01T12:59:00")),
        Effects::default()
    );
    assert_eq!(
        state.next_wakeup(tokyo("2027-06-01T12:59:00")),
        Some(tokyo("2027-06-01T13:00:00"))
    );
    // Passing 13:00 again applies and reports it again, once.
    let fx = state.on_tick(tokyo("2027-06-01T13:00:00"));
    assert_eq!(kinds(&fx), vec![EventKind::ScheduleTransition]);
    assert_eq!(
        value(&fx.settings.expect("13:00 again"), "chw_setpoint_c"),
        json!(8.0)
    );
    assert_eq!(
        state.on_tick(tokyo("2027-06-01T13:05:31")),
        Effects::default()
    );
}

#[test]
fn an_rtc_reset_to_1970_holds_the_settings_in_force_and_ntp_resumes_the_schedule() {
    let mut state = running(tokyo("2027-06-01T07:59:00"));
    let fx = state.on_tick(EPOCH);
    // Held: the last settings, marked held, nothing switched, stored or reported as passed.
    let s = fx.settings.clone().expect("the held settings, once");
    assert!(s.held);
    assert_eq!(
        s.schedule.as_ref().map(|a| a.id.as_str()),
        Some("tokyo-2027")
    );
    assert_eq!(value(&s, "run"), json!(false));
    // Carried over from the day before's 13:00 entry.
    assert_eq!(value(&s, "chw_setpoint_c"), json!(8.0));
    assert!(fx.persist.is_none());
    let warned = clock_events(&fx);
    assert_eq!(warned.len(), 1);
    assert_eq!(warned[0].severity, Severity::Warning);
    assert!(
        warned[0].message.contains("1970-01-01"),
        "{}",
        warned[0].message
    );
    assert!(transitions_of(&fx).is_empty());
    // The clock runs on in 1970: nothing more (one warning, settings sent once).
    assert_eq!(
        state.on_tick(EPOCH + TimeDelta::minutes(5)),
        Effects::default()
    );
    // NTP sets the clock to 13:30: the settings in force now, the transitions missed
    // since the last plausible evaluation (07:59) reported late, and the all-clear.
    let fx = state.on_tick(tokyo("2027-06-01T13:30:00"));
    let s = fx.settings.clone().expect("settings in force now");
    assert!(!s.held);
    assert_eq!(value(&s, "run"), json!(true));
    assert_eq!(value(&s, "chw_setpoint_c"), json!(8.0));
    let resumed = clock_events(&fx);
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].severity, Severity::Info);
    assert_eq!(transitions_of(&fx).len(), 2);
    assert!(
        transitions_of(&fx)
            .iter()
            .all(|e| e.data.get("applied_at").is_some())
    );
}

#[test]
fn a_start_up_at_1970_writes_nothing_until_the_clock_is_set() {
    let pair = StoredSchedules {
        current: Some(stored(y2027())),
        next: None,
    };
    let (mut state, fx) = ScheduleState::restore(pair, Some(&catalog()), EPOCH);
    let s = fx
        .settings
        .clone()
        .expect("settings are always sent at start-up");
    assert!(s.held, "held, so Control writes no defaults");
    assert!(s.settings.is_empty() && s.schedule.is_none());
    assert_eq!(clock_events(&fx).len(), 1);
    // The actor wakes up within max_sleep to look at the clock again.
    assert!(state.next_wakeup(EPOCH).is_some());
    // NTP: the settings in force now, as at a start-up: no past transitions.
    let fx = state.on_tick(tokyo("2027-06-01T13:07:00"));
    let s = fx.settings.clone().expect("settings in force");
    assert!(!s.held);
    assert_eq!(value(&s, "chw_setpoint_c"), json!(8.0));
    assert_eq!(
        s.settings["chw_setpoint_c"].since,
        tokyo("2027-06-01T13:00:00")
    );
    assert!(transitions_of(&fx).is_empty());
    assert_eq!(kinds(&fx), vec![EventKind::ClockStep]);
}

#[test]
fn a_schedule_installed_at_1970_reports_no_past_transitions_when_the_clock_is_set() {
    let (mut state, _) = ScheduleState::restore(StoredSchedules::default(), None, EPOCH);
    let fx = state.on_schedule_set(
        &set_msg(ScheduleSlot::Current, y2027()),
        Some(&catalog()),
        EPOCH,
    );
    assert_eq!(fx.ack.map(|a| a.result), Some(AckResult::Accepted));
    assert!(fx.settings.is_none_or(|s| s.held));
    let fx = state.on_tick(tokyo("2027-06-01T13:30:00"));
    assert!(
        transitions_of(&fx).is_empty(),
        "the schedule's past since 1970 is not reported: {:?}",
        fx.events.iter().map(|e| &e.message).collect::<Vec<_>>()
    );
    assert_eq!(value(&fx.settings.expect("settings"), "run"), json!(true));
}

#[test]
fn a_step_to_2100_and_back_keeps_the_current_schedule() {
    let now = tokyo("2027-06-01T13:07:00");
    let pair = StoredSchedules {
        current: Some(stored(y2027())),
        next: Some(stored(doc("tokyo-2028", "2028-01-01", "2028-12-31", 9.0))),
    };
    let (mut state, _) = ScheduleState::restore(pair, Some(&catalog()), now);
    let garbage = t("2106-02-07T06:28:15Z");
    let fx = state.on_tick(garbage);
    assert!(
        fx.persist.is_none(),
        "no switch to the next schedule on a garbage clock"
    );
    assert!(fx.settings.expect("held").held);
    let fx = state.on_tick(now + TimeDelta::minutes(1));
    assert!(fx.persist.is_none());
    assert_eq!(
        state.active(now).map(|a| a.id),
        Some("tokyo-2027".to_owned())
    );
    assert_eq!(
        state.next().map(|s| s.valid_to().to_string()),
        Some("2028-12-31".to_owned())
    );
    let s = fx.settings.expect("not held any more");
    assert_eq!(value(&s, "chw_setpoint_c"), json!(8.0));
}

#[actix::test]
async fn the_actor_holds_on_a_1970_clock_and_resumes_when_the_clock_is_set() {
    let clock = TestClock::at(tokyo("2027-06-01T07:59:00"));
    let store = Arc::new(MemoryScheduleStore::new(StoredSchedules {
        current: Some(stored(y2027())),
        next: None,
    }));
    let (control, mut settings) = collector::<ScheduleSettings>();
    let (events, mut recorded) = collector::<RecordEvent>();
    let (acks, _published) = collector::<PublishScheduleAck>();
    let addr = ScheduleActor::new(
        ScheduleConfig {
            catalog: Some(catalog()),
            ..ScheduleConfig::default()
        },
        clock.shared(),
        store,
        SchedulePeers {
            control,
            events,
            acks,
        },
    )
    .start();
    assert!(!recv(&mut settings).await.held);

    clock.set(EPOCH);
    addr.send(Tick).await.expect("actor alive");
    let held = recv(&mut settings).await;
    assert!(held.held);
    assert_eq!(value(&held, "run"), json!(false));
    assert_eq!(recv(&mut recorded).await.kind, EventKind::ClockStep);

    clock.set(tokyo("2027-06-01T08:00:30"));
    addr.send(Tick).await.expect("actor alive");
    let resumed = recv(&mut settings).await;
    assert!(!resumed.held);
    assert_eq!(value(&resumed, "run"), json!(true));
    assert_eq!(recv(&mut recorded).await.kind, EventKind::ClockStep);
    assert_eq!(
        recv(&mut recorded).await.kind,
        EventKind::ScheduleTransition
    );
}

#[test]
fn a_wrong_step_past_the_end_of_validity_and_back_undoes_the_switch() {
    let now = tokyo("2027-06-01T13:07:00");
    let pair = StoredSchedules {
        current: Some(stored(y2027())),
        next: Some(stored(doc("tokyo-2028", "2028-01-01", "2028-12-31", 9.0))),
    };
    let (mut state, _) = ScheduleState::restore(pair, Some(&catalog()), now);
    // A wrong NTP answer: 2029, a plausible time after both validities.
    let fx = state.on_tick(t("2029-03-01T00:00:00Z"));
    let switched = fx.persist.expect("the switch is stored");
    assert_eq!(
        switched.current.map(|c| c.id),
        Some("tokyo-2028".to_owned())
    );
    // Corrected a minute later: 2027 runs again, 2028 waits as next, stored so.
    let back = now + TimeDelta::minutes(1);
    let fx = state.on_tick(back);
    let pair = fx.persist.clone().expect("the switch back is stored");
    assert_eq!(
        (pair.current.map(|c| c.id), pair.next.map(|n| n.id)),
        (Some("tokyo-2027".to_owned()), Some("tokyo-2028".to_owned()))
    );
    let s = fx.settings.clone().expect("2027's settings again");
    assert_eq!(value(&s, "chw_setpoint_c"), json!(8.0));
    assert_eq!(s.schedule.map(|a| a.id), Some("tokyo-2027".to_owned()));
    let warning = fx
        .events
        .iter()
        .find(|e| e.kind == EventKind::ScheduleChanged)
        .expect("the switch back is reported");
    assert_eq!(warning.severity, Severity::Warning);
    assert!(
        warning.message.contains("switched back"),
        "{}",
        warning.message
    );
    // At the real boundary it switches again.
    let fx = state.on_tick(tokyo("2028-01-01T00:00:00"));
    assert_eq!(
        fx.persist.and_then(|p| p.current).map(|c| c.id),
        Some("tokyo-2028".to_owned())
    );
    // A step back across New Year is a step back like any other: 2027 runs again.
    let fx = state.on_tick(tokyo("2027-12-31T23:00:00"));
    assert_eq!(
        fx.persist.and_then(|p| p.current).map(|c| c.id),
        Some("tokyo-2027".to_owned())
    );
}
