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
    let (_client, mut eventloop) = AsyncClient::new(tls_options(client_id, port, ca, creds)?, 10);
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
        let o = tls_options(client_id, port, ca, creds)?;
        let (client, mut eventloop) = AsyncClient::new(o, 100);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(p)) => {
                        let Ok(mut s) = s.lock() else { return };
                        match p {
                            Packet::ConnAck(_) => s.connected = true,
                            Packet::SubAck(_) => s.subacks += 1,
                            Packet::PubAck(_) => s.pubacks += 1,
                            Packet::Publish(p) => {
                                s.messages.push((p.topic.clone(), p.payload.to_vec()));
                            }
                            _ => {}
                        }
                    }
                    Ok(_) => {}
                    // Back off before the event loop reconnects (rumqttc retries on poll).
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
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
}

impl Drop for MqttProbe {
    fn drop(&mut self) {
        self.task.abort();
    }
}
