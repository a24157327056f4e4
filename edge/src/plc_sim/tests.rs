use shiki_proto::PointValue;
use tokio_modbus::ExceptionCode;
use tokio_modbus::client::{Reader, Writer, tcp};

use super::*;

fn number(v: Option<PointValue>) -> f64 {
    match v {
        Some(PointValue::Number(n)) => n,
        other => panic!("expected a number, got {other:?}"),
    }
}

#[test]
fn cooling_pulls_supply_toward_the_setpoint_and_stopping_lets_it_drift_back() {
    let mut m = SimModel::new(default_map(), 30.0);
    let idle = number(m.value("supply_c"));
    assert!(m.set_value("run", &PointValue::Bool(true)));
    for _ in 0..240 {
        m.step(60.0);
    }
    let supply = number(m.value("supply_c"));
    assert!(
        (supply - 7.0).abs() < 0.6,
        "supply {supply} should approach 7.0"
    );
    assert!(
        number(m.value("return_c")) > supply,
        "return is warmer when cooling"
    );
    assert!(number(m.value("gas_m3h")) > 0.0);
    assert_eq!(m.value("running"), Some(PointValue::Bool(true)));
    assert!(number(m.value("run_hours_h")) >= 3.0);
    m.set_value("run", &PointValue::Bool(false));
    for _ in 0..240 {
        m.step(60.0);
    }
    assert!(number(m.value("supply_c")) > idle - 3.0);
    assert!(number(m.value("gas_m3h")).abs() < f64::EPSILON);
}

#[test]
fn heating_follows_the_hot_water_setpoint_and_an_alarm_stops_the_plant() {
    let mut m = SimModel::new(default_map(), 5.0);
    m.set_value("run", &PointValue::Bool(true));
    m.set_value("mode", &PointValue::from("heating"));
    m.set_value("hw_setpoint_c", &PointValue::Number(55.0));
    for _ in 0..240 {
        m.step(60.0);
    }
    assert!((number(m.value("supply_c")) - 55.0).abs() < 1.0);
    m.set_alarm(17);
    assert_eq!(m.value("running"), Some(PointValue::Bool(false)));
    assert_eq!(m.value("alarm_code"), Some(PointValue::Number(17.0)));
}

#[test]
fn writes_are_checked_against_the_map() {
    let mut m = SimModel::new(default_map(), 30.0);
    // chw_setpoint_c is holding 40002 (address 1), scale 0.1, 5.0..12.0.
    assert_eq!(m.write_registers(1, &[80]), Ok(()));
    assert_eq!(m.value("chw_setpoint_c"), Some(PointValue::Number(8.0)));
    assert_eq!(
        m.write_registers(1, &[130]),
        Err(ExceptionCode::IllegalDataValue)
    );
    assert_eq!(m.value("chw_setpoint_c"), Some(PointValue::Number(8.0)));
    assert_eq!(
        m.write_registers(0, &[5]),
        Err(ExceptionCode::IllegalDataValue)
    );
    assert_eq!(
        m.write_registers(50, &[1]),
        Err(ExceptionCode::IllegalDataAddress)
    );
    assert_eq!(
        m.write_coil(7, true),
        Err(ExceptionCode::IllegalDataAddress)
    );
    assert_eq!(
        m.read_registers(RegisterKind::Input, 0, 20),
        Err(ExceptionCode::IllegalDataAddress)
    );
    assert_eq!(
        m.read_registers(RegisterKind::Input, 0, 8).map(|r| r.len()),
        Ok(8)
    );
    assert_eq!(m.write_registers(SIM_ALARM_REGISTER, &[3]), Ok(()));
    assert_eq!(m.value("alarm_code"), Some(PointValue::Number(3.0)));
}

#[tokio::test]
async fn serves_modbus_tcp_on_an_ephemeral_port_until_stopped() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let sim = PlcSim::start(listener, default_map(), SimOptions::default()).expect("start");
    let mut ctx = tcp::connect(sim.addr()).await.expect("connect");
    let regs = ctx
        .read_holding_registers(0, 4)
        .await
        .expect("transport")
        .expect("no exception");
    assert_eq!(regs, vec![0, 70, 450, 100]);
    ctx.write_single_register(1, 95)
        .await
        .expect("transport")
        .expect("accepted");
    assert_eq!(sim.value("chw_setpoint_c"), Some(PointValue::Number(9.5)));
    assert_eq!(sim.register(RegisterKind::Holding, 1), Some(95));
    let refused = ctx.write_single_register(1, 200).await.expect("transport");
    assert_eq!(refused, Err(ExceptionCode::IllegalDataValue));
    let unknown = ctx.read_holding_registers(500, 1).await.expect("transport");
    assert_eq!(unknown, Err(ExceptionCode::IllegalDataAddress));
    ctx.write_single_coil(0, true)
        .await
        .expect("transport")
        .expect("accepted");
    assert_eq!(sim.value("run"), Some(PointValue::Bool(true)));
    sim.stop().await;
    assert!(
        ctx.read_holding_registers(0, 1).await.is_err(),
        "connection closed on stop"
    );
}
