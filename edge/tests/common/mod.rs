//! Test peers: a TCP proxy the test owns (to cut the link), and an MQTT subscriber.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// The broker the tests use: `SHIKI_TEST_BROKER` (host:port) or the local Mosquitto.
pub fn broker() -> (String, u16) {
    let s = std::env::var("SHIKI_TEST_BROKER").unwrap_or_else(|_| "127.0.0.1:1883".into());
    let (h, p) = s.rsplit_once(':').expect("SHIKI_TEST_BROKER is host:port");
    (h.to_owned(), p.parse().expect("port"))
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A device id no other test run uses.
pub fn unique_device(name: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    format!("{name}-{}-{n}-{nanos}", std::process::id())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    Open,
    Cut,
}

/// A TCP proxy to the broker on an ephemeral port. `cut()` closes every connection and
/// refuses new ones until `restore()`; `delay` slows edge→broker traffic per chunk.
#[derive(Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    state: watch::Sender<LinkState>,
}

impl Proxy {
    pub async fn start(upstream: (String, u16), delay: Duration, open: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let (state, rx) = watch::channel(if open {
            LinkState::Open
        } else {
            LinkState::Cut
        });
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if *rx.borrow() == LinkState::Cut {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect((upstream.0.as_str(), upstream.1)).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::select! {
                        _ = pump(cr, sw, delay) => {},
                        _ = pump(sr, cw, Duration::ZERO) => {},
                        _ = rx.wait_for(|s| *s == LinkState::Cut) => {},
                    }
                });
            }
        });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    pub fn cut(&self) {
        self.state.send_replace(LinkState::Cut);
    }

    pub fn restore(&self) {
        self.state.send_replace(LinkState::Open);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// One message seen by the subscriber.
#[derive(Debug, Clone)]
pub struct Seen {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

/// An MQTT subscriber connected straight to the broker.
#[derive(Debug)]
pub struct Subscriber {
    pub client: AsyncClient,
    pub rx: mpsc::UnboundedReceiver<Seen>,
}

impl Subscriber {
    /// Connects, subscribes to `filters` (QoS 1) and returns after the SUBACK.
    pub async fn start(name: &str, filters: &[String]) -> Self {
        let (host, port) = broker();
        let mut opts = MqttOptions::new(format!("sub-{name}"), host, port);
        opts.set_max_packet_size(1 << 20, 1 << 20);
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, mut event_loop) = AsyncClient::new(opts, 64);
        for f in filters {
            client
                .subscribe(f.clone(), QoS::AtLeastOnce)
                .await
                .expect("subscribe");
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match event_loop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let seen = Seen {
                            topic: p.topic,
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                        };
                        if tx.send(seen).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        for _ in filters {
            tokio::time::timeout(Duration::from_secs(10), ready_rx.recv())
                .await
                .expect("SUBACK within 10 s");
        }
        Self { client, rx }
    }

    /// Next message, or panics after `within`.
    pub async fn next(&mut self, within: Duration) -> Seen {
        tokio::time::timeout(within, self.rx.recv())
            .await
            .expect("message within the timeout")
            .expect("subscriber running")
    }
}

/// Telemetry seqs as received, in order (duplicates included).
#[derive(Debug, Default)]
pub struct SeqLog {
    pub received: Vec<u64>,
    pub backlog_batches: usize,
    pub publishes: usize,
    /// Point dictionaries carried by compact batches (protocol version 2), by id.
    pub dictionaries: BTreeMap<String, shiki_proto::PointDictionary>,
}

impl SeqLog {
    /// A telemetry payload of either protocol version (a compact one resolves its
    /// dictionary from those carried earlier).
    pub fn add_batch(&mut self, payload: &[u8]) {
        let (batch, carried) =
            shiki_proto::decode_telemetry(payload, |id| self.dictionaries.get(id).cloned())
                .expect("telemetry batch decodes");
        if let Some(d) = carried {
            self.dictionaries.insert(d.id().to_owned(), d);
        }
        self.publishes += 1;
        if batch.backlog {
            self.backlog_batches += 1;
        }
        self.received.extend(batch.samples.iter().map(|s| s.seq));
    }

    /// Distinct seqs seen.
    pub fn distinct(&self) -> usize {
        self.received
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    }

    /// Checks that after removing duplicates (keeping first arrivals) the seqs are exactly
    /// `1..=last` in order. Returns how many duplicates were removed.
    pub fn assert_exactly_once_in_order(&self, last: u64) -> usize {
        let mut seen = BTreeMap::new();
        let mut firsts = Vec::new();
        for &s in &self.received {
            if seen.insert(s, ()).is_none() {
                firsts.push(s);
            }
        }
        let expected: Vec<u64> = (1..=last).collect();
        assert_eq!(
            firsts.len(),
            expected.len(),
            "distinct seqs: got {} expected {last}; missing: {:?}",
            firsts.len(),
            expected
                .iter()
                .filter(|s| !seen.contains_key(s))
                .take(20)
                .collect::<Vec<_>>()
        );
        assert_eq!(firsts, expected, "first arrivals are in seq order");
        self.received.len() - firsts.len()
    }
}
