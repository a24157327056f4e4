//! The provider's discovery document and signing keys, fetched over HTTPS and cached.
//!
//! - The discovery document is fetched with the first key set and again with every later
//!   one (so a moved `jwks_uri` is followed); its `issuer` must equal the configured one.
//! - A token naming an unknown `kid` makes one refetch, at most once per
//!   `jwks_min_refetch` (unknown kids cannot make the cloud hammer the provider); a key set
//!   older than `jwks_max_age` is refetched on the next use (also at most once per
//!   `jwks_min_refetch`, so a provider that is down does not slow every request).
//! - When a refetch fails, the keys already held stay in use (logged); with none held, the
//!   request gets 503, not 401: the token may be fine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use serde::Deserialize;

/// Largest discovery document or key set read.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// What the cloud uses of the discovery document.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Discovery {
    pub issuer: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint: Option<String>,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
}

/// The kind of key a JWK holds, to match it with a token's `alg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    Ec,
    Okp,
}

/// One usable signing key.
#[derive(Clone)]
pub struct Key {
    pub decoding: DecodingKey,
    pub kind: KeyKind,
    /// The JWK's `alg`, when it names one.
    pub alg: Option<String>,
}

/// Why no key could be found for a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The provider does not publish this `kid` (after a refetch, or too soon for one).
    #[error("the provider publishes no key {0:?}")]
    UnknownKid(String),
    /// The token names no `kid` and the provider publishes several keys.
    #[error("the token names no key and the provider publishes several")]
    NoKid,
    /// No keys could be fetched at all.
    #[error("{0}")]
    Unavailable(String),
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Cache {
    discovery: Option<Arc<Discovery>>,
    keys: HashMap<String, Arc<Key>>,
    /// Keys without a `kid` (used only when the set has exactly one key).
    unnamed: Vec<Arc<Key>>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
    last_error: Option<String>,
}

/// The provider's discovery document and key set, cached.
pub struct ProviderKeys {
    issuer: String,
    http: reqwest::Client,
    min_refetch: Duration,
    max_age: Duration,
    cache: Mutex<Cache>,
    /// One fetch at a time; the others wait for its result.
    fetching: tokio::sync::Mutex<()>,
    fetches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for ProviderKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderKeys")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl ProviderKeys {
    pub fn new(issuer: &str, min_refetch: Duration, max_age: Duration) -> Self {
        shiki_shared::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        ProviderKeys {
            issuer: issuer.to_owned(),
            http,
            min_refetch,
            max_age,
            cache: Mutex::new(Cache::default()),
            fetching: tokio::sync::Mutex::new(()),
            fetches: 0.into(),
        }
    }

    /// The HTTP client (also used for the token endpoint).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// How many times the key set was fetched (tests, metrics).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The discovery document, fetching it (with the keys) when none is held.
    pub async fn discovery(&self) -> Result<Arc<Discovery>, KeyError> {
        if let Some(d) = self.cache().discovery.clone() {
            return Ok(d);
        }
        self.refresh().await?;
        self.cache()
            .discovery
            .clone()
            .ok_or_else(|| KeyError::Unavailable("no discovery document".into()))
    }

    /// The key a token names.
    pub async fn key(&self, kid: Option<&str>) -> Result<Arc<Key>, KeyError> {
        let (found, stale) = {
            let c = self.cache();
            let stale = c.fetched_at.is_none_or(|t| t.elapsed() >= self.max_age);
            (lookup(&c, kid), stale)
        };
        match found {
            Ok(key) if !stale => return Ok(key),
            Err(KeyError::NoKid) if !stale => return Err(KeyError::NoKid),
            _ => {}
        }
        // Unknown kid or stale set: refetch, unless one was attempted less than
        // `min_refetch` ago. A failed refetch keeps the keys held.
        let refreshed = self.refresh().await;
        let c = self.cache();
        if c.fetched_at.is_none() {
            return Err(refreshed.err().unwrap_or_else(|| {
                KeyError::Unavailable(
                    c.last_error
                        .clone()
                        .unwrap_or_else(|| "no keys fetched yet".into()),
                )
            }));
        }
        lookup(&c, kid)
    }

    /// Fetches discovery and keys, unless the last attempt is more recent than
    /// `min_refetch` (so neither unknown kids nor a provider that is down make every
    /// request wait for a fetch).
    async fn refresh(&self) -> Result<(), KeyError> {
        let started = Instant::now();
        let _one = self.fetching.lock().await;
        {
            let mut c = self.cache();
            // Someone else fetched while this call waited: use theirs.
            if c.last_attempt.is_some_and(|t| t >= started) {
                return Ok(());
            }
            if c.last_attempt
                .is_some_and(|t| t.elapsed() < self.min_refetch)
            {
                tracing::debug!(issuer = %self.issuer, "key set refetch skipped: fetched moments ago");
                return Ok(());
            }
            c.last_attempt = Some(Instant::now());
        }
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.fetch().await {
            Ok((discovery, keys, unnamed)) => {
                tracing::info!(issuer = %self.issuer, keys = keys.len() + unnamed.len(), kids = ?keys.keys().collect::<Vec<_>>(), "identity provider keys fetched");
                let mut c = self.cache();
                c.discovery = Some(Arc::new(discovery));
                c.keys = keys;
                c.unnamed = unnamed;
                c.fetched_at = Some(Instant::now());
                c.last_error = None;
                Ok(())
            }
            Err(reason) => {
                tracing::warn!(issuer = %self.issuer, %reason, "cannot fetch the identity provider's keys; keeping the ones held");
                self.cache().last_error = Some(reason.clone());
                Err(KeyError::Unavailable(reason))
            }
        }
    }

    #[allow(clippy::type_complexity)]
    async fn fetch(&self) -> Result<(Discovery, HashMap<String, Arc<Key>>, Vec<Arc<Key>>), String> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let discovery: Discovery = self.get_json(&url).await?;
        if discovery.issuer != self.issuer {
            return Err(format!(
                "the discovery document at {url} names issuer {:?}, but auth.oidc.issuer is {:?}; \
                 set auth.oidc.issuer to exactly what the provider names",
                discovery.issuer, self.issuer
            ));
        }
        let set: JwkSetDoc = self.get_json(&discovery.jwks_uri).await?;
        let (keys, unnamed) = usable_keys(set.keys);
        if keys.is_empty() && unnamed.is_empty() {
            return Err(format!(
                "the key set at {} holds no usable signing key (RSA, EC or Ed25519)",
                discovery.jwks_uri
            ));
        }
        Ok((discovery, keys, unnamed))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let res = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !res.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", res.status()));
        }
        let body = res.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("GET {url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not the expected JSON: {e}"))
    }
}

#[derive(Deserialize)]
struct JwkSetDoc {
    keys: Vec<serde_json::Value>,
}

/// The signing keys of a JWK set: by `kid`, and those without one. Keys for encryption,
/// symmetric keys and keys this library cannot read are skipped (logged at debug).
fn usable_keys(raw: Vec<serde_json::Value>) -> (HashMap<String, Arc<Key>>, Vec<Arc<Key>>) {
    let mut keys = HashMap::new();
    let mut unnamed = Vec::new();
    for value in raw {
        let jwk: Jwk = match serde_json::from_value(value) {
            Ok(j) => j,
            Err(e) => {
                tracing::debug!(error = %e, "JWK skipped: not readable");
                continue;
            }
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let kind = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => KeyKind::Rsa,
            AlgorithmParameters::EllipticCurve(_) => KeyKind::Ec,
            AlgorithmParameters::OctetKeyPair(_) => KeyKind::Okp,
            // A shared secret is never a provider's public key.
            _ => continue,
        };
        let decoding = match DecodingKey::from_jwk(&jwk) {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(kid = ?jwk.common.key_id, error = %e, "JWK skipped: not usable");
                continue;
            }
        };
        let key = Arc::new(Key {
            decoding,
            kind,
            alg: jwk.common.key_algorithm.map(|a| format!("{a:?}")),
        });
        match jwk.common.key_id {
            Some(kid) => {
                keys.insert(kid, key);
            }
            None => unnamed.push(key),
        }
    }
    (keys, unnamed)
}

fn lookup(c: &Cache, kid: Option<&str>) -> Result<Arc<Key>, KeyError> {
    match kid {
        Some(kid) => c
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| KeyError::UnknownKid(kid.to_owned())),
        None => {
            let all: Vec<&Arc<Key>> = c.keys.values().chain(c.unnamed.iter()).collect();
            match all.as_slice() {
                [only] => Ok(Arc::clone(only)),
                [] => Err(KeyError::Unavailable("no keys held".into())),
                _ => Err(KeyError::NoKid),
            }
        }
    }
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
