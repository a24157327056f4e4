//! Which publish carries what, and how far each outbox stream is acknowledged.
//!
//! rumqttc assigns packet ids inside its event loop and reports each one as
//! `Outgoing::Publish(pkid)` in the order the publishes were requested. The uplink pushes a
//! [`Tag`] per QoS 1 publish request; the n-th outgoing notification takes the n-th tag.
//! On a disconnect every pending tag is forgotten (the event loop is cleaned and the
//! session is clean, so nothing un-acked is re-sent by rumqttc; the uplink re-sends from
//! the outbox instead).
//!
//! A batch covers every outbox seq in `from..=to` (seqs missing in that range were dropped
//! by the quota). The *frontier* of a stream is the highest seq below which everything is
//! acknowledged; only up to it is the outbox ever deleted, so acknowledgements that arrive
//! out of order, or for a duplicate, never delete something unsent.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::outbox::Stream;

/// What one QoS 1 publish carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// Outbox records `from..=to` of `stream`.
    Records { stream: Stream, from: u64, to: u64 },
    /// A reported-state update of this generation.
    Reported { generation: u64 },
    /// A `schedule/ack` (see `uplink::schedule::PendingAcks`).
    ScheduleAck { generation: u64 },
    /// Status, catalog, shadow/get: nothing to do on PUBACK.
    Control,
}

/// The effect of a PUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acked {
    /// The stream is now acknowledged up to this seq: delete the outbox up to it.
    Frontier {
        stream: Stream,
        up_to: u64,
    },
    /// A records batch was acknowledged but the frontier did not move.
    Records,
    Reported {
        generation: u64,
    },
    ScheduleAck {
        generation: u64,
    },
    Nothing,
}

#[derive(Debug, Default)]
pub struct InFlight {
    awaiting_pkid: VecDeque<Tag>,
    by_pkid: HashMap<u16, Tag>,
    frontier: BTreeMap<Stream, u64>,
    /// Acknowledged ranges above the frontier: from → to.
    ahead: BTreeMap<Stream, BTreeMap<u64, u64>>,
    batches: usize,
}

impl InFlight {
    /// Starts with everything up to `frontier` of each stream acknowledged.
    pub fn new(telemetry_frontier: u64, events_frontier: u64) -> Self {
        let mut this = Self::default();
        this.frontier.insert(Stream::Telemetry, telemetry_frontier);
        this.frontier.insert(Stream::Events, events_frontier);
        this
    }

    pub fn frontier(&self, stream: Stream) -> u64 {
        self.frontier.get(&stream).copied().unwrap_or(0)
    }

    /// Outbox batches published and not yet acknowledged.
    pub fn batches(&self) -> usize {
        self.batches
    }

    /// A QoS 1 publish request was queued to the client.
    pub fn requested(&mut self, tag: Tag) {
        if matches!(tag, Tag::Records { .. }) {
            self.batches += 1;
        }
        self.awaiting_pkid.push_back(tag);
    }

    /// rumqttc reported `Outgoing::Publish(pkid)`.
    pub fn outgoing(&mut self, pkid: u16) {
        match self.awaiting_pkid.pop_front() {
            Some(tag) => {
                self.by_pkid.insert(pkid, tag);
            }
            None => tracing::warn!(pkid, "outgoing publish without a pending request"),
        }
    }

    /// A PUBACK for `pkid` arrived.
    pub fn puback(&mut self, pkid: u16) -> Acked {
        match self.by_pkid.remove(&pkid) {
            Some(Tag::Records { stream, from, to }) => {
                self.batches = self.batches.saturating_sub(1);
                self.ack_range(stream, from, to)
            }
            Some(Tag::Reported { generation }) => Acked::Reported { generation },
            Some(Tag::ScheduleAck { generation }) => Acked::ScheduleAck { generation },
            Some(Tag::Control) | None => Acked::Nothing,
        }
    }

    fn ack_range(&mut self, stream: Stream, from: u64, to: u64) -> Acked {
        let before = self.frontier(stream);
        let ahead = self.ahead.entry(stream).or_default();
        let entry = ahead.entry(from).or_insert(to);
        *entry = (*entry).max(to);
        let mut frontier = before;
        while let Some((&f, &t)) = ahead.first_key_value() {
            if f > frontier + 1 {
                break;
            }
            frontier = frontier.max(t);
            ahead.remove(&f);
        }
        self.frontier.insert(stream, frontier);
        if frontier > before {
            Acked::Frontier {
                stream,
                up_to: frontier,
            }
        } else {
            Acked::Records
        }
    }

    /// Marks `from..=to` as needing no delivery (every record in it was dropped).
    pub fn skip(&mut self, stream: Stream, from: u64, to: u64) -> Acked {
        self.ack_range(stream, from, to)
    }

    /// Nothing is waiting for a packet id or an acknowledgement.
    pub fn idle(&self) -> bool {
        self.awaiting_pkid.is_empty() && self.by_pkid.is_empty()
    }

    /// The connection dropped: forget every publish in flight (they will be re-sent from
    /// the frontier). Acknowledged ranges stay valid.
    pub fn reset(&mut self) {
        self.awaiting_pkid.clear();
        self.by_pkid.clear();
        self.batches = 0;
    }
}
