//! Ingest: the cloud's MQTT session. It subscribes to every edge→cloud topic
//! ([`Topics::cloud_subscriptions`]), parses and decodes each message, queues telemetry and
//! events for the store, routes everything to the device's actor, and acknowledges each
//! message (PUBACK) after its store commit, in order. The messages rumqttc read in one go
//! (up to 10) are handled as a burst: one store submission and one entry for the acker.
//! The way back, device actors → MQTT, is [`crate::publisher::MqttPublisher`].
//!
//! A malformed payload, an unknown topic or an invalid device id is counted by reason,
//! logged with the topic, acknowledged and dropped; other devices never notice.

mod dictionaries;
mod odd_times;
mod stats;
mod telemetry;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde::de::DeserializeOwned;
use shiki_proto::{Channel, DeviceId, Direction, TopicError, Topics, decode};
use tokio::sync::mpsc;

pub use stats::{DropReason, IngestStats};

use crate::broker::Receipts;
use crate::device::{DeviceInput, Router};
use crate::store::{Commit, Store, Write};
use dictionaries::Dictionaries;
#[cfg(test)]
use telemetry::telemetry_rows;
use telemetry::telemetry_rows_any;

/// A running ingest: its MQTT client and the tasks polling and acknowledging.
#[derive(Debug)]
pub struct Ingest {
    client: AsyncClient,
    topics: Topics,
    scope: Scope,
    poll: tokio::task::JoinHandle<()>,
    acker: tokio::task::JoinHandle<()>,
}

/// What one ingest session subscribes to.
#[derive(Debug, Clone, Default)]
pub enum Scope {
    /// Every device's edge→cloud topics: one process owns the fleet.
    #[default]
    Fleet,
    /// The topics of these devices only: one shard of a cluster, whose session (client id
    /// and persistent subscriptions) passes from owner to owner.
    Devices(Arc<Mutex<BTreeSet<DeviceId>>>),
    /// Every device's `status` and job updates ([`Topics::jobs_subscriptions`]): the
    /// session of a cluster's jobs lease, beside the shards' (its router feeds the jobs).
    Jobs,
}

impl Scope {
    fn filters(&self, topics: &Topics) -> Vec<String> {
        match self {
            Scope::Fleet => topics.cloud_subscriptions(),
            Scope::Jobs => topics.jobs_subscriptions(),
            Scope::Devices(ids) => ids
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .flat_map(|id| topics.device_cloud_subscriptions(id))
                .collect(),
        }
    }
}

/// Whether a session may (re)connect: a cluster node's shard session only while its lease
/// holds, so that a node waking from a pause does not take the session back from the
/// shard's new owner.
pub type Gate = Arc<dyn Fn() -> bool + Send + Sync>;

impl Ingest {
    /// A client and its event loop, before anything is connected.
    pub fn client_for(options: MqttOptions) -> (AsyncClient, EventLoop) {
        let (client, mut eventloop) = AsyncClient::new(options, 10_000);
        eventloop.set_network_options(nodelay());
        (client, eventloop)
    }

    /// Starts polling `eventloop` for the whole fleet. Must run inside an actix `System`.
    pub fn start(
        connection: (AsyncClient, EventLoop),
        topics: Topics,
        store: Arc<dyn Store>,
        router: Arc<dyn Router>,
        stats: Arc<IngestStats>,
        ack_after_commit: bool,
        embedded: Option<Arc<Receipts>>,
    ) -> Self {
        Self::start_scoped(
            connection,
            (topics, Scope::Fleet, None),
            store,
            router,
            stats,
            ack_after_commit,
            embedded,
        )
    }

    /// Starts polling `eventloop` for the devices of `scope`; with a `gate`, the session
    /// stops instead of reconnecting once the gate is closed. `embedded`: the embedded
    /// broker's receipts, settled after each commit so that its front acknowledges the
    /// device's message only then (and a nudge on each PUBACK, see [`Dispatcher`]).
    pub fn start_scoped(
        (client, eventloop): (AsyncClient, EventLoop),
        (topics, scope, gate): (Topics, Scope, Option<Gate>),
        store: Arc<dyn Store>,
        router: Arc<dyn Router>,
        stats: Arc<IngestStats>,
        ack_after_commit: bool,
        embedded: Option<Arc<Receipts>>,
    ) -> Self {
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let nudge = embedded.is_some().then(|| topics.cloud_nudge());
        let acker = actix::spawn(ack_in_order(
            client.clone(),
            ack_rx,
            (ack_after_commit, embedded.clone()),
            stats.clone(),
        ));
        let dispatcher = Dispatcher {
            topics: topics.clone(),
            scope: scope.clone(),
            dictionaries: Dictionaries::default(),
            odd_times: odd_times::OddTimeLog::default(),
            store,
            router,
            stats,
            client: client.clone(),
            acks: ack_tx,
            ack_after_commit,
            // Acknowledging after the commit there is no window: the acker's PUBACKs leave
            // through this same event loop, so a poll loop waiting for the acker would
            // deadlock, and the broker's in-flight limit bounds what waits instead.
            window: (!ack_after_commit)
                .then(|| Arc::new(tokio::sync::Semaphore::new(MAX_UNCOMMITTED))),
            nudge,
            receipts: embedded,
        };
        let poll = actix::spawn(poll_loop(eventloop, dispatcher, gate));
        Self {
            client,
            topics,
            scope,
            poll,
            acker,
        }
    }

    /// Adds `devices` to a [`Scope::Devices`] session and subscribes to the topics of those
    /// it did not hold yet (kept for later connections too); returns those.
    pub fn add_devices(&self, devices: &[DeviceId]) -> Vec<DeviceId> {
        let Scope::Devices(ids) = &self.scope else {
            return Vec::new();
        };
        let new: Vec<DeviceId> = {
            let mut ids = ids.lock().unwrap_or_else(PoisonError::into_inner);
            devices
                .iter()
                .filter(|d| ids.insert((*d).clone()))
                .cloned()
                .collect()
        };
        subscribe(
            &self.client,
            new.iter()
                .flat_map(|d| self.topics.device_cloud_subscriptions(d))
                .collect(),
        );
        new
    }

    /// Disconnects and stops the tasks.
    pub async fn stop(self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.client.disconnect()).await;
        self.poll.abort();
        self.acker.abort();
    }
}

/// Filters per SUBSCRIBE: a shard of a large fleet has thousands, more than one packet may
/// carry (8 filters of ~40 bytes per device).
const FILTERS_PER_SUBSCRIBE: usize = 500;

/// Subscribes to `filters` (QoS 1) in packets of at most [`FILTERS_PER_SUBSCRIBE`] (none
/// when empty: rumqttc refuses an empty SUBSCRIBE).
fn subscribe(client: &AsyncClient, filters: Vec<String>) {
    for chunk in filters.chunks(FILTERS_PER_SUBSCRIBE) {
        let chunk = chunk
            .iter()
            .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
        if let Err(e) = client.try_subscribe_many(chunk) {
            tracing::error!(error = %e, "cannot subscribe to device topics; they are subscribed again at the next connect");
        }
    }
}

/// Network options without Nagle's delay (small QoS 1 messages and acks).
pub fn nodelay() -> rumqttc::NetworkOptions {
    let mut n = rumqttc::NetworkOptions::new();
    n.set_tcp_nodelay(true);
    n
}

/// What the poll loop does with each event: parses and decodes a message, queues its
/// store writes in the burst, routes it to its device, and hands each burst's commit to the
/// acker.
struct Dispatcher {
    topics: Topics,
    /// What the session subscribes to at each connect.
    scope: Scope,
    /// The point dictionaries of compact telemetry, per device.
    dictionaries: Dictionaries,
    /// Which devices were warned about implausible sample times, when.
    odd_times: odd_times::OddTimeLog,
    store: Arc<dyn Store>,
    /// Each device's actor (straight into its mailbox, in production).
    router: Arc<dyn Router>,
    stats: Arc<IngestStats>,
    client: AsyncClient,
    /// Each burst's commit, to the acker.
    acks: mpsc::UnboundedSender<Pending>,
    /// Whether messages are acknowledged after their commit (else rumqttc did on receipt).
    ack_after_commit: bool,
    /// Acknowledging on receipt: at most [`MAX_UNCOMMITTED`] messages wait for their commit;
    /// past that the poll loop stops reading (TCP back-pressure) until the store catches up.
    window: Option<Arc<tokio::sync::Semaphore>>,
    /// Embedded broker only: a topic nobody subscribes to, published (QoS 0, empty) when a
    /// PUBACK for our own publish arrives. rumqttd does not set TCP_NODELAY, so its next
    /// small packet to us (typically the device's reported state right after a delta)
    /// would wait for our delayed TCP ACK (40 ms on Linux); the nudge carries that ACK.
    nudge: Option<String>,
    /// Embedded broker only: each message's receipt key goes to the acker, which settles
    /// it after the commit; the first SUBACK opens the front to devices.
    receipts: Option<Arc<Receipts>>,
}

async fn poll_loop(mut eventloop: EventLoop, d: Dispatcher, gate: Option<Gate>) {
    let mut backoff = Duration::from_millis(100);
    let mut lost = false;
    loop {
        if lost && gate.as_ref().is_some_and(|open| !open()) {
            tracing::info!("MQTT session closed for good: this node no longer holds its lease");
            return;
        }
        match eventloop.poll().await {
            Ok(first) => {
                // rumqttc reads up to 10 packets per network read and queues all but the
                // first; they are handled together, as one burst.
                let mut burst = Burst::default();
                let mut connected = d.on_event(first, &mut burst);
                while let Some(event) = eventloop.state.events.pop_front() {
                    connected |= d.on_event(event, &mut burst);
                }
                if connected {
                    backoff = Duration::from_millis(100);
                    lost = false;
                }
                if !d.finish(burst).await {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "MQTT connection lost");
                lost = true;
                // Back off before the next poll reconnects.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Messages received but not yet committed, at most, when acknowledging on receipt. Past it
/// the ingest stops reading from the broker until the store catches up (the broker buffers
/// meanwhile).
const MAX_UNCOMMITTED: usize = 16_384;

/// The messages of one network read.
#[derive(Default)]
struct Burst {
    /// Their store writes, submitted together.
    writes: Vec<Write>,
    /// Messages received.
    messages: usize,
    /// Messages with writes.
    stored: usize,
    /// Acknowledging after the commit: each message, and whether it has writes.
    publishes: Vec<(rumqttc::Publish, bool)>,
    /// Embedded broker: each message's receipt key, and whether it has writes.
    receipts: Vec<(u64, bool)>,
}

/// A burst's commit, for the acker.
struct Pending {
    commit: Commit,
    /// Messages whose writes the commit carries.
    stored: usize,
    /// Acknowledging after the commit: each message, and whether it waits for the commit.
    publishes: Vec<(rumqttc::Publish, bool)>,
    /// Embedded broker: each message's receipt key, and whether it waits for the commit.
    receipts: Vec<(u64, bool)>,
    /// Acknowledging on receipt: the burst's place in the window.
    _window: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Acknowledging after the commit, how often at most a failed commit makes the ingest
/// reconnect, so that the broker redelivers what it could not store.
const REDELIVER_EVERY: Duration = Duration::from_secs(5);

/// Awaits each burst's store commit in arrival order and, when `ack_after_commit`,
/// acknowledges its messages after the commit (the client acknowledged them on receipt
/// otherwise). A failed commit is counted, and logged at most every few seconds.
async fn ack_in_order(
    client: AsyncClient,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    (ack_after_commit, receipts): (bool, Option<Arc<Receipts>>),
    stats: Arc<IngestStats>,
) {
    let mut failures = FailureLog::default();
    let mut redeliver = shiki_shared::throttle::Throttle::new(REDELIVER_EVERY);
    while let Some(p) = rx.recv().await {
        let result = p.commit.await;
        if let Err(e) = &result {
            stats.unstored(p.stored);
            let topic = p.publishes.iter().find(|m| m.1).map(|m| m.0.topic.as_str());
            failures.failed(e, p.stored, topic, ack_after_commit);
            // The broker redelivers what was not acknowledged only to a new connection of
            // the session; until then those messages fill its in-flight window, and once it
            // is full nothing reaches the cloud, however well the store works again.
            if ack_after_commit && redeliver.pass(std::time::Instant::now()).is_some() {
                tracing::warn!(
                    "reconnecting so that the broker redelivers the messages not stored"
                );
                if let Err(e) = client.disconnect().await {
                    tracing::warn!(error = %e, "cannot disconnect from the MQTT broker");
                }
            }
        }
        if let Some(r) = &receipts {
            let ok = result.is_ok();
            r.settle_all(p.receipts.iter().map(|&(key, stored)| (key, ok || !stored)));
        }
        for (publish, stored) in &p.publishes {
            // Not acknowledged when its writes failed: the broker redelivers it after a
            // reconnect.
            if (result.is_ok() || !stored)
                && let Err(e) = client.ack(publish).await
            {
                tracing::warn!(error = %e, topic = %publish.topic, "cannot acknowledge message");
            }
        }
    }
}

/// Logs failed commits of ingested messages: the first at once, later ones at most every
/// 10 s with the number of messages since (a store that fails keeps failing, once per
/// burst).
#[derive(Debug)]
struct FailureLog {
    throttle: shiki_shared::throttle::Throttle,
    messages_since: usize,
}

impl Default for FailureLog {
    fn default() -> Self {
        Self {
            throttle: shiki_shared::throttle::Throttle::new(Duration::from_secs(10)),
            messages_since: 0,
        }
    }
}

impl FailureLog {
    fn failed(
        &mut self,
        error: &crate::store::StoreError,
        messages: usize,
        topic: Option<&str>,
        ack_after_commit: bool,
    ) {
        self.messages_since += messages;
        if self.throttle.pass(std::time::Instant::now()).is_none() {
            return;
        }
        let messages = std::mem::take(&mut self.messages_since);
        let topic = topic.unwrap_or("");
        if ack_after_commit {
            tracing::error!(%error, messages, topic, "messages not stored; not acknowledged, the broker redelivers them after a reconnect");
        } else {
            tracing::error!(%error, messages, topic, "messages not stored and already acknowledged: lost");
        }
    }
}

impl Dispatcher {
    /// Handles one event of a burst; `true` when it is a new connection.
    fn on_event(&self, event: Event, burst: &mut Burst) -> bool {
        match event {
            Event::Incoming(Packet::Publish(p)) => {
                let stored = self.on_publish(&p, &mut burst.writes);
                burst.messages += 1;
                burst.stored += usize::from(stored);
                if self.receipts.is_some() {
                    burst
                        .receipts
                        .push((Receipts::key(&p.topic, &p.payload), stored));
                }
                if self.ack_after_commit {
                    burst.publishes.push((p, stored));
                }
                false
            }
            Event::Incoming(Packet::PubAck(_)) => {
                if let Some(topic) = &self.nudge {
                    let _ =
                        self.client
                            .try_publish(topic.clone(), QoS::AtMostOnce, false, Vec::new());
                }
                false
            }
            Event::Incoming(Packet::SubAck(_)) => {
                if let Some(r) = &self.receipts {
                    r.set_ready();
                }
                false
            }
            Event::Incoming(Packet::ConnAck(ack)) => {
                tracing::info!(
                    session_present = ack.session_present,
                    "connected to MQTT broker"
                );
                subscribe(&self.client, self.scope.filters(&self.topics));
                true
            }
            _ => false,
        }
    }

    /// Submits a burst's writes and hands its commit to the acker; `false` once the acker
    /// is gone.
    async fn finish(&self, burst: Burst) -> bool {
        if burst.writes.is_empty() && burst.publishes.is_empty() && burst.receipts.is_empty() {
            return true;
        }
        let commit = if burst.writes.is_empty() {
            Commit::ready(Ok(()))
        } else {
            self.store.submit(burst.writes)
        };
        let window = match &self.window {
            Some(w) => {
                let n = burst.messages.min(MAX_UNCOMMITTED) as u32;
                match w.clone().acquire_many_owned(n).await {
                    Ok(p) => Some(p),
                    Err(_) => return false,
                }
            }
            None => None,
        };
        self.acks
            .send(Pending {
                commit,
                stored: burst.stored,
                publishes: burst.publishes,
                receipts: burst.receipts,
                _window: window,
            })
            .is_ok()
    }

    fn drop_msg(&self, topic: &str, reason: DropReason, detail: &dyn std::fmt::Display) -> bool {
        self.stats.dropped(reason);
        tracing::warn!(topic, reason = reason.as_str(), %detail, "dropped MQTT message");
        false
    }

    fn decode<T: DeserializeOwned>(&self, p: &rumqttc::Publish) -> Option<T> {
        match decode(&p.payload) {
            Ok(v) => Some(v),
            Err(e) => {
                self.drop_msg(&p.topic, DropReason::Malformed, &e);
                None
            }
        }
    }

    fn route(&self, device: DeviceId, input: DeviceInput) {
        self.router.route(device, input);
    }

    /// Handles one message: adds its store writes to `writes` (`true` if it had any) and
    /// routes it to its device.
    fn on_publish(&self, p: &rumqttc::Publish, writes: &mut Vec<Write>) -> bool {
        let (device, channel) = match self.topics.parse(&p.topic) {
            Ok(x) => x,
            Err(e @ TopicError::InvalidId { .. }) => {
                return self.drop_msg(&p.topic, DropReason::InvalidDeviceId, &e);
            }
            Err(e) => return self.drop_msg(&p.topic, DropReason::UnknownTopic, &e),
        };
        if channel.direction() == Direction::CloudToEdge {
            return self.drop_msg(&p.topic, DropReason::WrongDirection, &"cloud→edge topic");
        }
        self.stats.accepted(&channel);
        let input = match channel {
            Channel::Telemetry => {
                // The hot path logs nothing, so it gets no span.
                let known = |id: &str| self.dictionaries.find(&self.store, &device, id);
                let now = chrono::Utc::now();
                let ((rows, newest, carried), odd) = match telemetry_rows_any(
                    &p.payload, known, now,
                ) {
                    Ok(x) => x,
                    Err(e @ shiki_proto::CompactError::UnknownDictionary(_)) => {
                        tracing::error!(device_id = %device, error = %e, "compact telemetry with a point dictionary this cloud does not know; the edge sends its names again at its next connect and at least hourly");
                        return self.drop_msg(&p.topic, DropReason::UnknownDictionary, &e);
                    }
                    Err(e) => return self.drop_msg(&p.topic, DropReason::Malformed, &e),
                };
                if let Some(dict) = carried {
                    self.dictionaries.learn(&device, dict);
                }
                self.stats.samples(rows.len());
                if odd.count > 0 {
                    self.stats.implausible_time(odd.count);
                    self.odd_times
                        .report(&device, &odd, now, std::time::Instant::now());
                }
                writes.push(Write::Telemetry {
                    device: device.clone(),
                    samples: rows,
                });
                if let Some(s) = newest {
                    self.route(device, DeviceInput::Telemetry(s));
                }
                return true;
            }
            other => {
                let _span = tracing::debug_span!("ingest", device_id = %device).entered();
                match self.decode_input(p, other) {
                    Some(input) => input,
                    None => return false,
                }
            }
        };
        let stored = if let DeviceInput::Events(events) = &input {
            writes.push(Write::Events {
                device: device.clone(),
                events: events.clone(),
            });
            true
        } else {
            false
        };
        self.route(device, input);
        stored
    }

    /// The device input a message of a channel other than telemetry carries (`None`: it
    /// was dropped, or needs nothing of the device actor).
    fn decode_input(&self, p: &rumqttc::Publish, channel: Channel) -> Option<DeviceInput> {
        Some(match channel {
            Channel::Events => {
                DeviceInput::Events(self.decode::<shiki_proto::EventBatch>(p)?.events)
            }
            Channel::Status => DeviceInput::Status(self.decode(p)?),
            Channel::Catalog => {
                let catalog: shiki_proto::Catalog = self.decode(p)?;
                if let Ok((device, _)) = self.topics.parse(&p.topic) {
                    self.dictionaries.learn(
                        &device,
                        shiki_proto::PointDictionary::from_catalog(&catalog),
                    );
                }
                DeviceInput::Catalog(catalog)
            }
            Channel::ShadowReported => DeviceInput::Reported(Box::new(self.decode(p)?)),
            Channel::ShadowGet => DeviceInput::ShadowGet(self.decode(p)?),
            Channel::ScheduleAck => DeviceInput::ScheduleAck(self.decode(p)?),
            Channel::JobUpdate(job) => DeviceInput::JobUpdate {
                job,
                update: Box::new(self.decode(p)?),
            },
            other => {
                self.drop_msg(&p.topic, DropReason::WrongDirection, &format!("{other:?}"));
                return None;
            }
        })
    }
}
