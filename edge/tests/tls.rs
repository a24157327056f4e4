//! The uplink over TLS with a client certificate (rustls, ring provider), through a
//! TLS-terminating proxy the test owns (rustls server requiring a client certificate from
//! the test CA) in front of the plain broker.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use common::{SeqLog, Subscriber, broker, unique_device};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, Issuer, KeyPair, SanType};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use shiki_edge::config::EdgeConfig;
use shiki_edge::messages::{CloudMessage, LinkUp, ReportedDelivered};
use shiki_edge::outbox::{NewRecord, OutboxHandle, OutboxOptions, RedbOutbox};
use shiki_edge::uplink::{Shutdown, Uplink, UplinkConfig, UplinkPeers, mqtt_options};
use shiki_proto::{Catalog, Channel, DeviceId, PROTOCOL_VERSION, Status, Topics};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug)]
struct Sink;
impl Actor for Sink {
    type Context = Context<Self>;
}
impl Handler<CloudMessage> for Sink {
    type Result = ();
    fn handle(&mut self, _: CloudMessage, _: &mut Context<Self>) {}
}
impl Handler<LinkUp> for Sink {
    type Result = ();
    fn handle(&mut self, _: LinkUp, _: &mut Context<Self>) {}
}
impl Handler<ReportedDelivered> for Sink {
    type Result = ();
    fn handle(&mut self, _: ReportedDelivered, _: &mut Context<Self>) {}
}

struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
    let issuer: &Issuer<'_, KeyPair> = &ca;
    let mut server = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    server
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let server_key = KeyPair::generate().expect("key");
    let server_cert = server.signed_by(&server_key, issuer).expect("server cert");
    let client = CertificateParams::new(vec!["edge-client".to_owned()]).expect("params");
    let client_key = KeyPair::generate().expect("key");
    let client_cert = client.signed_by(&client_key, issuer).expect("client cert");
    Pki {
        ca: ca.pem(),
        server_cert: server_cert.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: client_cert.pem(),
        client_key: client_key.serialize_pem(),
    }
}

/// A TLS listener requiring a client certificate signed by the test CA; each accepted
/// connection is piped to the plain broker. Handshake failures are reported on the channel.
async fn tls_proxy(pki: &Pki) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<String>) {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca.as_bytes()).expect("ca pem"))
        .expect("root");
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .expect("verifier");
    let config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(pki.server_cert.as_bytes()).expect("cert")],
            PrivateKeyDer::from_pem_slice(pki.server_key.as_bytes()).expect("key"),
        )
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(mut tls) => {
                        let (h, p) = broker();
                        if let Ok(mut up) = TcpStream::connect((h.as_str(), p)).await {
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(e.to_string());
                    }
                }
            });
        }
    });
    (addr, rx)
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write pem");
    p
}

fn start_uplink(cfg: &EdgeConfig, dir: &Path) -> (Addr<Uplink>, OutboxHandle) {
    let store = RedbOutbox::open(&dir.join("edge.redb"), OutboxOptions::default()).expect("open");
    let (outbox, _join) = OutboxHandle::start(store).expect("start");
    let topics = Topics::default();
    let will = shiki_proto::encode(&Status::last_will("t", chrono::Utc::now())).expect("will");
    let options = mqtt_options(
        cfg,
        topics.topic_for(&cfg.device_id, &Channel::Status),
        will,
        32,
    )
    .expect("mqtt options with TLS");
    let sink = Sink.start();
    let uplink = Uplink::new(
        UplinkConfig {
            device_id: cfg.device_id.clone(),
            topics,
            live_batch_max: 10,
            backlog_batch_bytes: 64 * 1024,
            max_inflight_batches: 2,
            batch_max_delay: Duration::ZERO,
            compact: false,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_millis(300),
            software_version: "t".into(),
            boot_time: chrono::Utc::now(),
            shutdown_grace: Duration::from_secs(1),
        },
        options,
        outbox.clone(),
        UplinkPeers::all(sink),
        Catalog {
            v: PROTOCOL_VERSION,
            points: Vec::new(),
        },
        (0, 0),
    )
    .start();
    (uplink, outbox)
}

fn sample() -> NewRecord {
    NewRecord::Sample {
        ts: chrono::Utc::now(),
        values: Default::default(),
    }
}

#[actix::test]
async fn telemetry_flows_over_mutual_tls_and_a_client_without_certificate_is_refused() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pki = pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let (addr, mut handshake_errors) = tls_proxy(&pki).await;
    let device = unique_device("tls");
    let mut cfg = EdgeConfig::parse(&format!("device_id = \"{device}\""), "tls").expect("cfg");
    cfg.mqtt.url = format!("mqtts://{addr}");
    cfg.mqtt.ca_file = Some(write(dir.path(), "ca.pem", &pki.ca));
    cfg.mqtt.cert_file = Some(write(dir.path(), "client.crt", &pki.client_cert));
    cfg.mqtt.key_file = Some(write(dir.path(), "client.key", &pki.client_key));
    cfg.validate().expect("valid TLS config");

    let topic = Topics::default().topic_for(
        &DeviceId::new(device.clone()).expect("id"),
        &Channel::Telemetry,
    );
    let mut sub = Subscriber::start(&device, &[topic]).await;
    let with_cert = dir.path().join("a");
    std::fs::create_dir_all(&with_cert).expect("dir");
    let (uplink, outbox) = start_uplink(&cfg, &with_cert);
    for _ in 0..3 {
        outbox.append(sample()).await.expect("append");
    }
    let mut log = SeqLog::default();
    while log.distinct() < 3 {
        log.add_batch(&sub.next(WAIT).await.payload);
    }
    log.assert_exactly_once_in_order(3);
    uplink.send(Shutdown).await.expect("shutdown");

    // Without a client certificate the TLS handshake is refused; the edge keeps buffering.
    cfg.mqtt.cert_file = None;
    cfg.mqtt.key_file = None;
    let without = dir.path().join("b");
    std::fs::create_dir_all(&without).expect("dir");
    let (_uplink, outbox) = start_uplink(&cfg, &without);
    outbox.append(sample()).await.expect("append");
    let err = tokio::time::timeout(WAIT, handshake_errors.recv())
        .await
        .expect("handshake refused within the timeout")
        .expect("proxy running");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert_eq!(outbox.stats().await.expect("stats").pending_telemetry, 1);
}

#[test]
fn tls_files_that_are_missing_or_not_pem_are_named_in_the_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = EdgeConfig::parse("device_id = \"x\"", "t").expect("cfg");
    cfg.mqtt.url = "mqtts://127.0.0.1:8883".into();
    cfg.mqtt.ca_file = Some(write(dir.path(), "ca.pem", "not a certificate"));
    let err = shiki_edge::uplink::tls_config(&cfg).expect_err("no certificate");
    assert!(err.to_string().contains("ca.pem"), "{err}");
    cfg.mqtt.ca_file = Some(dir.path().join("missing.pem"));
    let msg = cfg.validate().expect_err("missing file").to_string();
    assert!(
        msg.contains("mqtt.ca_file") && msg.contains("missing.pem"),
        "{msg}"
    );
}

/// The binary installs the rustls crypto provider itself (trap: `*-no-provider` features):
/// a real `shiki-edge run` connects over mutual TLS and its telemetry arrives.
/// `SHIKI_EDGE_BIN` runs another build instead (e.g. the static `edge-release` binary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_connects_over_mutual_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pki = pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let (addr, _errors) = tls_proxy(&pki).await;
    let device = unique_device("tlsbin");
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "device_id = \"{device}\"\ndata_dir = \"{data}\"\n[mqtt]\nurl = \"mqtts://{addr}\"\n\
             ca_file = \"{ca}\"\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n",
            data = dir.path().join("data").display(),
            ca = write(dir.path(), "ca.pem", &pki.ca).display(),
            cert = write(dir.path(), "client.crt", &pki.client_cert).display(),
            key = write(dir.path(), "client.key", &pki.client_key).display(),
        ),
    )
    .expect("config");
    let topic = Topics::default().topic_for(
        &DeviceId::new(device.clone()).expect("id"),
        &Channel::Telemetry,
    );
    let mut sub = Subscriber::start(&device, &[topic]).await;
    let bin = std::env::var("SHIKI_EDGE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_shiki-edge").to_owned());
    let mut child = tokio::process::Command::new(bin)
        .args(["run", "--telemetry-interval", "200ms", "--config"])
        .arg(&config)
        .env("SHIKI_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("start shiki-edge");
    let mut log = SeqLog::default();
    while log.distinct() < 3 {
        log.add_batch(&sub.next(WAIT).await.payload);
    }
    assert_eq!(&log.received[..3], &[1, 2, 3]);
    child.start_kill().expect("kill");
    let _ = child.wait().await;
}
