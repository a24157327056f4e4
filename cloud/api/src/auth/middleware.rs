//! The `/api` authentication middleware and the role extractor.

use std::marker::PhantomData;
use std::net::IpAddr;

use actix_web::{
    FromRequest, HttpMessage, HttpRequest, ResponseError,
    body::{EitherBody, MessageBody},
    dev::{Payload, ServiceRequest, ServiceResponse},
    http::{Method, header::AUTHORIZATION},
    middleware::Next,
    web,
};
use futures::future::{Ready, ready};

use super::oidc::Oidc;
use super::oidc::web::{CSRF_HEADER, SESSION_COOKIE};
use super::{Caller, Role};
use crate::{ApiError, ApiState};

/// Middleware (wrap with `actix_web::middleware::from_fn`) that authenticates every request
/// it sees. On success the [`Caller`] is stored in the request extensions; otherwise it
/// answers 401 itself (or 503 when the token store is unavailable). A request from an
/// address locked out for failed authentications is answered 429 before its token is
/// looked at ([`locked_out`]).
pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<ApiState>>().cloned() else {
        tracing::error!("ApiState missing from app data; refusing request");
        let res = ApiError::Internal.error_response();
        return Ok(req.into_response(res).map_into_right_body());
    };
    let peer = req.peer_addr().map(|a| a.ip());
    if let Err(err) = locked_out(&state, peer) {
        return Ok(req
            .into_response(err.error_response())
            .map_into_right_body());
    }
    let header = req.headers().get(AUTHORIZATION).cloned();
    let session = match (&header, state.auth.oidc()) {
        (None, Some(oidc)) => req
            .cookie(SESSION_COOKIE)
            .map(|c| session_caller(oidc, c.value(), &req)),
        _ => None,
    };
    let outcome = match session {
        Some(outcome) => outcome,
        None => {
            state
                .auth
                .authenticate(state.backend.as_ref(), header.as_ref())
                .await
        }
    };
    match outcome {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            Ok(next.call(req).await?.map_into_left_body())
        }
        Err(err) => {
            note_failure(&state, peer, &err);
            let reason = match &err {
                ApiError::TokenRefused(r) => r.reason(),
                _ => "",
            };
            tracing::info!(path = %req.path(), code = err.code(), reason, peer = ?req.peer_addr(), "request refused: not authenticated");
            let res = err.error_response();
            Ok(req.into_response(res).map_into_right_body())
        }
    }
}

/// 429 when `peer` is locked out for failed authentications (counted in
/// `shiki_api_auth_rate_limited_total`).
pub(crate) fn locked_out(state: &ApiState, peer: Option<IpAddr>) -> Result<(), ApiError> {
    let (Some(limiter), Some(peer)) = (state.failed_auth.as_deref(), peer) else {
        return Ok(());
    };
    limiter.check(peer).map_err(|locked| {
        state.stats.auth_rate_limited();
        tracing::debug!(%peer, retry_after_secs = locked.retry_after_secs(), "request refused: address locked out");
        ApiError::TooManyFailedAttempts {
            retry_after_secs: locked.retry_after_secs(),
        }
    })
}

/// Counts a refused authentication, and against `peer` when it presented a bad token (a
/// missing token or an ended web session is no guess, and does not count toward a
/// lockout).
pub(crate) fn note_failure(state: &ApiState, peer: Option<IpAddr>, err: &ApiError) {
    state.stats.auth_failure();
    let guess = matches!(err, ApiError::InvalidToken | ApiError::TokenRefused(_));
    let (Some(limiter), Some(peer), true) = (state.failed_auth.as_deref(), peer, guess) else {
        return;
    };
    if let Some(locked) = limiter.record_failure(peer) {
        state.stats.auth_lockout();
        tracing::warn!(%peer, lockout_secs = locked.retry_after_secs(), tracked = limiter.tracked(), "address locked out after repeated failed authentications");
    }
}

/// The caller of a web session cookie; a request that changes something must also carry
/// [`CSRF_HEADER`].
fn session_caller(oidc: &Oidc, id: &str, req: &ServiceRequest) -> Result<Caller, ApiError> {
    let caller = oidc.session(id).ok_or(ApiError::SessionEnded)?;
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && req.headers().get(CSRF_HEADER).is_none_or(|v| v != "1") {
        return Err(ApiError::CsrfHeaderMissing);
    }
    Ok(caller)
}

/// A role a handler demands; see [`Authorized`].
pub trait RequiredRole {
    const ROLE: Role;
}

/// Marker: viewer or better.
#[derive(Debug)]
pub struct ViewerAccess;
/// Marker: operator or better.
#[derive(Debug)]
pub struct OperatorAccess;
/// Marker: admin.
#[derive(Debug)]
pub struct AdminAccess;

impl RequiredRole for ViewerAccess {
    const ROLE: Role = Role::Viewer;
}
impl RequiredRole for OperatorAccess {
    const ROLE: Role = Role::Operator;
}
impl RequiredRole for AdminAccess {
    const ROLE: Role = Role::Admin;
}

/// Extractor: the authenticated caller, holding at least role `R::ROLE`. Fails closed: a
/// request that did not pass [`require_token`] gets 401, a weaker role 403.
#[derive(Debug)]
pub struct Authorized<R> {
    pub caller: Caller,
    _role: PhantomData<R>,
}

/// Read access (viewer, operator, admin).
pub type CanRead = Authorized<ViewerAccess>;
/// Change desired state (operator, admin).
pub type CanOperate = Authorized<OperatorAccess>;
/// Manage tokens (admin).
pub type CanAdminister = Authorized<AdminAccess>;

impl<R: RequiredRole> FromRequest for Authorized<R> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let caller = req.extensions().get::<Caller>().cloned();
        ready(match caller {
            None => Err(ApiError::MissingToken),
            Some(caller) if !caller.role.allows(R::ROLE) => {
                tracing::info!(caller = %caller.name, role = %caller.role, required = %R::ROLE, path = %req.path(), "request refused: role too weak");
                Err(ApiError::Forbidden {
                    name: caller.name,
                    required: R::ROLE,
                    actual: caller.role,
                })
            }
            Some(caller) => Ok(Authorized {
                caller,
                _role: PhantomData,
            }),
        })
    }
}
