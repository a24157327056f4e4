//! Operational routes: `/healthz`, `/metrics`, the OpenAPI document, the operator web page,
//! and the JSON 404/405 fallbacks.

use actix_web::{
    HttpRequest, HttpResponse,
    http::header::{self, AUTHORIZATION},
    web,
};
use serde_json::json;

use super::{ApiError, ApiState, prometheus};
use crate::auth::{CanRead, Role};

/// The OpenAPI 3.1 document, served at `/api/v1/openapi.json`.
pub(crate) const OPENAPI_JSON: &str = include_str!("openapi.json");
pub(crate) const INDEX_HTML: &str = include_str!("web/index.html");
pub(crate) const APP_JS: &str = include_str!("web/app.js");
/// The console's other ES modules, by path (imported by `app.js`).
pub(crate) const MODULES: &[(&str, &str)] = &[
    ("/lib.js", include_str!("web/lib.js")),
    ("/fleet.js", include_str!("web/fleet.js")),
    ("/device.js", include_str!("web/device.js")),
    ("/chart.js", include_str!("web/chart.js")),
    ("/schedule.js", include_str!("web/schedule.js")),
    ("/jobs.js", include_str!("web/jobs.js")),
];
pub(crate) const STYLE_CSS: &str = include_str!("web/style.css");

/// Content-Security-Policy of the web page: only its own script, style and API.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Routes outside `/api`, without authentication (except `/metrics` when so configured).
pub(crate) fn configure_public(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/healthz", "GET").route(web::get().to(healthz)))
        .service(resource("/metrics", "GET").route(web::get().to(metrics)))
        .service(resource("/", "GET").route(web::get().to(index)))
        .service(resource("/app.js", "GET").route(web::get().to(app_js)))
        .service(resource("/style.css", "GET").route(web::get().to(style_css)))
        .service(resource("/favicon.ico", "GET").route(web::get().to(favicon)));
    for (path, text) in MODULES {
        cfg.service(resource(path, "GET").route(
            web::get().to(move || async move { page("text/javascript; charset=utf-8", text) }),
        ));
    }
}

/// Routes under `/api/v1` served from here.
pub(crate) fn configure_api(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/whoami", "GET").route(web::get().to(whoami)))
        .service(resource("/openapi.json", "GET").route(web::get().to(openapi)));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

async fn metrics(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    if state.metrics_require_token {
        let peer = req.peer_addr().map(|a| a.ip());
        crate::auth::locked_out(&state, peer)?;
        let caller = state
            .auth
            .authenticate(state.backend.as_ref(), req.headers().get(AUTHORIZATION))
            .await
            .inspect_err(|e| crate::auth::note_failure(&state, peer, e))?;
        if !caller.role.allows(Role::Viewer) {
            return Err(ApiError::Forbidden {
                name: caller.name,
                required: Role::Viewer,
                actual: caller.role,
            });
        }
    }
    let snapshot = state
        .backend
        .metrics()
        .await
        .map_err(|e| ApiError::from_backend(e, || "metrics".into()))?;
    Ok(HttpResponse::Ok()
        .content_type(prometheus::CONTENT_TYPE)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(prometheus::render(&snapshot, &state.stats)))
}

async fn openapi(_auth: CanRead) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI_JSON)
}

fn page(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

/// `GET /api/v1/whoami`: the caller as the API sees it (the console shows it and hides what
/// the role cannot do).
async fn whoami(auth: crate::auth::CanRead) -> HttpResponse {
    let c = &auth.caller;
    let via = match c.via {
        crate::auth::Via::ApiToken => "api_token",
        crate::auth::Via::AdminToken => "admin_token",
        crate::auth::Via::Oidc => "oidc",
        crate::auth::Via::Session => "session",
    };
    HttpResponse::Ok().json(serde_json::json!({
        "name": c.name,
        "role": c.role,
        "tenant": c.tenant,
        "via": via,
    }))
}

async fn index() -> HttpResponse {
    page("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> HttpResponse {
    page("text/javascript; charset=utf-8", APP_JS)
}

async fn style_css() -> HttpResponse {
    page("text/css; charset=utf-8", STYLE_CSS)
}

/// No icon; answering 204 keeps browsers from logging a 404 on every visit.
async fn favicon() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((header::CACHE_CONTROL, "max-age=86400"))
        .finish()
}

/// JSON 404 for every unknown route (under `/api` only after authentication).
pub(crate) async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

/// A resource that answers a method it has no route for with a JSON 405 and
/// `Allow: {allow}` (RFC 9110 requires it); `allow` lists the methods of its routes.
pub(crate) fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || method_not_allowed(allow)))
}

/// JSON 405 for a known route with another method; `allow` lists the methods it serves.
async fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut res = actix_web::ResponseError::error_response(&ApiError::MethodNotAllowed);
    res.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    res
}
