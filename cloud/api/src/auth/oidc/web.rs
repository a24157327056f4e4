//! The web page's sign-in: `/auth/login` → provider → `/auth/callback` → session cookie;
//! `/auth/session` says who is signed in; `/auth/logout` ends it.
//!
//! - `GET /auth/login?return_to=/path`: a `state`, a `nonce` and a PKCE verifier are kept
//!   server-side; the browser gets `state` in a short-lived `shiki_login` cookie
//!   (SameSite=Lax: it must come back on the provider's redirect) and is sent to the
//!   provider's authorization endpoint with `code_challenge_method=S256`.
//! - `GET /auth/callback?code&state`: `state` must match the cookie and a login under way;
//!   the code is exchanged with the verifier (and the client secret, if any); the ID
//!   token is verified (audience = `client_id`, `nonce`). Success: an HttpOnly,
//!   SameSite=Strict `shiki_session` cookie and a redirect to `return_to`. Failure: a
//!   redirect to `/?login_error=…`, which the page shows.
//! - `POST /auth/logout`: the session ends; answers the provider's end-session URL (with
//!   `id_token_hint`) for the page to visit, or `null`.

use actix_web::cookie::{Cookie, SameSite, time};
use actix_web::http::header;
use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::sessions::{LOGIN_TTL, pkce_challenge};
use super::{Oidc, VerifyError, WebClient, identity, verify};
use crate::auth::Via;
use crate::ops::resource;
use crate::{ApiError, ApiState};

/// The session cookie.
pub const SESSION_COOKIE: &str = "shiki_session";
/// The login-under-way cookie.
const LOGIN_COOKIE: &str = "shiki_login";
/// Header a cookie-authenticated request that changes something must carry (a cross-site
/// form cannot set it, and a cross-site script cannot send it without a CORS preflight
/// this API never grants).
pub const CSRF_HEADER: &str = "x-shiki-csrf";

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/auth")
            .wrap(DefaultHeaders::new().add((header::CACHE_CONTROL, "no-store")))
            .service(resource("/session", "GET").route(web::get().to(session)))
            .service(resource("/login", "GET").route(web::get().to(login)))
            .service(resource("/callback", "GET").route(web::get().to(callback)))
            .service(resource("/logout", "POST").route(web::post().to(logout))),
    );
}

fn web_login(state: &ApiState) -> Result<(&Oidc, &WebClient), ApiError> {
    state
        .auth
        .oidc()
        .and_then(|o| o.web.as_ref().map(|w| (o, w)))
        .ok_or_else(|| {
            ApiError::NotFound("single sign-on is not configured: set auth.oidc.client_id".into())
        })
}

/// `GET /auth/session`: whether single sign-on is offered and who this browser is.
async fn session(state: web::Data<ApiState>, req: HttpRequest) -> HttpResponse {
    let oidc = state.auth.oidc();
    let sso = oidc.is_some_and(|o| o.web.is_some());
    let caller = req
        .cookie(SESSION_COOKIE)
        .and_then(|c| oidc.and_then(|o| o.session(c.value())));
    HttpResponse::Ok().json(json!({
        "sso": sso,
        "login_url": sso.then_some("/auth/login"),
        "signed_in": caller.is_some(),
        "name": caller.as_ref().map(|c| c.name.clone()),
        "role": caller.as_ref().map(|c| c.role),
        "tenant": caller.as_ref().and_then(|c| c.tenant.clone()),
    }))
}

#[derive(Deserialize)]
struct LoginQuery {
    return_to: Option<String>,
}

/// A path of this site (no scheme, no host, no `//`), else `/`.
fn local_path(p: Option<&str>) -> String {
    match p {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p.into(),
        _ => "/".into(),
    }
}

fn cookie<'c>(oidc: &Oidc, name: &'c str, value: String, path: &'c str) -> Cookie<'c> {
    Cookie::build(name, value)
        .path(path)
        .http_only(true)
        .secure(oidc.config.cookie_secure)
        .finish()
}

fn removal(name: &'static str, path: &'static str) -> Cookie<'static> {
    let mut c = Cookie::build(name, "").path(path).finish();
    c.make_removal();
    c
}

/// `GET /auth/login`: to the provider.
async fn login(
    state: web::Data<ApiState>,
    query: web::Query<LoginQuery>,
) -> Result<HttpResponse, ApiError> {
    let (oidc, client) = web_login(&state)?;
    let discovery = oidc.keys.discovery().await.map_err(|e| {
        ApiError::Unavailable(format!("the identity provider cannot be reached: {e}"))
    })?;
    let endpoint = discovery.authorization_endpoint.as_deref().ok_or_else(|| {
        ApiError::Unavailable("the identity provider names no authorization_endpoint".into())
    })?;
    let (login_state, pending) = oidc.pending.start(local_path(query.return_to.as_deref()));
    let scope = oidc.config.scopes.join(" ");
    let url = reqwest::Url::parse_with_params(
        endpoint,
        [
            ("response_type", "code"),
            ("client_id", client.client_id.as_str()),
            ("redirect_uri", client.redirect_url.as_str()),
            ("scope", scope.as_str()),
            ("state", login_state.as_str()),
            ("nonce", pending.nonce.as_str()),
            ("code_challenge", pkce_challenge(&pending.verifier).as_str()),
            ("code_challenge_method", "S256"),
        ],
    )
    .map_err(|e| ApiError::Unavailable(format!("bad authorization_endpoint {endpoint:?}: {e}")))?;
    let mut login_cookie = cookie(oidc, LOGIN_COOKIE, login_state, "/auth");
    login_cookie.set_same_site(SameSite::Lax);
    login_cookie.set_max_age(time::Duration::seconds(LOGIN_TTL.as_secs() as i64));
    tracing::debug!("web sign-in started");
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, url.as_str()))
        .cookie(login_cookie)
        .finish())
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /auth/callback`: back from the provider.
async fn callback(
    state: web::Data<ApiState>,
    req: HttpRequest,
    query: web::Query<CallbackQuery>,
) -> Result<HttpResponse, ApiError> {
    let (oidc, client) = web_login(&state)?;
    match finish_login(oidc, client, &req, query.into_inner()).await {
        Ok((session_id, return_to, caller)) => {
            tracing::info!(user = %caller.name, role = %caller.role, tenant = ?caller.tenant, "signed in through the identity provider");
            let mut c = cookie(oidc, SESSION_COOKIE, session_id, "/");
            c.set_same_site(SameSite::Strict);
            c.set_max_age(time::Duration::seconds(
                oidc.config.session_ttl.as_secs() as i64
            ));
            Ok(HttpResponse::SeeOther()
                .insert_header((header::LOCATION, return_to))
                .cookie(c)
                .cookie(removal(LOGIN_COOKIE, "/auth"))
                .finish())
        }
        Err(message) => {
            tracing::info!(%message, "web sign-in failed");
            let to = reqwest::Url::parse_with_params("http://x/", [("login_error", &message)])
                .map(|u| format!("/?{}", u.query().unwrap_or_default()))
                .unwrap_or_else(|_| "/".into());
            Ok(HttpResponse::SeeOther()
                .insert_header((header::LOCATION, to))
                .cookie(removal(LOGIN_COOKIE, "/auth"))
                .finish())
        }
    }
}

async fn finish_login(
    oidc: &Oidc,
    client: &WebClient,
    req: &HttpRequest,
    q: CallbackQuery,
) -> Result<(String, String, crate::auth::Caller), String> {
    if let Some(error) = q.error {
        return Err(format!(
            "the identity provider refused the sign-in: {error}{}",
            q.error_description
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ));
    }
    let stale =
        || "this sign-in expired or was started in another browser; sign in again".to_owned();
    let login_state = q.state.ok_or_else(stale)?;
    let cookie = req.cookie(LOGIN_COOKIE).ok_or_else(stale)?;
    if cookie.value() != login_state {
        return Err(stale());
    }
    let pending = oidc.pending.take(&login_state).ok_or_else(stale)?;
    let code = q
        .code
        .ok_or_else(|| "the identity provider sent no authorization code".to_owned())?;
    let id_token = exchange(oidc, client, &code, &pending.verifier).await?;
    let claims = verify::verify(
        &oidc.keys,
        &id_token,
        &oidc.config.issuer,
        &client.client_id,
        oidc.config.leeway,
    )
    .await
    .map_err(|e| match e {
        VerifyError::Refused(r) => format!("the identity provider's ID token was refused: {r}"),
        VerifyError::Unavailable(reason) => {
            format!("the identity provider's keys are unavailable: {reason}")
        }
    })?;
    if claims.get("nonce").and_then(|n| n.as_str()) != Some(pending.nonce.as_str()) {
        return Err("the ID token does not carry this sign-in's nonce (replayed?)".into());
    }
    let caller =
        identity::caller(&oidc.config, &claims, Via::Session).map_err(|e| e.to_string())?;
    let session = oidc
        .sessions
        .create(caller.clone(), id_token, oidc.config.session_ttl);
    Ok((session, pending.return_to, caller))
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The ID token the provider gives for `code`.
async fn exchange(
    oidc: &Oidc,
    client: &WebClient,
    code: &str,
    verifier: &str,
) -> Result<String, String> {
    let discovery = oidc
        .keys
        .discovery()
        .await
        .map_err(|e| format!("the identity provider cannot be reached: {e}"))?;
    let endpoint = discovery
        .token_endpoint
        .as_deref()
        .ok_or_else(|| "the identity provider names no token_endpoint".to_owned())?;
    let mut request = oidc.keys.http().post(endpoint).form(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", client.redirect_url.as_str()),
        ("code_verifier", verifier),
        ("client_id", client.client_id.as_str()),
    ]);
    if let Some(secret) = &client.client_secret {
        request = request.basic_auth(&client.client_id, Some(secret));
    }
    let res = request
        .send()
        .await
        .map_err(|e| format!("the token endpoint cannot be reached: {e}"))?;
    let status = res.status();
    let body: TokenResponse = res
        .json()
        .await
        .map_err(|e| format!("the token endpoint answered HTTP {status} without JSON: {e}"))?;
    if let Some(error) = body.error {
        return Err(format!(
            "the token endpoint refused the code: {error}{}",
            body.error_description
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ));
    }
    body.id_token
        .ok_or_else(|| format!("the token endpoint answered HTTP {status} without an id_token"))
}

/// `POST /auth/logout`: ends this browser's session.
async fn logout(state: web::Data<ApiState>, req: HttpRequest) -> HttpResponse {
    let oidc = state.auth.oidc();
    let ended = req
        .cookie(SESSION_COOKIE)
        .and_then(|c| oidc.and_then(|o| o.sessions.remove(c.value())));
    let mut end_session_url = None;
    if let (Some(session), Some(oidc)) = (&ended, oidc) {
        tracing::info!(user = %session.caller.name, "signed out");
        if let (Some(client), Some(endpoint)) = (
            oidc.web.as_ref(),
            oidc.keys
                .discovery()
                .await
                .ok()
                .and_then(|d| d.end_session_endpoint.clone()),
        ) {
            end_session_url = reqwest::Url::parse_with_params(
                &endpoint,
                [
                    ("id_token_hint", session.id_token.as_str()),
                    ("client_id", client.client_id.as_str()),
                    ("post_logout_redirect_uri", client.post_logout_url.as_str()),
                ],
            )
            .ok()
            .map(String::from);
        }
    }
    HttpResponse::Ok()
        .cookie(removal(SESSION_COOKIE, "/"))
        .json(json!({
            "signed_out": ended.is_some(),
            "end_session_url": end_session_url,
        }))
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn return_to_stays_on_this_site() {
        assert_eq!(local_path(Some("/devices?x=1")), "/devices?x=1");
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(Some("/\\evil.example")), "/");
        assert_eq!(local_path(None), "/");
    }
}
