//! Certificates come from rcgen in a temp dir; handshakes run in memory, no sockets.

use std::io::{Read, Write};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::{ClientConnection, ServerConnection};
use rustls_pki_types::ServerName;
use tempfile::TempDir;

use super::*;

/// A CA, a server certificate for localhost/127.0.0.1, a client certificate, and a client
/// certificate from another CA, written as PEM files.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: String| {
            std::fs::write(dir.path().join(name), text).expect("write PEM");
        };

        let (ca_pem, ca) = new_ca("Shiki test CA");
        write("ca.pem", ca_pem);
        let (other_ca_pem, other_ca) = new_ca("Someone else's CA");
        write("other-ca.pem", other_ca_pem);

        let (cert, key) = leaf(
            &ca,
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        write("server.pem", cert);
        write("server.key", key);
        let (cert, key) = leaf(&ca, &["sapporo-01"], ExtendedKeyUsagePurpose::ClientAuth);
        write("client.pem", cert);
        write("client.key", key);
        let (cert, key) = leaf(
            &other_ca,
            &["intruder"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        write("intruder.pem", cert);
        write("intruder.key", key);
        write("empty.pem", String::from("# nothing here\n"));
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("self-signed CA");
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(names.clone()).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, names[0].clone());
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).expect("signed leaf");
    (cert.pem(), key.serialize_pem())
}

/// Runs a handshake in memory and sends one message from client to server.
fn handshake(
    client: ClientConfig,
    server: ServerConfig,
    host: &str,
) -> Result<String, rustls::Error> {
    let name = ServerName::try_from(host.to_owned()).expect("valid server name");
    let mut c = ClientConnection::new(Arc::new(client), name)?;
    let mut s = ServerConnection::new(Arc::new(server))?;
    c.writer()
        .write_all(b"hello from the edge")
        .expect("buffered");
    let mut received = Vec::new();
    for _ in 0..20 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).expect("write to memory");
        }
        s.read_tls(&mut buf.as_slice()).expect("read from memory");
        s.process_new_packets()?;
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).expect("write to memory");
        }
        c.read_tls(&mut buf.as_slice()).expect("read from memory");
        c.process_new_packets()?;
        let mut chunk = [0u8; 64];
        if let Ok(n) = s.reader().read(&mut chunk) {
            received.extend_from_slice(&chunk[..n]);
        }
        if received.len() >= 19 {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&received).into_owned())
}

#[test]
fn mutual_tls_handshake_succeeds_with_a_client_certificate() {
    let pki = Pki::new();
    let client = client_config(
        &pki.path("ca.pem"),
        Some((&pki.path("client.pem"), &pki.path("client.key"))),
    )
    .expect("client config");
    let server = server_config(
        &pki.path("server.pem"),
        &pki.path("server.key"),
        &pki.path("ca.pem"),
    )
    .expect("server config");
    assert_eq!(
        handshake(client.clone(), server.clone(), "localhost").expect("handshake"),
        "hello from the edge"
    );
    assert_eq!(
        handshake(client, server, "127.0.0.1").expect("IP SAN"),
        "hello from the edge"
    );
}

#[test]
fn server_refuses_a_client_without_a_certificate() {
    let pki = Pki::new();
    let client = client_config(&pki.path("ca.pem"), None).expect("client config");
    let server = server_config(
        &pki.path("server.pem"),
        &pki.path("server.key"),
        &pki.path("ca.pem"),
    )
    .expect("server config");
    let err = handshake(client, server, "localhost").expect_err("no client cert");
    assert!(
        matches!(err, rustls::Error::NoCertificatesPresented),
        "{err}"
    );
}

#[test]
fn server_refuses_a_client_certificate_from_another_ca() {
    let pki = Pki::new();
    let client = client_config(
        &pki.path("ca.pem"),
        Some((&pki.path("intruder.pem"), &pki.path("intruder.key"))),
    )
    .expect("client config");
    let server = server_config(
        &pki.path("server.pem"),
        &pki.path("server.key"),
        &pki.path("ca.pem"),
    )
    .expect("server config");
    let err = handshake(client, server, "localhost").expect_err("unknown issuer");
    assert!(matches!(err, rustls::Error::InvalidCertificate(_)), "{err}");
}

#[test]
fn client_refuses_a_server_signed_by_another_ca() {
    let pki = Pki::new();
    let client = client_config(
        &pki.path("other-ca.pem"),
        Some((&pki.path("client.pem"), &pki.path("client.key"))),
    )
    .expect("client config");
    let server = server_config(
        &pki.path("server.pem"),
        &pki.path("server.key"),
        &pki.path("ca.pem"),
    )
    .expect("server config");
    let err = handshake(client, server, "localhost").expect_err("unknown server CA");
    assert!(matches!(err, rustls::Error::InvalidCertificate(_)), "{err}");
}

#[test]
fn errors_name_the_file() {
    let pki = Pki::new();
    let missing = pki.path("missing.pem");
    let err = client_config(&missing, None).expect_err("no such file");
    assert!(
        err.to_string().starts_with(&format!(
            "cannot read CA certificates from {}",
            missing.display()
        )),
        "{err}"
    );

    let empty = pki.path("empty.pem");
    let err = client_config(&empty, None).expect_err("no certificates");
    assert_eq!(
        err.to_string(),
        format!(
            "{} holds no CA certificates (expected PEM \"-----BEGIN CERTIFICATE-----\" sections)",
            empty.display()
        )
    );

    // A certificate file given as the key.
    let err = client_config(
        &pki.path("ca.pem"),
        Some((&pki.path("client.pem"), &pki.path("client.pem"))),
    )
    .expect_err("no key");
    assert!(
        matches!(&err, TlsError::Empty { file, .. } if *file == pki.path("client.pem")),
        "{err}"
    );

    // A key that does not belong to the certificate.
    let err = server_config(
        &pki.path("server.pem"),
        &pki.path("client.key"),
        &pki.path("ca.pem"),
    )
    .expect_err("mismatched key");
    assert!(matches!(err, TlsError::Identity { .. }), "{err}");
    assert!(err.to_string().contains("server.pem"), "{err}");
}

#[test]
fn client_files_need_both_cert_and_key() {
    let pki = Pki::new();
    let files = ClientTlsFiles {
        ca: pki.path("ca.pem"),
        cert: Some(pki.path("client.pem")),
        key: None,
    };
    let err = files.client_config().expect_err("half identity");
    assert!(
        matches!(err, TlsError::HalfIdentity { given: "cert", .. }),
        "{err}"
    );
    let files = ClientTlsFiles {
        key: Some(pki.path("client.key")),
        ..files
    };
    files.client_config().expect("complete identity");
}

#[test]
fn install_crypto_provider_is_idempotent() {
    install_crypto_provider();
    assert!(!install_crypto_provider(), "second call installs nothing");
    assert!(CryptoProvider::get_default().is_some());
}
