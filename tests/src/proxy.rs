//! A TCP proxy the test controls: `cut()` closes every connection and refuses new ones
//! (as a dropped cellular link looks to the edge), `restore()` lets traffic through again,
//! `set_delay()` makes the link slow (each chunk is held back before it is forwarded).
//! It counts the bytes it forwards towards the client (`downstream_bytes()`), and its
//! upstream can be set after it started (a server that must be told the proxy's address).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// State of the emulated link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Link {
    up: bool,
    delay: Duration,
    upstream: SocketAddr,
}

/// A proxy from a local port (bound to port 0) to `upstream`.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    link: Arc<watch::Sender<Link>>,
    downstream: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Starts the proxy on 127.0.0.1:0, forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(Link {
            up: true,
            delay: Duration::ZERO,
            upstream,
        });
        let link = Arc::new(tx);
        let downstream = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(accept_loop(listener, rx, downstream.clone()));
        Ok(Self {
            addr,
            link,
            downstream,
            task,
        })
    }

    /// Forwards new connections to `upstream` from now on.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        self.link.send_modify(|l| l.upstream = upstream);
    }

    /// Bytes forwarded from the upstream to clients so far.
    pub fn downstream_bytes(&self) -> u64 {
        self.downstream.load(Ordering::Relaxed)
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every open connection and refuses (accepts and closes) new ones.
    pub fn cut(&self) {
        self.link.send_modify(|l| l.up = false);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.link.send_modify(|l| l.up = true);
    }

    /// Holds every chunk back by `delay` in each direction (a slow link; zero: full speed).
    pub fn set_delay(&self, delay: Duration) {
        self.link.send_modify(|l| l.delay = delay);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    link: watch::Receiver<Link>,
    downstream: Arc<AtomicU64>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if !link.borrow().up {
            drop(client);
            continue;
        }
        let link = link.clone();
        let upstream = link.borrow().upstream;
        let downstream = downstream.clone();
        tokio::spawn(async move {
            if let Ok(server) = TcpStream::connect(upstream).await {
                pipe(client, server, link, downstream).await;
            }
        });
    }
}

async fn pipe(
    client: TcpStream,
    server: TcpStream,
    mut link: watch::Receiver<Link>,
    downstream: Arc<AtomicU64>,
) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = forward(cr, sw, link.clone(), Arc::new(AtomicU64::new(0)));
    let down = forward(sr, cw, link.clone(), downstream);
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = link.wait_for(|l| !l.up) => {}
    }
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: watch::Receiver<Link>,
    counted: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let delay = link.borrow().delay;
        if !delay.is_zero() {
            // Link emulation (a slow cellular link), not synchronisation.
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        counted.fetch_add(n as u64, Ordering::Relaxed);
    }
}
