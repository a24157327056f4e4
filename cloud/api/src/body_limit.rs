//! The request body limit: every body above [`ApiConfig::max_body_bytes`] is refused with
//! 413 before the handler or the authentication sees it, except an OTA artifact upload,
//! which streams to disk under its own limit (`ota.max_artifact_mb`, see
//! [`crate::artifacts`]).
//!
//! A body that announces its length is judged by its `Content-Length` without being read;
//! a chunked one is counted as it is read, and reading past the limit fails with
//! `PayloadError::Overflow`, which the JSON extractor answers as 413 (see
//! [`crate::error::json_config`]).
//!
//! [`ApiConfig::max_body_bytes`]: crate::ApiConfig::max_body_bytes

use actix_web::{
    Error, HttpMessage, ResponseError,
    body::{EitherBody, MessageBody},
    dev::{Payload, ServiceRequest, ServiceResponse},
    error::PayloadError,
    http::header::CONTENT_LENGTH,
    middleware::Next,
    web,
};
use futures::StreamExt as _;

use crate::error::BODY_LIMIT_KEY;
use crate::{ApiError, ApiState, artifacts};

/// Middleware (wrap with `actix_web::middleware::from_fn`): see the module docs.
pub(crate) async fn limit_body(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let limit = req
        .app_data::<web::Data<ApiState>>()
        .map(|s| s.max_body_bytes);
    let Some(limit) = limit else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    if artifacts::is_upload(req.method(), req.path()) {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let announced = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        tracing::info!(path = %req.path(), announced, limit, peer = ?req.peer_addr(), "request refused: body too large");
        let res = ApiError::PayloadTooLarge {
            limit: limit as u64,
            setting: BODY_LIMIT_KEY,
        }
        .error_response();
        return Ok(req.into_response(res).map_into_right_body());
    }
    let payload = req.take_payload();
    req.set_payload(counted(payload, limit));
    Ok(next.call(req).await?.map_into_left_body())
}

/// `payload`, failing with `Overflow` once more than `limit` bytes were read.
fn counted(payload: Payload, limit: usize) -> Payload {
    let mut read = 0usize;
    let stream = payload.map(move |chunk| {
        let chunk = chunk?;
        read = read.saturating_add(chunk.len());
        if read > limit {
            Err(PayloadError::Overflow)
        } else {
            Ok(chunk)
        }
    });
    Payload::from(Box::pin(stream) as actix_http::BoxedPayloadStream)
}
