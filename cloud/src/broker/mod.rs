//! MQTT brokers: the embedded rumqttd (default) and the cloud's client options for either it
//! or an external broker (Mosquitto, EMQX, AWS IoT Core as a plain broker) over TLS.
//!
//! rumqttd cannot bind port 0, blocks in `start()` forever and has no shutdown: it runs on
//! its own thread for the life of the process. Its logs are filtered by the binary
//! (`rumqttd=warn`).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{MqttOptions, TlsConfiguration, Transport};

mod front;
pub mod receipts;
mod sessions;
pub use front::{DeviceFront, FrontConfig, FrontStats, internal_password};
pub use receipts::Receipts;
pub use sessions::{DeviceSessions, Session};

use crate::config::{BrokerTarget, MqttConfig};

/// Why a broker could not be started or reached.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("embedded MQTT broker cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("embedded MQTT broker on {addr} did not come up: {reason}")]
    NotReady { addr: SocketAddr, reason: String },
    #[error("mqtts:// needs mqtt.ca_file")]
    MissingCa,
    #[error("TLS setup for the external MQTT broker failed: {0}")]
    Tls(#[from] shiki_shared::tls::TlsError),
}

/// A running embedded broker. It stops with the process.
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    _thread: JoinHandle<()>,
}

impl EmbeddedBroker {
    /// Starts rumqttd on `addr` (a concrete port; port 0 is not supported by rumqttd) and
    /// waits until it accepts connections. With `password`, it accepts only connections
    /// that give it (the devices' front and the cloud's own client).
    pub fn start(
        addr: SocketAddr,
        max_inflight: u16,
        password: Option<&str>,
    ) -> Result<Self, BrokerError> {
        // rumqttd reports a failed bind only in its log: check the address first.
        TcpListener::bind(addr).map_err(|source| BrokerError::Bind { addr, source })?;
        let mut config = rumqttd_config(addr, max_inflight);
        if let Some(secret) = password {
            let secret = secret.to_owned();
            if let Some(server) = config.v4.as_mut().and_then(|m| m.get_mut("1")) {
                server
                    .connections
                    .set_auth_handler(move |_client_id, _user, password: String| {
                        let ok = password == secret;
                        async move { ok }
                    });
            }
        }
        let thread = std::thread::Builder::new()
            .name("rumqttd".into())
            .spawn(move || {
                let mut broker = rumqttd::Broker::new(config);
                if let Err(e) = broker.start() {
                    tracing::error!(error = %e, "embedded MQTT broker stopped");
                }
            })
            .map_err(|e| BrokerError::NotReady {
                addr,
                reason: e.to_string(),
            })?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if thread.is_finished() {
                return Err(BrokerError::NotReady {
                    addr,
                    reason: "broker thread exited (address in use?)".into(),
                });
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(BrokerError::NotReady {
                    addr,
                    reason: "no connection accepted within 5 s".into(),
                });
            }
            // Readiness poll: rumqttd offers no "listening" signal.
            std::thread::sleep(Duration::from_millis(5));
        }
        if password.is_some() {
            tracing::info!(%addr, "rumqttd listening behind the devices' front");
        } else {
            tracing::info!(%addr, "embedded MQTT broker listening");
        }
        Ok(Self {
            addr,
            _thread: thread,
        })
    }

    /// Starts rumqttd on a free loopback port (tests, benches): picks a port the OS says is
    /// free and retries on a clash.
    pub fn start_on_free_port(
        max_inflight: u16,
        password: Option<&str>,
    ) -> Result<Self, BrokerError> {
        let mut last = None;
        for _ in 0..10 {
            let addr = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|source| BrokerError::Bind {
                    addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                    source,
                })?;
            match Self::start(addr, max_inflight, password) {
                Ok(b) => return Ok(b),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(BrokerError::NotReady {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            reason: "no free port".into(),
        }))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

fn rumqttd_config(addr: SocketAddr, max_inflight: u16) -> rumqttd::Config {
    let payload = shiki_proto::MAX_MESSAGE_BYTES + 4096;
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: payload,
        max_inflight_count: usize::from(max_inflight.max(1)),
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "v4-1".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 100_010,
            max_outgoing_packet_count: 1000,
            max_segment_size: 16 * 1024 * 1024,
            max_segment_count: 8,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some([("1".to_owned(), server)].into_iter().collect()),
        ..rumqttd::Config::default()
    }
}

/// MQTT options of the cloud's own session: QoS 1 with manual acks (a message is
/// acknowledged after its store commit) when [`MqttConfig::acks_after_commit`], persistent
/// session, TLS for `mqtts://`.
/// `internal_password`: the secret of the embedded broker behind the devices' front (the
/// cloud's own client gives it as its password).
pub fn client_options(
    cfg: &MqttConfig,
    target: &BrokerTarget,
    internal_password: Option<&str>,
) -> Result<MqttOptions, BrokerError> {
    let (host, port, tls) = match target {
        BrokerTarget::Embedded(addr) => (addr.ip().to_string(), addr.port(), false),
        BrokerTarget::External { host, port, tls } => (host.clone(), *port, *tls),
    };
    let mut o = MqttOptions::new(cfg.client_id.clone(), host, port);
    o.set_keep_alive(cfg.keep_alive)
        .set_clean_session(false)
        .set_manual_acks(cfg.acks_after_commit(target))
        .set_inflight(cfg.max_inflight.max(1))
        .set_request_channel_capacity(10_000)
        .set_max_packet_size(
            shiki_proto::MAX_MESSAGE_BYTES + 4096,
            shiki_proto::MAX_MESSAGE_BYTES + 4096,
        );
    match (internal_password, &cfg.username, &cfg.password) {
        (Some(secret), _, _) => {
            o.set_credentials(cfg.client_id.clone(), secret.to_owned());
        }
        (None, Some(u), Some(p)) => {
            o.set_credentials(u.clone(), p.clone());
        }
        _ => {}
    }
    if tls {
        let ca = cfg.ca_file.as_deref().ok_or(BrokerError::MissingCa)?;
        let identity = match (&cfg.cert_file, &cfg.key_file) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            _ => None,
        };
        let tls = shiki_shared::tls::client_config(ca, identity)?;
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            std::sync::Arc::new(tls),
        )));
    }
    Ok(o)
}
