//! MQTT connection setup (plain or rustls with a client certificate) and the task that
//! polls rumqttc's event loop continuously and forwards what happens to the uplink actor.

use std::sync::Arc;
use std::time::Duration;

use actix::{Message, Recipient};
use rumqttc::{
    ConnectReturnCode, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS,
    TlsConfiguration, Transport,
};
use shiki_shared::tls::ClientTlsFiles;
use tokio::sync::mpsc;

use crate::config::{EdgeConfig, parse_broker_url};

/// Why the uplink could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum UplinkSetupError {
    #[error("mqtt.url: {0}")]
    Url(String),
    #[error("TLS client configuration is invalid: {0}")]
    Config(String),
    #[error("MQTT TLS setup failed: {0}")]
    Tls(#[from] shiki_shared::tls::TlsError),
}

/// What the event loop reports to the uplink actor, in order.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub enum MqttNotice {
    Connected,
    /// The connection failed or dropped; the loop waits for a reconnect signal.
    Disconnected(String),
    /// rumqttc assigned `pkid` to the next requested QoS 1 publish.
    OutgoingPublish(u16),
    PubAck(u16),
    Incoming {
        topic: String,
        payload: Vec<u8>,
    },
}

/// Largest MQTT packet sent or accepted: the 128 KiB payload limit plus topic and header.
const MAX_PACKET: usize = shiki_proto::MAX_MESSAGE_BYTES + 4096;

/// MQTT options for `cfg`, with `will` as the retained Last Will on `will_topic`.
pub fn mqtt_options(
    cfg: &EdgeConfig,
    will_topic: String,
    will: Vec<u8>,
    inflight: u16,
) -> Result<MqttOptions, UplinkSetupError> {
    let addr = parse_broker_url(&cfg.mqtt.url).map_err(UplinkSetupError::Url)?;
    let client_id = cfg
        .mqtt
        .client_id
        .clone()
        .unwrap_or_else(|| cfg.device_id.to_string());
    let mut opts = MqttOptions::new(client_id, addr.host.clone(), addr.port);
    opts.set_keep_alive(cfg.mqtt.keep_alive)
        // The outbox, not the MQTT session, holds what is not yet acknowledged.
        .set_clean_session(true)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_inflight(inflight)
        .set_last_will(LastWill::new(will_topic, will, QoS::AtLeastOnce, true));
    let password = match (&cfg.mqtt.password, &cfg.mqtt.password_file) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(file)) => match std::fs::read_to_string(file) {
            Ok(text) => Some(crate::config::first_line(&text).to_owned()),
            Err(e) => {
                tracing::error!(file = %file.display(), error = %e, "cannot read mqtt.password_file; connecting without a password");
                None
            }
        },
        (None, None) => None,
    };
    if let Some(p) = password {
        let user = cfg
            .mqtt
            .username
            .clone()
            .unwrap_or_else(|| cfg.device_id.to_string());
        opts.set_credentials(user, p);
    }
    if addr.tls {
        let tls = tls_config(cfg)?;
        opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(tls))));
    }
    Ok(opts)
}

/// rustls client config (ring provider, via `shiki_shared::tls`): roots from
/// `mqtt.ca_file` (required for mqtts), client certificate from
/// `mqtt.cert_file`/`mqtt.key_file` when given. Errors name the file at fault.
pub fn tls_config(cfg: &EdgeConfig) -> Result<rustls::ClientConfig, UplinkSetupError> {
    let ca = cfg
        .mqtt
        .ca_file
        .clone()
        .ok_or_else(|| UplinkSetupError::Config("mqtts:// needs mqtt.ca_file".into()))?;
    let files = ClientTlsFiles {
        ca,
        cert: cfg.mqtt.cert_file.clone(),
        key: cfg.mqtt.key_file.clone(),
    };
    Ok(files.client_config()?)
}

/// Polls `event_loop` until the uplink stops it. After an error the loop reports
/// `Disconnected` and waits for a signal on `reconnect` (the uplink owns the backoff); it
/// then drops every request queued meanwhile (the uplink re-sends from the outbox) and
/// connects again. It ends when `reconnect` is closed or after an outgoing DISCONNECT.
pub async fn drive(
    mut event_loop: EventLoop,
    to: Recipient<MqttNotice>,
    mut reconnect: mpsc::UnboundedReceiver<()>,
) {
    loop {
        match event_loop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                if ack.code == ConnectReturnCode::Success {
                    to.do_send(MqttNotice::Connected);
                } else {
                    to.do_send(MqttNotice::Disconnected(format!(
                        "broker refused the connection: {:?}",
                        ack.code
                    )));
                    event_loop.network = None;
                    if !wait_reconnect(&mut event_loop, &mut reconnect).await {
                        return;
                    }
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => to.do_send(MqttNotice::PubAck(ack.pkid)),
            Ok(Event::Incoming(Packet::Publish(p))) => to.do_send(MqttNotice::Incoming {
                topic: p.topic,
                payload: p.payload.to_vec(),
            }),
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                to.do_send(MqttNotice::OutgoingPublish(pkid))
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                tracing::debug!("mqtt disconnect sent; event loop ends");
                return;
            }
            Ok(_) => {}
            Err(e) => {
                to.do_send(MqttNotice::Disconnected(e.to_string()));
                if !wait_reconnect(&mut event_loop, &mut reconnect).await {
                    return;
                }
            }
        }
    }
}

async fn wait_reconnect(
    event_loop: &mut EventLoop,
    reconnect: &mut mpsc::UnboundedReceiver<()>,
) -> bool {
    if reconnect.recv().await.is_none() {
        return false;
    }
    event_loop.clean();
    event_loop.pending.clear();
    true
}

/// Default time to wait for in-flight acknowledgements when shutting down.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
