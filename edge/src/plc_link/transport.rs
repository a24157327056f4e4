//! Modbus I/O: connect to a TCP PLC or open an RTU bus, and run one request with a timeout.
//! Every failure becomes a [`LinkError`] naming the operation, the register and the cause.

use std::fmt;
use std::time::Duration;

use tokio_modbus::client::{Context, Reader, Writer};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::{ExceptionCode, Slave};

use crate::register_map::{Endpoint, Parity, Raw, ReadRequest, RegisterKind, SerialConfig};

/// Why a Modbus operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LinkError {
    #[error("cannot connect to PLC at {endpoint}: {cause}")]
    Connect { endpoint: String, cause: String },
    #[error("modbus {op} of {register} (unit {unit_id}) timed out after {after}")]
    Timeout {
        op: &'static str,
        register: String,
        unit_id: u8,
        after: String,
    },
    /// On an RTU bus: this unit id stayed silent (the bus itself is fine).
    #[error("modbus {op} of {register} (unit {unit_id}) got no answer within {after}")]
    NoAnswer {
        op: &'static str,
        register: String,
        unit_id: u8,
        after: String,
    },
    #[error("modbus {op} of {register} (unit {unit_id}) refused: {exception}")]
    Exception {
        op: &'static str,
        register: String,
        unit_id: u8,
        /// e.g. "exception 0x03 (illegal data value)".
        exception: String,
        /// The PLC is busy or failing (see [`is_transient`]): the same request may
        /// succeed later.
        transient: bool,
    },
    #[error("modbus {op} of {register} (unit {unit_id}) failed: {cause}")]
    Io {
        op: &'static str,
        register: String,
        unit_id: u8,
        cause: String,
    },
}

impl LinkError {
    /// Timeouts, I/O errors and failed connects: the connection is dropped and re-opened.
    /// Modbus exceptions are answers, and a silent unit on an RTU bus says nothing about
    /// the others; the link is fine.
    pub fn is_link_fault(&self) -> bool {
        !matches!(
            self,
            LinkError::Exception { .. } | LinkError::NoAnswer { .. }
        )
    }

    /// The register (or endpoint) the error is about.
    pub fn register(&self) -> &str {
        match self {
            LinkError::Connect { endpoint, .. } => endpoint,
            LinkError::Timeout { register, .. }
            | LinkError::NoAnswer { register, .. }
            | LinkError::Exception { register, .. }
            | LinkError::Io { register, .. } => register,
        }
    }
}

/// Exceptions that say the PLC (or a gateway in front of it) is busy or failing now, not
/// that the request is wrong: 0x04 server device failure, 0x05 acknowledge (still working
/// on it), 0x06 server device busy, 0x0A gateway path unavailable, 0x0B gateway target
/// failed to respond. A write refused with one of them is retried; one refused with any
/// other (illegal function, address or value) is not, until the value changes.
pub fn is_transient(code: ExceptionCode) -> bool {
    matches!(
        code,
        ExceptionCode::ServerDeviceFailure
            | ExceptionCode::Acknowledge
            | ExceptionCode::ServerDeviceBusy
            | ExceptionCode::GatewayPathUnavailable
            | ExceptionCode::GatewayTargetDevice
    )
}

/// "exception 0x03 (illegal data value)".
pub fn exception_text(code: ExceptionCode) -> String {
    let name = match code {
        ExceptionCode::IllegalFunction => "illegal function",
        ExceptionCode::IllegalDataAddress => "illegal data address",
        ExceptionCode::IllegalDataValue => "illegal data value",
        ExceptionCode::ServerDeviceFailure => "server device failure",
        ExceptionCode::Acknowledge => "acknowledge",
        ExceptionCode::ServerDeviceBusy => "server device busy",
        ExceptionCode::MemoryParityError => "memory parity error",
        ExceptionCode::GatewayPathUnavailable => "gateway path unavailable",
        ExceptionCode::GatewayTargetDevice => "gateway target device failed to respond",
        ExceptionCode::Custom(_) => "unknown exception",
    };
    format!("exception 0x{:02X} ({name})", u8::from(code))
}

/// "2 s", "0.5 s".
pub fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s} s")
    }
}

/// An open Modbus client (TCP connection or serial bus).
pub struct Connection {
    ctx: Context,
    /// A serial bus: a timeout means one silent unit, not a broken link.
    rtu: bool,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Connection")
    }
}

/// Open the endpoint within `timeout`.
async fn connect(
    endpoint: &Endpoint,
    serial: &SerialConfig,
    timeout: Duration,
) -> Result<Connection, LinkError> {
    let fail = |cause: String| LinkError::Connect {
        endpoint: endpoint.to_string(),
        cause,
    };
    match endpoint {
        Endpoint::Tcp(addr) => {
            let open = async {
                let mut last = None;
                for sa in tokio::net::lookup_host(addr.as_str()).await? {
                    match tokio_modbus::client::tcp::connect(sa).await {
                        Ok(ctx) => return Ok(ctx),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no address found")
                }))
            };
            match tokio::time::timeout(timeout, open).await {
                Ok(Ok(ctx)) => Ok(Connection { ctx, rtu: false }),
                Ok(Err(e)) => Err(fail(e.to_string())),
                Err(_) => Err(fail(format!("timed out after {}", seconds(timeout)))),
            }
        }
        Endpoint::Rtu(path) => {
            use tokio_serial::SerialPortBuilderExt as _;
            let builder = tokio_serial::new(path.as_str(), serial.baud_rate)
                .parity(match serial.parity {
                    Parity::None => tokio_serial::Parity::None,
                    Parity::Even => tokio_serial::Parity::Even,
                    Parity::Odd => tokio_serial::Parity::Odd,
                })
                .data_bits(if serial.data_bits == 7 {
                    tokio_serial::DataBits::Seven
                } else {
                    tokio_serial::DataBits::Eight
                })
                .stop_bits(if serial.stop_bits == 2 {
                    tokio_serial::StopBits::Two
                } else {
                    tokio_serial::StopBits::One
                });
            let port = builder
                .open_native_async()
                .map_err(|e| fail(e.to_string()))?;
            Ok(Connection {
                ctx: tokio_modbus::client::rtu::attach_slave(port, Slave(1)),
                rtu: true,
            })
        }
    }
}

/// What a read returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadData {
    Words(Vec<u16>),
    Bits(Vec<bool>),
}

async fn run<T>(
    rtu: bool,
    op: &'static str,
    register: String,
    unit_id: u8,
    timeout: Duration,
    fut: impl Future<Output = tokio_modbus::Result<T>>,
) -> Result<T, LinkError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(Ok(v))) => Ok(v),
        Ok(Ok(Err(code))) => Err(LinkError::Exception {
            op,
            register,
            unit_id,
            exception: exception_text(code),
            transient: is_transient(code),
        }),
        Ok(Err(e)) => Err(LinkError::Io {
            op,
            register,
            unit_id,
            cause: e.to_string(),
        }),
        Err(_) if rtu => Err(LinkError::NoAnswer {
            op,
            register,
            unit_id,
            after: seconds(timeout),
        }),
        Err(_) => Err(LinkError::Timeout {
            op,
            register,
            unit_id,
            after: seconds(timeout),
        }),
    }
}

impl ReadData {
    /// Registers or bits in the answer.
    pub fn len(&self) -> usize {
        match self {
            ReadData::Words(w) => w.len(),
            ReadData::Bits(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where and how to open the link, and how long any one request may take.
#[derive(Debug, Clone)]
pub struct Dialer {
    pub endpoint: Endpoint,
    pub serial: SerialConfig,
    pub timeout: Duration,
}

impl Dialer {
    /// Runs `op` on `conn`, or on a new connection when there is none. Answers the
    /// connection (whether the caller keeps it is its decision) and `op`'s result, or the
    /// connect error.
    pub async fn with_connection<T>(
        &self,
        conn: Option<Connection>,
        op: impl AsyncFnOnce(&mut Connection, Duration) -> T,
    ) -> (Option<Connection>, Result<T, LinkError>) {
        let mut conn = match conn {
            Some(c) => c,
            None => match connect(&self.endpoint, &self.serial, self.timeout).await {
                Ok(c) => c,
                Err(e) => return (None, Err(e)),
            },
        };
        let out = op(&mut conn, self.timeout).await;
        (Some(conn), Ok(out))
    }
}

impl Connection {
    /// Runs the planned reads in order, stopping after the first link fault (the answer is
    /// then shorter than `plan`).
    pub async fn read_plan(
        &mut self,
        plan: &[ReadRequest],
        timeout: Duration,
    ) -> Vec<Result<ReadData, LinkError>> {
        let mut results = Vec::with_capacity(plan.len());
        for req in plan {
            let r = self.read(req, timeout).await;
            let lost = r.as_ref().is_err_and(LinkError::is_link_fault);
            results.push(r);
            if lost {
                break;
            }
        }
        results
    }

    /// Run one planned read.
    pub async fn read(
        &mut self,
        req: &ReadRequest,
        timeout: Duration,
    ) -> Result<ReadData, LinkError> {
        let (ctx, rtu) = (&mut self.ctx, self.rtu);
        ctx.set_slave(Slave(req.unit_id));
        let (a, n) = (req.start, req.count);
        let read = async {
            let answer = match req.kind {
                RegisterKind::Holding => {
                    ctx.read_holding_registers(a, n).await?.map(ReadData::Words)
                }
                RegisterKind::Input => ctx.read_input_registers(a, n).await?.map(ReadData::Words),
                RegisterKind::Coil => ctx.read_coils(a, n).await?.map(ReadData::Bits),
                RegisterKind::Discrete => ctx.read_discrete_inputs(a, n).await?.map(ReadData::Bits),
            };
            Ok::<_, tokio_modbus::Error>(answer)
        };
        let register = req.kind.describe(req.start);
        let data = run(rtu, "read", register, req.unit_id, timeout, read).await?;
        if data.len() < usize::from(n) {
            return Err(LinkError::Io {
                op: "read",
                register: req.kind.describe(req.start),
                unit_id: req.unit_id,
                cause: format!("short answer: {} of {n}", data.len()),
            });
        }
        Ok(data)
    }

    /// Write a point's raw value at `address` of `kind` (holding or coil).
    pub async fn write(
        &mut self,
        kind: RegisterKind,
        address: u16,
        unit_id: u8,
        raw: &Raw,
        timeout: Duration,
    ) -> Result<(), LinkError> {
        let (ctx, rtu) = (&mut self.ctx, self.rtu);
        ctx.set_slave(Slave(unit_id));
        let write = async {
            match raw {
                Raw::Bit(b) => ctx.write_single_coil(address, *b).await,
                Raw::Words(w) if w.len() == 1 => ctx.write_single_register(address, w[0]).await,
                Raw::Words(w) => ctx.write_multiple_registers(address, w).await,
            }
        };
        run(
            rtu,
            "write",
            kind.describe(address),
            unit_id,
            timeout,
            write,
        )
        .await
    }
}
