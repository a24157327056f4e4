//! Token routes: create once, list without secrets, revoke, and their errors.

use actix_web::http::StatusCode;
use serde_json::json;

use super::*;

fn create(body: Value) -> TestRequest {
    req("POST", "/api/v1/tokens", Some(ADMIN)).set_json(body)
}

#[actix_web::test]
async fn creates_a_token_shown_once_that_works_with_its_role() {
    let backend = seeded();
    let app = app!(state(backend.clone()));
    let res = send!(app, create(json!({"name": "grafana", "role": "viewer"})));
    assert_eq!(res.status, StatusCode::CREATED);
    assert_eq!(res.header("cache-control"), "no-store");
    assert_eq!(res.json["name"], "grafana");
    assert_eq!(res.json["role"], "viewer");
    assert_eq!(res.json["created_by"], "admin");
    let secret = res.json["token"].as_str().expect("token").to_owned();
    assert!(
        secret.starts_with("shiki_") && secret.len() >= 6 + 32,
        "{secret}"
    );
    // Stored hashed, never in clear.
    let stored = backend.data().tokens["grafana"].0.clone();
    assert_eq!(stored, hash_token(&secret));
    assert_ne!(stored, secret);

    assert_eq!(
        send!(app, req("GET", "/api/v1/devices", Some(&secret))).status,
        StatusCode::OK
    );
    let res = send!(
        app,
        req("PATCH", "/api/v1/devices/plant-01/desired", Some(&secret))
            .set_json(json!({"settings": {"mode": "heating"}}))
    );
    assert_eq!(res.status, StatusCode::FORBIDDEN);
}

/// schemathesis: `tenant` was `null` in the 201 of a staff token, where the document (and
/// the list) have no `tenant` at all.
#[actix_web::test]
async fn a_created_staff_token_has_no_tenant_field_and_a_tenants_token_names_it() {
    let app = app!(state(seeded()));
    let res = send!(app, create(json!({"name": "grafana", "role": "viewer"})));
    assert_eq!(res.status, StatusCode::CREATED);
    assert!(res.json.get("tenant").is_none(), "{}", res.json);
    let res = send!(
        app,
        create(json!({"name": "acme-grafana", "role": "viewer", "tenant": "acme"}))
    );
    assert_eq!(res.status, StatusCode::CREATED);
    assert_eq!(res.json["tenant"], "acme");
}

#[actix_web::test]
async fn duplicate_token_name_is_409() {
    let app = app!(state(seeded()));
    let res = send!(app, create(json!({"name": "operator", "role": "viewer"})));
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert_eq!(res.error_code(), "conflict");
}

#[actix_web::test]
async fn invalid_token_requests_are_400() {
    let app = app!(state(seeded()));
    for body in [
        json!({"name": "x", "role": "superuser"}),
        json!({"name": "has space", "role": "viewer"}),
        json!({"name": "", "role": "viewer"}),
        json!({"name": "$SHIKI_ADMIN_TOKEN", "role": "admin"}),
        json!({"role": "viewer"}),
        json!({"name": "x", "role": "viewer", "hash": "abc"}),
    ] {
        let res = send!(app, create(body.clone()));
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(res.error_code(), "invalid_body");
    }
}

#[actix_web::test]
async fn lists_names_and_roles_but_never_hashes() {
    let app = app!(state(seeded()));
    let res = send!(app, req("GET", "/api/v1/tokens", Some(ADMIN)));
    assert_eq!(res.status, StatusCode::OK);
    let tokens = res.json["tokens"].as_array().expect("tokens");
    let names: Vec<&str> = tokens
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["acme-admin", "admin", "globex-admin", "operator", "viewer"]
    );
    assert_eq!(tokens[3]["role"], "operator");
    assert_eq!(tokens[0]["tenant"], "acme");
    assert!(tokens[1].get("tenant").is_none(), "staff tokens have none");
    assert!(!res.text().contains(&hash_token(VIEWER)));
    assert!(!res.text().contains("hash"));
}

#[actix_web::test]
async fn revoking_unknown_token_is_404() {
    let app = app!(state(seeded()));
    for name in ["nobody", "bad%20name"] {
        let res = send!(
            app,
            req("DELETE", &format!("/api/v1/tokens/{name}"), Some(ADMIN))
        );
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{name}");
        assert_eq!(res.error_code(), "not_found");
    }
}

#[actix_web::test]
async fn the_last_admin_token_cannot_be_revoked_without_an_env_admin_token() {
    let backend = seeded();
    let app = app!(state(backend.clone()));
    let res = send!(app, req("DELETE", "/api/v1/tokens/admin", Some(ADMIN)));
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert!(backend.data().tokens.contains_key("admin"));

    // With a second admin it can go.
    let res = send!(app, create(json!({"name": "admin2", "role": "admin"})));
    assert_eq!(res.status, StatusCode::CREATED);
    let res = send!(app, req("DELETE", "/api/v1/tokens/admin", Some(ADMIN)));
    assert_eq!(res.status, StatusCode::NO_CONTENT);
}
