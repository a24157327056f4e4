//! A TCP proxy the test controls: `cut()` closes every connection and refuses new ones
//! (as a dropped cellular link looks to the edge), `restore()` lets traffic through again,
//! `set_delay()` makes the link slow (each chunk is held back before it is forwarded).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// State of the emulated link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Link {
    up: bool,
    delay: Duration,
}

/// A proxy from a local port (bound to port 0) to `upstream`.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    link: Arc<watch::Sender<Link>>,
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
        });
        let link = Arc::new(tx);
        let task = tokio::spawn(accept_loop(listener, upstream, rx));
        Ok(Self { addr, link, task })
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

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, link: watch::Receiver<Link>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if !link.borrow().up {
            drop(client);
            continue;
        }
        let link = link.clone();
        tokio::spawn(async move {
            if let Ok(server) = TcpStream::connect(upstream).await {
                pipe(client, server, link).await;
            }
        });
    }
}

async fn pipe(client: TcpStream, server: TcpStream, mut link: watch::Receiver<Link>) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = forward(cr, sw, link.clone());
    let down = forward(sr, cw, link.clone());
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
    }
}
