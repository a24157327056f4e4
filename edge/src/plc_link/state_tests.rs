//! Tests of the PlcLink's state machine (no actix, no Modbus): what polls and writes mean,
//! which events they raise, when the connection is kept and when the link backs off.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use shiki_proto::{EventKind, PointValue, Severity};
use tokio::time::Instant;
use tokio_modbus::ExceptionCode;

use super::*;
use crate::register_map::{ReadRequest, RegisterKind};
use crate::test_support::fast_map;

const S: Duration = Duration::from_secs(1);

fn at(s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 1, 12, 0, s)
        .single()
        .expect("valid time")
}

/// The default map, reconnecting after 1 s, 2 s, 4 s, at most 4 s.
fn link() -> LinkState {
    let addr = "127.0.0.1:5020".parse().expect("socket address");
    LinkState::new(fast_map(addr, |c| {
        c.reconnect_min = S;
        c.reconnect_max = 4 * S;
    }))
}

/// A full answer of zeros to `req`.
fn zeros(req: &ReadRequest) -> Result<ReadData, LinkError> {
    let n = usize::from(req.count);
    Ok(match req.kind {
        RegisterKind::Holding | RegisterKind::Input => ReadData::Words(vec![0; n]),
        RegisterKind::Coil | RegisterKind::Discrete => ReadData::Bits(vec![false; n]),
    })
}

fn answers(link: &LinkState) -> Vec<Result<ReadData, LinkError>> {
    link.plan().iter().map(zeros).collect()
}

fn connect_error() -> LinkError {
    LinkError::Connect {
        endpoint: "127.0.0.1:5020".into(),
        cause: "connection refused".into(),
    }
}

fn timeout(req: &ReadRequest) -> LinkError {
    LinkError::Timeout {
        op: "read",
        register: req.kind.describe(req.start),
        unit_id: req.unit_id,
        after: "0.5 s".into(),
    }
}

fn exception(req: &ReadRequest) -> LinkError {
    LinkError::Exception {
        op: "read",
        register: req.kind.describe(req.start),
        unit_id: req.unit_id,
        exception: "exception 0x02 (illegal data address)".into(),
        transient: false,
    }
}

fn kinds(fx: &Effects) -> Vec<(EventKind, Severity)> {
    fx.events.iter().map(|e| (e.kind, e.severity)).collect()
}

fn write(name: &str, value: PointValue) -> WritePoint {
    WritePoint {
        name: name.into(),
        value,
    }
}

#[test]
fn a_poll_that_is_fully_answered_keeps_the_connection_and_decodes_every_point() {
    let mut link = link();
    let now = Instant::now();
    assert_eq!(link.skip_poll(now, at(0)), None, "nothing to wait for");
    let (readings, fx) = link.poll_done(Ok(answers(&link)), now, at(0), at(1));
    assert_eq!(
        fx,
        Effects {
            events: vec![],
            keep_connection: true,
            reconnect_in: None
        }
    );
    assert_eq!(readings.ts, at(0), "readings carry the poll's start");
    assert_eq!(
        readings.values.get("chw_setpoint_c"),
        Some(&PointValue::Number(0.0))
    );
    assert_eq!(readings.values.get("run"), Some(&PointValue::Bool(false)));
}

#[test]
fn a_failed_connect_fails_every_point_and_polls_skip_the_wire_until_the_retry() {
    let mut link = link();
    let now = Instant::now();
    let (readings, fx) = link.poll_done(Err(connect_error()), now, at(0), at(0));
    assert!(readings.values.is_empty());
    assert_eq!(readings.errors.len(), link.map().points().len());
    assert!(
        readings
            .errors
            .values()
            .all(|e| e.contains("connection refused"))
    );
    assert_eq!(kinds(&fx), [(EventKind::PlcError, Severity::Critical)]);
    assert_eq!(fx.events[0].data["link_down"], serde_json::json!(true));
    assert!(!fx.keep_connection);
    assert_eq!(fx.reconnect_in, Some(S));

    let skipped = link
        .skip_poll(now + Duration::from_millis(300), at(0))
        .expect("backing off");
    assert!(
        skipped
            .errors
            .values()
            .all(|e| e == "PLC link down, reconnecting in 1 s"),
        "{:?}",
        skipped.errors
    );
    assert_eq!(link.skip_poll(now + S, at(1)).map(|_| ()), Some(()));
    assert_eq!(link.skip_poll(now + 2 * S, at(2)), None, "retry is due");
}

#[test]
fn reconnect_delays_double_while_the_link_stays_down_and_reset_after_an_answer() {
    let mut link = link();
    let now = Instant::now();
    let delays: Vec<_> = (0..4)
        .map(|_| link.poll_done(Err(connect_error()), now, at(0), at(0)).1)
        .map(|fx| fx.reconnect_in)
        .collect();
    assert_eq!(delays, [Some(S), Some(2 * S), Some(4 * S), Some(4 * S)]);

    let (_, fx) = link.poll_done(Ok(answers(&link)), now, at(30), at(30));
    assert_eq!(kinds(&fx), [(EventKind::PlcRecovered, Severity::Info)]);
    assert!(
        fx.events[0].message.contains("after 30 s (4 failures)"),
        "{}",
        fx.events[0].message
    );
    assert!(fx.keep_connection);
    assert_eq!(link.skip_poll(now, at(30)), None);

    let (_, fx) = link.poll_done(Err(connect_error()), now, at(40), at(40));
    assert_eq!(fx.reconnect_in, Some(S), "backoff starts over");
}

#[test]
fn a_link_fault_mid_poll_drops_the_connection_and_marks_the_later_reads_not_read() {
    let mut link = link();
    let plan = link.plan().to_vec();
    assert!(plan.len() >= 3, "the default map plans several reads");
    let cut = vec![zeros(&plan[0]), Err(timeout(&plan[1]))];
    let (readings, fx) = link.poll_done(Ok(cut), Instant::now(), at(0), at(0));
    assert_eq!(kinds(&fx), [(EventKind::PlcError, Severity::Critical)]);
    assert!(!fx.keep_connection);
    assert_eq!(fx.reconnect_in, Some(S));
    let first = link.map().points()[plan[0].points[0]].name.clone();
    assert!(readings.values.contains_key(&first), "{readings:?}");
    let later = &link.map().points()[plan[2].points[0]].name;
    let why = readings.errors.get(later).expect("later read failed");
    assert!(
        why.starts_with(&format!(
            "modbus read of {}",
            plan[2].kind.describe(plan[2].start)
        )),
        "{why}"
    );
    assert!(why.contains("not read: modbus read of"), "{why}");
}

#[test]
fn a_refused_read_is_one_episode_per_register_and_keeps_the_link() {
    let mut link = link();
    let plan = link.plan().to_vec();
    let refused = |link: &LinkState| {
        let mut a = answers(link);
        a[1] = Err(exception(&plan[1]));
        a
    };
    let now = Instant::now();
    let (readings, fx) = link.poll_done(Ok(refused(&link)), now, at(0), at(0));
    assert_eq!(kinds(&fx), [(EventKind::PlcError, Severity::Warning)]);
    assert_eq!(fx.events[0].data["link_down"], serde_json::json!(false));
    assert!(fx.keep_connection && fx.reconnect_in.is_none());
    let refused_point = &link.map().points()[plan[1].points[0]].name;
    assert!(readings.errors[refused_point].contains("exception 0x02"));

    let (_, fx) = link.poll_done(Ok(refused(&link)), now, at(1), at(1));
    assert!(fx.events.is_empty(), "one event per failure episode");
    let (_, fx) = link.poll_done(Ok(answers(&link)), now, at(2), at(2));
    assert_eq!(kinds(&fx), [(EventKind::PlcRecovered, Severity::Info)]);
    assert!(
        fx.events[0].message.starts_with("modbus read of"),
        "{}",
        fx.events[0].message
    );
}

#[test]
fn bad_writes_are_refused_before_the_wire() {
    let link = link();
    let now = Instant::now();
    let job = |name: &str, v: PointValue| link.write_job(&write(name, v), now);
    assert_eq!(
        job("nope", PointValue::Number(1.0)),
        Err(WriteError::UnknownPoint("nope".into()))
    );
    assert_eq!(
        job("supply_c", PointValue::Number(1.0)),
        Err(WriteError::ReadOnly("supply_c".into()))
    );
    let outside = job("chw_setpoint_c", PointValue::Number(14.0));
    assert!(
        matches!(&outside, Err(WriteError::InvalidValue { reason, .. }) if reason == "outside the safety limits 5..12"),
        "{outside:?}"
    );
    let wrong_type = job("mode", PointValue::from("auto"));
    assert!(
        matches!(wrong_type, Err(WriteError::InvalidValue { .. })),
        "{wrong_type:?}"
    );

    let ok = job("chw_setpoint_c", PointValue::Number(9.3)).expect("a valid write");
    assert_eq!(
        (ok.unit_id, ok.raw.clone()),
        (1, crate::register_map::Raw::Words(vec![93]))
    );
    assert_eq!(
        (ok.readback.kind, ok.readback.start, ok.readback.count),
        (RegisterKind::Holding, 1, 1)
    );
}

#[test]
fn writes_fail_fast_while_the_link_backs_off() {
    let mut link = link();
    let now = Instant::now();
    link.poll_done(Err(connect_error()), now, at(0), at(0));
    let w = write("run", PointValue::Bool(true));
    assert_eq!(
        link.write_job(&w, now),
        Err(WriteError::Link(
            "PLC link down, reconnecting in 1 s".into()
        ))
    );
    assert!(link.write_job(&w, now + 2 * S).is_ok(), "retry is due");
}

#[test]
fn a_write_answers_the_value_read_back_and_keeps_the_connection() {
    let mut link = link();
    let now = Instant::now();
    let job = link
        .write_job(&write("chw_setpoint_c", PointValue::Number(9.3)), now)
        .expect("valid");
    let (answer, fx) = link.write_done(&job, Ok(ReadData::Words(vec![90])), now, at(0));
    assert_eq!(answer, Ok(PointValue::Number(9.0)), "what the PLC holds");
    assert!(fx.keep_connection && fx.events.is_empty() && fx.reconnect_in.is_none());

    let job = link
        .write_job(&write("run", PointValue::Bool(true)), now)
        .expect("valid");
    let (answer, _) = link.write_done(&job, Ok(ReadData::Bits(vec![])), now, at(0));
    assert_eq!(
        answer,
        Err(WriteError::Link(
            "read back of run failed: empty answer".into()
        ))
    );
}

#[test]
fn a_plc_busy_or_failing_is_told_apart_from_a_refusal() {
    let mut link = link();
    let now = Instant::now();
    let job = link
        .write_job(&write("chw_setpoint_c", PointValue::Number(11.0)), now)
        .expect("valid");
    for (code, busy) in [
        (ExceptionCode::ServerDeviceFailure, true),
        (ExceptionCode::ServerDeviceBusy, true),
        (ExceptionCode::Acknowledge, true),
        (ExceptionCode::GatewayTargetDevice, true),
        (ExceptionCode::IllegalDataValue, false),
        (ExceptionCode::IllegalDataAddress, false),
    ] {
        let err = LinkError::Exception {
            op: "write",
            register: "holding register 40002".into(),
            unit_id: 1,
            exception: exception_text(code),
            transient: is_transient(code),
        };
        let (answer, fx) = link.write_done(&job, Err(err), now, at(0));
        let text = exception_text(code);
        let expected = if busy {
            WriteError::Busy(text)
        } else {
            WriteError::Refused(text)
        };
        assert_eq!(answer, Err(expected), "{code:?}");
        assert!(
            fx.keep_connection,
            "an exception is an answer: the link is fine"
        );
    }
}

#[test]
fn a_refused_write_keeps_the_link_and_a_lost_one_drops_it_and_backs_off() {
    let mut link = link();
    let now = Instant::now();
    let job = link
        .write_job(&write("chw_setpoint_c", PointValue::Number(11.0)), now)
        .expect("valid");
    let refused = exception(&job.readback);
    let (answer, fx) = link.write_done(&job, Err(refused), now, at(0));
    assert_eq!(
        answer,
        Err(WriteError::Refused(
            "exception 0x02 (illegal data address)".into()
        ))
    );
    assert!(fx.keep_connection && fx.events.is_empty());

    let (answer, fx) = link.write_done(&job, Err(timeout(&job.readback)), now, at(1));
    assert!(
        matches!(answer, Err(WriteError::Link(ref m)) if m.contains("timed out")),
        "{answer:?}"
    );
    assert_eq!(kinds(&fx), [(EventKind::PlcError, Severity::Critical)]);
    assert!(!fx.keep_connection);
    assert_eq!(fx.reconnect_in, Some(S));
}
