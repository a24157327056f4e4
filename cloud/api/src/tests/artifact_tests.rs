//! OTA artifacts: signed uploads (201, 200 again, 409, 422, 400, 413, 503), the list, and
//! downloads through signed URLs (whole, a range, expired, tampered, unknown).

use std::path::Path;
use std::time::Duration as StdDuration;

use actix_web::http::StatusCode;
use shiki_shared::ota::{Manifest, ReleaseKey, TrustedKeys};

use super::*;

/// The bytes `signed_upload` sends: an "edge build".
pub(super) const BUILD: &[u8] = b"\x7fELF pretend edge build 0.2.0, forty-odd bytes";

/// The release key the harness trusts (a fixed seed, so plain functions can sign).
pub(super) fn release_key() -> ReleaseKey {
    ReleaseKey::from_file_text("AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=").expect("test key")
}

fn sign(version: &str, bytes: &[u8]) -> String {
    release_key().sign(&Manifest::for_bytes(version, bytes))
}

/// The artifact storage of the harness: in `dir`, trusting [`release_key`], 1 MiB at most,
/// URLs under `https://cloud.example` valid for 15 minutes.
pub(super) fn artifacts_config(dir: &Path) -> ArtifactsConfig {
    ArtifactsConfig {
        dir: dir.join("artifacts"),
        trusted_keys: TrustedKeys::parse(&[release_key().public_base64()]).expect("key"),
        max_bytes: 1024 * 1024,
        urls: UrlSigner::new(
            [7; 32],
            "https://cloud.example",
            StdDuration::from_secs(900),
        ),
    }
}

/// [`BUILD`] signed as version 0.2.0 (the route table's upload).
pub(super) fn signed_upload(r: TestRequest) -> TestRequest {
    upload_body(r, BUILD, &sign("0.2.0", BUILD))
}

fn upload_body(r: TestRequest, bytes: &[u8], signature: &str) -> TestRequest {
    r.insert_header(("Content-Type", "application/octet-stream"))
        .insert_header((SIGNATURE_HEADER, signature.to_owned()))
        .set_payload(bytes.to_vec())
}

/// The fake backend's `put_artifact`.
pub(super) fn fake_put(d: &mut Data, artifact: Artifact) -> Result<ArtifactPut, BackendError> {
    let stored = d
        .artifacts
        .iter()
        .find(|a| a.version == artifact.version)
        .cloned();
    let put = ArtifactPut::judge(stored, &artifact);
    if put == ArtifactPut::Created {
        d.artifacts.push(artifact);
    }
    Ok(put)
}

fn put(version: &str, bytes: &[u8], signature: &str) -> TestRequest {
    upload_body(
        req("PUT", &format!("/api/v1/artifacts/{version}"), Some(ADMIN)),
        bytes,
        signature,
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    Manifest::for_bytes("x", bytes).sha256
}

/// Files under the harness's artifacts dir `sub` (`tmp` or `sha256`).
fn files_in(backend: &FakeBackend, sub: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(backend.dir.path().join("artifacts").join(sub))
        .expect("artifacts dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[actix_web::test]
async fn a_signed_upload_is_stored_by_its_hash_and_listed() {
    let backend = seeded();
    let app = app!(state(backend.clone()));
    let res = send!(app, put("0.2.0", BUILD, &sign("0.2.0", BUILD)));
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    let sha = sha256_hex(BUILD);
    assert_eq!(
        res.json,
        json!({"version": "0.2.0", "sha256": sha, "size": BUILD.len()})
    );
    assert_eq!(files_in(&backend, "sha256"), std::slice::from_ref(&sha));
    assert!(files_in(&backend, "tmp").is_empty());
    let stored = backend.data().artifacts.clone();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0].uploaded_by.as_str(), stored[0].uploaded_at),
        ("admin", now())
    );
    assert_eq!(stored[0].signature, sign("0.2.0", BUILD));

    let res = send!(app, req("GET", "/api/v1/artifacts", Some(VIEWER)));
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json["artifacts"][0]["version"], "0.2.0");
    assert_eq!(res.json["artifacts"][0]["sha256"], sha.as_str());
}

#[actix_web::test]
async fn the_same_bytes_again_are_accepted_and_other_bytes_under_a_known_version_are_refused() {
    let backend = seeded();
    let app = app!(state(backend.clone()));
    let first = send!(app, put("0.2.0", BUILD, &sign("0.2.0", BUILD)));
    assert_eq!(first.status, StatusCode::CREATED);
    let again = send!(app, put("0.2.0", BUILD, &sign("0.2.0", BUILD)));
    assert_eq!(again.status, StatusCode::OK, "idempotent");
    assert_eq!(again.json, first.json);

    let other: &[u8] = b"another build, also signed as 0.2.0";
    let res = send!(app, put("0.2.0", other, &sign("0.2.0", other)));
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert_eq!(res.error_code(), "conflict");
    let message = res.json["error"]["message"].as_str().expect("message");
    assert!(
        message.contains(&sha256_hex(BUILD)) && message.contains("new version"),
        "{message}"
    );
    assert_eq!(
        files_in(&backend, "sha256"),
        [sha256_hex(BUILD)],
        "the refused bytes are not kept"
    );
    assert_eq!(backend.data().artifacts.len(), 1);
}

#[actix_web::test]
async fn a_signature_that_does_not_verify_is_refused_with_the_reason() {
    let backend = seeded();
    let app = app!(state(backend.clone()));
    let stranger = ReleaseKey::generate().sign(&Manifest::for_bytes("0.2.0", BUILD));
    for (signature, why) in [
        (
            sign("0.2.0", b"the bytes before tampering"),
            "does not verify",
        ),
        (sign("0.3.0", BUILD), "does not verify for version 0.2.0"),
        (stranger, "with any trusted key"),
        ("bm90IGEgc2lnbmF0dXJl".to_owned(), "not base64 of a 64-byte"),
    ] {
        let res = send!(app, put("0.2.0", BUILD, &signature));
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{why}");
        assert_eq!(res.error_code(), "signature_refused");
        let message = res.json["error"]["message"].as_str().expect("message");
        assert!(message.contains(why), "{why}: {message}");
    }
    assert!(files_in(&backend, "sha256").is_empty());
    assert!(files_in(&backend, "tmp").is_empty());
    assert!(backend.data().artifacts.is_empty());
}

#[actix_web::test]
async fn without_trusted_keys_an_upload_is_refused_naming_the_setting() {
    let backend = seeded();
    let config = ArtifactsConfig {
        trusted_keys: TrustedKeys::default(),
        ..artifacts_config(backend.dir.path())
    };
    let state = ApiState::new(backend.clone(), ApiConfig::default())
        .expect("state")
        .with_artifacts(Artifacts::open(config).expect("dir"));
    let app = app!(state);
    let res = send!(app, put("0.2.0", BUILD, &sign("0.2.0", BUILD)));
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().contains("[ota] public_keys"), "{}", res.text());
}

#[actix_web::test]
async fn a_missing_signature_or_a_bad_version_is_a_bad_request() {
    let app = app!(state(seeded()));
    let unsigned = req("PUT", "/api/v1/artifacts/0.2.0", Some(ADMIN)).set_payload(BUILD);
    let res = send!(app, unsigned);
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.json["error"]["parameter"], SIGNATURE_HEADER);
    assert!(res.text().contains("ota sign"), "{}", res.text());
    let too_long = "1".repeat(65);
    for version in ["0.2%20.0", too_long.as_str()] {
        let res = send!(app, put(version, BUILD, &sign("0.2.0", BUILD)));
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{version}");
        assert_eq!(res.json["error"]["parameter"], "version");
        assert!(res.text().contains("cannot be signed"), "{}", res.text());
    }
}

#[actix_web::test]
async fn an_upload_over_the_limit_is_refused_whether_announced_or_streamed() {
    let backend = seeded();
    let config = ArtifactsConfig {
        max_bytes: 16,
        ..artifacts_config(backend.dir.path())
    };
    let state = ApiState::new(backend.clone(), ApiConfig::default())
        .expect("state")
        .with_artifacts(Artifacts::open(config).expect("dir"));
    let app = app!(state);
    let announced = put("0.2.0", BUILD, &sign("0.2.0", BUILD))
        .insert_header(("Content-Length", BUILD.len().to_string()));
    for r in [announced, put("0.2.0", BUILD, &sign("0.2.0", BUILD))] {
        let res = send!(app, r);
        assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(res.json["error"]["limit_bytes"], 16);
    }
    assert!(files_in(&backend, "tmp").is_empty());
}

#[actix_web::test]
async fn artifacts_are_listed_newest_first_and_an_unset_storage_answers_503() {
    let backend = seeded();
    {
        let mut d = backend.data();
        for (version, minutes) in [("0.1.0", 0), ("0.3.0", 20), ("0.2.0", 10)] {
            d.artifacts.push(Artifact {
                version: version.into(),
                sha256: sha256_hex(version.as_bytes()),
                size: 5,
                signature: sign(version, version.as_bytes()),
                uploaded_at: now() + Duration::minutes(minutes),
                uploaded_by: "admin".into(),
            });
        }
    }
    let app = app!(state(backend.clone()));
    let res = send!(app, req("GET", "/api/v1/artifacts", Some(VIEWER)));
    let versions: Vec<&str> = res.json["artifacts"]
        .as_array()
        .expect("list")
        .iter()
        .map(|a| a["version"].as_str().expect("version"))
        .collect();
    assert_eq!(versions, ["0.3.0", "0.2.0", "0.1.0"]);

    let bare = ApiState::new(backend, ApiConfig::default()).expect("state");
    let app = app!(bare);
    let res = send!(app, put("0.2.0", BUILD, &sign("0.2.0", BUILD)));
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
}

/// Uploads [`BUILD`] and returns the path and query of a download URL signed at `at`.
async fn uploaded_url<S, B>(app: &S, at: DateTime<Utc>) -> String
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let res = send!(app, put("0.2.0", BUILD, &sign("0.2.0", BUILD)));
    assert!(res.status.is_success(), "{}", res.status);
    let signer = artifacts_config(Path::new("unused")).urls;
    let (url, _) = signer.sign(&sha256_hex(BUILD), at);
    url.strip_prefix("https://cloud.example")
        .expect("public url")
        .to_owned()
}

#[actix_web::test]
async fn a_signed_url_downloads_the_whole_artifact_or_a_range() {
    let app = app!(state(seeded()));
    let url = uploaded_url(&app, now()).await;
    let res = send!(app, req("GET", &url, None));
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(&res.body[..], BUILD);
    assert_eq!(res.header("accept-ranges"), "bytes");

    let res = send!(
        app,
        req("GET", &url, None).insert_header(("Range", "bytes=5-12"))
    );
    assert_eq!(res.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&res.body[..], &BUILD[5..=12]);
    assert_eq!(
        res.header("content-range"),
        format!("bytes 5-12/{}", BUILD.len())
    );
    let past_the_end = format!("bytes={}-", BUILD.len() + 10);
    let res = send!(
        app,
        req("GET", &url, None).insert_header(("Range", past_the_end))
    );
    assert_eq!(res.status, StatusCode::RANGE_NOT_SATISFIABLE);
}

#[actix_web::test]
async fn an_expired_or_tampered_url_is_forbidden_and_says_which() {
    let app = app!(state(seeded()));
    let expired = uploaded_url(&app, now() - Duration::minutes(16)).await;
    let res = send!(app, req("GET", &expired, None));
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.error_code(), "url_expired");
    assert!(res.json["error"]["expired_at"].is_string());
    assert!(res.text().contains("fresh"), "{}", res.text());

    let fresh = uploaded_url(&app, now()).await;
    let (base, sig) = fresh.split_once("&sig=").expect("sig");
    let tampered = [
        format!("{base}&sig={}", "0".repeat(64)),
        format!("{base}&sig=zz"),
        fresh.replace("?expires=", "?expires=9"),
    ];
    for url in &tampered {
        let res = send!(app, req("GET", url, None));
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{url}");
        assert_eq!(res.error_code(), "bad_url_signature");
    }
    let other_sha = fresh.replace(&sha256_hex(BUILD), &sha256_hex(b"other"));
    let res = send!(app, req("GET", &other_sha, None));
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(!sig.is_empty());

    let res = send!(app, req("GET", base, None));
    assert_eq!(
        res.status,
        StatusCode::BAD_REQUEST,
        "no sig: {:?}",
        res.body
    );
}

#[actix_web::test]
async fn a_valid_url_for_bytes_not_stored_or_a_bad_name_is_not_found() {
    let app = app!(state(seeded()));
    let signer = artifacts_config(Path::new("unused")).urls;
    let (url, _) = signer.sign(&sha256_hex(b"never uploaded"), now());
    let path = url.strip_prefix("https://cloud.example").expect("base");
    let res = send!(app, req("GET", path, None));
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let res = send!(
        app,
        req(
            "GET",
            "/ota/v1/artifacts/..%2Fsecret?expires=1&sig=00",
            None
        )
    );
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.error_code(), "not_found");
}
