//! Authentication and roles: every route with no token, an invalid token, and each role.

use actix_web::http::StatusCode;
use serde_json::json;

use super::*;
use crate::auth::{AuthConfig, Authenticator, BOOTSTRAP_TOKEN_NAME, bootstrap_admin};

fn token_for(role: Option<Role>) -> Option<&'static str> {
    role.map(|r| match r {
        Role::Viewer => VIEWER,
        Role::Operator => OPERATOR,
        Role::Admin => ADMIN,
    })
}

#[actix_web::test]
async fn every_api_route_enforces_its_role() {
    let callers = [
        None,
        Some(Role::Viewer),
        Some(Role::Operator),
        Some(Role::Admin),
    ];
    for route in ROUTES {
        for caller in callers {
            let app = app!(state(seeded()));
            let mut r = req(route.method, route.path, token_for(caller));
            if let Some(body) = route.body {
                r = body(r);
            }
            let res = send!(app, r);
            let expected = match caller {
                None => StatusCode::UNAUTHORIZED,
                Some(role) if !role.allows(route.role) => StatusCode::FORBIDDEN,
                Some(_) => StatusCode::from_u16(route.ok).expect("status"),
            };
            assert_eq!(
                res.status, expected,
                "{} {} as {caller:?}: {:?}",
                route.method, route.path, res.body
            );
            if !expected.is_success() {
                let code = res.error_code();
                assert_eq!(
                    code,
                    if caller.is_none() {
                        "missing_token"
                    } else {
                        "forbidden"
                    }
                );
            }
        }
    }
}

#[actix_web::test]
async fn invalid_tokens_get_401_with_www_authenticate_on_every_route() {
    for route in ROUTES {
        for token in ["shiki_0000", "not-a-shiki-token", ENV_ADMIN] {
            let app = app!(state(seeded()));
            let res = send!(app, req(route.method, route.path, Some(token)));
            assert_eq!(
                res.status,
                StatusCode::UNAUTHORIZED,
                "{} {}",
                route.method,
                route.path
            );
            assert_eq!(res.error_code(), "invalid_token");
            assert!(res.header("www-authenticate").starts_with("Bearer"));
            assert!(res.header("www-authenticate").contains("invalid_token"));
        }
    }
}

#[actix_web::test]
async fn missing_token_gets_401_with_bearer_challenge() {
    let app = app!(state(seeded()));
    let res = send!(app, req("GET", "/api/v1/devices", None));
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.header("www-authenticate"), r#"Bearer realm="shiki""#);
    assert_eq!(res.error_code(), "missing_token");

    let basic = req("GET", "/api/v1/devices", None)
        .insert_header(("Authorization", "Basic YWRtaW46YWRtaW4="));
    let res = send!(app, basic);
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn forbidden_names_the_required_role() {
    let app = app!(state(seeded()));
    let res = send!(
        app,
        req("PATCH", "/api/v1/devices/plant-01/desired", Some(VIEWER))
            .set_json(json!({"settings": {"chw_setpoint_c": 8.0}}))
    );
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.json["error"]["required_role"], "operator");
}

#[actix_web::test]
async fn unknown_api_routes_need_a_token_then_answer_json_404() {
    let app = app!(state(seeded()));
    let res = send!(app, req("GET", "/api/v1/nothing-here", None));
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let res = send!(app, req("GET", "/api/v1/nothing-here", Some(VIEWER)));
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.error_code(), "not_found");
    let res = send!(app, req("GET", "/api/v2/devices", Some(VIEWER)));
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn admin_token_from_configuration_always_works_as_admin() {
    let backend = seeded();
    backend.data().tokens.clear();
    let config = ApiConfig {
        auth: AuthConfig {
            admin_token: Some(ENV_ADMIN.into()),
            oidc: None,
        },
        ..ApiConfig::default()
    };
    let app = app!(state_with(backend.clone(), config));
    let res = send!(
        app,
        req("POST", "/api/v1/tokens", Some(ENV_ADMIN))
            .set_json(json!({"name": "ops", "role": "operator"}))
    );
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    assert_eq!(res.json["created_by"], "$SHIKI_ADMIN_TOKEN");

    // Changes made with it are recorded under its identity.
    let res = send!(
        app,
        req("PATCH", "/api/v1/devices/plant-01/desired", Some(ENV_ADMIN))
            .set_json(json!({"settings": {"mode": "heating"}}))
    );
    assert_eq!(res.status, StatusCode::OK);
    let d = backend.data();
    let (_, last) = d.history.last().expect("history entry");
    assert_eq!(
        last.actor,
        AuthorView::from(&Author::api_key("$SHIKI_ADMIN_TOKEN", Role::Admin))
    );
}

#[actix_web::test]
async fn a_revoked_token_stops_working_at_once() {
    let app = app!(state(seeded()));
    assert_eq!(
        send!(app, req("GET", "/api/v1/devices", Some(VIEWER))).status,
        StatusCode::OK
    );
    let res = send!(app, req("DELETE", "/api/v1/tokens/viewer", Some(ADMIN)));
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    let res = send!(app, req("GET", "/api/v1/devices", Some(VIEWER)));
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn token_store_outage_is_503_not_401() {
    let backend = seeded();
    let app = app!(state(backend.clone()));
    backend
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let res = send!(app, req("GET", "/api/v1/devices", Some(VIEWER)));
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.error_code(), "unavailable");
}

#[actix_web::test]
async fn metrics_can_require_a_token() {
    let config = ApiConfig {
        metrics_require_token: true,
        ..ApiConfig::default()
    };
    let app = app!(state_with(seeded(), config));
    let res = send!(app, req("GET", "/metrics", None));
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(res.header("www-authenticate").starts_with("Bearer"));
    let res = send!(app, req("GET", "/metrics", Some(VIEWER)));
    assert_eq!(res.status, StatusCode::OK);
    // Open by default.
    let app = app!(state(seeded()));
    assert_eq!(
        send!(app, req("GET", "/metrics", None)).status,
        StatusCode::OK
    );
}

#[actix_web::test]
async fn bootstrap_creates_one_admin_token_on_an_empty_store() {
    let backend = Arc::new(FakeBackend::default());
    let auth = Authenticator::default();
    let token = bootstrap_admin(backend.as_ref(), &auth, now())
        .await
        .expect("bootstrap")
        .expect("a token on first start");
    assert!(token.starts_with("shiki_"));
    {
        let d = backend.data();
        let (hash, info) = d.tokens.get(BOOTSTRAP_TOKEN_NAME).expect("stored");
        assert_eq!(*hash, hash_token(&token));
        assert_eq!(info.role, Role::Admin);
    }
    // The printed token works as admin.
    let app = app!(state(backend.clone()));
    assert_eq!(
        send!(app, req("GET", "/api/v1/tokens", Some(&token))).status,
        StatusCode::OK
    );
    // Second start: nothing new.
    let again = bootstrap_admin(backend.as_ref(), &auth, now())
        .await
        .expect("bootstrap");
    assert_eq!(again, None);
    assert_eq!(backend.data().tokens.len(), 1);
}

#[actix_web::test]
async fn bootstrap_is_skipped_when_an_admin_token_is_configured() {
    let backend = Arc::new(FakeBackend::default());
    let auth = Authenticator::new(&AuthConfig {
        admin_token: Some(ENV_ADMIN.into()),
        oidc: None,
    })
    .expect("valid");
    assert_eq!(
        bootstrap_admin(backend.as_ref(), &auth, now()).await,
        Ok(None)
    );
    assert!(backend.data().tokens.is_empty());
}
