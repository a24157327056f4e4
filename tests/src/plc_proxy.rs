//! A Modbus TCP proxy in front of a PLC simulator that can fail the way a PLC does: refuse
//! connections (powered off, cable pulled) or answer every request with a Modbus exception
//! (`SERVER DEVICE FAILURE`, as a PLC in fault does). Changing the fault closes the open
//! connections, so the client sees the change at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Modbus exception code 04, SERVER DEVICE FAILURE.
const SERVER_DEVICE_FAILURE: u8 = 0x04;

/// How the proxied PLC behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlcFault {
    /// Every request reaches the PLC.
    None,
    /// Connections are accepted and closed at once.
    Refuse,
    /// Every request is answered with exception 04 and never reaches the PLC.
    Exceptions,
}

/// A proxy from a local port to a Modbus TCP server.
#[derive(Debug)]
pub struct PlcProxy {
    addr: SocketAddr,
    fault: Arc<watch::Sender<PlcFault>>,
    exceptions: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PlcProxy {
    /// Starts the proxy on 127.0.0.1:0, forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(PlcFault::None);
        let exceptions = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(accept_loop(listener, upstream, rx, exceptions.clone()));
        Ok(Self {
            addr,
            fault: Arc::new(tx),
            exceptions,
            task,
        })
    }

    /// The address the edge polls.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the fault; open connections are closed.
    pub fn set(&self, fault: PlcFault) {
        self.fault.send_replace(fault);
    }

    /// The fault in force.
    pub fn fault(&self) -> PlcFault {
        *self.fault.borrow()
    }

    /// Exception responses sent so far.
    pub fn exceptions_sent(&self) -> u64 {
        self.exceptions.load(Ordering::Relaxed)
    }
}

impl Drop for PlcProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    fault: watch::Receiver<PlcFault>,
    exceptions: Arc<AtomicU64>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let mut changes = fault.clone();
        let now = *changes.borrow_and_update();
        match now {
            PlcFault::Refuse => drop(client),
            PlcFault::Exceptions => {
                let exceptions = exceptions.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = answer_exceptions(client, exceptions) => {}
                        _ = changes.changed() => {}
                    }
                });
            }
            PlcFault::None => {
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let mut client = client;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = changes.changed() => {}
                    }
                });
            }
        }
    }
}

/// Reads Modbus TCP requests (MBAP header + PDU) and answers each with exception 04.
async fn answer_exceptions(mut client: TcpStream, exceptions: Arc<AtomicU64>) {
    let mut header = [0u8; 7];
    loop {
        if client.read_exact(&mut header).await.is_err() {
            return;
        }
        // Length counts the unit id and the PDU.
        let len = usize::from(u16::from_be_bytes([header[4], header[5]]));
        if !(2..=254).contains(&len) {
            return;
        }
        let mut pdu = vec![0u8; len - 1];
        if client.read_exact(&mut pdu).await.is_err() {
            return;
        }
        let reply = [
            header[0],
            header[1],
            0,
            0,
            0,
            3,
            header[6],
            pdu[0] | 0x80,
            SERVER_DEVICE_FAILURE,
        ];
        if client.write_all(&reply).await.is_err() {
            return;
        }
        exceptions.fetch_add(1, Ordering::Relaxed);
    }
}
