//! The cloud against an external Mosquitto over TLS with client certificates (mutual TLS),
//! certificates made with rcgen, Mosquitto started by the test on a free port.

mod common;

use std::io::Write as _;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

use chrono::Utc;
use common::{FakeDevice, eventually};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use shiki_cloud::CloudConfig;
use shiki_cloud::store::TimeQuery;
use shiki_proto::{Channel, Sample, TelemetryBatch, Topics};

struct Mosquitto(Child);

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Pki {
    ca: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "shiki test CA");
        let issuer =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        Self {
            ca: issuer.pem(),
            issuer,
        }
    }

    /// (certificate PEM, key PEM) for `name` with the given SANs.
    fn leaf(&self, name: &str, sans: &[&str]) -> (String, String) {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("write file");
    p
}

fn tls_options(client_id: &str, port: u16, ca: &str, cert: Option<(&str, &str)>) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
        ca: ca.as_bytes().to_vec(),
        alpn: None,
        client_auth: cert.map(|(c, k)| (c.as_bytes().to_vec(), k.as_bytes().to_vec())),
    }));
    o
}

#[actix_rt::test]
async fn ingest_through_mosquitto_over_mutual_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let (srv_cert, srv_key) = pki.leaf("broker", &["127.0.0.1", "localhost"]);
    let (cloud_cert, cloud_key) = pki.leaf("shiki-cloud", &[]);
    let (dev_cert, dev_key) = pki.leaf("gw-tls", &[]);
    let ca_file = write(dir.path(), "ca.pem", &pki.ca);
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let conf = format!(
        "listener {port} 127.0.0.1\nallow_anonymous true\nrequire_certificate true\n\
         use_identity_as_username true\ncafile {}\ncertfile {}\nkeyfile {}\n",
        ca_file.display(),
        write(dir.path(), "server.pem", &srv_cert).display(),
        write(dir.path(), "server.key", &srv_key).display(),
    );
    let conf_file = write(dir.path(), "mosquitto.conf", &conf);
    let _broker = Mosquitto(
        Command::new("mosquitto")
            .arg("-c")
            .arg(&conf_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto runs"),
    );
    eventually("mosquitto listening", || async move {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ())
    })
    .await;

    let mut cfg = CloudConfig {
        data_dir: dir.path().join("data"),
        ..CloudConfig::default()
    };
    cfg.api.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.mqtt.url = Some(format!("mqtts://127.0.0.1:{port}"));
    cfg.mqtt.ca_file = Some(ca_file);
    cfg.mqtt.cert_file = Some(write(dir.path(), "cloud.pem", &cloud_cert));
    cfg.mqtt.key_file = Some(write(dir.path(), "cloud.key", &cloud_key));
    let app = shiki_cloud::start(cfg).await.expect("cloud starts");

    let topics = Topics::default();
    let dev = FakeDevice::connect_with(
        "gw-tls",
        &topics,
        tls_options("gw-tls", port, &pki.ca, Some((&dev_cert, &dev_key))),
    )
    .await;
    let batch = TelemetryBatch {
        v: 1,
        backlog: false,
        samples: vec![Sample {
            seq: 1,
            ts: Utc::now(),
            values: [("supply_temp".to_owned(), 7.0.into())].into(),
        }],
    };
    dev.send(Channel::Telemetry, &batch).await;
    let store = app.store();
    let id = dev.id.clone();
    eventually("sample stored over TLS", || {
        let n = store
            .telemetry(&id, &TimeQuery::default())
            .map(|v| v.len())
            .unwrap_or(0);
        async move { (n == 1).then_some(()) }
    })
    .await;

    // A client without a certificate is refused by the broker.
    let (_c, mut el) = rumqttc::AsyncClient::new(tls_options("anon", port, &pki.ca, None), 10);
    let refused = common::within(
        async {
            loop {
                match el.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => return false,
                    Ok(_) => {}
                    Err(_) => return true,
                }
            }
        },
        "anonymous TLS connect outcome",
    )
    .await;
    assert!(refused, "a client without a certificate was accepted");
    app.stop().await;
}
