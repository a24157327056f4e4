//! OTA artifacts through the running cloud (`start()`, real HTTP, the redb store): a signed
//! upload is stored content-addressed, and a byte range downloaded through a signed URL is
//! exactly those bytes.

use std::os::unix::fs::PermissionsExt as _;

use serde_json::Value;
use shiki_cloud::CloudConfig;
use shiki_shared::ota::{Manifest, ReleaseKey};

#[actix_rt::test]
async fn an_uploaded_artifact_downloads_by_range_through_a_signed_url() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = ReleaseKey::generate();
    let mut cfg = CloudConfig {
        data_dir: dir.path().to_owned(),
        ..CloudConfig::default()
    };
    cfg.mqtt.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.api.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.ota.public_keys = vec![key.public_base64()];
    let app = shiki_cloud::start(cfg).await.expect("cloud starts");
    let token = app.admin_token.clone().expect("first start");
    let http = reqwest::Client::new();

    let build: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let manifest = Manifest::for_bytes("0.2.0", &build);
    let res = http
        .put(format!("http://{}/api/v1/artifacts/0.2.0", app.api_addr))
        .bearer_auth(&token)
        .header("Content-Type", "application/octet-stream")
        .header("Shiki-Signature", key.sign(&manifest))
        .body(build.clone())
        .send()
        .await
        .expect("upload sent");
    assert_eq!(res.status().as_u16(), 201);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["sha256"], manifest.sha256.as_str());
    assert_eq!(body["size"], build.len());
    let stored = dir.path().join("artifacts/sha256").join(&manifest.sha256);
    assert_eq!(std::fs::read(&stored).expect("stored by hash"), build);
    let url_key = std::fs::metadata(dir.path().join("ota-url.key")).expect("url key made");
    assert_eq!(url_key.permissions().mode() & 0o777, 0o600);
    let record = app
        .store()
        .artifact("0.2.0")
        .expect("read")
        .expect("recorded");
    assert_eq!(record.sha256, manifest.sha256);

    let (url, _) = app.url_signer.sign(&manifest.sha256, chrono::Utc::now());
    assert!(
        url.starts_with(&format!("http://{}/ota/v1/", app.api_addr)),
        "{url}"
    );
    let res = http
        .get(&url)
        .header("Range", "bytes=100000-199999")
        .send()
        .await
        .expect("download sent");
    assert_eq!(res.status().as_u16(), 206);
    let part = res.bytes().await.expect("body");
    assert_eq!(&part[..], &build[100_000..200_000]);

    let expired = app
        .url_signer
        .sign(
            &manifest.sha256,
            chrono::Utc::now() - chrono::Duration::hours(1),
        )
        .0;
    let res = http.get(&expired).send().await.expect("sent");
    assert_eq!(res.status().as_u16(), 403);
    app.stop().await;
}
