//! Registry routes (admin): register with a password shown once and stored hashed, rotate,
//! retire, register again; and their errors.

use actix_web::http::StatusCode;
use serde_json::json;

use super::*;
use crate::auth::verify_device_password;

fn register(body: Value, token: &str) -> TestRequest {
    req("POST", "/api/v1/devices", Some(token)).set_json(body)
}

fn stored_hash(backend: &FakeBackend, id: &str) -> Option<String> {
    backend.data().registry[&dev(id)].0.clone()
}

#[actix_web::test]
async fn a_registered_device_gets_a_password_once_stored_only_as_a_hash() {
    let backend = seeded();
    let app = app!(state(backend.clone()));
    let res = send!(
        app,
        register(json!({"id": "plant-09", "tenant": "acme"}), ADMIN)
    );
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.json);
    assert_eq!(res.header("cache-control"), "no-store");
    assert_eq!(res.json["id"], "plant-09");
    assert_eq!(res.json["tenant"], "acme");
    let password = res.json["mqtt_password"]
        .as_str()
        .expect("password")
        .to_owned();
    assert_eq!(password.len(), 43);
    let hash = stored_hash(&backend, "plant-09").expect("hash stored");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(verify_device_password(&hash, &password));
    assert!(!hash.contains(&password));
    let created_by = backend.data().registry[&dev("plant-09")]
        .1
        .created_by
        .clone();
    assert_eq!(created_by, "admin");

    // Registered twice: 409, the first password still the one stored.
    let res = send!(app, register(json!({"id": "plant-09"}), ADMIN));
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert_eq!(res.json["error"]["code"], "conflict", "{}", res.json);
    assert!(verify_device_password(
        &stored_hash(&backend, "plant-09").expect("hash"),
        &password
    ));
}

#[actix_web::test]
async fn rotating_replaces_the_password_and_a_retired_device_can_be_registered_again() {
    let backend = seeded();
    let app = app!(state(backend.clone()));
    let first = send!(app, register(json!({"id": "plant-09"}), ADMIN));
    let old = first.json["mqtt_password"].as_str().expect("pw").to_owned();
    let res = send!(
        app,
        req("POST", "/api/v1/devices/plant-09/credentials", Some(ADMIN))
    );
    assert_eq!(res.status, StatusCode::OK, "{}", res.json);
    assert_eq!(res.header("cache-control"), "no-store");
    let new = res.json["mqtt_password"].as_str().expect("pw").to_owned();
    assert_ne!(new, old);
    let hash = stored_hash(&backend, "plant-09").expect("hash");
    assert!(verify_device_password(&hash, &new));
    assert!(!verify_device_password(&hash, &old));

    let res = send!(app, req("DELETE", "/api/v1/devices/plant-09", Some(ADMIN)));
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(stored_hash(&backend, "plant-09"), None);
    // Retired: no rotation, no second retirement; registering again works.
    for (method, path) in [
        ("POST", "/api/v1/devices/plant-09/credentials"),
        ("DELETE", "/api/v1/devices/plant-09"),
        ("DELETE", "/api/v1/devices/plant-77"),
        ("POST", "/api/v1/devices/plant-77/credentials"),
    ] {
        let res = send!(app, req(method, path, Some(ADMIN)));
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let res = send!(app, register(json!({"id": "plant-09"}), ADMIN));
    assert_eq!(res.status, StatusCode::CREATED);
}

#[actix_web::test]
async fn only_an_admin_registers_and_bad_bodies_say_what_to_fix() {
    let backend = seeded();
    let app = app!(state(backend.clone()));
    for token in [VIEWER, OPERATOR] {
        let res = send!(app, register(json!({"id": "plant-09"}), token));
        assert_eq!(res.status, StatusCode::FORBIDDEN);
        for (method, path) in [
            ("POST", "/api/v1/devices/plant-01/credentials"),
            ("DELETE", "/api/v1/devices/plant-01"),
        ] {
            let res = send!(app, req(method, path, Some(token)));
            assert_eq!(res.status, StatusCode::FORBIDDEN, "{method} {path}");
        }
    }
    let res = send!(
        app,
        req("POST", "/api/v1/devices", None).set_json(json!({"id": "plant-09"}))
    );
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    for (body, needle) in [
        (json!({"id": "bad id/x"}), "id"),
        (json!({"id": "plant-09", "tenant": "no spaces"}), "tenant"),
        (json!({"id": "plant-09", "tenant": ""}), "tenant"),
        (json!({"id": "plant-09", "colour": "red"}), "colour"),
        (json!({"tenant": "acme"}), "id"),
    ] {
        let res = send!(app, register(body.clone(), ADMIN));
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{body}");
        let message = res.json["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{body}: {message}");
    }
    assert!(!backend.data().registry.contains_key(&dev("plant-09")));
}

#[actix_web::test]
async fn an_admin_sets_and_clears_a_registered_devices_tenant() {
    let backend = seeded();
    let app = app!(state(backend.clone()));
    let patch = |body: Value, token: &str| {
        req("PATCH", "/api/v1/devices/plant-01", Some(token)).set_json(body)
    };
    let res = send!(app, patch(json!({"tenant": "acme"}), ADMIN));
    assert_eq!(res.status, StatusCode::OK, "{}", res.json);
    assert_eq!(res.json["tenant"], "acme");
    assert_eq!(
        backend.data().registry[&dev("plant-01")]
            .1
            .tenant
            .as_deref(),
        Some("acme")
    );
    let res = send!(app, patch(json!({"tenant": null}), ADMIN));
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.json.get("tenant").is_none(), "{}", res.json);
    assert_eq!(
        send!(app, patch(json!({"tenant": "acme"}), OPERATOR)).status,
        StatusCode::FORBIDDEN
    );
    let res = send!(app, patch(json!({"tenant": "a b"}), ADMIN));
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let res = send!(app, patch(json!({}), ADMIN));
    assert_eq!(
        res.status,
        StatusCode::BAD_REQUEST,
        "tenant is required (null clears)"
    );
    let res = send!(
        app,
        req("PATCH", "/api/v1/devices/plant-77", Some(ADMIN)).set_json(json!({"tenant": "x"}))
    );
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}
