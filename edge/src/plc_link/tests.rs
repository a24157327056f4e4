//! Conversations between a PlcLink and the in-process simulator.

use std::time::Duration;

use actix::prelude::*;
use shiki_proto::{EventKind, PointValue};
use tokio::net::TcpListener;

use super::*;
use crate::plc_sim::{PlcSim, SimOptions, default_map};
use crate::register_map::{PointConfig, RegisterKind};
use crate::test_support::{fast_map, next, next_matching, probe};

async fn sim_with(map: RegisterMap) -> PlcSim {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    // A slow tick so the plant barely moves during a test.
    let options = SimOptions {
        tick: Duration::from_secs(3600),
        ..SimOptions::default()
    };
    PlcSim::start(listener, map, options).expect("sim starts")
}

fn number(v: Option<&PointValue>) -> f64 {
    match v {
        Some(PointValue::Number(n)) => *n,
        other => panic!("expected a number, got {other:?}"),
    }
}

#[actix::test]
async fn poll_readings_are_decoded_from_the_simulator() {
    let sim = sim_with(default_map()).await;
    sim.set_value("chw_setpoint_c", &PointValue::Number(8.5));
    sim.set_value("mode", &PointValue::from("heating"));
    sim.set_alarm(5);
    let (events, _events_rx) = probe::<RecordEvent>();
    let (readings, mut readings_rx) = probe::<Readings>();
    let map = fast_map(sim.addr(), |c| c.poll_interval = Duration::from_secs(3600));
    let _link = PlcLink::new(map, events).subscribe(readings).start();

    let r = next(&mut readings_rx).await;
    assert!(r.errors.is_empty(), "errors: {:?}", r.errors);
    assert_eq!(r.values.len(), default_map().points().len());
    assert!((number(r.values.get("chw_setpoint_c")) - 8.5).abs() < 1e-9);
    assert_eq!(r.values.get("mode"), Some(&PointValue::from("heating")));
    assert_eq!(r.values.get("alarm_code"), Some(&PointValue::Number(5.0)));
    assert_eq!(r.values.get("running"), Some(&PointValue::Bool(false)));
    assert_eq!(r.values.get("run"), Some(&PointValue::Bool(false)));
    let supply = match sim.value("supply_c") {
        Some(PointValue::Number(n)) => n,
        other => panic!("sim supply {other:?}"),
    };
    assert!((number(r.values.get("supply_c")) - supply).abs() < 0.051);
    sim.stop().await;
}

#[actix::test]
async fn a_write_lands_in_the_right_register_and_is_read_back() {
    let sim = sim_with(default_map()).await;
    let (events, _events_rx) = probe::<RecordEvent>();
    let map = fast_map(sim.addr(), |c| c.poll_interval = Duration::from_secs(3600));
    let link = PlcLink::new(map, events).start();

    let back = link
        .send(WritePoint {
            name: "chw_setpoint_c".into(),
            value: PointValue::Number(9.3),
        })
        .await
        .expect("mailbox")
        .expect("written");
    assert!((number(Some(&back)) - 9.3).abs() < 1e-9);
    // chw_setpoint_c is holding register 40002 (address 1), scale 0.1.
    assert_eq!(sim.register(RegisterKind::Holding, 1), Some(93));

    let back = link
        .send(WritePoint {
            name: "mode".into(),
            value: PointValue::from("heating"),
        })
        .await
        .expect("mailbox");
    assert_eq!(back, Ok(PointValue::from("heating")));
    assert_eq!(sim.register(RegisterKind::Holding, 0), Some(1));

    let back = link
        .send(WritePoint {
            name: "run".into(),
            value: PointValue::Bool(true),
        })
        .await
        .expect("mailbox");
    assert_eq!(back, Ok(PointValue::Bool(true)));
    assert_eq!(sim.value("run"), Some(PointValue::Bool(true)));
    sim.stop().await;
}

#[actix::test]
async fn a_write_the_plc_refuses_surfaces_as_refused_and_bad_writes_never_reach_it() {
    // The PLC's own interlock allows 5.0..10.0; the edge's limits are 5.0..12.0.
    let mut plc_config = default_map().config().clone();
    for p in &mut plc_config.points {
        if p.name == "chw_setpoint_c" {
            p.max = Some(10.0);
        }
    }
    let sim = sim_with(RegisterMap::new(plc_config).expect("valid")).await;
    let (events, _events_rx) = probe::<RecordEvent>();
    let map = fast_map(sim.addr(), |c| c.poll_interval = Duration::from_secs(3600));
    let link = PlcLink::new(map, events).start();
    let write = |name: &str, value: PointValue| {
        link.send(WritePoint {
            name: name.into(),
            value,
        })
    };

    let refused = write("chw_setpoint_c", PointValue::Number(11.0))
        .await
        .expect("mailbox");
    assert_eq!(
        refused,
        Err(WriteError::Refused(
            "exception 0x03 (illegal data value)".into()
        ))
    );
    assert_eq!(
        sim.register(RegisterKind::Holding, 1),
        Some(70),
        "PLC kept 7.0"
    );

    let outside = write("chw_setpoint_c", PointValue::Number(14.0))
        .await
        .expect("mailbox");
    assert!(
        matches!(outside, Err(WriteError::InvalidValue { .. })),
        "{outside:?}"
    );
    let wrong_type = write("mode", PointValue::from("auto"))
        .await
        .expect("mailbox");
    assert!(
        matches!(wrong_type, Err(WriteError::InvalidValue { .. })),
        "{wrong_type:?}"
    );
    assert_eq!(
        write("supply_c", PointValue::Number(1.0))
            .await
            .expect("mailbox"),
        Err(WriteError::ReadOnly("supply_c".into()))
    );
    assert_eq!(
        write("nope", PointValue::Number(1.0))
            .await
            .expect("mailbox"),
        Err(WriteError::UnknownPoint("nope".into()))
    );
    assert_eq!(sim.register(RegisterKind::Holding, 1), Some(70));
    sim.stop().await;
}

#[actix::test]
async fn link_loss_raises_one_plc_error_and_recovery_one_plc_recovered() {
    let sim = sim_with(default_map()).await;
    let addr = sim.addr();
    let (events, mut events_rx) = probe::<RecordEvent>();
    let (readings, mut readings_rx) = probe::<Readings>();
    let _link = PlcLink::new(fast_map(addr, |_| {}), events)
        .subscribe(readings)
        .start();
    let first = next(&mut readings_rx).await;
    assert!(first.errors.is_empty(), "{:?}", first.errors);

    let model = sim.model();
    sim.stop().await;
    let error = next(&mut events_rx).await;
    assert_eq!(error.kind, EventKind::PlcError, "{error:?}");
    assert!(error.message.contains("modbus read of") || error.message.contains("cannot connect"));
    assert_eq!(error.data["link_down"], serde_json::json!(true));
    // Several failed polls later there is still only the one event.
    for _ in 0..3 {
        next_matching(&mut readings_rx, |r: &Readings| !r.errors.is_empty()).await;
    }
    assert!(
        events_rx.try_recv().is_err(),
        "one event per failure episode"
    );

    let sim = PlcSim::restart(
        addr,
        model,
        SimOptions {
            tick: Duration::from_secs(3600),
            ..SimOptions::default()
        },
    )
    .await
    .expect("rebind the same port");
    let recovered = next(&mut events_rx).await;
    assert_eq!(recovered.kind, EventKind::PlcRecovered, "{recovered:?}");
    next_matching(&mut readings_rx, |r: &Readings| r.errors.is_empty()).await;
    sim.stop().await;
}

#[actix::test]
async fn a_read_the_plc_refuses_marks_its_points_and_keeps_the_rest() {
    let sim = sim_with(default_map()).await;
    let (events, mut events_rx) = probe::<RecordEvent>();
    let (readings, mut readings_rx) = probe::<Readings>();
    let map = fast_map(sim.addr(), |c| {
        let mut extra: PointConfig = c.points[0].clone();
        extra.name = "not_in_plc".into();
        extra.kind = RegisterKind::Holding;
        extra.address = 200;
        extra.data_type = crate::register_map::DataType::U16;
        extra.writable = false;
        c.points.push(extra);
    });
    let _link = PlcLink::new(map, events).subscribe(readings).start();
    let r = next(&mut readings_rx).await;
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    let err = r
        .errors
        .get("not_in_plc")
        .expect("error for the refused point");
    assert!(err.contains("holding register 40201"), "{err}");
    assert!(
        err.contains("exception 0x02 (illegal data address)"),
        "{err}"
    );
    assert!(r.values.contains_key("chw_setpoint_c"));
    let ev = next(&mut events_rx).await;
    assert_eq!(ev.kind, EventKind::PlcError);
    assert_eq!(ev.data["link_down"], serde_json::json!(false));
    for _ in 0..3 {
        next(&mut readings_rx).await;
    }
    assert!(
        events_rx.try_recv().is_err(),
        "one event per failure episode"
    );
    sim.stop().await;
}

#[actix::test]
async fn a_plc_that_never_answers_times_out_with_the_register_in_the_event() {
    // A peer that accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let addr = listener.local_addr().expect("local addr");
    let black_hole = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let (events, mut events_rx) = probe::<RecordEvent>();
    let (readings, mut readings_rx) = probe::<Readings>();
    let map = fast_map(addr, |c| c.request_timeout = Duration::from_millis(200));
    let link = PlcLink::new(map, events).subscribe(readings).start();

    let ev = next(&mut events_rx).await;
    assert_eq!(ev.kind, EventKind::PlcError);
    assert_eq!(
        ev.message,
        "modbus read of holding register 40001 (unit 1) timed out after 0.2 s"
    );
    assert_eq!(
        ev.data["register"],
        serde_json::json!("holding register 40001")
    );
    let r = next(&mut readings_rx).await;
    assert!(r.values.is_empty());
    assert_eq!(r.errors.len(), default_map().points().len());
    let write = link
        .send(WritePoint {
            name: "run".into(),
            value: PointValue::Bool(true),
        })
        .await
        .expect("mailbox");
    assert!(matches!(write, Err(WriteError::Link(_))), "{write:?}");
    black_hole.abort();
}
