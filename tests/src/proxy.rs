//! A TCP proxy the test controls: `cut()` closes every connection and refuses new ones
//! (as a dropped cellular link looks to the edge), `restore()` lets traffic through again.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A proxy from a local port (bound to port 0) to `upstream`.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    up: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Starts the proxy on 127.0.0.1:0, forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(true);
        let up = Arc::new(tx);
        let task = tokio::spawn(accept_loop(listener, upstream, rx));
        Ok(Self { addr, up, task })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every open connection and refuses (accepts and closes) new ones.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, up: watch::Receiver<bool>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if !*up.borrow() {
            drop(client);
            continue;
        }
        let up = up.clone();
        tokio::spawn(async move {
            if let Ok(server) = TcpStream::connect(upstream).await {
                pipe(client, server, up).await;
            }
        });
    }
}

async fn pipe(mut client: TcpStream, mut server: TcpStream, mut up: watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = up.wait_for(|up| !*up) => {}
    }
}
