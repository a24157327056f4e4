//! Ingest: the cloud's MQTT session. It subscribes to every edge→cloud topic
//! ([`Topics::cloud_subscriptions`]), parses and decodes each message, queues telemetry and
//! events for the store, routes everything to the device's actor, and acknowledges each
//! message (PUBACK) after its store commit, in order. The [`MqttPublisher`] actor publishes
//! the device actors' cloud→edge messages.
//!
//! A malformed payload, an unknown topic or an invalid device id is counted by reason,
//! logged with the topic, acknowledged and dropped; other devices never notice.

mod stats;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde::de::DeserializeOwned;
use shiki_proto::{Channel, DeviceId, Direction, TopicError, Topics, decode, encode};
use tokio::sync::mpsc;

pub use stats::{DropReason, IngestStats};

use crate::device::{DeviceInput, Outbound, Publish, Route};
use crate::store::{Commit, SampleRow, Store, Write};

/// A running ingest: its MQTT client and the tasks polling and acknowledging.
#[derive(Debug)]
pub struct Ingest {
    client: AsyncClient,
    poll: tokio::task::JoinHandle<()>,
    acker: tokio::task::JoinHandle<()>,
}

impl Ingest {
    /// A client and its event loop, before anything is connected.
    pub fn client_for(options: MqttOptions) -> (AsyncClient, EventLoop) {
        let (client, mut eventloop) = AsyncClient::new(options, 10_000);
        eventloop.set_network_options(nodelay());
        (client, eventloop)
    }

    /// Starts polling `eventloop`. Must run inside an actix `System`.
    pub fn start(
        (client, eventloop): (AsyncClient, EventLoop),
        topics: Topics,
        store: Arc<dyn Store>,
        router: Recipient<Route>,
        stats: Arc<IngestStats>,
        ack_after_commit: bool,
        nudge_on_puback: bool,
    ) -> Self {
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let acker = actix::spawn(ack_in_order(client.clone(), ack_rx, ack_after_commit));
        let nudge = nudge_on_puback.then(|| format!("{}/_cloud/nudge", topics.prefix()));
        let handler = Handler {
            topics,
            store,
            router,
            stats,
            client: client.clone(),
            acks: ack_tx,
            // Acknowledging after the commit, the poll loop must never wait for the acker:
            // the acker's PUBACKs leave through this same event loop, and waiting
            // deadlocked once rumqttc's request channel filled. What waits is then what the
            // broker has in flight to us (rumqttd: 100; Mosquitto 2.0 sent far more than
            // its `max_inflight_messages`). Acknowledged on receipt, only this bounds it.
            window: (!ack_after_commit)
                .then(|| Arc::new(tokio::sync::Semaphore::new(MAX_UNCOMMITTED))),
            nudge,
        };
        let poll = actix::spawn(poll_loop(eventloop, handler));
        Self {
            client,
            poll,
            acker,
        }
    }

    /// The client, for the publisher.
    pub fn client(&self) -> AsyncClient {
        self.client.clone()
    }

    /// Disconnects and stops the tasks.
    pub async fn stop(self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.client.disconnect()).await;
        self.poll.abort();
        self.acker.abort();
    }
}

/// Network options without Nagle's delay (small QoS 1 messages and acks).
pub fn nodelay() -> rumqttc::NetworkOptions {
    let mut n = rumqttc::NetworkOptions::new();
    n.set_tcp_nodelay(true);
    n
}

struct Handler {
    topics: Topics,
    store: Arc<dyn Store>,
    router: Recipient<Route>,
    stats: Arc<IngestStats>,
    client: AsyncClient,
    /// Each message's commit, to the acker.
    acks: mpsc::UnboundedSender<Pending>,
    /// Acknowledging on receipt: at most [`MAX_UNCOMMITTED`] messages wait for their commit;
    /// past that the poll loop stops reading (TCP back-pressure) until the store catches up.
    window: Option<Arc<tokio::sync::Semaphore>>,
    /// Embedded broker only: a topic nobody subscribes to, published (QoS 0, empty) when a
    /// PUBACK for our own publish arrives. rumqttd does not set TCP_NODELAY, so its next
    /// small packet to us (typically the device's reported state right after a delta)
    /// would wait for our delayed TCP ACK (40 ms on Linux); the nudge carries that ACK.
    nudge: Option<String>,
}

async fn poll_loop(mut eventloop: EventLoop, h: Handler) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let commit = h.handle(&p);
                let permit = match &h.window {
                    Some(w) => match w.clone().acquire_owned().await {
                        Ok(p) => Some(p),
                        Err(_) => return,
                    },
                    None => None,
                };
                if h.acks.send((commit, p, permit)).is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                if let Some(topic) = &h.nudge {
                    let _ = h
                        .client
                        .try_publish(topic.clone(), QoS::AtMostOnce, false, Vec::new());
                }
            }
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Duration::from_millis(100);
                tracing::info!(
                    session_present = ack.session_present,
                    "connected to MQTT broker"
                );
                let filters = h
                    .topics
                    .cloud_subscriptions()
                    .into_iter()
                    .map(|f| rumqttc::SubscribeFilter::new(f, QoS::AtLeastOnce));
                if let Err(e) = h.client.try_subscribe_many(filters) {
                    tracing::error!(error = %e, "cannot subscribe to device topics");
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "MQTT connection lost");
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

/// A received message, its commit, and its place in the window (acknowledging on receipt).
type Pending = (
    Commit,
    rumqttc::Publish,
    Option<tokio::sync::OwnedSemaphorePermit>,
);

/// Awaits each message's store commit in arrival order and, when `ack_after_commit`,
/// acknowledges it after the commit (the client acknowledged it on receipt otherwise).
async fn ack_in_order(
    client: AsyncClient,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    ack_after_commit: bool,
) {
    while let Some((commit, publish, _window)) = rx.recv().await {
        match commit.await {
            Ok(()) if ack_after_commit => {
                if let Err(e) = client.ack(&publish).await {
                    tracing::warn!(error = %e, topic = %publish.topic, "cannot acknowledge message");
                }
            }
            Ok(()) => {}
            Err(e) if ack_after_commit => {
                // Not acknowledged: the broker redelivers it after a reconnect.
                tracing::error!(error = %e, topic = %publish.topic, "message not stored; not acknowledged");
            }
            Err(e) => {
                tracing::error!(error = %e, topic = %publish.topic, "message not stored and already acknowledged: lost");
            }
        }
    }
}

/// A telemetry batch ([`shiki_proto::TelemetryBatch`]) with each sample's JSON text kept.
#[derive(serde::Deserialize)]
struct RawBatch<'a> {
    #[serde(borrow)]
    samples: Vec<&'a serde_json::value::RawValue>,
}

/// Each sample of a telemetry payload as the store keeps it (its JSON text as received,
/// once it has decoded as a [`shiki_proto::Sample`]), and the newest sample, decoded.
fn telemetry_rows(
    payload: &[u8],
) -> Result<(Vec<SampleRow>, Option<shiki_proto::Sample>), shiki_proto::CodecError> {
    let malformed = shiki_proto::CodecError::Malformed;
    let text = shiki_proto::json_text(payload)?;
    let batch: RawBatch<'_> = serde_json::from_slice(&text).map_err(malformed)?;
    let mut rows = Vec::with_capacity(batch.samples.len());
    let mut newest: Option<shiki_proto::Sample> = None;
    for raw in batch.samples {
        let sample: shiki_proto::Sample = serde_json::from_str(raw.get()).map_err(malformed)?;
        rows.push(SampleRow {
            seq: sample.seq,
            json: raw.get().as_bytes().to_vec(),
        });
        if newest.as_ref().is_none_or(|n| sample.seq > n.seq) {
            newest = Some(sample);
        }
    }
    Ok((rows, newest))
}

impl Handler {
    fn drop_msg(&self, topic: &str, reason: DropReason, detail: &dyn std::fmt::Display) -> Commit {
        self.stats.dropped(reason);
        tracing::warn!(topic, reason = reason.as_str(), %detail, "dropped MQTT message");
        Commit::ready(Ok(()))
    }

    fn decode<T: DeserializeOwned>(&self, p: &rumqttc::Publish) -> Result<T, Commit> {
        decode(&p.payload).map_err(|e| self.drop_msg(&p.topic, DropReason::Malformed, &e))
    }

    fn route(&self, device: DeviceId, input: DeviceInput) {
        self.router.do_send(Route { device, input });
    }

    /// Handles one message; the returned commit gates its acknowledgement.
    fn handle(&self, p: &rumqttc::Publish) -> Commit {
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
        let _span = tracing::debug_span!("ingest", device_id = %device).entered();
        self.stats.accepted(&channel);
        match channel {
            Channel::Telemetry => {
                let (rows, newest) = match telemetry_rows(&p.payload) {
                    Ok(x) => x,
                    Err(e) => return self.drop_msg(&p.topic, DropReason::Malformed, &e),
                };
                self.stats.samples(rows.len());
                let commit = self.store.submit(vec![Write::Telemetry {
                    device: device.clone(),
                    samples: rows,
                }]);
                if let Some(s) = newest {
                    self.route(device, DeviceInput::Telemetry(s));
                }
                commit
            }
            Channel::Events => {
                let batch: shiki_proto::EventBatch = match self.decode(p) {
                    Ok(b) => b,
                    Err(c) => return c,
                };
                let commit = self.store.submit(vec![Write::Events {
                    device: device.clone(),
                    events: batch.events.clone(),
                }]);
                self.route(device, DeviceInput::Events(batch.events));
                commit
            }
            Channel::Status => match self.decode(p) {
                Ok(s) => self.routed(device, DeviceInput::Status(s)),
                Err(c) => c,
            },
            Channel::Catalog => match self.decode(p) {
                Ok(c) => self.routed(device, DeviceInput::Catalog(c)),
                Err(c) => c,
            },
            Channel::ShadowReported => match self.decode(p) {
                Ok(r) => self.routed(device, DeviceInput::Reported(Box::new(r))),
                Err(c) => c,
            },
            Channel::ShadowGet => match self.decode(p) {
                Ok(g) => self.routed(device, DeviceInput::ShadowGet(g)),
                Err(c) => c,
            },
            Channel::ScheduleAck => match self.decode::<shiki_proto::ScheduleAck>(p) {
                Ok(a) => self.routed(device, DeviceInput::ScheduleAck(a)),
                Err(c) => c,
            },
            Channel::JobUpdate(job) => match self.decode::<shiki_proto::JobUpdate>(p) {
                Ok(u) => {
                    tracing::info!(%job, status = ?u.status, "job update");
                    Commit::ready(Ok(()))
                }
                Err(c) => c,
            },
            other => self.drop_msg(&p.topic, DropReason::WrongDirection, &format!("{other:?}")),
        }
    }

    fn routed(&self, device: DeviceId, input: DeviceInput) -> Commit {
        self.route(device, input);
        Commit::ready(Ok(()))
    }
}

/// Publishes device actors' messages to their edge.
#[derive(Debug)]
pub struct MqttPublisher {
    client: AsyncClient,
    topics: Topics,
    pub failed: u64,
}

impl MqttPublisher {
    pub fn new(client: AsyncClient, topics: Topics) -> Self {
        Self {
            client,
            topics,
            failed: 0,
        }
    }
}

impl Actor for MqttPublisher {
    type Context = Context<Self>;
}

impl actix::Handler<Publish> for MqttPublisher {
    type Result = ();

    fn handle(&mut self, msg: Publish, ctx: &mut Self::Context) {
        let (channel, bytes) = match &msg.message {
            Outbound::Document(d) => (Channel::ShadowDocument, encode(d)),
            Outbound::Delta(d) => (Channel::ShadowDelta, encode(d)),
            Outbound::ScheduleSet(s) => (Channel::ScheduleSet, encode(s.as_ref())),
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                self.failed += 1;
                tracing::error!(device_id = %msg.device, error = %e, "cannot encode message for the edge");
                return;
            }
        };
        let topic = self.topics.topic_for(&msg.device, &channel);
        if let Err(rumqttc::ClientError::TryRequest(_)) =
            self.client
                .try_publish(topic.clone(), QoS::AtLeastOnce, false, bytes.clone())
        {
            // Request queue full: wait for room instead of dropping.
            let client = self.client.clone();
            ctx.spawn(
                async move {
                    if let Err(e) = client.publish(topic, QoS::AtLeastOnce, false, bytes).await {
                        tracing::error!(error = %e, "cannot publish to the edge");
                    }
                }
                .into_actor(self),
            );
        }
    }
}
