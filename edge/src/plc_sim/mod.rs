//! `plc-sim`: a Modbus TCP absorption chiller/heater serving a register map (by default the
//! one in `deploy/edge.example.toml`, so the example config works against it unchanged).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use shiki_edge::plc_sim::{PlcSim, SimOptions, default_map};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let sim = PlcSim::start(listener, default_map(), SimOptions::default())?;
//! println!("simulated PLC on {}", sim.addr());
//! sim.set_alarm(42); // the plant stops and `alarm_code` reads 42
//! sim.stop().await;
//! # Ok(()) }
//! ```
//!
//! The model ([`SimModel`]) steps every `tick` by `tick × speed` simulated seconds: supply and
//! return water follow the setpoint of the active mode with first-order lags while running
//! (`run` on and no alarm), drift toward an idle temperature when stopped; outdoor air swings
//! daily; gas flows while running. Writes outside a point's `min`/`max` are answered with
//! exception 0x03 (illegal data value); addresses outside the mapped range, and writes to
//! read-only or unmapped registers, with 0x02 (illegal data address). Holding register
//! [`SIM_ALARM_REGISTER`] (40100) injects an alarm. [`SimOptions::unit_ids`] picks the unit
//! ids answered (default: all). [`serve_rtu`] serves Modbus RTU on a serial port instead.

mod model;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use shiki_proto::PointValue;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

pub use model::{SIM_ALARM_REGISTER, SimModel};

use crate::register_map::{RegisterKind, RegisterMap};

/// The example config the simulator's default map comes from.
const EXAMPLE_CONFIG: &str = include_str!("../../../deploy/edge.example.toml");

/// The default register map (`[plc]` of `deploy/edge.example.toml`).
pub fn default_map() -> RegisterMap {
    RegisterMap::from_config_toml(EXAMPLE_CONFIG)
        .expect("deploy/edge.example.toml is validated by register_map tests")
}

/// How the simulation runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// Simulated seconds per real second (60 = one simulated minute per second).
    pub speed: f64,
    /// Real time between model steps.
    pub tick: Duration,
    /// Outdoor temperature at the start, °C.
    pub outdoor_c: f64,
    /// Unit ids answered; empty answers every unit id. Others get exception 0x0B (gateway
    /// target device failed to respond) over TCP and silence on an RTU bus.
    pub unit_ids: Vec<u8>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            speed: 1.0,
            tick: Duration::from_secs(1),
            outdoor_c: 30.0,
            unit_ids: Vec::new(),
        }
    }
}

type Shared = Arc<Mutex<SimModel>>;

fn lock(model: &Shared) -> MutexGuard<'_, SimModel> {
    // A panic while holding the lock cannot leave the memory half-written in a way that
    // matters for a simulator; keep serving.
    model.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serve `map` on `listener` until `shutdown` completes. For `shiki-edge plc-sim`.
pub async fn serve(
    listener: TcpListener,
    map: RegisterMap,
    options: SimOptions,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let model = Arc::new(Mutex::new(SimModel::new(map, options.outdoor_c)));
    serve_model(listener, model, options, shutdown).await
}

async fn serve_model(
    listener: TcpListener,
    model: Shared,
    options: SimOptions,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let server = Server::new(listener);
    let service = SimService {
        model: Arc::clone(&model),
        unit_ids: options.unit_ids.clone(),
        silent: false,
    };
    let on_connected = move |stream, socket_addr| {
        let service = service.clone();
        async move {
            tracing::debug!(peer = %socket_addr, "plc-sim: client connected");
            accept_tcp_connection(stream, socket_addr, move |_| Ok(Some(service.clone())))
        }
    };
    let on_error = |err: io::Error| tracing::debug!(error = %err, "plc-sim: connection ended");
    tokio::select! {
        r = server.serve(&on_connected, on_error) => r,
        () = stepping(&model, &options) => Ok(()),
        () = shutdown => Ok(()),
    }
}

/// Serve `map` as Modbus RTU on an open serial port until `shutdown` completes.
pub async fn serve_rtu(
    serial: tokio_serial::SerialStream,
    map: RegisterMap,
    options: SimOptions,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let model = Arc::new(Mutex::new(SimModel::new(map, options.outdoor_c)));
    serve_rtu_model(serial, model, options, shutdown).await
}

async fn serve_rtu_model(
    serial: tokio_serial::SerialStream,
    model: Shared,
    options: SimOptions,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let service = SimService {
        model: Arc::clone(&model),
        unit_ids: options.unit_ids.clone(),
        silent: true,
    };
    let server = tokio_modbus::server::rtu::Server::new(serial);
    tokio::select! {
        r = server.serve_forever(service) => r,
        () = stepping(&model, &options) => Ok(()),
        () = shutdown => Ok(()),
    }
}

/// Step the model every tick, forever.
async fn stepping(model: &Shared, options: &SimOptions) {
    let tick = options.tick.max(Duration::from_millis(1));
    let dt = tick.as_secs_f64() * options.speed;
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        lock(model).step(dt);
    }
}

/// A running in-process simulator (for tests and demos).
#[derive(Debug)]
pub struct PlcSim {
    /// `None` for an RTU simulator.
    addr: Option<SocketAddr>,
    model: Shared,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl PlcSim {
    /// Start serving `map` on `listener` (bind port 0 and read [`Self::addr`]).
    /// Needs a tokio runtime (an actix `System` is one).
    pub fn start(listener: TcpListener, map: RegisterMap, options: SimOptions) -> io::Result<Self> {
        let model = Arc::new(Mutex::new(SimModel::new(map, options.outdoor_c)));
        Self::start_with_model(listener, model, options)
    }

    fn start_with_model(
        listener: TcpListener,
        model: Shared,
        options: SimOptions,
    ) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_model(
            listener,
            Arc::clone(&model),
            options,
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(Self {
            addr: Some(addr),
            model,
            stop: Some(stop),
            task,
        })
    }

    /// Start serving `map` as Modbus RTU on an open serial port (e.g. one end of a pty pair).
    pub fn start_rtu(
        serial: tokio_serial::SerialStream,
        map: RegisterMap,
        options: SimOptions,
    ) -> Self {
        let model = Arc::new(Mutex::new(SimModel::new(map, options.outdoor_c)));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_rtu_model(
            serial,
            Arc::clone(&model),
            options,
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            addr: None,
            model,
            stop: Some(stop),
            task,
        }
    }

    /// Serve again on `addr` with the same plant state (after [`Self::stop`]), e.g. to test
    /// reconnection.
    pub async fn restart(
        addr: SocketAddr,
        model: Arc<Mutex<SimModel>>,
        options: SimOptions,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Self::start_with_model(listener, model, options)
    }

    /// The bound TCP address. Panics for an RTU simulator (started with [`Self::start_rtu`]).
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("addr() of a TCP simulator")
    }

    /// The plant state, shared with the server (to keep it across [`Self::restart`]).
    pub fn model(&self) -> Arc<Mutex<SimModel>> {
        Arc::clone(&self.model)
    }

    /// Decoded value of a point.
    pub fn value(&self, name: &str) -> Option<PointValue> {
        lock(&self.model).value(name)
    }

    /// Change a point as if at the panel (no limit checks).
    pub fn set_value(&self, name: &str, value: &PointValue) -> bool {
        lock(&self.model).set_value(name, value)
    }

    /// Raw holding/input register.
    pub fn register(&self, kind: RegisterKind, address: u16) -> Option<u16> {
        lock(&self.model).register(kind, address)
    }

    /// Raise (non-zero) or clear (0) an alarm.
    pub fn set_alarm(&self, code: u16) {
        lock(&self.model).set_alarm(code);
    }

    /// Advance the model by `seconds` of simulated time now.
    pub fn step(&self, seconds: f64) {
        lock(&self.model).step(seconds);
    }

    /// Stop serving and close every connection; returns when the port is released.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "plc-sim ended with an error"),
            Err(e) => tracing::warn!(error = %e, "plc-sim task failed"),
        }
    }
}

impl Drop for PlcSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug, Clone)]
struct SimService {
    model: Shared,
    unit_ids: Vec<u8>,
    /// Unknown unit ids get no answer (RTU) instead of exception 0x0B (TCP).
    silent: bool,
}

impl tokio_modbus::server::Service for SimService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = std::future::Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        if !self.unit_ids.is_empty() && !self.unit_ids.contains(&req.slave) {
            return std::future::ready(if self.silent {
                Ok(None)
            } else {
                Err(ExceptionCode::GatewayTargetDevice)
            });
        }
        std::future::ready(handle(&mut lock(&self.model), req.request).map(Some))
    }
}

fn handle(m: &mut SimModel, req: Request<'static>) -> Result<Response, ExceptionCode> {
    match req {
        Request::ReadHoldingRegisters(a, n) => m
            .read_registers(RegisterKind::Holding, a, n)
            .map(Response::ReadHoldingRegisters),
        Request::ReadInputRegisters(a, n) => m
            .read_registers(RegisterKind::Input, a, n)
            .map(Response::ReadInputRegisters),
        Request::ReadCoils(a, n) => m
            .read_bits(RegisterKind::Coil, a, n)
            .map(Response::ReadCoils),
        Request::ReadDiscreteInputs(a, n) => m
            .read_bits(RegisterKind::Discrete, a, n)
            .map(Response::ReadDiscreteInputs),
        Request::WriteSingleRegister(a, w) => m
            .write_registers(a, &[w])
            .map(|()| Response::WriteSingleRegister(a, w)),
        Request::WriteMultipleRegisters(a, words) => {
            let n = u16::try_from(words.len()).map_err(|_| ExceptionCode::IllegalDataValue)?;
            m.write_registers(a, &words)
                .map(|()| Response::WriteMultipleRegisters(a, n))
        }
        Request::WriteSingleCoil(a, b) => {
            m.write_coil(a, b).map(|()| Response::WriteSingleCoil(a, b))
        }
        Request::WriteMultipleCoils(a, bits) => {
            let n = u16::try_from(bits.len()).map_err(|_| ExceptionCode::IllegalDataValue)?;
            for (addr, b) in (a..).zip(bits.iter()) {
                m.write_coil(addr, *b)?;
            }
            Ok(Response::WriteMultipleCoils(a, n))
        }
        _ => Err(ExceptionCode::IllegalFunction),
    }
}
