//! Test helpers: a raw MQTT client playing a device, and waiting with a deadline.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use shiki_proto::{Channel, DeviceId, Topics, encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// A simulated edge: a plain rumqttc client under a device id.
pub struct FakeDevice {
    pub id: DeviceId,
    pub topics: Topics,
    pub client: AsyncClient,
    pub inbox: mpsc::UnboundedReceiver<(Channel, Vec<u8>)>,
}

/// The password fake devices bring: the embedded broker registers them with it on first
/// contact (the tests' configs set `mqtt.allow_unregistered`).
pub const TEST_DEVICE_PASSWORD: &str = "test-device-password";

impl FakeDevice {
    /// Connects as device `id` (client id = user name = `id` on the embedded broker; on the
    /// shared Mosquitto at 1883 the client id gets a random suffix, so that tests running
    /// at once do not take each other's sessions).
    pub async fn connect(id: &str, topics: &Topics, host: &str, port: u16) -> Self {
        let client_id = if port == 1883 {
            format!("{id}-{}", rand::random::<u32>())
        } else {
            id.to_owned()
        };
        let mut o = MqttOptions::new(client_id, host, port);
        o.set_credentials(id, TEST_DEVICE_PASSWORD);
        Self::connect_with(id, topics, o).await
    }

    pub async fn connect_with(id: &str, topics: &Topics, mut o: MqttOptions) -> Self {
        let id = DeviceId::new(id).expect("valid device id");
        o.set_keep_alive(Duration::from_secs(5));
        let will = shiki_proto::Status::last_will("0.1.0", chrono::Utc::now());
        o.set_last_will(LastWill::new(
            topics.topic_for(&id, &Channel::Status),
            encode(&will).expect("encodes"),
            QoS::AtLeastOnce,
            true,
        ));
        let (client, mut eventloop) = AsyncClient::new(o, 1000);
        let (tx, inbox) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let parser = topics.clone();
        let sub_client = client.clone();
        let subs = topics.edge_subscriptions(&id);
        actix_rt::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for s in &subs {
                            let _ = sub_client.try_subscribe(s.clone(), QoS::AtLeastOnce);
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if let Ok((_, ch)) = parser.parse(&p.topic) {
                            let _ = tx.send((ch, p.payload.to_vec()));
                        }
                    }
                    Ok(_) => {}
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        within(ready_rx, "device subscription")
            .await
            .expect("subscribed");
        Self {
            id,
            topics: topics.clone(),
            client,
            inbox,
        }
    }

    pub async fn send<T: serde::Serialize>(&self, channel: Channel, msg: &T) {
        self.send_raw(channel, encode(msg).expect("encodes")).await;
    }

    pub async fn send_raw(&self, channel: Channel, payload: Vec<u8>) {
        let topic = self.topics.topic_for(&self.id, &channel);
        self.client
            .publish(topic, QoS::AtLeastOnce, channel.retained(), payload)
            .await
            .expect("publish queued");
    }

    /// The next message on `channel` (others are skipped).
    pub async fn expect(&mut self, channel: Channel) -> Vec<u8> {
        within(
            async {
                loop {
                    let (ch, payload) = self.inbox.recv().await.expect("device inbox open");
                    if ch == channel {
                        return payload;
                    }
                }
            },
            "message for the device",
        )
        .await
    }
}

/// Awaits `f` for at most 10 s.
pub async fn within<T>(f: impl Future<Output = T>, what: &str) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Re-evaluates `check` every 20 ms until it returns `Some`, for at most 10 s. For state
/// that is only observable by reading it (the store, an actor's view).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(
        async {
            loop {
                if let Some(v) = check().await {
                    return v;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
        what,
    )
    .await
}

/// Accepts HTTP requests; answers the first `fail_first` with 500, then 200. Sends each
/// request body to the returned channel.
pub async fn webhook(fail_first: usize) -> (String, mpsc::UnboundedReceiver<serde_json::Value>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::unbounded_channel();
    actix_rt::spawn(async move {
        let mut n = 0;
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let r = sock.read(&mut chunk).await.expect("read");
                if r == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..r]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break Some(body[..len].to_owned());
                    }
                }
            };
            n += 1;
            let status = if n <= fail_first {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = sock
                .write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await;
            if let Some(b) = body {
                let _ = tx.send(serde_json::from_str(&b).expect("json body"));
            }
        }
    });
    (url, rx)
}
