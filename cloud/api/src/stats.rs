//! The API's own counters (requests by status class, refused authentications, lockouts of
//! addresses that failed too often), exported
//! on `/metrics` beside the backend's figures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::{
    Error,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::StatusCode,
    middleware::Next,
    web,
};

use super::ApiState;

/// Counters; shared by every worker.
#[derive(Debug, Default)]
pub(crate) struct ApiStats {
    /// Responses by status class: index 0 = 1xx ... 4 = 5xx.
    responses: [AtomicU64; 5],
    auth_failures: AtomicU64,
    /// Requests refused with 429 because their address was locked out.
    auth_rate_limited: AtomicU64,
    /// Lockouts started.
    auth_lockouts: AtomicU64,
}

impl ApiStats {
    pub(crate) fn response(&self, status: StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn auth_failure(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn auth_rate_limited(&self) {
        self.auth_rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn auth_lockout(&self) {
        self.auth_lockouts.fetch_add(1, Ordering::Relaxed);
    }

    /// `("2xx", n)` pairs.
    pub(crate) fn responses(&self) -> [(&'static str, u64); 5] {
        let get = |i: usize| self.responses[i].load(Ordering::Relaxed);
        [
            ("1xx", get(0)),
            ("2xx", get(1)),
            ("3xx", get(2)),
            ("4xx", get(3)),
            ("5xx", get(4)),
        ]
    }

    pub(crate) fn auth_failures(&self) -> u64 {
        self.auth_failures.load(Ordering::Relaxed)
    }

    pub(crate) fn auth_rate_limited_total(&self) -> u64 {
        self.auth_rate_limited.load(Ordering::Relaxed)
    }

    pub(crate) fn auth_lockouts_total(&self) -> u64 {
        self.auth_lockouts.load(Ordering::Relaxed)
    }
}

/// Middleware: counts every response and logs it at debug level.
pub(crate) async fn count(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let stats = req
        .app_data::<web::Data<ApiState>>()
        .map(|s| s.stats.clone());
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let res = next.call(req).await?;
    if let Some(stats) = stats {
        stats.response(res.status());
    }
    tracing::debug!(%method, %path, status = res.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "api request");
    Ok(res)
}
