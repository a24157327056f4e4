//! An MQTT client for tests: connects over TLS with a client certificate, a user name and
//! password, or neither; records every message it receives and the acknowledgements it
//! gets. [`connect_answer`] tries a connection and returns the broker's CONNACK code.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS,
    TlsConfiguration, Transport,
};

use crate::pki::CertFiles;
use crate::wait_for;

/// What the probe has seen so far.
#[derive(Debug, Default)]
struct Seen {
    connected: bool,
    subacks: usize,
    pubacks: usize,
    messages: Vec<(String, Vec<u8>)>,
    suback_codes: Vec<rumqttc::SubscribeReasonCode>,
    disconnects: usize,
    connects: usize,
}

/// How a probe identifies itself to a TLS listener.
#[derive(Debug, Clone, Copy)]
pub enum Credentials<'a> {
    /// A client certificate (Mosquitto takes its CN as the user name).
    Certificate(&'a CertFiles),
    /// A user name and password (Mosquitto's `password_file`).
    Password { user: &'a str, password: &'a str },
    /// Neither.
    Anonymous,
}

/// MQTT options for `127.0.0.1:port` over TLS (server checked against `ca`) with `creds`.
fn tls_options(
    client_id: &str,
    port: u16,
    ca: &Path,
    creds: Credentials<'_>,
) -> anyhow::Result<MqttOptions> {
    crate::install_crypto();
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    let client_auth = match creds {
        Credentials::Certificate(cert) => {
            Some((std::fs::read(&cert.cert)?, std::fs::read(&cert.key)?))
        }
        Credentials::Password { user, password } => {
            o.set_credentials(user, password);
            None
        }
        Credentials::Anonymous => None,
    };
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
        ca: std::fs::read(ca)?,
        alpn: None,
        client_auth,
    }));
    Ok(o)
}

/// Connects once to `127.0.0.1:port` over TLS with `creds` and returns the broker's CONNACK
/// code (`Success`, or why it refused), then drops the connection.
pub async fn connect_answer(
    client_id: &str,
    port: u16,
    ca: &Path,
    creds: Credentials<'_>,
) -> anyhow::Result<ConnectReturnCode> {
    answer(client_id, tls_options(client_id, port, ca, creds)?).await
}

/// MQTT options for plain `127.0.0.1:port` with `creds` (a certificate is not possible).
fn plain_options(client_id: &str, port: u16, creds: Credentials<'_>) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    if let Credentials::Password { user, password } = creds {
        o.set_credentials(user, password);
    }
    o
}

/// As [`connect_answer`], over plain MQTT (the cloud's embedded broker).
pub async fn connect_answer_plain(
    client_id: &str,
    port: u16,
    creds: Credentials<'_>,
) -> anyhow::Result<ConnectReturnCode> {
    answer(client_id, plain_options(client_id, port, creds)).await
}

async fn answer(client_id: &str, o: MqttOptions) -> anyhow::Result<ConnectReturnCode> {
    let (_client, mut eventloop) = AsyncClient::new(o, 10);
    let answer = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => return Ok(ack.code),
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(code)) => return Ok(code),
                Err(e) => anyhow::bail!("{client_id}: no CONNACK: {e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .map_err(|_| anyhow::anyhow!("{client_id}: no CONNACK within 10 s"))?
}

/// A connected MQTT client whose event loop runs in a task of its own.
#[derive(Debug)]
pub struct MqttProbe {
    pub client: AsyncClient,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl MqttProbe {
    /// Connects to `127.0.0.1:port` over TLS with `ca` and the client certificate `cert`,
    /// and waits for the CONNACK.
    pub async fn connect_tls(
        client_id: &str,
        port: u16,
        ca: &Path,
        cert: &CertFiles,
    ) -> anyhow::Result<Self> {
        Self::connect(client_id, port, ca, Credentials::Certificate(cert)).await
    }

    /// Connects to `127.0.0.1:port` over TLS with `ca` and `creds`, and waits for a
    /// successful CONNACK.
    pub async fn connect(
        client_id: &str,
        port: u16,
        ca: &Path,
        creds: Credentials<'_>,
    ) -> anyhow::Result<Self> {
        Self::connect_with(client_id, tls_options(client_id, port, ca, creds)?).await
    }

    /// Connects to `127.0.0.1:port` over plain MQTT with `creds` (the cloud's embedded
    /// broker), and waits for a successful CONNACK.
    pub async fn connect_plain(
        client_id: &str,
        port: u16,
        creds: Credentials<'_>,
    ) -> anyhow::Result<Self> {
        Self::connect_with(client_id, plain_options(client_id, port, creds)).await
    }

    async fn connect_with(client_id: &str, o: MqttOptions) -> anyhow::Result<Self> {
        let (client, mut eventloop) = AsyncClient::new(o, 100);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(p)) => {
                        let Ok(mut s) = s.lock() else { return };
                        match p {
                            Packet::ConnAck(_) => {
                                s.connected = true;
                                s.connects += 1;
                            }
                            Packet::SubAck(ack) => {
                                s.subacks += 1;
                                s.suback_codes.extend(ack.return_codes);
                            }
                            Packet::PubAck(_) => s.pubacks += 1,
                            Packet::Publish(p) => {
                                s.messages.push((p.topic.clone(), p.payload.to_vec()));
                            }
                            _ => {}
                        }
                    }
                    Ok(_) => {}
                    // Back off before the event loop reconnects (rumqttc retries on poll).
                    Err(_) => {
                        if let Ok(mut s) = s.lock() {
                            s.disconnects += 1;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        let probe = Self { client, seen, task };
        wait_for(
            &format!("{client_id} connected"),
            Duration::from_secs(10),
            || async { probe.lock().connected.then_some(()) },
        )
        .await?;
        Ok(probe)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen
            .lock()
            .expect("probe state lock is never poisoned")
    }

    /// Subscribes at QoS 1 and waits for the SUBACK.
    pub async fn subscribe(&self, filter: &str) -> anyhow::Result<()> {
        let before = self.lock().subacks;
        self.client.subscribe(filter, QoS::AtLeastOnce).await?;
        wait_for(
            &format!("SUBACK for {filter}"),
            Duration::from_secs(10),
            || async { (self.lock().subacks > before).then_some(()) },
        )
        .await
    }

    /// Publishes at QoS 1 (not retained).
    pub async fn publish(&self, topic: &str, payload: Vec<u8>) -> anyhow::Result<()> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await?;
        Ok(())
    }

    /// Every message received so far: (topic, payload).
    pub fn messages(&self) -> Vec<(String, Vec<u8>)> {
        self.lock().messages.clone()
    }

    /// Subscribes at QoS 1, waits for the SUBACK and returns its return codes.
    pub async fn subscribe_answer(
        &self,
        filter: &str,
    ) -> anyhow::Result<Vec<rumqttc::SubscribeReasonCode>> {
        let before = self.lock().suback_codes.len();
        self.subscribe(filter).await?;
        Ok(self.lock().suback_codes[before..].to_vec())
    }

    /// Subscribes to several filters in one SUBSCRIBE and returns the SUBACK's codes.
    pub async fn subscribe_many_answer(
        &self,
        filters: &[&str],
    ) -> anyhow::Result<Vec<rumqttc::SubscribeReasonCode>> {
        let (before, acks) = {
            let s = self.lock();
            (s.suback_codes.len(), s.subacks)
        };
        self.client
            .subscribe_many(
                filters
                    .iter()
                    .map(|f| rumqttc::SubscribeFilter::new((*f).to_owned(), QoS::AtLeastOnce)),
            )
            .await?;
        wait_for("SUBACK", Duration::from_secs(10), || async {
            (self.lock().subacks > acks).then_some(())
        })
        .await?;
        Ok(self.lock().suback_codes[before..].to_vec())
    }

    /// How often the connection broke (the broker closed it, or the network did).
    pub fn disconnects(&self) -> usize {
        self.lock().disconnects
    }

    /// How many CONNACKs it got (one per successful connection).
    pub fn connects(&self) -> usize {
        self.lock().connects
    }
}

impl Drop for MqttProbe {
    fn drop(&mut self) {
        self.task.abort();
    }
}
