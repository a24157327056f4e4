//! Hostile input: request bodies over the limit (413 naming the limit and its key, before
//! the token is looked at; chunked bodies cut off as they are read; artifact uploads under
//! their own limit) and the lockout of an address that keeps presenting bad tokens (429
//! with `Retry-After`, even with a good token, other addresses unaffected, counted on
//! `/metrics`).

use std::net::SocketAddr;

use actix_web::http::{StatusCode, header};

use super::*;
use crate::auth::FailedAuthLimits;

fn with_body_limit(limit: usize) -> ApiConfig {
    ApiConfig {
        max_body_bytes: limit,
        ..ApiConfig::default()
    }
}

/// A desired change of about `len` bytes in all.
fn patch_of_len(len: usize) -> String {
    let head = r#"{"settings": {"mode": "heating"}, "comment": ""#;
    let tail = r#""}"#;
    let pad = len.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", "x".repeat(pad))
}

fn patch_request(body: String, token: Option<&str>) -> TestRequest {
    req("PATCH", "/api/v1/devices/plant-01/desired", token)
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .set_payload(body)
}

fn assert_too_large(res: &crate::testing::Resp, limit: u64) {
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", res.json);
    assert_eq!(res.error_code(), "payload_too_large");
    assert_eq!(res.json["error"]["limit_bytes"], limit);
    assert_eq!(res.json["error"]["setting"], "api.max_body_bytes");
    let message = res.json["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("{limit} bytes")) && message.contains("api.max_body_bytes"),
        "the message says the limit and how to change it: {message}"
    );
}

#[actix_web::test]
async fn the_default_body_limit_is_one_mebibyte() {
    let app = app!(state(seeded()));
    let res = send!(
        app,
        patch_request(patch_of_len(DEFAULT_MAX_BODY_BYTES + 1), Some(OPERATOR))
    );
    assert_too_large(&res, 1024 * 1024);
}

#[actix_web::test]
async fn a_body_within_the_configured_limit_is_accepted_and_one_byte_more_is_413() {
    let app = app!(state_with(seeded(), with_body_limit(200)));
    let body = patch_of_len(200);
    assert_eq!(body.len(), 200);
    let res = send!(app, patch_request(body, Some(OPERATOR)));
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.json);
    let res = send!(app, patch_request(patch_of_len(201), Some(OPERATOR)));
    assert_too_large(&res, 200);
}

#[actix_web::test]
async fn an_announced_body_over_the_limit_is_refused_before_the_token_is_looked_at() {
    let app = app!(state_with(seeded(), with_body_limit(100)));
    let res = send!(app, patch_request(patch_of_len(5000), None));
    assert_too_large(&res, 100);
    // Even on a route that reads no body, and on an unknown one.
    for path in ["/api/v1/devices", "/healthz", "/no/such/route"] {
        let res = send!(
            app,
            req("POST", path, Some(ADMIN)).set_payload(vec![b'x'; 101])
        );
        assert_too_large(&res, 100);
    }
}

#[actix_web::test]
async fn a_chunked_body_is_cut_off_once_it_passes_the_limit() {
    let app = app!(state_with(seeded(), with_body_limit(100)));
    // No Content-Length: the limit can only be found while reading.
    let mut request = patch_request(patch_of_len(5000), Some(OPERATOR)).to_request();
    request.headers_mut().remove(header::CONTENT_LENGTH);
    assert!(!request.head().headers.contains_key(header::CONTENT_LENGTH));
    let res = crate::testing::Resp::read(actix_web::test::call_service(&app, request).await).await;
    assert_too_large(&res, 100);
}

#[actix_web::test]
async fn artifact_uploads_are_held_to_their_own_limit_not_the_body_limit() {
    let app = app!(state_with(seeded(), with_body_limit(16)));
    assert!(artifact_tests::BUILD.len() > 16);
    let res = send!(
        app,
        artifact_tests::signed_upload(req("PUT", "/api/v1/artifacts/0.2.0", Some(ADMIN)))
    );
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.json);
    // A JSON body on another route is held to the body limit.
    let res = send!(app, patch_request(patch_of_len(64), Some(OPERATOR)));
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[test]
fn only_a_put_of_one_version_counts_as_an_artifact_upload() {
    use actix_web::http::Method;
    assert!(crate::artifacts::is_upload(
        &Method::PUT,
        "/api/v1/artifacts/0.2.0"
    ));
    for (method, path) in [
        (Method::POST, "/api/v1/artifacts/0.2.0"),
        (Method::PUT, "/api/v1/artifacts/"),
        (Method::PUT, "/api/v1/artifacts/0.2.0/extra"),
        (Method::PUT, "/api/v1/artifactsx/0.2.0"),
        (Method::PUT, "/api/v1/devices/plant-01/schedule"),
    ] {
        assert!(
            !crate::artifacts::is_upload(&method, path),
            "{method} {path}"
        );
    }
}

fn lockout_after(max_failures: u32) -> ApiConfig {
    ApiConfig {
        failed_auth: Some(FailedAuthLimits {
            max_failures,
            ..FailedAuthLimits::default()
        }),
        ..ApiConfig::default()
    }
}

const ATTACKER: &str = "198.51.100.7:40000";
const BYSTANDER: &str = "203.0.113.9:50000";

fn from(peer: &str, token: Option<&str>) -> TestRequest {
    let peer: SocketAddr = peer.parse().expect("test address");
    req("GET", "/api/v1/devices", token).peer_addr(peer)
}

const BAD: &str = "shiki_0000000000000000000000000000000000000000000000000000000000000000";

/// The value of an unlabelled sample on `/metrics`.
async fn metric<S, B>(app: &S, name: &str) -> f64
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let res = crate::testing::call(app, req("GET", "/metrics", None)).await;
    res.text()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not on /metrics:\n{}", res.text()))
}

#[actix_web::test]
async fn bad_tokens_lock_the_address_out_even_for_a_good_token_and_others_keep_working() {
    let app = app!(state_with(seeded(), lockout_after(3)));
    for _ in 0..3 {
        let res = send!(app, from(ATTACKER, Some(BAD)));
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }
    for token in [Some(BAD), Some(VIEWER), None] {
        let res = send!(app, from(ATTACKER, token));
        assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "{token:?}");
        assert_eq!(res.error_code(), "too_many_failed_attempts");
        assert_eq!(res.header("retry-after"), "300");
        assert_eq!(res.json["error"]["retry_after_seconds"], 300);
    }
    let res = send!(app, from(BYSTANDER, Some(VIEWER)));
    assert_eq!(res.status, StatusCode::OK);
    // Public routes stay open to the locked-out address.
    let peer: SocketAddr = ATTACKER.parse().expect("test address");
    let res = send!(app, req("GET", "/healthz", None).peer_addr(peer));
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(metric(&app, "shiki_api_auth_rate_limited_total").await, 3.0);
    assert_eq!(metric(&app, "shiki_api_auth_lockouts_total").await, 1.0);
    assert_eq!(metric(&app, "shiki_api_auth_failures_total").await, 3.0);
}

#[actix_web::test]
async fn requests_without_a_token_do_not_count_toward_a_lockout() {
    let app = app!(state_with(seeded(), lockout_after(2)));
    for _ in 0..5 {
        let res = send!(app, from(ATTACKER, None));
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }
    let res = send!(app, from(ATTACKER, Some(VIEWER)));
    assert_eq!(res.status, StatusCode::OK);
}

#[actix_web::test]
async fn without_a_lockout_configured_bad_tokens_stay_401() {
    let config = ApiConfig {
        failed_auth: None,
        ..ApiConfig::default()
    };
    let app = app!(state_with(seeded(), config));
    for _ in 0..50 {
        let res = send!(app, from(ATTACKER, Some(BAD)));
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }
}

#[actix_web::test]
async fn a_metrics_scrape_with_bad_tokens_counts_toward_the_lockout_when_metrics_need_a_token() {
    let config = ApiConfig {
        metrics_require_token: true,
        ..lockout_after(2)
    };
    let app = app!(state_with(seeded(), config));
    let peer: SocketAddr = ATTACKER.parse().expect("test address");
    let scrape = |token| req("GET", "/metrics", Some(token)).peer_addr(peer);
    for _ in 0..2 {
        assert_eq!(send!(app, scrape(BAD)).status, StatusCode::UNAUTHORIZED);
    }
    let res = send!(app, scrape(VIEWER));
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        send!(app, from(ATTACKER, Some(VIEWER))).status,
        StatusCode::TOO_MANY_REQUESTS
    );
}
