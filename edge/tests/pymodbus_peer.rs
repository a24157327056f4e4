//! PlcLink against a Modbus peer not written here: a pymodbus TCP server
//! (`edge/tests/peers/modbus_server.py`) preloaded with the default register map.
//! Fails when python3 or pymodbus is missing (CI installs pymodbus with pip).

use std::process::Stdio;
use std::time::Duration;

use actix::prelude::*;
use shiki_edge::messages::{Readings, RecordEvent, WritePoint};
use shiki_edge::plc_link::PlcLink;
use shiki_edge::plc_sim::default_map;
use shiki_edge::register_map::RegisterMap;
use shiki_proto::PointValue;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);

struct Forward<M: Message<Result = ()> + Send + Unpin + 'static>(mpsc::UnboundedSender<M>);

impl<M: Message<Result = ()> + Send + Unpin + 'static> Actor for Forward<M> {
    type Context = Context<Self>;
}

impl<M: Message<Result = ()> + Send + Unpin + 'static> Handler<M> for Forward<M> {
    type Result = ();
    fn handle(&mut self, msg: M, _: &mut Self::Context) {
        let _ = self.0.send(msg);
    }
}

fn probe<M: Message<Result = ()> + Send + Unpin + 'static>()
-> (Recipient<M>, mpsc::UnboundedReceiver<M>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Forward(tx).start().recipient(), rx)
}

struct Peer {
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    port: u16,
}

impl Peer {
    async fn start() -> Peer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/modbus_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 must be installed to run the pymodbus peer test");
        let stdin = child.stdin.take().expect("piped stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let first = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("pymodbus peer did not start in time")
            .expect("read peer output")
            .expect("pymodbus peer exited without output");
        let port = first
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("pymodbus peer failed: {first} (pip install pymodbus)"));
        Peer {
            _child: child,
            stdin,
            lines,
            port,
        }
    }

    /// Read registers through pymodbus' own client, e.g. `read("hr", 1, 1)` → `[93]`.
    async fn read(&mut self, table: &str, address: u16, count: u16) -> Vec<u32> {
        let cmd = format!("read {table} {address} {count}\n");
        self.stdin
            .write_all(cmd.as_bytes())
            .await
            .expect("write to peer");
        self.stdin.flush().await.expect("flush");
        let line = tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .expect("peer answers in time")
            .expect("read peer output")
            .expect("peer output open");
        let mut parts = line.split_whitespace();
        assert_eq!(parts.next(), Some(table), "peer said {line:?}");
        assert_eq!(
            parts.next(),
            Some(address.to_string().as_str()),
            "peer said {line:?}"
        );
        parts.map(|v| v.parse().expect("number")).collect()
    }
}

fn map_for(port: u16) -> RegisterMap {
    let mut c = default_map().config().clone();
    c.address = format!("127.0.0.1:{port}");
    c.poll_interval = Duration::from_secs(3600);
    RegisterMap::new(c).expect("valid map")
}

fn number(v: Option<&PointValue>) -> f64 {
    match v {
        Some(PointValue::Number(n)) => *n,
        other => panic!("expected a number, got {other:?}"),
    }
}

#[actix::test]
async fn plc_link_decodes_and_writes_a_pymodbus_server() {
    let mut peer = Peer::start().await;
    let (events, _events_rx) = probe::<RecordEvent>();
    let (readings, mut readings_rx) = probe::<Readings>();
    let link = PlcLink::new(map_for(peer.port), events)
        .subscribe(readings)
        .start();

    let r = tokio::time::timeout(WAIT, readings_rx.recv())
        .await
        .expect("readings in time")
        .expect("channel open");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let v = &r.values;
    assert_eq!(v.get("mode"), Some(&PointValue::from("heating")));
    assert_eq!(v.get("run"), Some(&PointValue::Bool(true)));
    assert_eq!(v.get("saving"), Some(&PointValue::Bool(false)));
    assert_eq!(v.get("running"), Some(&PointValue::Bool(true)));
    for (name, expected) in [
        ("chw_setpoint_c", 8.5),
        ("hw_setpoint_c", 48.0),
        ("demand_limit_pct", 80.0),
        ("supply_c", -2.5),
        ("return_c", 12.3),
        ("outdoor_c", -7.5),
        ("alarm_code", 12.0),
        ("gas_m3h", 23.75),
        ("run_hours_h", 100_000.0),
    ] {
        let got = number(v.get(name));
        assert!((got - expected).abs() < 1e-9, "{name}: {got} != {expected}");
    }

    let back = link
        .send(WritePoint {
            name: "chw_setpoint_c".into(),
            value: PointValue::Number(9.3),
        })
        .await
        .expect("mailbox")
        .expect("written");
    assert!((number(Some(&back)) - 9.3).abs() < 1e-9);
    assert_eq!(
        peer.read("hr", 0, 4).await,
        vec![1, 93, 480, 80],
        "only 40002 changed"
    );

    let back = link
        .send(WritePoint {
            name: "mode".into(),
            value: PointValue::from("cooling"),
        })
        .await
        .expect("mailbox");
    assert_eq!(back, Ok(PointValue::from("cooling")));
    assert_eq!(peer.read("hr", 0, 1).await, vec![0]);

    let back = link
        .send(WritePoint {
            name: "saving".into(),
            value: PointValue::Bool(true),
        })
        .await
        .expect("mailbox");
    assert_eq!(back, Ok(PointValue::Bool(true)));
    assert_eq!(peer.read("co", 0, 2).await, vec![1, 1]);
}
