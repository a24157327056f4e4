//! The uplink's send window: the mode, which outbox records to read next, how many batches
//! may be in flight, what a read becomes (a batch to publish, or a range that needs no
//! delivery), and where each stream resumes after a reconnect. Plain code, no actix, no
//! broker, no outbox: the actor runs the reads and publishes it asks for.
//!
//! Per stream, records `frontier+1 ..= next_send-1` are published in this session and wait
//! for their PUBACK; `next_send ..= committed` are still to be read. At most one read per
//! stream runs at a time, and reads plus unacknowledged batches stay within
//! `max_inflight_batches`. More than `live_batch_max` unsent records make a backlog: the
//! mode turns `DrainingBacklog` and reads are large (up to `backlog_batch_bytes`, sent
//! compressed); at most `live_batch_max` unsent turn it `Online` again. Every connect and
//! disconnect starts a new *session*: reads of an older session are ignored, and each
//! stream resumes at its frontier, so whatever was not acknowledged is re-sent, oldest
//! first.
//!
//! With `batch_max_delay` above zero, live telemetry waits: a read of it starts when the
//! oldest unsent sample has waited that long (counted from when the window first saw it
//! unsent) or `live_batch_max` samples are unsent; [`Window::deadline`] says when to look
//! again. Events never wait, and a (re)connect sends what waits at once. With a point
//! dictionary ([`Window::with_dictionary`]) telemetry goes as compact batches, the
//! dictionary's names in the first one of each session and at least every
//! [`NAMES_EVERY`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use shiki_proto::PointDictionary;
use tokio::time::Instant;

use super::batch::{self, Batch, Format};
use super::inflight::{Acked, InFlight, Tag};
use super::state::{Input, Mode};
use crate::outbox::{Committed, StoredRecord, Stream};

/// The window's limits (from `[mqtt]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowConfig {
    pub live_batch_max: usize,
    pub backlog_batch_bytes: usize,
    pub max_inflight_batches: usize,
    /// How long live telemetry may wait for more samples (`telemetry.batch_max_delay`).
    pub batch_max_delay: Duration,
}

/// Longest time between two compact batches that carry the dictionary's names, so a cloud
/// that lost them (restarted without the device's catalog) reads the device again soon.
pub const NAMES_EVERY: Duration = Duration::from_secs(3600);

/// One outbox read to run: `peek_from(stream, from, max_count, max_bytes)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peek {
    pub stream: Stream,
    pub from: u64,
    /// The highest committed seq when the read was asked for.
    pub upto: u64,
    pub max_count: usize,
    pub max_bytes: usize,
    /// A backlog read: the batch is marked `backlog` (and large).
    pub backlog: bool,
    session: u64,
}

/// Stored records that will never reach the cloud; the uplink records a `DataDropped` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub stream: Stream,
    pub from: u64,
    pub to: u64,
    pub count: usize,
    pub reason: &'static str,
}

/// What an outbox read becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The read belongs to an older session, or the uplink stopped sending: drop it.
    Ignore,
    /// Publish `batch` on the stream's channel, then report [`Window::published`] (or, when
    /// the client refuses the request, read again later).
    Publish {
        stream: Stream,
        batch: Batch,
        skipped: Option<Skipped>,
    },
    /// Nothing to publish from this range: apply `acked` and read on.
    Skip {
        acked: Acked,
        skipped: Option<Skipped>,
    },
}

/// The send window of the uplink (see the module docs).
#[derive(Debug)]
pub struct Window {
    cfg: WindowConfig,
    mode: Mode,
    inflight: InFlight,
    committed: Committed,
    /// Per stream, the next seq to read in this session (default: frontier + 1).
    next_send: BTreeMap<Stream, u64>,
    /// Streams with a read running.
    peeking: BTreeSet<Stream>,
    /// Incremented on every connect and disconnect.
    session: u64,
    published_batches: u64,
    published_records: u64,
    /// Compact telemetry with this dictionary (else JSON, protocol version 1).
    dictionary: Option<PointDictionary>,
    /// When a batch with the dictionary's names was last published in this session.
    names_sent: Option<Instant>,
    /// Since when live telemetry waits unsent (with `batch_max_delay`).
    waiting_since: Option<Instant>,
    /// The time of the last [`Window::peeks_at`].
    now: Option<Instant>,
    /// Send waiting telemetry at the next read (set by a connect).
    flush: bool,
}

impl Window {
    /// Offline, with `committed` records in the outbox and everything up to `frontiers`
    /// (telemetry, events) acknowledged.
    pub fn new(cfg: WindowConfig, committed: Committed, frontiers: (u64, u64)) -> Self {
        Self {
            cfg,
            mode: Mode::Offline,
            inflight: InFlight::new(frontiers.0, frontiers.1),
            committed,
            next_send: BTreeMap::new(),
            peeking: BTreeSet::new(),
            session: 0,
            published_batches: 0,
            published_records: 0,
            dictionary: None,
            names_sent: None,
            waiting_since: None,
            now: None,
            flush: false,
        }
    }

    /// Telemetry as compact batches with `dict` (the catalog's points).
    pub fn with_dictionary(mut self, dict: PointDictionary) -> Self {
        self.dictionary = Some(dict);
        self
    }

    /// When live telemetry that waits for more samples is due (`None`: nothing waits).
    pub fn deadline(&self) -> Option<Instant> {
        if !self.mode.sends() {
            return None;
        }
        self.waiting_since.map(|t| t + self.cfg.batch_max_delay)
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The publishes in flight and the acknowledged frontiers.
    pub fn inflight(&self) -> &InFlight {
        &self.inflight
    }

    /// (batches, records) published since start.
    pub fn totals(&self) -> (u64, u64) {
        (self.published_batches, self.published_records)
    }

    fn set_mode(&mut self, input: Input) {
        let next = self.mode.next(input, self.cfg.live_batch_max as u64);
        if next != self.mode {
            tracing::info!(from = ?self.mode, to = ?next, ?input, "uplink mode");
            self.mode = next;
        }
    }

    fn next_send(&self, stream: Stream) -> u64 {
        self.next_send
            .get(&stream)
            .copied()
            .unwrap_or_else(|| self.inflight.frontier(stream) + 1)
    }

    /// Records committed but not yet published in this session.
    pub fn unsent(&self) -> u64 {
        Stream::ALL
            .into_iter()
            .map(|s| (self.committed.get(s) + 1).saturating_sub(self.next_send(s)))
            .sum()
    }

    fn new_session(&mut self) {
        self.names_sent = None;
        // What waited goes at once after a (re)connect: it may have waited a whole outage.
        self.waiting_since = None;
        self.flush = true;
        self.inflight.reset();
        self.session += 1;
        self.peeking.clear();
        self.next_send.clear();
    }

    /// A broker session started: resume every stream at its frontier. Answers the backlog.
    pub fn connected(&mut self) -> u64 {
        self.new_session();
        let backlog = self.unsent();
        self.set_mode(Input::Connected { backlog });
        backlog
    }

    /// The broker session ended. Answers whether to reconnect (not when shutting down).
    pub fn disconnected(&mut self) -> bool {
        self.new_session();
        if self.mode == Mode::ShuttingDown {
            return false;
        }
        self.set_mode(Input::Disconnected);
        true
    }

    /// Stop sending. Answers whether the uplink was sending (connected) until now.
    pub fn shut_down(&mut self) -> bool {
        let was_sending = self.mode.sends();
        self.set_mode(Input::Shutdown);
        was_sending
    }

    /// The outbox committed more records.
    pub fn committed(&mut self, committed: Committed) {
        self.committed = committed;
    }

    /// A QoS 1 publish request other than records (status, catalog, reports, acks).
    pub fn requested(&mut self, tag: Tag) {
        self.inflight.requested(tag);
    }

    /// rumqttc gave the next requested publish this packet id.
    pub fn outgoing(&mut self, pkid: u16) {
        self.inflight.outgoing(pkid);
    }

    /// A PUBACK arrived.
    pub fn puback(&mut self, pkid: u16) -> Acked {
        self.inflight.puback(pkid)
    }

    /// The outbox reads to start now: one per stream with unsent records and no read
    /// running, events first, within the in-flight limit. Switches between `Online` and
    /// `DrainingBacklog` on the way.
    pub fn peeks(&mut self) -> Vec<Peek> {
        self.peeks_at(Instant::now())
    }

    /// [`Window::peeks`] at `now` (which `batch_max_delay` is counted against).
    pub fn peeks_at(&mut self, now: Instant) -> Vec<Peek> {
        self.now = Some(now);
        if !self.mode.sends() {
            return Vec::new();
        }
        let live_max = self.cfg.live_batch_max as u64;
        let unsent = self.unsent();
        if self.mode == Mode::Online && unsent > live_max {
            self.set_mode(Input::BacklogGrew);
        } else if self.mode == Mode::DrainingBacklog && unsent <= live_max {
            self.set_mode(Input::CaughtUp);
        }
        let mut peeks = Vec::new();
        for stream in [Stream::Events, Stream::Telemetry] {
            let from = self.next_send(stream);
            let upto = self.committed.get(stream);
            if from > upto
                || self.peeking.contains(&stream)
                || self.inflight.batches() + self.peeking.len() >= self.cfg.max_inflight_batches
            {
                continue;
            }
            let backlog = (upto + 1 - from) > live_max;
            if stream == Stream::Telemetry && self.holds(now, upto + 1 - from) {
                continue;
            }
            let (max_count, max_bytes) = if backlog {
                (usize::MAX, self.cfg.backlog_batch_bytes)
            } else {
                (self.cfg.live_batch_max, shiki_proto::MAX_MESSAGE_BYTES)
            };
            self.peeking.insert(stream);
            peeks.push(Peek {
                stream,
                from,
                upto,
                max_count,
                max_bytes,
                backlog,
                session: self.session,
            });
        }
        peeks
    }

    /// Whether `unsent` live samples wait for more (and since when, from now on).
    fn holds(&mut self, now: Instant, unsent: u64) -> bool {
        let delay = self.cfg.batch_max_delay;
        if delay.is_zero() || unsent >= self.cfg.live_batch_max as u64 {
            self.waiting_since = None;
            return false;
        }
        if self.flush {
            // The first read after a connect: what waits may have waited a whole outage.
            self.flush = false;
            self.waiting_since = None;
            return false;
        }
        let since = *self.waiting_since.get_or_insert(now);
        if now.duration_since(since) >= delay {
            self.waiting_since = None;
            false
        } else {
            true
        }
    }

    /// The read `peek` came back; false when it is to be ignored.
    fn returned(&mut self, peek: &Peek) -> bool {
        if peek.session != self.session || !self.mode.sends() {
            return false;
        }
        self.peeking.remove(&peek.stream);
        true
    }

    /// The read `peek` failed. Answers whether to read again later (false: it is stale).
    pub fn read_failed(&mut self, peek: &Peek) -> bool {
        self.returned(peek)
    }

    /// The read `peek` answered `records` (seq order, all `>= peek.from`).
    pub fn peeked(&mut self, peek: &Peek, records: &[StoredRecord]) -> Step {
        if !self.returned(peek) {
            return Step::Ignore;
        }
        let stream = peek.stream;
        let Some(first) = records.first() else {
            // Everything in from..=upto was dropped by the quota: nothing to send.
            return self.skip(stream, peek.from, peek.upto, None);
        };
        let format = match &self.dictionary {
            None => Format::Json,
            Some(dict) => Format::Compact {
                dict,
                with_names: match (self.names_sent, self.now) {
                    (Some(sent), Some(now)) => now.duration_since(sent) >= NAMES_EVERY,
                    _ => true,
                },
            },
        };
        let Some(batch) = batch::build_as(stream, peek.from, records, peek.backlog, format) else {
            let skipped = Skipped {
                stream,
                from: peek.from,
                to: first.seq,
                count: 1,
                reason: "exceeds the message limit",
            };
            return self.skip(stream, peek.from, first.seq, Some(skipped));
        };
        let skipped = (batch.corrupt > 0).then_some(Skipped {
            stream,
            from: batch.from,
            to: batch.to,
            count: batch.corrupt,
            reason: "could not be decoded",
        });
        Step::Publish {
            stream,
            batch,
            skipped,
        }
    }

    fn skip(&mut self, stream: Stream, from: u64, to: u64, skipped: Option<Skipped>) -> Step {
        self.next_send.insert(stream, to + 1);
        let acked = self.inflight.skip(stream, from, to);
        Step::Skip { acked, skipped }
    }

    /// The client took the publish request of a batch of [`Step::Publish`]: `count`
    /// records covering `from..=to` of `stream`.
    /// The client took a compact batch that carries the dictionary's names.
    pub fn names_published(&mut self) {
        self.names_sent = Some(self.now.unwrap_or_else(Instant::now));
    }

    pub fn published(&mut self, stream: Stream, from: u64, to: u64, count: usize) {
        self.inflight.requested(Tag::Records { stream, from, to });
        self.next_send.insert(stream, to + 1);
        self.published_batches += 1;
        self.published_records += count as u64;
    }
}
