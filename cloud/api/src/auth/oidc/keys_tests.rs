//! The key cache against a small provider served here: what it fetches, when, and what it
//! keeps when the provider is unreachable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use super::{KeyError, ProviderKeys};

const KEY_A: &str = r#"{"kty":"EC","x":"ANmdo5mWSikHBLagToihFIFYjo7jY-ZMKCk6rpUNOH4","y":"v5AEcRBE2s1u-BrSpiZekftIKkb352JEQB7UggCc2HY","crv":"P-256","kid":"a","alg":"ES256","use":"sig"}"#;
const KEY_B: &str = r#"{"kty":"EC","x":"mD5dS3UwxanZ8c3fOYDdAiT38yMkGh360FtUb3M8WTQ","y":"dBEtBplgD_x6ZqEcmWYu8BzRaEIaOFhf6Ef4PYZeVts","crv":"P-256","kid":"b","alg":"ES256","use":"sig"}"#;
const HOUR: Duration = Duration::from_secs(3600);

fn key(text: &str) -> Value {
    serde_json::from_str(text).expect("test JWK")
}

/// A provider: its discovery document names `issuer` (or another, to test the check) and
/// its key set is whatever the test puts in `keys`; `hits` counts key-set fetches.
struct Provider {
    issuer: String,
    keys: Arc<Mutex<Vec<Value>>>,
    hits: Arc<AtomicU64>,
    handle: actix_web::dev::ServerHandle,
}

impl Provider {
    async fn start(keys: Vec<Value>, claimed_issuer: Option<&str>) -> Provider {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let issuer = format!("http://{}", listener.local_addr().expect("addr"));
        let named = claimed_issuer.unwrap_or(&issuer).to_owned();
        let keys = Arc::new(Mutex::new(keys));
        let hits = Arc::new(AtomicU64::new(0));
        let (k, h, i) = (keys.clone(), hits.clone(), issuer.clone());
        let server = HttpServer::new(move || {
            let (k, h, named, i) = (k.clone(), h.clone(), named.clone(), i.clone());
            App::new()
                .route(
                    "/.well-known/openid-configuration",
                    web::get().to(move || {
                        let body = json!({ "issuer": named, "jwks_uri": format!("{i}/jwks") });
                        async move { HttpResponse::Ok().json(body) }
                    }),
                )
                .route(
                    "/jwks",
                    web::get().to(move || {
                        h.fetch_add(1, Ordering::SeqCst);
                        let body = json!({ "keys": *k.lock().expect("keys") });
                        async move { HttpResponse::Ok().json(body) }
                    }),
                )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Provider {
            issuer,
            keys,
            hits,
            handle,
        }
    }

    fn publish(&self, keys: Vec<Value>) {
        *self.keys.lock().expect("keys") = keys;
    }

    fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

#[actix_web::test]
async fn an_unknown_kid_refetches_at_most_once_per_min_refetch() {
    let p = Provider::start(vec![key(KEY_A)], None).await;
    let keys = ProviderKeys::new(&p.issuer, HOUR, HOUR);
    assert!(keys.key(Some("a")).await.is_ok());
    assert_eq!(p.hits(), 1);
    // The provider rotates to b; a flood of tokens naming unknown kids (b among them)
    // inside min_refetch costs no fetch and is refused.
    p.publish(vec![key(KEY_A), key(KEY_B)]);
    let kids: Vec<String> = (0..50).map(|i| format!("forged-{i}")).collect();
    for kid in kids.iter().map(String::as_str).chain(["b"]) {
        assert_eq!(
            keys.key(Some(kid)).await.err(),
            Some(KeyError::UnknownKid(kid.to_owned()))
        );
    }
    assert_eq!(p.hits(), 1, "rate-limited");
    assert_eq!(keys.fetch_count(), 1);
}

#[actix_web::test]
async fn a_rotation_is_followed_and_a_retired_key_stops_working() {
    let p = Provider::start(vec![key(KEY_A)], None).await;
    let keys = ProviderKeys::new(&p.issuer, Duration::ZERO, HOUR);
    assert!(keys.key(Some("a")).await.is_ok());
    p.publish(vec![key(KEY_B)]);
    assert!(
        keys.key(Some("b")).await.is_ok(),
        "new kid: fetched at once"
    );
    assert_eq!(p.hits(), 2);
    assert_eq!(
        keys.key(Some("a")).await.err(),
        Some(KeyError::UnknownKid("a".into())),
        "a is no longer published"
    );
    // Held keys are answered from the cache.
    let before = p.hits();
    for _ in 0..10 {
        assert!(keys.key(Some("b")).await.is_ok());
    }
    assert_eq!(p.hits(), before);
}

#[actix_web::test]
async fn symmetric_and_encryption_keys_are_never_used() {
    let mut enc = key(KEY_B);
    enc["use"] = json!("enc");
    let oct = json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h", "alg": "HS256"});
    let p = Provider::start(vec![key(KEY_A), enc, oct], None).await;
    let keys = ProviderKeys::new(&p.issuer, HOUR, HOUR);
    assert!(keys.key(Some("a")).await.is_ok());
    for kid in ["b", "h"] {
        assert_eq!(
            keys.key(Some(kid)).await.err(),
            Some(KeyError::UnknownKid(kid.into()))
        );
    }
    // Without a kid, the one usable key.
    assert!(keys.key(None).await.is_ok());
}

#[actix_web::test]
async fn a_discovery_document_naming_another_issuer_is_refused() {
    let p = Provider::start(vec![key(KEY_A)], Some("https://elsewhere.example")).await;
    let keys = ProviderKeys::new(&p.issuer, HOUR, HOUR);
    let Err(KeyError::Unavailable(reason)) = keys.key(Some("a")).await else {
        panic!("expected the issuer mismatch");
    };
    assert!(
        reason.contains("https://elsewhere.example") && reason.contains("auth.oidc.issuer"),
        "{reason}"
    );
}

#[actix_web::test]
async fn held_keys_stay_in_use_while_the_provider_is_unreachable() {
    let p = Provider::start(vec![key(KEY_A), key(KEY_B)], None).await;
    // Every use finds the set stale and tries to refetch.
    let keys = ProviderKeys::new(&p.issuer, Duration::ZERO, Duration::ZERO);
    assert!(keys.key(Some("a")).await.is_ok());
    p.handle.stop(false).await;
    assert!(
        keys.key(Some("a")).await.is_ok(),
        "the held key still verifies"
    );
    assert_eq!(
        keys.key(Some("zz")).await.err(),
        Some(KeyError::UnknownKid("zz".into()))
    );
    // With nothing held, the provider being down is not the token's fault; retries are
    // rate-limited too (no request waits for a fetch inside min_refetch).
    let fresh = ProviderKeys::new(&p.issuer, HOUR, HOUR);
    for _ in 0..3 {
        assert!(matches!(
            fresh.key(Some("a")).await,
            Err(KeyError::Unavailable(_))
        ));
    }
    assert_eq!(fresh.fetch_count(), 1);
}
