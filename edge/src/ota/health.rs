//! Health of a build running on trial: the `Health` actor collects signals from the other
//! actors (the store opened, `LinkUp` from the Uplink after a CONNACK, `Readings` with values
//! from PlcLink) and reports each first occurrence, then `healthy`, as lines on the trial
//! socket its supervising agent listens on. `stop` from the supervisor (or the socket
//! closing) ends this run: the agent shuts down as on SIGTERM.

use std::path::PathBuf;

use actix::prelude::*;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::{mpsc, oneshot};

use crate::messages::{LinkUp, Readings};

/// The agent opened its store (sent by the composition root).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct StoreOpened;

/// A health signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    StoreOpened,
    BrokerReached,
    PlcRead,
}

/// Which signals were seen; the lines to report (plain, tested without actix).
#[derive(Debug)]
pub struct HealthState {
    store: bool,
    broker: bool,
    plc: bool,
    healthy: bool,
}

impl HealthState {
    /// The state and its first lines (`no_plc` when no PLC is configured).
    pub fn new(plc_required: bool) -> (Self, Vec<&'static str>) {
        let state = Self {
            store: false,
            broker: false,
            plc: !plc_required,
            healthy: false,
        };
        let first = if plc_required { vec![] } else { vec!["no_plc"] };
        (state, first)
    }

    /// The lines `signal` adds: its name the first time, then `healthy` once all are in.
    pub fn signal(&mut self, signal: Signal) -> Vec<&'static str> {
        let (seen, line) = match signal {
            Signal::StoreOpened => (&mut self.store, "store_opened"),
            Signal::BrokerReached => (&mut self.broker, "broker_reached"),
            Signal::PlcRead => (&mut self.plc, "plc_read"),
        };
        if *seen {
            return Vec::new();
        }
        *seen = true;
        let mut out = vec![line];
        if self.store && self.broker && self.plc && !self.healthy {
            self.healthy = true;
            out.push("healthy");
        }
        out
    }
}

/// The health actor of a trial run.
#[derive(Debug)]
pub struct Health {
    state: HealthState,
    lines: mpsc::UnboundedSender<&'static str>,
}

impl Health {
    /// Connects to the supervisor's `socket`; `stop` completes when the supervisor says
    /// `stop` or the socket closes.
    pub fn start(socket: PathBuf, plc_required: bool, stop: oneshot::Sender<()>) -> Addr<Self> {
        let (state, first) = HealthState::new(plc_required);
        let (lines, rx) = mpsc::unbounded_channel();
        for l in first {
            let _ = lines.send(l);
        }
        actix::spawn(talk(socket, rx, stop));
        Self { state, lines }.start()
    }

    fn signal(&mut self, signal: Signal) {
        for line in self.state.signal(signal) {
            tracing::info!(line, "trial health");
            let _ = self.lines.send(line);
        }
    }
}

/// Writes the lines to the socket; completes `stop` on `stop` or when the socket closes.
async fn talk(
    socket: PathBuf,
    mut lines: mpsc::UnboundedReceiver<&'static str>,
    stop: oneshot::Sender<()>,
) {
    let stream = match tokio::net::UnixStream::connect(&socket).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(socket = %socket.display(), error = %e, "trial: cannot reach the supervising agent; stopping");
            let _ = stop.send(());
            return;
        }
    };
    let (read, mut write) = stream.into_split();
    let mut incoming = BufReader::new(read).lines();
    loop {
        tokio::select! {
            line = lines.recv() => match line {
                Some(l) => {
                    if write.write_all(format!("{l}\n").as_bytes()).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            got = incoming.next_line() => match got {
                Ok(Some(l)) if l.trim() != "stop" => continue,
                _ => break,
            },
        }
    }
    tracing::info!("trial: the supervising agent asked this run to stop");
    let _ = stop.send(());
}

impl Actor for Health {
    type Context = Context<Self>;
}

impl Handler<StoreOpened> for Health {
    type Result = ();
    fn handle(&mut self, _: StoreOpened, _ctx: &mut Context<Self>) {
        self.signal(Signal::StoreOpened);
    }
}

impl Handler<LinkUp> for Health {
    type Result = ();
    fn handle(&mut self, _: LinkUp, _ctx: &mut Context<Self>) {
        self.signal(Signal::BrokerReached);
    }
}

impl Handler<Readings> for Health {
    type Result = ();
    fn handle(&mut self, msg: Readings, _ctx: &mut Context<Self>) {
        if !msg.values.is_empty() {
            self.signal(Signal::PlcRead);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_is_reported_once_after_store_broker_and_plc() {
        let (mut s, first) = HealthState::new(true);
        assert!(first.is_empty());
        assert_eq!(s.signal(Signal::BrokerReached), vec!["broker_reached"]);
        assert_eq!(s.signal(Signal::BrokerReached), Vec::<&str>::new());
        assert_eq!(s.signal(Signal::StoreOpened), vec!["store_opened"]);
        assert_eq!(s.signal(Signal::PlcRead), vec!["plc_read", "healthy"]);
        assert!(s.signal(Signal::PlcRead).is_empty());
    }

    #[test]
    fn without_a_plc_store_and_broker_are_enough() {
        let (mut s, first) = HealthState::new(false);
        assert_eq!(first, vec!["no_plc"]);
        s.signal(Signal::StoreOpened);
        assert_eq!(
            s.signal(Signal::BrokerReached),
            vec!["broker_reached", "healthy"]
        );
    }
}
