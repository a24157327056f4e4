//! Test helpers: stand-in peers that forward what they receive to a channel, and waits
//! with timeouts (never sleeps).

use std::time::Duration;

use actix::prelude::*;
use tokio::sync::mpsc;

use crate::register_map::{PlcConfig, RegisterMap};

/// An actor that forwards every `M` it receives to a channel.
#[derive(Debug)]
pub struct Forward<M: Message<Result = ()> + Send + Unpin + 'static>(mpsc::UnboundedSender<M>);

impl<M: Message<Result = ()> + Send + Unpin + 'static> Actor for Forward<M> {
    type Context = Context<Self>;
}

impl<M: Message<Result = ()> + Send + Unpin + 'static> Handler<M> for Forward<M> {
    type Result = ();

    fn handle(&mut self, msg: M, _: &mut Self::Context) {
        let _ = self.0.send(msg);
    }
}

/// A recipient and the channel its messages arrive on.
pub fn probe<M: Message<Result = ()> + Send + Unpin + 'static>()
-> (Recipient<M>, mpsc::UnboundedReceiver<M>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Forward(tx).start().recipient(), rx)
}

/// How long a test waits for an expected message.
pub const WAIT: Duration = Duration::from_secs(10);

/// The next message, or panic after [`WAIT`].
pub async fn next<M>(rx: &mut mpsc::UnboundedReceiver<M>) -> M {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("timed out waiting for a message")
        .expect("channel closed")
}

/// The first message matching `pred` (others are dropped), or panic after [`WAIT`].
pub async fn next_matching<M: std::fmt::Debug>(
    rx: &mut mpsc::UnboundedReceiver<M>,
    mut pred: impl FnMut(&M) -> bool,
) -> M {
    tokio::time::timeout(WAIT, async {
        loop {
            let m = rx.recv().await.expect("channel closed");
            if pred(&m) {
                return m;
            }
        }
    })
    .await
    .expect("timed out waiting for a matching message")
}

/// The default map pointed at `addr`, polling fast, with short timeouts and backoff.
pub fn fast_map(addr: std::net::SocketAddr, edit: impl FnOnce(&mut PlcConfig)) -> RegisterMap {
    let mut c = crate::plc_sim::default_map().config().clone();
    c.address = addr.to_string();
    c.poll_interval = Duration::from_millis(100);
    c.request_timeout = Duration::from_millis(500);
    c.reconnect_min = Duration::from_millis(50);
    c.reconnect_max = Duration::from_millis(200);
    edit(&mut c);
    RegisterMap::new(c).expect("valid test map")
}
