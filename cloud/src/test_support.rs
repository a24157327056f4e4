//! Helpers the crate's tests share.

use actix::prelude::*;
use tokio::sync::mpsc;

/// Forwards every message it gets to a channel: stands in for the publisher, the notifier
/// or any other peer whose messages a test reads.
#[derive(Debug)]
pub(crate) struct Collect<M>(mpsc::UnboundedSender<M>);

impl<M: Unpin + 'static> Actor for Collect<M> {
    type Context = Context<Self>;
}

impl<M: Message<Result = ()> + Send + Unpin + 'static> Handler<M> for Collect<M> {
    type Result = ();
    fn handle(&mut self, msg: M, _: &mut Context<Self>) {
        let _ = self.0.send(msg);
    }
}

/// A started [`Collect`] and the channel its messages arrive on.
pub(crate) fn collector<M: Message<Result = ()> + Send + Unpin + 'static>()
-> (Recipient<M>, mpsc::UnboundedReceiver<M>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Collect(tx).start().recipient(), rx)
}

/// The device input of a `status` message saying `state`.
pub(crate) fn status(state: shiki_proto::Connectivity) -> crate::device::DeviceInput {
    crate::device::DeviceInput::Status(shiki_proto::Status {
        v: shiki_proto::PROTOCOL_VERSION,
        state,
        software_version: None,
        boot_time: None,
        ts: None,
    })
}

pub(crate) use shiki_cloud_store::testing::stored_seqs;
