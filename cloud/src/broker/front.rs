//! The embedded broker's front door. rumqttd authenticates a connection (client id, user,
//! password) but has no topic ACL, so devices do not reach it directly: they connect here.
//! The front reads each client's MQTT packets (rumqttc's codec) and
//! - refuses a CONNECT (CONNACK 5, "not authorized") whose client id is not a registered,
//!   unretired device, whose user name is not that id, or whose password does not match
//!   the stored Argon2id hash — or, with `mqtt.allow_unregistered`, registers an unknown
//!   device on first contact with the password it brought;
//! - passes on a PUBLISH (and a Last Will) only on the device's own edge→cloud topics, and
//!   closes the connection otherwise (MQTT 3.1.1 has no negative PUBACK);
//! - passes on a SUBSCRIBE only for filters inside the device's own subtree; other filters
//!   get the failure code in the SUBACK.
//!
//! The front connects each accepted device to rumqttd on a loopback port with an internal
//! secret in place of the device's password; rumqttd accepts only that secret, so nothing
//! reaches it but the front and the cloud's own client. Decision record:
//! docs/adr/broker-isolation.md.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use chrono::Utc;
use rumqttc::SubscribeReasonCode;
use rumqttc::mqttbytes::Error as CodecError;
use rumqttc::mqttbytes::v4::{ConnAck, Connect, ConnectReturnCode, Login, Packet, SubAck};
use sha2::{Digest, Sha256};
use shiki_proto::{Channel, DeviceId, Direction, Topics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::receipts::{HOLD_LIMIT, Receipts};
use super::{BrokerError, DeviceSessions};
use crate::auth::{hash_device_password, verify_device_password};
use crate::store::{RegistryRecord, Store, Write};

/// How long a new connection has to send its CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the front counts, for `/metrics`.
#[derive(Debug, Default)]
pub struct FrontStats {
    /// Connections accepted (CONNACK 0 from the broker behind).
    pub accepted: AtomicU64,
    /// Connections refused with CONNACK 5, by reason.
    pub refused: Mutex<HashMap<&'static str, u64>>,
    /// Connections closed for a publish (or Last Will) outside the device's own topics.
    pub publishes_refused: AtomicU64,
    /// Subscription filters answered with the failure code.
    pub subscriptions_refused: AtomicU64,
}

impl FrontStats {
    fn refuse(&self, reason: &'static str) {
        *self
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    /// Refused connections by reason.
    pub fn refused_by_reason(&self) -> Vec<(&'static str, u64)> {
        let mut all: Vec<_> = self
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        all.sort();
        all
    }
}

/// How the front checks and where it forwards.
#[derive(Debug, Clone)]
pub struct FrontConfig {
    /// rumqttd's loopback address.
    pub upstream: SocketAddr,
    /// The secret rumqttd accepts (the front's and the cloud's own client's password).
    pub internal_password: String,
    pub topics: Topics,
    /// Register an unknown device on first contact with the password it brings (labs).
    pub allow_unregistered: bool,
    /// Largest MQTT packet accepted.
    pub max_packet: usize,
    /// Data PUBACKs wait here for the ingest's commit (see [`super::receipts`]).
    pub receipts: Arc<Receipts>,
}

/// The running front (its thread lives as long as the process, like rumqttd's).
#[derive(Debug)]
pub struct DeviceFront {
    addr: SocketAddr,
    pub stats: Arc<FrontStats>,
}

struct Ctx {
    config: FrontConfig,
    store: Arc<dyn Store>,
    sessions: Arc<DeviceSessions>,
    stats: Arc<FrontStats>,
    /// Passwords already checked against a hash: (device, hash) → SHA-256 of the password,
    /// so a reconnecting fleet costs one Argon2 verification per device and password.
    verified: Mutex<HashMap<(DeviceId, String), [u8; 32]>>,
}

impl DeviceFront {
    /// Binds `listen` (port 0: any free port) and serves on a thread of its own.
    pub fn start(
        listen: SocketAddr,
        config: FrontConfig,
        store: Arc<dyn Store>,
        sessions: Arc<DeviceSessions>,
    ) -> Result<Self, BrokerError> {
        let listener = std::net::TcpListener::bind(listen).map_err(|source| BrokerError::Bind {
            addr: listen,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| BrokerError::Bind {
            addr: listen,
            source,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| BrokerError::Bind { addr, source })?;
        let stats = Arc::new(FrontStats::default());
        let upstream = config.upstream;
        let ctx = Arc::new(Ctx {
            config,
            store,
            sessions,
            stats: stats.clone(),
            verified: Mutex::default(),
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mqtt-front")
            .enable_all()
            .build()
            .map_err(|e| BrokerError::NotReady {
                addr,
                reason: e.to_string(),
            })?;
        std::thread::Builder::new()
            .name("mqtt-front".into())
            .spawn(move || {
                rt.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "MQTT front cannot listen");
                            return;
                        }
                    };
                    loop {
                        match listener.accept().await {
                            Ok((stream, peer)) => {
                                let ctx = ctx.clone();
                                tokio::spawn(async move { serve(stream, peer, ctx).await });
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "MQTT front accept failed");
                            }
                        }
                    }
                });
            })
            .map_err(|e| BrokerError::NotReady {
                addr,
                reason: e.to_string(),
            })?;
        tracing::debug!(%addr, %upstream, "MQTT front for devices listening");
        Ok(Self { addr, stats })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Why a connection was refused (logged, and counted under this name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    InvalidClientId,
    UsernameMismatch,
    NoPassword,
    UnknownDevice,
    Retired,
    WrongPassword,
    WillOutsideOwnTopics,
    StoreUnavailable,
}

impl Refusal {
    fn name(self) -> &'static str {
        match self {
            Refusal::InvalidClientId => "invalid_client_id",
            Refusal::UsernameMismatch => "username_mismatch",
            Refusal::NoPassword => "no_password",
            Refusal::UnknownDevice => "unknown_device",
            Refusal::Retired => "retired",
            Refusal::WrongPassword => "wrong_password",
            Refusal::WillOutsideOwnTopics => "will_outside_own_topics",
            Refusal::StoreUnavailable => "store_unavailable",
        }
    }
}

impl Ctx {
    /// Whether `device` may publish on `topic`: its own edge→cloud topics only.
    fn may_publish(&self, device: &DeviceId, topic: &str) -> bool {
        self.publish_channel(device, topic).is_some()
    }

    /// The channel of `topic` when `device` may publish on it (else `None`).
    fn publish_channel(&self, device: &DeviceId, topic: &str) -> Option<Channel> {
        match self.config.topics.parse(topic) {
            Ok((d, ch)) if d == *device && ch.direction() == Direction::EdgeToCloud => Some(ch),
            _ => None,
        }
    }

    /// Whether `device` may subscribe to `filter`: only inside its own subtree (a literal
    /// `{prefix}/{device}/` before any wildcard).
    fn may_subscribe(&self, device: &DeviceId, filter: &str) -> bool {
        let own = format!("{}/{}/", self.config.topics.prefix(), device);
        filter.starts_with(&own)
    }

    /// Checks a CONNECT; returns the device it speaks for.
    async fn authenticate(&self, connect: &Connect) -> Result<DeviceId, Refusal> {
        let device = DeviceId::new(&connect.client_id).map_err(|_| Refusal::InvalidClientId)?;
        let login = connect.login.as_ref().ok_or(Refusal::NoPassword)?;
        if !login.username.is_empty() && login.username != connect.client_id {
            return Err(Refusal::UsernameMismatch);
        }
        if login.password.is_empty() {
            return Err(Refusal::NoPassword);
        }
        let record = {
            let store = self.store.clone();
            let id = device.clone();
            tokio::task::spawn_blocking(move || store.registered(&id))
                .await
                .map_err(|_| Refusal::StoreUnavailable)?
                .map_err(|e| {
                    tracing::error!(error = %e, "MQTT front cannot read the device registry");
                    Refusal::StoreUnavailable
                })?
        };
        let hash = match record {
            Some(r) if r.retired_at.is_some() => return Err(Refusal::Retired),
            Some(r) => r.password_hash.ok_or(Refusal::Retired)?,
            None if self.config.allow_unregistered => {
                self.register_first_contact(&device, &login.password)
                    .await?;
                return Ok(device);
            }
            None => return Err(Refusal::UnknownDevice),
        };
        let digest: [u8; 32] = Sha256::digest(login.password.as_bytes()).into();
        let key = (device.clone(), hash.clone());
        if self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .is_some_and(|d| *d == digest)
        {
            return Ok(device);
        }
        let password = login.password.clone();
        let ok = tokio::task::spawn_blocking(move || verify_device_password(&hash, &password))
            .await
            .unwrap_or(false);
        if !ok {
            return Err(Refusal::WrongPassword);
        }
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, digest);
        Ok(device)
    }

    /// `mqtt.allow_unregistered`: the device is registered with the password it brought.
    async fn register_first_contact(
        &self,
        device: &DeviceId,
        password: &str,
    ) -> Result<(), Refusal> {
        let password = password.to_owned();
        let hash = tokio::task::spawn_blocking(move || hash_device_password(&password))
            .await
            .map_err(|_| Refusal::StoreUnavailable)?;
        let now = Utc::now();
        let record = RegistryRecord {
            id: device.clone(),
            tenant: None,
            password_hash: Some(hash),
            created_at: now,
            created_by: "first-contact".into(),
            credentials_at: now,
            retired_at: None,
        };
        self.store
            .submit(vec![Write::PutRegistry(Box::new(record))])
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot register a device on first contact");
                Refusal::StoreUnavailable
            })?;
        tracing::warn!(device = %device, "device registered on first contact (mqtt.allow_unregistered)");
        Ok(())
    }
}

/// Reads one packet from `stream` into `buf`; `None` at end of stream.
async fn read_packet(
    stream: &mut (impl AsyncReadExt + Unpin),
    buf: &mut BytesMut,
    max: usize,
) -> std::io::Result<Option<Packet>> {
    loop {
        match Packet::read(buf, max) {
            Ok(p) => return Ok(Some(p)),
            Err(CodecError::InsufficientBytes(_)) => {}
            Err(e) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("malformed MQTT packet: {e:?}"),
                ));
            }
        }
        if stream.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

async fn write_packet(
    stream: &mut (impl AsyncWriteExt + Unpin),
    packet: &Packet,
    max: usize,
) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    packet
        .write(&mut out, max)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{e:?}")))?;
    stream.write_all(&out).await
}

/// One client connection, from CONNECT to close.
async fn serve(mut client: TcpStream, peer: SocketAddr, ctx: Arc<Ctx>) {
    let _ = client.set_nodelay(true);
    let max = ctx.config.max_packet;
    let mut buf = BytesMut::with_capacity(4096);
    let connect = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        read_packet(&mut client, &mut buf, max),
    )
    .await
    {
        Ok(Ok(Some(Packet::Connect(c)))) => c,
        Ok(Ok(Some(other))) => {
            tracing::warn!(%peer, packet = ?packet_kind(&other), "MQTT front: first packet is not CONNECT; closed");
            return;
        }
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "MQTT front: closed before CONNECT");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "MQTT front: no CONNECT within 10 s; closed");
            return;
        }
    };
    if !ctx.config.receipts.is_ready() {
        tracing::info!(%peer, client_id = ?connect.client_id, "MQTT device refused for now: the cloud has not subscribed yet (the device retries)");
        let ack = Packet::ConnAck(ConnAck::new(ConnectReturnCode::ServiceUnavailable, false));
        let _ = write_packet(&mut client, &ack, max).await;
        let _ = client.shutdown().await;
        return;
    }
    let checked = match ctx.authenticate(&connect).await {
        Ok(device) => match &connect.last_will {
            Some(will) if !ctx.may_publish(&device, &will.topic) => {
                Err(Refusal::WillOutsideOwnTopics)
            }
            _ => Ok(device),
        },
        Err(r) => Err(r),
    };
    let device = match checked {
        Ok(d) => d,
        Err(reason) => {
            ctx.stats.refuse(reason.name());
            tracing::warn!(%peer, client_id = ?connect.client_id, reason = reason.name(), "MQTT connection refused: not authorized");
            let ack = Packet::ConnAck(ConnAck::new(ConnectReturnCode::NotAuthorized, false));
            let _ = write_packet(&mut client, &ack, max).await;
            let _ = client.shutdown().await;
            return;
        }
    };
    let mut upstream = match TcpStream::connect(ctx.config.upstream).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%peer, error = %e, "MQTT front cannot reach the broker behind it");
            let ack = Packet::ConnAck(ConnAck::new(ConnectReturnCode::ServiceUnavailable, false));
            let _ = write_packet(&mut client, &ack, max).await;
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let mut forwarded = connect;
    forwarded.login = Some(Login::new(
        device.as_str(),
        ctx.config.internal_password.as_str(),
    ));
    if write_packet(&mut upstream, &Packet::Connect(forwarded), max)
        .await
        .is_err()
    {
        return;
    }
    ctx.stats.accepted.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(%peer, %device, "MQTT device connected through the front");
    let (session, closed) = ctx.sessions.open(&device);
    let (client_r, client_w) = client.into_split();
    let (upstream_r, upstream_w) = upstream.into_split();
    // SUBACKs the front answers or completes itself go to the client writer through here.
    let (inject, injected) = mpsc::channel::<Packet>(16);
    let pending: Arc<Mutex<HashMap<u16, Vec<bool>>>> = Arc::default();
    // Data publishes whose PUBACK waits for the commit, told to the downlink before the
    // publish goes on to rumqttd (so before its PUBACK can come back).
    let (hold, holds) = mpsc::unbounded_channel::<Hold>();
    let up = uplink(
        client_r,
        buf,
        upstream_w,
        &device,
        &ctx,
        (inject, hold),
        pending.clone(),
        peer,
    );
    let down = downlink(
        upstream_r,
        client_w,
        (injected, holds),
        pending,
        max,
        &device,
    );
    tokio::select! {
        end = up => if let Err(e) = end {
            tracing::warn!(%peer, %device, error = %e, "MQTT device connection closed");
        },
        _ = down => {}
        _ = closed => {
            tracing::info!(%peer, %device, "MQTT device connection closed: its credentials changed or it was retired");
        }
    }
    drop(session);
}

fn packet_kind(p: &Packet) -> &'static str {
    match p {
        Packet::Connect(_) => "CONNECT",
        Packet::Publish(_) => "PUBLISH",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::PingReq => "PINGREQ",
        Packet::Disconnect => "DISCONNECT",
        _ => "other",
    }
}

/// Client → broker: every packet checked, refused publishes close the connection.
#[allow(clippy::too_many_arguments)]
async fn uplink(
    mut client: tokio::net::tcp::OwnedReadHalf,
    mut buf: BytesMut,
    mut upstream: tokio::net::tcp::OwnedWriteHalf,
    device: &DeviceId,
    ctx: &Ctx,
    (inject, hold): (mpsc::Sender<Packet>, mpsc::UnboundedSender<Hold>),
    pending: Arc<Mutex<HashMap<u16, Vec<bool>>>>,
    peer: SocketAddr,
) -> std::io::Result<()> {
    let max = ctx.config.max_packet;
    // Packets checked and passed on are written to rumqttd in one write per read from the
    // client (a write per packet cost more than all the checking).
    let mut out = BytesMut::with_capacity(64 * 1024);
    loop {
        let packet = match Packet::read(&mut buf, max) {
            Ok(p) => p,
            Err(CodecError::InsufficientBytes(_)) => {
                flush(&mut upstream, &mut out).await?;
                if client.read_buf(&mut buf).await? == 0 {
                    return Ok(());
                }
                continue;
            }
            Err(e) => {
                flush(&mut upstream, &mut out).await?;
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("malformed MQTT packet: {e:?}"),
                ));
            }
        };
        match packet {
            Packet::Publish(p) => {
                let Some(channel) = ctx.publish_channel(device, &p.topic) else {
                    ctx.stats.publishes_refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer, %device, topic = ?p.topic, "MQTT publish refused: not one of the device's own topics; connection closed");
                    // What came before it on this connection still goes through.
                    flush(&mut upstream, &mut out).await?;
                    return Ok(());
                };
                // The PUBACK of telemetry and events (QoS 1) waits for the cloud's commit.
                if p.qos == rumqttc::mqttbytes::QoS::AtLeastOnce
                    && matches!(channel, Channel::Telemetry | Channel::Events)
                {
                    let settled = ctx
                        .config
                        .receipts
                        .expect(Receipts::key(&p.topic, &p.payload));
                    if hold.send((p.pkid, settled)).is_err() {
                        return Ok(());
                    }
                }
                encode(&Packet::Publish(p), &mut out, max)?;
            }
            Packet::Connect(_) => {
                return Err(std::io::Error::other("second CONNECT"));
            }
            Packet::Subscribe(mut s) => {
                let allowed: Vec<bool> = s
                    .filters
                    .iter()
                    .map(|f| ctx.may_subscribe(device, &f.path))
                    .collect();
                let refused = allowed.iter().filter(|a| !**a).count();
                if refused > 0 {
                    ctx.stats
                        .subscriptions_refused
                        .fetch_add(refused as u64, Ordering::Relaxed);
                    for f in s
                        .filters
                        .iter()
                        .filter(|f| !ctx.may_subscribe(device, &f.path))
                    {
                        tracing::warn!(%peer, %device, filter = ?f.path, "MQTT subscription refused: outside the device's own topics");
                    }
                }
                if refused == allowed.len() {
                    let ack =
                        SubAck::new(s.pkid, vec![SubscribeReasonCode::Failure; allowed.len()]);
                    if inject.send(Packet::SubAck(ack)).await.is_err() {
                        return Ok(());
                    }
                    continue;
                }
                if refused > 0 {
                    pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(s.pkid, allowed.clone());
                    let mut keep = allowed.iter();
                    s.filters.retain(|_| *keep.next().unwrap_or(&false));
                }
                encode(&Packet::Subscribe(s), &mut out, max)?;
            }
            other => {
                let last = matches!(other, Packet::Disconnect);
                encode(&other, &mut out, max)?;
                if last {
                    flush(&mut upstream, &mut out).await?;
                    return Ok(());
                }
            }
        }
    }
}

/// Appends `packet`, encoded, to `out`.
fn encode(packet: &Packet, out: &mut BytesMut, max: usize) -> std::io::Result<()> {
    packet
        .write(out, max)
        .map(|_| ())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{e:?}")))
}

/// Writes what `out` holds and empties it.
async fn flush(
    stream: &mut (impl AsyncWriteExt + Unpin),
    out: &mut BytesMut,
) -> std::io::Result<()> {
    if !out.is_empty() {
        stream.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

/// A data publish's PUBACK waits for this: its packet id and the ingest's answer.
type Hold = (u16, tokio::sync::oneshot::Receiver<bool>);

/// A PUBACK from rumqttd on its way to the device, in order; data PUBACKs wait for their
/// commit, the others only for those before them.
struct Queued {
    ack: Packet,
    wait: Wait,
    since: tokio::time::Instant,
}

/// What a queued PUBACK waits for.
enum Wait {
    /// Nothing of its own (not a data publish).
    Nothing,
    /// The ingest's answer.
    Commit(tokio::sync::oneshot::Receiver<bool>),
    /// The answer came: stored, or not.
    Settled(bool),
}

/// Broker → client: passed on, with the SUBACKs of partly refused subscriptions completed,
/// the front's own SUBACKs added, and the PUBACKs of telemetry and events held until the
/// cloud stored them (in publish order). A failed commit, or one not made within
/// [`HOLD_LIMIT`], closes the connection: the edge sends those messages again.
async fn downlink(
    mut upstream: tokio::net::tcp::OwnedReadHalf,
    mut client: tokio::net::tcp::OwnedWriteHalf,
    (mut injected, mut holds): (mpsc::Receiver<Packet>, mpsc::UnboundedReceiver<Hold>),
    pending: Arc<Mutex<HashMap<u16, Vec<bool>>>>,
    max: usize,
    device: &DeviceId,
) {
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = BytesMut::with_capacity(4096);
    let mut held: HashMap<u16, tokio::sync::oneshot::Receiver<bool>> = HashMap::new();
    let mut queue: std::collections::VecDeque<Queued> = std::collections::VecDeque::new();
    loop {
        // Everything that has arrived goes to the device in one write.
        loop {
            match Packet::read(&mut buf, max) {
                Ok(Packet::PubAck(ack)) => {
                    while let Ok((pkid, settled)) = holds.try_recv() {
                        held.insert(pkid, settled);
                    }
                    let wait = held.remove(&ack.pkid).map_or(Wait::Nothing, Wait::Commit);
                    if matches!(wait, Wait::Nothing) && queue.is_empty() {
                        if encode(&Packet::PubAck(ack), &mut out, max).is_err() {
                            return;
                        }
                    } else {
                        queue.push_back(Queued {
                            ack: Packet::PubAck(ack),
                            wait,
                            since: tokio::time::Instant::now(),
                        });
                    }
                }
                Ok(p) => {
                    if encode(&complete_suback(p, &pending), &mut out, max).is_err() {
                        return;
                    }
                }
                Err(CodecError::InsufficientBytes(_)) => break,
                Err(_) => return,
            }
        }
        if !release(&mut queue, &mut out, max, device) {
            let _ = flush(&mut client, &mut out).await;
            return;
        }
        while let Ok(p) = injected.try_recv() {
            if encode(&p, &mut out, max).is_err() {
                return;
            }
        }
        if flush(&mut client, &mut out).await.is_err() {
            return;
        }
        let deadline = queue.front().map(|q| q.since + HOLD_LIMIT);
        tokio::select! {
            n = upstream.read_buf(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            Some(p) = injected.recv() => {
                if encode(&p, &mut out, max).is_err() {
                    return;
                }
            }
            // The first held PUBACK's answer (`release` reads it on the next pass).
            _ = first_settled(&mut queue) => {}
            () = sleep_until(deadline) => {
                tracing::warn!(%device, held = queue.len(), "MQTT front: telemetry not stored within 30 s; closing the connection so that the device sends it again");
                let _ = flush(&mut client, &mut out).await;
                return;
            }
        }
    }
}

/// Moves the PUBACKs at the head of `queue` whose messages are stored (and those behind
/// them that wait for nothing) to `out`; `false` when the store failed one.
fn release(
    queue: &mut std::collections::VecDeque<Queued>,
    out: &mut BytesMut,
    max: usize,
    device: &DeviceId,
) -> bool {
    use tokio::sync::oneshot::error::TryRecvError;
    while let Some(first) = queue.front_mut() {
        let stored = match &mut first.wait {
            Wait::Nothing => true,
            Wait::Settled(stored) => *stored,
            Wait::Commit(settled) => match settled.try_recv() {
                Ok(stored) => stored,
                Err(TryRecvError::Empty) => return true,
                // The cloud is shutting down: nothing will store it now.
                Err(TryRecvError::Closed) => false,
            },
        };
        if !stored {
            tracing::warn!(%device, "MQTT front: the cloud could not store a message; closing the connection so that the device sends it again");
            return false;
        }
        let Some(q) = queue.pop_front() else {
            break;
        };
        if encode(&q.ack, out, max).is_err() {
            return false;
        }
    }
    true
}

/// Completes when the first held PUBACK of `queue` has its answer (never when none is held).
async fn first_settled(queue: &mut std::collections::VecDeque<Queued>) {
    match queue.front_mut() {
        Some(q) => {
            if let Wait::Commit(settled) = &mut q.wait {
                let stored = settled.await.unwrap_or(false);
                q.wait = Wait::Settled(stored);
            } else {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline` (forever when `None`).
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A SUBACK of a subscription the front passed on only in part gets the failure code for
/// the filters it held back; other packets pass as they are.
fn complete_suback(packet: Packet, pending: &Mutex<HashMap<u16, Vec<bool>>>) -> Packet {
    let Packet::SubAck(ack) = packet else {
        return packet;
    };
    let flags = pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&ack.pkid);
    match flags {
        Some(flags) => {
            let mut granted = ack.return_codes.into_iter();
            let codes = flags
                .iter()
                .map(|ok| {
                    if *ok {
                        granted.next().unwrap_or(SubscribeReasonCode::Failure)
                    } else {
                        SubscribeReasonCode::Failure
                    }
                })
                .collect();
            Packet::SubAck(SubAck::new(ack.pkid, codes))
        }
        None => Packet::SubAck(ack),
    }
}

/// A fresh internal secret.
pub fn internal_password() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_may_publish_up_and_subscribe_only_in_its_own_subtree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::RedbStore::open(&dir.path().join("c.redb"), 16).expect("store");
        let ctx = Ctx {
            config: FrontConfig {
                upstream: "127.0.0.1:1".parse().expect("addr"),
                internal_password: "x".into(),
                topics: Topics::new("shiki/v1").expect("topics"),
                allow_unregistered: false,
                max_packet: 1 << 20,
                receipts: Arc::default(),
            },
            store: Arc::new(store),
            sessions: Arc::default(),
            stats: Arc::default(),
            verified: Mutex::default(),
        };
        let a = DeviceId::new("plant-a").expect("id");
        for ok in [
            "shiki/v1/plant-a/telemetry",
            "shiki/v1/plant-a/status",
            "shiki/v1/plant-a/shadow/reported",
            "shiki/v1/plant-a/jobs/ota-1/update",
        ] {
            assert!(ctx.may_publish(&a, ok), "{ok}");
        }
        for refused in [
            "shiki/v1/plant-b/telemetry",
            "shiki/v1/plant-a/shadow/delta",
            "shiki/v1/plant-a/schedule/set",
            "shiki/v1/plant-a/nonsense",
            "other/plant-a/telemetry",
            "shiki/v1/plant-a",
        ] {
            assert!(!ctx.may_publish(&a, refused), "{refused}");
        }
        assert!(ctx.may_subscribe(&a, "shiki/v1/plant-a/shadow/delta"));
        assert!(ctx.may_subscribe(&a, "shiki/v1/plant-a/#"));
        for refused in [
            "shiki/v1/plant-b/shadow/delta",
            "shiki/v1/+/shadow/delta",
            "shiki/v1/#",
            "#",
            "$share/g/shiki/v1/plant-a/shadow/delta",
            "shiki/v1/plant-a",
            "shiki/v1/plant-ab/#",
        ] {
            assert!(!ctx.may_subscribe(&a, refused), "{refused}");
        }
    }
}
