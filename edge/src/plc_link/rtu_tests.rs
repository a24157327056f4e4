//! PlcLink over Modbus RTU: the simulator serves one end of a `socat` pty pair, the link
//! opens the other. Two unit ids share the bus; unit 2 is silent.

use std::process::Stdio;
use std::time::Duration;

use actix::prelude::*;
use shiki_proto::{EventKind, PointValue};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_serial::SerialPortBuilderExt as _;

use super::*;
use crate::plc_sim::{PlcSim, SimOptions, default_map};
use crate::register_map::{DataType, Endpoint, RegisterKind};
use crate::test_support::{WAIT, next, next_matching, probe};

/// A pty pair joined by socat; `None` when socat is not installed.
async fn pty_pair() -> Option<(Child, String, String)> {
    let mut child = match Command::new("socat")
        .args(["-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot run socat: {e}"),
    };
    let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let mut ptys = Vec::new();
    let mut ready = false;
    tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.expect("socat output") {
            if let Some(i) = line.find("PTY is ") {
                ptys.push(line[i + 7..].trim().to_owned());
            }
            if line.contains("starting data transfer loop") {
                ready = true;
                break;
            }
        }
    })
    .await
    .expect("socat starts in time");
    assert!(ready && ptys.len() == 2, "socat said {ptys:?}");
    // Keep draining socat's stderr so it never blocks.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let b = ptys.pop().expect("two ptys");
    let a = ptys.pop().expect("two ptys");
    Some((child, a, b))
}

#[actix::test]
#[allow(clippy::print_stderr)]
async fn rtu_bus_polls_writes_and_reports_a_silent_unit_without_dropping_the_bus() {
    let Some((_socat, plc_end, edge_end)) = pty_pair().await else {
        eprintln!("SKIPPED: socat is not installed (apt-get install socat)");
        return;
    };
    let serial = tokio_serial::new(plc_end.as_str(), 9600)
        .open_native_async()
        .expect("open the PLC end of the pty pair");
    let options = SimOptions {
        tick: Duration::from_secs(3600),
        unit_ids: vec![1],
        ..SimOptions::default()
    };
    let sim = PlcSim::start_rtu(serial, default_map(), options);
    sim.set_value("chw_setpoint_c", &PointValue::Number(6.5));

    let mut config = default_map().config().clone();
    config.address = edge_end.clone();
    config.poll_interval = Duration::from_secs(3600);
    config.request_timeout = Duration::from_millis(300);
    let mut silent = config
        .points
        .iter()
        .find(|p| p.name == "supply_c")
        .expect("default map has supply_c")
        .clone();
    silent.name = "boiler2_supply_c".into();
    silent.unit_id = Some(2);
    assert_eq!(
        (silent.kind, silent.data_type),
        (RegisterKind::Input, DataType::I16)
    );
    config.points.push(silent);
    let map = RegisterMap::new(config).expect("valid");
    assert_eq!(map.config().endpoint(), Endpoint::Rtu(edge_end));

    let (events, mut events_rx) = probe::<RecordEvent>();
    let (readings, mut readings_rx) = probe::<Readings>();
    let link = PlcLink::new(map, events).subscribe(readings).start();

    let r = next(&mut readings_rx).await;
    assert_eq!(
        r.values.get("chw_setpoint_c"),
        Some(&PointValue::Number(6.5))
    );
    assert_eq!(r.values.get("mode"), Some(&PointValue::from("cooling")));
    let err = r.errors.get("boiler2_supply_c").expect("unit 2 is silent");
    assert!(err.contains("(unit 2) got no answer within 0.3 s"), "{err}");
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    let ev = next_matching(&mut events_rx, |e: &RecordEvent| {
        e.kind == EventKind::PlcError
    })
    .await;
    assert_eq!(ev.data["link_down"], serde_json::json!(false), "{ev:?}");

    let back = link
        .send(WritePoint {
            name: "chw_setpoint_c".into(),
            value: PointValue::Number(9.0),
        })
        .await
        .expect("mailbox");
    assert_eq!(back, Ok(PointValue::Number(9.0)));
    assert_eq!(sim.register(RegisterKind::Holding, 1), Some(90));
    sim.stop().await;
}
