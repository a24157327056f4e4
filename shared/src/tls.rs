//! rustls configurations built from PEM files, with errors that name the file.
//!
//! Both configurations use the ring provider explicitly, so they work whether or not a
//! process-wide default is installed. Binaries still call [`install_crypto_provider`]
//! first thing in `main`, for libraries (rumqttc, reqwest) built with `*-no-provider`
//! features that look up the process default (dependencies.md, trap 1).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

/// Why a TLS configuration could not be built. Every variant names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read or is not valid PEM.
    #[error("cannot read {what} from {}: {source}", file.display())]
    Pem {
        /// `certificates`, `CA certificates` or `private key`.
        what: &'static str,
        file: PathBuf,
        source: pem::Error,
    },
    /// The file is valid PEM but holds none of what was expected.
    #[error("{} holds no {what} (expected PEM \"-----BEGIN {marker}-----\" sections)", file.display())]
    Empty {
        what: &'static str,
        marker: &'static str,
        file: PathBuf,
    },
    /// A CA certificate could not be used as a trust anchor.
    #[error("CA certificate in {} is not usable: {source}", file.display())]
    BadCa {
        file: PathBuf,
        source: rustls::Error,
    },
    /// The certificate and key do not go together or are not supported.
    #[error("certificate {} with key {} is not usable: {source}", cert.display(), key.display())]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    /// The client-certificate verifier could not be built from the CA file.
    #[error("cannot verify client certificates against {}: {source}", file.display())]
    Verifier {
        file: PathBuf,
        source: rustls::server::VerifierBuilderError,
    },
    /// Only one of client certificate and key was configured.
    #[error("a client certificate needs both `cert` and `key`; only {given} is set ({})", file.display())]
    HalfIdentity { given: &'static str, file: PathBuf },
    /// rustls refused the protocol versions (should not happen with ring).
    #[error("TLS protocol setup failed: {0}")]
    Protocol(rustls::Error),
}

/// Installs ring as the process-wide rustls crypto provider. Idempotent: returns `true`
/// when this call installed it, `false` when a provider (this one or another) was already
/// in place.
pub fn install_crypto_provider() -> bool {
    CryptoProvider::get_default().is_none() && provider().install_default().is_ok()
}

/// The ring crypto provider.
pub fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// TLS files of an MQTT client, as they appear in the binaries' configs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientTlsFiles {
    /// CA certificates (PEM) that sign the broker's certificate.
    pub ca: PathBuf,
    /// Client certificate chain (PEM), for brokers that want client certificates.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Private key of the client certificate (PEM; PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key: Option<PathBuf>,
}

impl ClientTlsFiles {
    /// Builds the client configuration; see [`client_config`].
    ///
    /// # Errors
    /// As [`client_config`], plus [`TlsError::HalfIdentity`] when only one of `cert` and
    /// `key` is set.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            (None, None) => None,
            (Some(cert), None) => {
                return Err(TlsError::HalfIdentity {
                    given: "cert",
                    file: cert.clone(),
                });
            }
            (None, Some(key)) => {
                return Err(TlsError::HalfIdentity {
                    given: "key",
                    file: key.clone(),
                });
            }
        };
        client_config(&self.ca, identity)
    }
}

/// A client configuration trusting the CA certificates in `ca`, presenting the
/// certificate chain and key in `identity` (`(cert, key)`) when given.
///
/// # Errors
/// A file that cannot be read, holds no certificate / key, or a CA or identity that
/// rustls rejects; the error names the file.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<ClientConfig, TlsError> {
    let roots = load_roots(ca)?;
    let builder = ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocol)?
        .with_root_certificates(roots);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = load_certs(cert)?;
            let private = load_private_key(key)?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|source| TlsError::Identity {
                    cert: cert.to_owned(),
                    key: key.to_owned(),
                    source,
                })
        }
    }
}

/// A server configuration presenting `cert`/`key` and requiring every client to present a
/// certificate signed by a CA in `client_ca`.
///
/// # Errors
/// As [`client_config`], plus [`TlsError::Verifier`].
pub fn server_config(cert: &Path, key: &Path, client_ca: &Path) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(provider());
    let roots = Arc::new(load_roots(client_ca)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|source| TlsError::Verifier {
            file: client_ca.to_owned(),
            source,
        })?;
    let chain = load_certs(cert)?;
    let private = load_private_key(key)?;
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocol)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, private)
        .map_err(|source| TlsError::Identity {
            cert: cert.to_owned(),
            key: key.to_owned(),
            source,
        })
}

/// Every certificate in a PEM file (at least one).
///
/// # Errors
/// [`TlsError::Pem`] or [`TlsError::Empty`], naming the file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    read_certs(path, "certificates")
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
/// [`TlsError::Pem`] or [`TlsError::Empty`], naming the file.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::Empty {
            what: "private key",
            marker: "PRIVATE KEY",
            file: path.to_owned(),
        },
        source => TlsError::Pem {
            what: "private key",
            file: path.to_owned(),
            source,
        },
    })
}

/// A root store holding every certificate in a PEM file.
///
/// # Errors
/// As [`load_certs`], plus [`TlsError::BadCa`].
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path, "CA certificates")? {
        roots.add(cert).map_err(|source| TlsError::BadCa {
            file: path.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |source| TlsError::Pem {
        what,
        file: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            marker: "CERTIFICATE",
            file: path.to_owned(),
        });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests;
