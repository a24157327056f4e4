//! Uplink: forwards the outbox to the broker over MQTT (rumqttc), QoS 1, and deletes
//! outbox records only after their PUBACK.
//!
//! The actor is a shell around [`Window`] (`window.rs`): the [`state::Mode`] (online /
//! draining backlog / offline / shutting down), which outbox records to read and publish
//! next, and [`InFlight`] (which publish carries which seqs). The actor runs the outbox
//! reads and the publishes the window asks for; a batch is the stored JSON spliced into the
//! batch envelope (`batch.rs`). rumqttc's event loop runs in its own task
//! (`connection::drive`) and reports through [`MqttNotice`] messages. On every connect the
//! uplink publishes the retained `online` status and the retained catalog, subscribes to
//! the edge's cloud→edge topics, sends `shadow/get`, re-publishes pending schedule acks,
//! and re-sends every un-acknowledged record from the outbox, oldest first. `schedule/set`
//! goes to the schedule actor and its acks wait in [`PendingAcks`] until their PUBACK
//! (`uplink/schedule.rs`).

mod batch;
#[cfg(test)]
mod batch_tests;
mod connection;
mod inflight;
mod jobs;
mod schedule;
pub mod state;
mod window;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod window_tests;

use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use rumqttc::{AsyncClient, EventLoop, QoS};
use shiki_proto::{
    Catalog, Channel, Connectivity, DeviceId, PROTOCOL_VERSION, PointDictionary, ShadowGet, Status,
    Topics, encode,
};
use tokio::sync::{mpsc, oneshot};

pub use batch::{Batch, Format, build as build_batch, build_as as build_batch_as};
pub use connection::{MqttNotice, SHUTDOWN_GRACE, UplinkSetupError, mqtt_options, tls_config};
pub use inflight::{Acked, InFlight, Tag};
pub use jobs::{MAX_PENDING_JOB_UPDATES, PendingJobUpdates};
pub use schedule::{MalformedSchedules, PendingAcks};
pub use window::{NAMES_EVERY, Peek, Skipped, Step, Window, WindowConfig};

use crate::backoff::Backoff;
use crate::messages::{CloudMessage, LinkUp, PublishReported, ReportedDelivered};
use crate::outbox::{Committed, NewRecord, OutboxError, OutboxHandle, StoredRecord, Stream};

/// Plain settings of the uplink.
#[derive(Debug, Clone)]
pub struct UplinkConfig {
    pub device_id: DeviceId,
    pub topics: Topics,
    pub live_batch_max: usize,
    pub backlog_batch_bytes: usize,
    pub max_inflight_batches: usize,
    /// How long live telemetry may wait for more samples (`telemetry.batch_max_delay`).
    pub batch_max_delay: Duration,
    /// Compact telemetry (protocol version 2) with the catalog as point dictionary.
    pub compact: bool,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub software_version: String,
    pub boot_time: DateTime<Utc>,
    pub shutdown_grace: Duration,
}

/// Who the uplink talks to.
#[derive(Debug, Clone)]
pub struct UplinkPeers {
    pub cloud: Recipient<CloudMessage>,
    pub link_up: Recipient<LinkUp>,
    pub delivered: Recipient<ReportedDelivered>,
}

impl UplinkPeers {
    /// All three to one actor (benches and tests that watch everything in one place).
    pub fn all<A>(addr: actix::Addr<A>) -> Self
    where
        A: actix::Actor<Context = actix::Context<A>>
            + actix::Handler<CloudMessage>
            + actix::Handler<LinkUp>
            + actix::Handler<ReportedDelivered>,
    {
        UplinkPeers {
            cloud: addr.clone().recipient(),
            link_up: addr.clone().recipient(),
            delivered: addr.recipient(),
        }
    }
}

/// Stop publishing, flush acknowledgements for a short grace time, disconnect cleanly.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

#[derive(Debug, Message)]
#[rtype(result = "()")]
struct CommittedChanged(Committed);

/// The highest seq of each stream below which nothing is pending (everything up to it was
/// acknowledged before this start).
pub async fn initial_frontiers(outbox: &OutboxHandle) -> Result<(u64, u64), OutboxError> {
    let stats = outbox.stats().await?;
    let mut out = [0u64; 2];
    for (i, stream) in Stream::ALL.into_iter().enumerate() {
        let first = outbox.peek_from(stream, 0, 1, 1).await?;
        out[i] = match first.first() {
            Some(r) => r.seq - 1,
            None => stats.last_seq(stream),
        };
    }
    Ok((out[0], out[1]))
}

/// The uplink actor.
pub struct Uplink {
    cfg: UplinkConfig,
    peers: UplinkPeers,
    client: AsyncClient,
    event_loop: Option<EventLoop>,
    outbox: OutboxHandle,
    catalog: Catalog,
    window: Window,
    backoff: Backoff,
    reconnect_tx: Option<mpsc::UnboundedSender<()>>,
    reconnect_rx: Option<mpsc::UnboundedReceiver<()>>,
    idle_waiters: Vec<oneshot::Sender<()>>,
    /// Where `schedule/set` goes; without it such messages are logged and dropped.
    schedule: Option<Recipient<crate::schedule::ScheduleSetReceived>>,
    /// `schedule/ack`s not yet acknowledged by the broker (kept while offline).
    schedule_acks: PendingAcks,
    /// `schedule/set` messages dropped as malformed.
    malformed_schedules: u64,
    /// Where `jobs/notify` goes (the Ota actor); without it such messages are dropped.
    jobs: Option<Recipient<crate::ota::JobsReceived>>,
    /// Job updates made while the link was down.
    job_updates: PendingJobUpdates,
    /// Also told about every connect (the health actor of a trial run).
    health: Option<Recipient<LinkUp>>,
    /// When the timer for waiting telemetry is set to fire.
    timer_due: Option<tokio::time::Instant>,
}

impl Uplink {
    /// `frontiers` from [`initial_frontiers`].
    pub fn new(
        cfg: UplinkConfig,
        options: rumqttc::MqttOptions,
        outbox: OutboxHandle,
        peers: UplinkPeers,
        catalog: Catalog,
        frontiers: (u64, u64),
    ) -> Self {
        let (client, event_loop) = AsyncClient::new(options, 128);
        let (reconnect_tx, reconnect_rx) = mpsc::unbounded_channel();
        let mut window = Window::new(
            WindowConfig {
                live_batch_max: cfg.live_batch_max,
                backlog_batch_bytes: cfg.backlog_batch_bytes,
                max_inflight_batches: cfg.max_inflight_batches,
                batch_max_delay: cfg.batch_max_delay,
            },
            *outbox.committed().borrow(),
            frontiers,
        );
        if cfg.compact {
            window = window.with_dictionary(PointDictionary::from_catalog(&catalog));
        }
        Self {
            backoff: Backoff::jittered(cfg.reconnect_min, cfg.reconnect_max),
            cfg,
            peers,
            client,
            event_loop: Some(event_loop),
            outbox,
            catalog,
            window,
            reconnect_tx: Some(reconnect_tx),
            reconnect_rx: Some(reconnect_rx),
            idle_waiters: Vec::new(),
            schedule: None,
            schedule_acks: PendingAcks::default(),
            malformed_schedules: 0,
            jobs: None,
            job_updates: PendingJobUpdates::default(),
            health: None,
            timer_due: None,
        }
    }

    /// Sends every decoded `schedule/set` to `recipient` (the schedule actor).
    pub fn schedule_to(
        mut self,
        recipient: Recipient<crate::schedule::ScheduleSetReceived>,
    ) -> Self {
        self.schedule = Some(recipient);
        self
    }

    /// Sends every decoded `jobs/notify` to `recipient` (the Ota actor).
    pub fn jobs_to(mut self, recipient: Recipient<crate::ota::JobsReceived>) -> Self {
        self.jobs = Some(recipient);
        self
    }

    /// Also sends [`LinkUp`] to `recipient` after every connect (trial health).
    pub fn health_to(mut self, recipient: Recipient<LinkUp>) -> Self {
        self.health = Some(recipient);
        self
    }

    fn topic(&self, channel: &Channel) -> String {
        self.cfg.topics.topic_for(&self.cfg.device_id, channel)
    }

    fn publish_control(&mut self, channel: Channel, payload: Vec<u8>) {
        let topic = self.topic(&channel);
        match self
            .client
            .try_publish(topic.clone(), QoS::AtLeastOnce, channel.retained(), payload)
        {
            Ok(()) => self.window.requested(Tag::Control),
            Err(e) => tracing::warn!(%topic, error = %e, "publish request refused"),
        }
    }

    fn status(&self, state: Connectivity) -> Status {
        Status {
            v: PROTOCOL_VERSION,
            state,
            software_version: Some(self.cfg.software_version.clone()),
            boot_time: Some(self.cfg.boot_time),
            ts: Some(Utc::now()),
        }
    }

    fn on_connected(&mut self, ctx: &mut Context<Self>) {
        self.backoff.reset();
        let backlog = self.window.connected();
        tracing::info!(backlog, device_id = %self.cfg.device_id, "connected to broker");
        // Subscribe before saying `online`: the broker handles a client's packets in order,
        // so whatever the cloud sends in answer to the status (a job, a schedule push) finds
        // the subscription in place.
        let subs = self
            .cfg
            .topics
            .edge_subscriptions(&self.cfg.device_id)
            .into_iter()
            .map(|t| rumqttc::SubscribeFilter::new(t, QoS::AtLeastOnce));
        if let Err(e) = self.client.try_subscribe_many(subs) {
            tracing::warn!(error = %e, "subscribe request refused");
        }
        if let Ok(p) = encode(&self.status(Connectivity::Online)) {
            self.publish_control(Channel::Status, p);
        }
        if let Ok(p) = encode(&self.catalog) {
            self.publish_control(Channel::Catalog, p);
        }
        let get = ShadowGet {
            v: PROTOCOL_VERSION,
            client_token: Some(format!("boot-{}", self.cfg.boot_time.to_rfc3339())),
        };
        if let Ok(p) = encode(&get) {
            self.publish_control(Channel::ShadowGet, p);
        }
        self.peers.link_up.do_send(LinkUp);
        if let Some(health) = &self.health {
            health.do_send(LinkUp);
        }
        self.publish_pending_schedule_acks();
        self.publish_pending_job_updates();
        self.pump(ctx);
    }

    fn on_disconnected(&mut self, reason: String, ctx: &mut Context<Self>) {
        let reconnect = self.window.disconnected();
        self.wake_idle_waiters();
        if !reconnect {
            return;
        }
        let delay = self.backoff.next_delay();
        tracing::warn!(%reason, retry_in = ?delay, "broker connection lost");
        ctx.run_later(delay, |act, _| {
            if let Some(tx) = &act.reconnect_tx {
                let _ = tx.send(());
            }
        });
    }

    /// Starts the outbox reads the window asks for, and wakes up when telemetry that
    /// waits for more samples is due.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        let now = tokio::time::Instant::now();
        let peeks = self.window.peeks_at(now);
        if let Some(due) = self.window.deadline()
            && self.timer_due != Some(due)
        {
            self.timer_due = Some(due);
            ctx.run_later(due.saturating_duration_since(now), move |act, ctx| {
                if act.timer_due == Some(due) {
                    act.timer_due = None;
                }
                act.pump(ctx);
            });
        }
        for peek in peeks {
            let outbox = self.outbox.clone();
            let (stream, from, max_count, max_bytes) =
                (peek.stream, peek.from, peek.max_count, peek.max_bytes);
            let fut = async move { outbox.peek_from(stream, from, max_count, max_bytes).await };
            ctx.spawn(
                fut.into_actor(self)
                    .map(move |res, act, ctx| act.on_peeked(&peek, res, ctx)),
            );
        }
    }

    fn on_peeked(
        &mut self,
        peek: &Peek,
        res: Result<Vec<StoredRecord>, OutboxError>,
        ctx: &mut Context<Self>,
    ) {
        let records = match res {
            Ok(r) => r,
            Err(e) => {
                if self.window.read_failed(peek) {
                    tracing::error!(stream = %peek.stream, error = %e, "outbox read failed; retrying");
                    ctx.run_later(Duration::from_secs(1), |act, ctx| act.pump(ctx));
                }
                return;
            }
        };
        match self.window.peeked(peek, &records) {
            Step::Ignore => return,
            Step::Skip { acked, skipped } => {
                if let Some(s) = skipped {
                    self.report_skipped(s);
                }
                self.on_acked(acked);
            }
            Step::Publish {
                stream,
                batch,
                skipped,
            } => {
                if let Some(s) = skipped {
                    self.report_skipped(s);
                }
                if !self.publish_batch(stream, batch, peek.backlog) {
                    ctx.run_later(Duration::from_millis(200), |act, ctx| act.pump(ctx));
                    return;
                }
            }
        }
        self.pump(ctx);
    }

    /// Asks the client to publish `batch`; false when it refused the request.
    fn publish_batch(&mut self, stream: Stream, batch: Batch, backlog: bool) -> bool {
        let channel = match stream {
            Stream::Telemetry => Channel::Telemetry,
            Stream::Events => Channel::Events,
        };
        let topic = self.topic(&channel);
        let (from, to, count, bytes) = (batch.from, batch.to, batch.count, batch.payload.len());
        let with_names = batch.with_names;
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, batch.payload)
        {
            Ok(()) => {
                self.window.published(stream, from, to, count);
                if with_names {
                    self.window.names_published();
                }
                tracing::debug!(%stream, from, to, count, bytes, backlog, "published batch");
                true
            }
            Err(e) => {
                tracing::warn!(%stream, error = %e, "publish request refused; retrying");
                false
            }
        }
    }

    /// Records that `count` stored records in `from..=to` will never reach the cloud (the
    /// cloud sees the gap in seq); the `DataDropped` event says which and why.
    fn report_skipped(&self, skipped: Skipped) {
        let Skipped {
            stream,
            from,
            to,
            count,
            reason,
        } = skipped;
        tracing::error!(%stream, from, to, count, reason, "skipping stored records");
        let event = NewRecord::Event {
            ts: Utc::now(),
            kind: shiki_proto::EventKind::DataDropped,
            severity: shiki_proto::Severity::Warning,
            message: format!(
                "skipped {count} stored {stream} record(s) in seq {from}..={to}: {reason}"
            ),
            data: serde_json::json!({
                "stream": stream.to_string(),
                "from_seq": from,
                "to_seq": to,
                "skipped": count,
                "reason": reason,
            }),
        };
        let outbox = self.outbox.clone();
        actix::spawn(async move {
            if let Err(e) = outbox.append(event).await {
                tracing::error!(%stream, from, to, error = %e, "could not record the skipped records as an event");
            }
        });
    }

    fn on_acked(&mut self, acked: Acked) {
        match acked {
            Acked::Frontier { stream, up_to } => {
                let outbox = self.outbox.clone();
                actix::spawn(async move {
                    if let Err(e) = outbox.ack(stream, up_to).await {
                        tracing::error!(%stream, up_to, error = %e, "outbox ack failed; records will be re-sent");
                    }
                });
            }
            Acked::Reported { generation } => self
                .peers
                .delivered
                .do_send(ReportedDelivered { generation }),
            Acked::ScheduleAck { generation } => self.schedule_acks.delivered(generation),
            Acked::Records | Acked::Nothing => {}
        }
    }

    fn wake_idle_waiters(&mut self) {
        for w in self.idle_waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

impl std::fmt::Debug for Uplink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uplink")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Actor for Uplink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let (Some(el), Some(rx)) = (self.event_loop.take(), self.reconnect_rx.take()) {
            actix::spawn(connection::drive(el, ctx.address().recipient(), rx));
        }
        let mut committed = self.outbox.committed();
        let addr = ctx.address();
        actix::spawn(async move {
            while committed.changed().await.is_ok() {
                let c = *committed.borrow_and_update();
                if !addr.connected() {
                    break;
                }
                addr.do_send(CommittedChanged(c));
            }
        });
    }
}

impl Handler<MqttNotice> for Uplink {
    type Result = ();

    fn handle(&mut self, msg: MqttNotice, ctx: &mut Context<Self>) {
        match msg {
            MqttNotice::Connected => self.on_connected(ctx),
            MqttNotice::Disconnected(reason) => self.on_disconnected(reason, ctx),
            MqttNotice::OutgoingPublish(pkid) => self.window.outgoing(pkid),
            MqttNotice::PubAck(pkid) => {
                let acked = self.window.puback(pkid);
                self.on_acked(acked);
                if self.window.inflight().idle() {
                    self.wake_idle_waiters();
                }
                self.pump(ctx);
            }
            MqttNotice::Incoming { topic, payload } => match self.cfg.topics.parse(&topic) {
                Ok((device, channel)) if device == self.cfg.device_id => match channel {
                    Channel::ShadowDocument | Channel::ShadowDelta => {
                        self.peers.cloud.do_send(CloudMessage {
                            channel,
                            topic,
                            payload,
                        })
                    }
                    Channel::ScheduleSet => self.on_schedule_set(&topic, &payload),
                    Channel::JobsNotify => self.on_jobs_notify(&topic, &payload),
                    other => {
                        tracing::info!(%topic, ?other, "message on a channel this build does not handle; dropped")
                    }
                },
                Ok((device, _)) => {
                    tracing::warn!(%topic, %device, "message for another device; dropped")
                }
                Err(e) => {
                    tracing::warn!(%topic, error = %e, "message on an unknown topic; dropped")
                }
            },
        }
    }
}

impl Handler<CommittedChanged> for Uplink {
    type Result = ();

    fn handle(&mut self, msg: CommittedChanged, ctx: &mut Context<Self>) {
        self.window.committed(msg.0);
        self.pump(ctx);
    }
}

impl Handler<PublishReported> for Uplink {
    type Result = ();

    fn handle(&mut self, msg: PublishReported, _ctx: &mut Context<Self>) {
        if !self.window.mode().sends() {
            tracing::debug!(
                generation = msg.generation,
                "link down: reported update held by the shadow"
            );
            return;
        }
        let payload = match encode(&msg.update) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "reported update cannot be encoded; dropped");
                return;
            }
        };
        let topic = self.topic(&Channel::ShadowReported);
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, payload)
        {
            Ok(()) => self.window.requested(Tag::Reported {
                generation: msg.generation,
            }),
            Err(e) => tracing::warn!(error = %e, "reported update publish refused"),
        }
    }
}

impl Handler<Shutdown> for Uplink {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _msg: Shutdown, _ctx: &mut Context<Self>) -> Self::Result {
        let connected = self.window.shut_down();
        let (batches, records) = self.window.totals();
        tracing::info!(batches, records, "uplink shutting down");
        let (tx, rx) = oneshot::channel();
        if connected {
            if let Ok(p) = encode(&self.status(Connectivity::Offline)) {
                self.publish_control(Channel::Status, p);
            }
            self.idle_waiters.push(tx);
        } else {
            let _ = tx.send(());
        }
        let grace = self.cfg.shutdown_grace;
        Box::pin(
            async move {
                let _ = tokio::time::timeout(grace, rx).await;
            }
            .into_actor(self)
            .map(|_, act, ctx| {
                let _ = act.client.try_disconnect();
                act.reconnect_tx = None;
                ctx.stop();
            }),
        )
    }
}
