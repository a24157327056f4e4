//! Tenants: a token with a tenant sees and changes only its tenant's devices; every other
//! device is 404 on every route, as if it did not exist. Staff tokens see all.

use actix_web::http::StatusCode;
use serde_json::json;

use super::*;

/// Every route that names a device, for `plant-01` (tenant `acme`) — from [`ROUTES`], so a
/// new device route is checked too.
fn device_routes() -> Vec<&'static RouteCase> {
    ROUTES
        .iter()
        .filter(|r| r.path.contains("/devices/plant-01"))
        .collect()
}

#[actix_web::test]
async fn another_tenants_device_is_404_on_every_route_and_missing_from_every_list() {
    let backend = seeded();
    let app = app!(state(backend.clone()));
    let routes = device_routes();
    assert!(routes.len() >= 10, "{}", routes.len());
    for r in &routes {
        let mut request = req(r.method, r.path, Some(GLOBEX_ADMIN));
        if let Some(body) = r.body {
            request = body(request);
        }
        let res = send!(app, request);
        assert_eq!(
            res.status,
            StatusCode::NOT_FOUND,
            "{} {}: {}",
            r.method,
            r.path,
            res.json
        );
        assert_eq!(
            res.json["error"]["code"], "not_found",
            "{} {}",
            r.method, r.path
        );
    }
    // Nothing changed for acme's device.
    assert!(backend.data().last_patch.is_none());
    assert!(
        backend.data().registry[&dev("plant-01")]
            .1
            .retired_at
            .is_none()
    );
    // Lists leave it out.
    let res = send!(app, req("GET", "/api/v1/devices", Some(GLOBEX_ADMIN)));
    assert_eq!(res.json["devices"], json!([]), "{}", res.json);
    // A job on it is refused as unknown, and an existing job of it is hidden.
    let res = send!(
        app,
        req("POST", "/api/v1/jobs", Some(GLOBEX_ADMIN))
            .set_json(json!({"artifact_version": "0.2.0", "devices": ["plant-01"]}))
    );
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.json);
    let res = send!(
        app,
        req("POST", "/api/v1/jobs", Some(ADMIN))
            .set_json(json!({"artifact_version": "0.2.0", "devices": ["plant-01"]}))
    );
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.json);
    let job = res.json["id"].as_str().expect("job id").to_owned();
    for (method, path) in [
        ("GET", format!("/api/v1/jobs/{job}")),
        ("POST", format!("/api/v1/jobs/{job}/cancel")),
    ] {
        let res = send!(app, req(method, &path, Some(GLOBEX_ADMIN)));
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let res = send!(app, req("GET", "/api/v1/jobs", Some(GLOBEX_ADMIN)));
    assert_eq!(res.json["jobs"], json!([]), "{}", res.json);
    // The tenant's own token sees it all.
    let res = send!(app, req("GET", "/api/v1/jobs", Some(ACME_ADMIN)));
    assert_eq!(res.json["jobs"].as_array().map(Vec::len), Some(1));
    let res = send!(app, req("GET", "/api/v1/devices", Some(ACME_ADMIN)));
    let ids: Vec<&str> = res.json["devices"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(ids, ["plant-01"], "plant-02 has no tenant: staff only");
}

#[actix_web::test]
async fn a_tenants_token_works_on_its_own_devices_and_stays_in_its_tenant() {
    let backend = seeded();
    let app = app!(state(backend.clone()));
    for r in device_routes()
        .into_iter()
        .filter(|r| !(r.method == "DELETE" || r.path.ends_with("/credentials")))
    {
        let mut request = req(r.method, r.path, Some(ACME_ADMIN));
        if let Some(body) = r.body {
            request = body(request);
        }
        let res = send!(app, request);
        assert_eq!(
            res.status.as_u16(),
            r.ok,
            "{} {}: {}",
            r.method,
            r.path,
            res.json
        );
    }
    // It registers devices into its own tenant only, makes tokens of it only, and cannot
    // move a device out of it.
    let res = send!(
        app,
        req("POST", "/api/v1/devices", Some(ACME_ADMIN)).set_json(json!({"id": "plant-31"}))
    );
    assert_eq!(res.status, StatusCode::CREATED);
    assert_eq!(res.json["tenant"], "acme");
    let res = send!(
        app,
        req("POST", "/api/v1/devices", Some(ACME_ADMIN))
            .set_json(json!({"id": "plant-32", "tenant": "globex"}))
    );
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let res = send!(
        app,
        req("POST", "/api/v1/tokens", Some(ACME_ADMIN))
            .set_json(json!({"name": "acme-ops", "role": "operator"}))
    );
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.json);
    let res = send!(
        app,
        req("POST", "/api/v1/tokens", Some(ACME_ADMIN))
            .set_json(json!({"name": "acme-ops", "role": "operator", "tenant": "acme"}))
    );
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.json);
    let res = send!(
        app,
        req("PATCH", "/api/v1/devices/plant-01", Some(ACME_ADMIN))
            .set_json(json!({"tenant": "globex"}))
    );
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    // Its token list holds its tenant's tokens only, and staff tokens are not its to revoke.
    let res = send!(app, req("GET", "/api/v1/tokens", Some(ACME_ADMIN)));
    let names: Vec<&str> = res.json["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["acme-admin", "acme-ops"]);
    let res = send!(
        app,
        req("DELETE", "/api/v1/tokens/operator", Some(ACME_ADMIN))
    );
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}
