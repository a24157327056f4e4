//! The device actors' way out: [`MqttPublisher`] publishes each [`Publish`] (a shadow
//! document or delta, a yearly schedule, a `jobs/notify`) on its device's cloud→edge topic, QoS 1, through
//! the ingest's MQTT client.

use actix::prelude::*;
use rumqttc::{AsyncClient, QoS};
use shiki_proto::{Channel, Topics, encode};

use crate::device::{Outbound, Publish};

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

impl Handler<Publish> for MqttPublisher {
    type Result = ();

    fn handle(&mut self, msg: Publish, ctx: &mut Self::Context) {
        let (channel, bytes) = match &msg.message {
            Outbound::Document(d) => (Channel::ShadowDocument, encode(d)),
            Outbound::Delta(d) => (Channel::ShadowDelta, encode(d)),
            Outbound::ScheduleSet(s) => (Channel::ScheduleSet, encode(s.as_ref())),
            Outbound::JobNotify(n) => (Channel::JobsNotify, encode(n.as_ref())),
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

/// A cluster's jobs driver's `jobs/notify`, published straight to the edge, whichever node
/// runs the device's actor (the actor only passes it on).
impl Handler<crate::ota::NotifyDevice> for MqttPublisher {
    type Result = ();

    fn handle(&mut self, msg: crate::ota::NotifyDevice, ctx: &mut Self::Context) {
        let publish = Publish {
            device: msg.device,
            message: Outbound::JobNotify(Box::new(msg.notify)),
        };
        <Self as Handler<Publish>>::handle(self, publish, ctx);
    }
}

/// Drives the event loop of a connection used only to publish (a cluster node's commands
/// to its devices' edges): reconnects with a capped backoff and logs what fails.
pub async fn keep_connected((_client, mut eventloop): (AsyncClient, rumqttc::EventLoop)) {
    let mut backoff = std::time::Duration::from_millis(100);
    loop {
        match eventloop.poll().await {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                tracing::info!("publishing connection to the MQTT broker up");
                backoff = std::time::Duration::from_millis(100);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "publishing connection to the MQTT broker lost");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(30));
            }
        }
    }
}
