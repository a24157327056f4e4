//! Conversations: Control ⇄ PlcLink ⇄ in-process simulator, with probes for reports and events.

use std::collections::BTreeMap;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use shiki_proto::{ActiveSchedule, EventKind, SettingSource};
use shiki_shared::clock::TestClock;
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedReceiver;

use super::*;
use crate::messages::{Override, ScheduledValue};
use crate::plc_link::PlcLink;
use crate::plc_sim::{PlcSim, SimOptions, default_map};
use crate::register_map::RegisterKind;
use crate::test_support::{fast_map, next_matching, probe};

fn t(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 1, h, m, 0)
        .single()
        .expect("valid time")
}

struct Rig {
    sim: PlcSim,
    control: Addr<Control>,
    reports: UnboundedReceiver<ControlReport>,
    events: UnboundedReceiver<RecordEvent>,
    now: TestClock,
}

async fn rig(plc_map: RegisterMap) -> Rig {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let options = SimOptions {
        tick: Duration::from_secs(3600),
        ..SimOptions::default()
    };
    let sim = PlcSim::start(listener, plc_map, options).expect("sim starts");
    let map = fast_map(sim.addr(), |_| {});
    let (events, events_rx) = probe::<RecordEvent>();
    let (reports, reports_rx) = probe::<ControlReport>();
    let now = TestClock::at(t(9, 0));
    let clock = now.shared();
    let mut config =
        ControlConfig::from_config_toml(include_str!("../../../deploy/edge.example.toml"))
            .expect("example [control]");
    config.expiry_check_interval = Duration::from_millis(50);
    let link = PlcLink::new(map.clone(), events.clone()).start();
    let control = Control::new(map, config, link.clone().recipient(), events, clock)
        .expect("valid control config")
        .report_to(reports)
        .start();
    link.do_send(crate::plc_link::Subscribe(control.clone().recipient()));
    Rig {
        sim,
        control,
        reports: reports_rx,
        events: events_rx,
        now,
    }
}

fn overrides(
    version: u64,
    key: &str,
    value: serde_json::Value,
    until: Option<DateTime<Utc>>,
) -> SetOverrides {
    SetOverrides {
        desired_version: version,
        overrides: BTreeMap::from([(
            key.to_owned(),
            Override {
                value,
                until,
                set_at: t(9, 0),
            },
        )]),
    }
}

#[actix::test]
async fn an_override_is_written_read_back_and_reported() {
    let mut r = rig(default_map()).await;
    r.control
        .do_send(overrides(7, "chw_setpoint_c", json!(8.5), None));
    let report = next_matching(&mut r.reports, |rep: &ControlReport| {
        rep.reported.get("chw_setpoint_c") == Some(&json!(8.5))
    })
    .await;
    assert_eq!(report.applied_version, Some(7));
    let status = &report.settings["chw_setpoint_c"];
    assert_eq!(status.source, SettingSource::Override);
    assert_eq!(status.detail, None);
    assert_eq!(report.settings["run"].source, SettingSource::Default);
    assert_eq!(r.sim.register(RegisterKind::Holding, 1), Some(85));
    let applied = next_matching(&mut r.events, |e: &RecordEvent| {
        e.kind == EventKind::SettingApplied
    })
    .await;
    assert_eq!(applied.message, "chw_setpoint_c set to 8.5 (override)");
    r.sim.stop().await;
}

#[actix::test]
async fn an_out_of_range_override_is_clamped_and_the_report_says_so() {
    let mut r = rig(default_map()).await;
    r.control
        .do_send(overrides(8, "chw_setpoint_c", json!(14.0), None));
    let report = next_matching(&mut r.reports, |rep: &ControlReport| {
        rep.reported.get("chw_setpoint_c") == Some(&json!(12.0))
    })
    .await;
    let status = &report.settings["chw_setpoint_c"];
    assert_eq!(status.source, SettingSource::Clamped);
    assert_eq!(status.detail.as_deref(), Some("clamped to 12.0"));
    assert_eq!(status.requested, Some(json!(14.0)));
    assert_eq!(r.sim.register(RegisterKind::Holding, 1), Some(120));
    r.sim.stop().await;
}

#[actix::test]
async fn a_value_the_plc_refuses_is_reported_refused_with_the_exception() {
    let mut plc = default_map().config().clone();
    for p in &mut plc.points {
        if p.name == "chw_setpoint_c" {
            p.max = Some(10.0);
        }
    }
    let mut r = rig(RegisterMap::new(plc).expect("valid")).await;
    r.control
        .do_send(overrides(9, "chw_setpoint_c", json!(11.0), None));
    let report = next_matching(&mut r.reports, |rep: &ControlReport| {
        rep.settings.get("chw_setpoint_c").map(|s| s.source) == Some(SettingSource::Refused)
    })
    .await;
    let status = &report.settings["chw_setpoint_c"];
    assert_eq!(
        status.detail.as_deref(),
        Some("PLC refused: exception 0x03 (illegal data value)")
    );
    assert_eq!(
        report.reported.get("chw_setpoint_c"),
        Some(&json!(7.0)),
        "PLC kept its value"
    );
    let err = next_matching(&mut r.events, |e: &RecordEvent| {
        e.kind == EventKind::ControlError
    })
    .await;
    assert!(err.message.contains("PLC refused"), "{}", err.message);
    assert_eq!(r.sim.register(RegisterKind::Holding, 1), Some(70));
    r.sim.stop().await;
}

#[actix::test]
async fn an_override_ends_at_the_next_schedule_change_and_the_schedule_takes_over() {
    let mut r = rig(default_map()).await;
    r.control.do_send(ScheduleSettings {
        schedule: Some(ActiveSchedule {
            id: "2026".into(),
            hash: "h".into(),
        }),
        settings: BTreeMap::from([(
            "chw_setpoint_c".to_owned(),
            ScheduledValue {
                value: json!(8.0),
                since: t(6, 0),
                next_change: Some(t(18, 0)),
            },
        )]),
        held: false,
    });
    r.control
        .do_send(overrides(10, "chw_setpoint_c", json!(9.5), None));
    next_matching(&mut r.reports, |rep: &ControlReport| {
        rep.reported.get("chw_setpoint_c") == Some(&json!(9.5))
    })
    .await;
    r.now.set(t(18, 0));
    let report = next_matching(&mut r.reports, |rep: &ControlReport| {
        !rep.expired.is_empty()
    })
    .await;
    assert_eq!(report.expired[0].key, "chw_setpoint_c");
    assert_eq!(report.expired[0].at, t(18, 0));
    assert_eq!(report.expired[0].desired_version, 10);
    // The same pass wrote the schedule's value and read it back.
    assert_eq!(report.reported.get("chw_setpoint_c"), Some(&json!(8.0)));
    assert_eq!(
        report.settings["chw_setpoint_c"].source,
        SettingSource::Schedule
    );
    assert_eq!(r.sim.register(RegisterKind::Holding, 1), Some(80));
    next_matching(&mut r.events, |e: &RecordEvent| {
        e.kind == EventKind::OverrideExpired
    })
    .await;
    r.sim.stop().await;
}

#[actix::test]
async fn a_setting_changed_at_the_panel_is_put_back() {
    let mut r = rig(default_map()).await;
    r.sim
        .set_value("hw_setpoint_c", &shiki_proto::PointValue::Number(50.0));
    let report = next_matching(&mut r.reports, |rep: &ControlReport| {
        rep.reported.get("hw_setpoint_c") == Some(&json!(45.0))
            && rep.settings.get("hw_setpoint_c").map(|s| s.source) == Some(SettingSource::Default)
    })
    .await;
    assert_eq!(report.settings["hw_setpoint_c"].detail, None);
    next_matching(&mut r.events, |e: &RecordEvent| {
        e.kind == EventKind::SettingApplied && e.message.starts_with("hw_setpoint_c")
    })
    .await;
    assert_eq!(r.sim.register(RegisterKind::Holding, 2), Some(450));
    let current = r.control.send(CurrentReport).await.expect("mailbox");
    assert_eq!(current.reported.get("hw_setpoint_c"), Some(&json!(45.0)));
    r.sim.stop().await;
}

#[actix::test]
async fn a_write_that_failed_while_the_plc_was_away_is_retried_when_it_is_back() {
    let mut r = rig(default_map()).await;
    // Wait for the first poll so Control knows the PLC's values.
    next_matching(&mut r.reports, |rep: &ControlReport| {
        !rep.reported.is_empty()
    })
    .await;
    let addr = r.sim.addr();
    let model = r.sim.model();
    r.sim.stop().await;
    r.control.do_send(overrides(11, "run", json!(true), None));
    let report = next_matching(&mut r.reports, |rep: &ControlReport| {
        rep.settings
            .get("run")
            .and_then(|s| s.detail.as_deref())
            .is_some_and(|d| d.starts_with("not applied: PLC unreachable"))
    })
    .await;
    assert_eq!(report.settings["run"].source, SettingSource::Override);
    assert_eq!(report.settings["run"].requested, Some(json!(true)));
    next_matching(&mut r.events, |e: &RecordEvent| {
        e.kind == EventKind::ControlError
    })
    .await;

    let options = SimOptions {
        tick: Duration::from_secs(3600),
        ..SimOptions::default()
    };
    let sim = PlcSim::restart(addr, model, options)
        .await
        .expect("rebind the same port");
    let report = next_matching(&mut r.reports, |rep: &ControlReport| {
        rep.reported.get("run") == Some(&json!(true))
    })
    .await;
    assert_eq!(report.settings["run"].detail, None);
    assert_eq!(sim.value("run"), Some(shiki_proto::PointValue::Bool(true)));
    sim.stop().await;
}
