//! [`ApiError`]: the one error type of the admin API, and how it becomes a response.
//!
//! Every error response has the body
//! `{"error": {"code": "snake_case_code", "message": "for a person", ...details}}`
//! where details are `parameter`, `key`, `expected_version` or `current_version` when they
//! apply. actix-web's own extractor errors (JSON body, query string, path) are turned into
//! `ApiError`s by [`json_config`], [`query_config`] and [`path_config`].
//!
//! Body limits: every request body is limited to [`ApiConfig::max_body_bytes`]
//! (`api.max_body_bytes`, default [`DEFAULT_MAX_BODY_BYTES`]) by [`limit_body`] and the JSON
//! extractor; an OTA artifact upload has its own limit (`ota.max_artifact_mb`).
//!
//! [`ApiConfig::max_body_bytes`]: crate::ApiConfig::max_body_bytes

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError},
    http::{StatusCode, header},
    web,
};
use serde_json::{Map, Value, json};
use shiki_shared::schedule::Problem;

use super::backend::BackendError;
use crate::artifacts::url::UrlRefused;
use crate::auth::Role;
use crate::auth::oidc::{IdentityError, Refusal};

/// Default of the largest request body accepted ([`crate::ApiConfig::max_body_bytes`]).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// The config key of [`crate::ApiConfig::max_body_bytes`], named in 413 answers.
pub const BODY_LIMIT_KEY: &str = "api.max_body_bytes";

/// Everything that can go wrong in an API request. Each variant has one status code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// 400: the request body is not valid JSON or does not have the documented shape.
    #[error("invalid request body: {0}")]
    InvalidBody(String),
    /// 400: a query or path parameter is invalid.
    #[error("invalid parameter {parameter:?}: {reason}")]
    InvalidParameter {
        parameter: &'static str,
        reason: String,
    },
    /// 401: no usable `Authorization: Bearer` header.
    #[error("missing bearer token: send 'Authorization: Bearer <token>'")]
    MissingToken,
    /// 401: the token is unknown or revoked.
    #[error("invalid or revoked token")]
    InvalidToken,
    /// 401: a bearer JWT was refused; `reason` says why ([`Refusal::reason`]).
    #[error("token refused: {0}")]
    TokenRefused(Refusal),
    /// 401: the web session cookie names no live session.
    #[error("your sign-in has ended; sign in again")]
    SessionEnded,
    /// 403: a verified identity that maps to no role or carries a bad tenant.
    #[error("{0}")]
    Identity(IdentityError),
    /// 403: a cookie-authenticated request that changes something lacks the CSRF header.
    #[error(
        "requests signed in by cookie must send the header 'X-Shiki-Csrf: 1' to change anything"
    )]
    CsrfHeaderMissing,
    /// 403: the token's role is not enough.
    #[error("this needs the {required} role; token {name:?} has {actual}")]
    Forbidden {
        name: String,
        required: Role,
        actual: Role,
    },
    /// 404: no such route or resource.
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: `expected_version` is stale.
    #[error("version conflict: expected version {expected}, current version is {current}")]
    VersionConflict { expected: u64, current: u64 },
    /// 409: the resource exists already.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is larger than the route's limit; `setting` is the config key that
    /// sets it.
    #[error(
        "request body too large: the limit is {limit} bytes; send less, or raise `{setting}` \
         in the cloud's configuration"
    )]
    PayloadTooLarge { limit: u64, setting: &'static str },
    /// 429: too many failed authentications from the caller's address.
    #[error(
        "too many failed authentications from your address; retry after {retry_after_secs} s \
         with a valid token"
    )]
    TooManyFailedAttempts { retry_after_secs: u64 },
    /// 422: a desired setting was refused.
    #[error("setting {key:?} refused: {reason}")]
    Unprocessable { key: String, reason: String },
    /// 422: an OTA job was refused; `key` names the field of the request.
    #[error("job refused: {key}: {reason}")]
    InvalidJob { key: String, reason: String },
    /// 422: a schedule document has errors; every problem with its location.
    #[error("schedule is invalid: {} problem(s){}", problems.len(),
        problems.first().map(|p| format!(", first: {p}")).unwrap_or_default())]
    InvalidSchedule { problems: Vec<Problem> },
    /// 422: an artifact's signature does not verify (or no key is trusted); says why.
    #[error("artifact refused: {0}")]
    SignatureRefused(String),
    /// 403: a download URL is expired or its signature does not match.
    #[error("{0}")]
    UrlRefused(UrlRefused),
    /// 503: the backend cannot answer now.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// 500: something broke inside; details are logged, not returned.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// Machine-readable code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidBody(_) => "invalid_body",
            ApiError::InvalidParameter { .. } => "invalid_parameter",
            ApiError::MissingToken => "missing_token",
            ApiError::InvalidToken | ApiError::TokenRefused(_) => "invalid_token",
            ApiError::SessionEnded => "session_ended",
            ApiError::Identity(IdentityError::NoRole { .. }) => "no_role",
            ApiError::Identity(IdentityError::BadTenant { .. }) => "bad_tenant_claim",
            ApiError::CsrfHeaderMissing => "csrf_header_missing",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::VersionConflict { .. } => "version_conflict",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::TooManyFailedAttempts { .. } => "too_many_failed_attempts",
            ApiError::SignatureRefused(_) => "signature_refused",
            ApiError::UrlRefused(UrlRefused::Expired { .. }) => "url_expired",
            ApiError::UrlRefused(UrlRefused::BadSignature) => "bad_url_signature",
            ApiError::Unprocessable { .. } => "unprocessable_setting",
            ApiError::InvalidJob { .. } => "invalid_job",
            ApiError::InvalidSchedule { .. } => "invalid_schedule",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal => "internal",
        }
    }

    /// Maps a backend error; `what` names the resource for a 404 ("device \"x\"").
    pub fn from_backend(err: BackendError, what: impl FnOnce() -> String) -> Self {
        match err {
            BackendError::NotFound => ApiError::NotFound(format!("{} not found", what())),
            BackendError::VersionConflict { expected, current } => {
                ApiError::VersionConflict { expected, current }
            }
            BackendError::AlreadyExists(what) => {
                ApiError::Conflict(format!("{what} already exists"))
            }
            BackendError::Invalid { key, reason } => ApiError::Unprocessable { key, reason },
            BackendError::InvalidJob { key, reason } => ApiError::InvalidJob { key, reason },
            BackendError::MalformedSchedule(reason) => {
                ApiError::InvalidBody(format!("not a schedule document: {reason}"))
            }
            BackendError::InvalidSchedule { problems } => ApiError::InvalidSchedule { problems },
            BackendError::Unavailable(reason) => {
                tracing::warn!(%reason, "backend unavailable");
                ApiError::Unavailable(reason)
            }
            BackendError::Internal(reason) => {
                tracing::error!(%reason, "backend failed");
                ApiError::Internal
            }
        }
    }

    /// The JSON body of this error.
    pub fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), json!(self.code()));
        error.insert("message".into(), json!(self.to_string()));
        match self {
            ApiError::InvalidParameter { parameter, .. } => {
                error.insert("parameter".into(), json!(parameter));
            }
            ApiError::VersionConflict { expected, current } => {
                error.insert("expected_version".into(), json!(expected));
                error.insert("current_version".into(), json!(current));
            }
            ApiError::Unprocessable { key, .. } | ApiError::InvalidJob { key, .. } => {
                error.insert("key".into(), json!(key));
            }
            ApiError::InvalidSchedule { problems } => {
                error.insert("problems".into(), json!(problems));
            }
            ApiError::TokenRefused(refusal) => {
                error.insert("reason".into(), json!(refusal.reason()));
            }
            ApiError::Forbidden { required, .. } => {
                error.insert("required_role".into(), json!(required));
            }
            ApiError::UrlRefused(UrlRefused::Expired { at }) => {
                error.insert("expired_at".into(), json!(at));
            }
            ApiError::PayloadTooLarge { limit, setting } => {
                error.insert("limit_bytes".into(), json!(limit));
                error.insert("setting".into(), json!(setting));
            }
            ApiError::TooManyFailedAttempts { retry_after_secs } => {
                error.insert("retry_after_seconds".into(), json!(retry_after_secs));
            }
            _ => {}
        }
        json!({ "error": error })
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        ApiError::Identity(e)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidBody(_) | ApiError::InvalidParameter { .. } => StatusCode::BAD_REQUEST,
            ApiError::MissingToken
            | ApiError::InvalidToken
            | ApiError::TokenRefused(_)
            | ApiError::SessionEnded => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. }
            | ApiError::UrlRefused(_)
            | ApiError::Identity(_)
            | ApiError::CsrfHeaderMissing => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::VersionConflict { .. } | ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyFailedAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unprocessable { .. }
            | ApiError::InvalidJob { .. }
            | ApiError::InvalidSchedule { .. }
            | ApiError::SignatureRefused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        match self {
            ApiError::MissingToken => {
                res.insert_header((header::WWW_AUTHENTICATE, r#"Bearer realm="shiki""#));
            }
            ApiError::InvalidToken | ApiError::SessionEnded => {
                res.insert_header((
                    header::WWW_AUTHENTICATE,
                    r#"Bearer realm="shiki", error="invalid_token""#,
                ));
            }
            ApiError::TokenRefused(refusal) => {
                res.insert_header((
                    header::WWW_AUTHENTICATE,
                    format!(
                        r#"Bearer realm="shiki", error="invalid_token", error_description="{}""#,
                        refusal.reason()
                    ),
                ));
            }
            ApiError::TooManyFailedAttempts { retry_after_secs } => {
                res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            _ => {}
        }
        res.insert_header((header::CACHE_CONTROL, "no-store"))
            .json(self.body())
    }
}

/// JSON body extractor settings: size limit (`limit`, from `api.max_body_bytes`) and JSON
/// errors.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |err, _req: &HttpRequest| json_error(err, limit).into())
}

fn json_error(err: JsonPayloadError, limit: usize) -> ApiError {
    match err {
        JsonPayloadError::OverflowKnownLength { .. }
        | JsonPayloadError::Overflow { .. }
        | JsonPayloadError::Payload(PayloadError::Overflow) => ApiError::PayloadTooLarge {
            limit: limit as u64,
            setting: BODY_LIMIT_KEY,
        },
        JsonPayloadError::ContentType => {
            ApiError::InvalidBody("Content-Type must be application/json".into())
        }
        JsonPayloadError::Deserialize(e) => ApiError::InvalidBody(e.to_string()),
        other => ApiError::InvalidBody(other.to_string()),
    }
}

/// Query string extractor settings.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req: &HttpRequest| {
        ApiError::InvalidParameter {
            parameter: "query",
            reason: err.to_string(),
        }
        .into()
    })
}

/// Path extractor settings.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err: PathError, _req: &HttpRequest| {
        ApiError::InvalidParameter {
            parameter: "path",
            reason: err.to_string(),
        }
        .into()
    })
}
