//! The API on a node of a cluster: `GET /api/v1/cluster`, and requests for a device owned
//! by another node forwarded to that node (the owner applies changes; its answer is passed
//! back as it is), as are the OTA jobs' requests to the node that drives the jobs (holds
//! the jobs lease). A forwarded request carries `Shiki-Forwarded-By` and is never
//! forwarded again: a node that receives one for a device it does not own (jobs it does
//! not drive) answers 503, as it does when nobody holds the lease (a node failed; another
//! takes it within the lease time).

use std::sync::OnceLock;
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::{StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, web};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;
use shiki_proto::DeviceId;

use crate::ApiState;
use crate::auth::CanRead;
use crate::error::ApiError;

/// Header a node sets on a request it forwards to the device's owner.
pub const FORWARDED_BY: &str = "shiki-forwarded-by";

/// Header naming the node that served a device's request (its owner).
pub const SERVED_BY: &str = "shiki-node";

/// Where a device's requests (or the jobs') are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceOwner {
    /// This process (always, outside a cluster).
    Here,
    /// Another live node: its name and its API's base URL.
    Node { node_id: String, api_url: String },
    /// Nobody holds the device's shard (the jobs lease) right now.
    Nobody,
}

/// `GET /api/v1/cluster`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterStatus {
    /// The node that answered.
    pub node_id: String,
    pub nodes: Vec<ClusterNodeStatus>,
}

/// One node of [`ClusterStatus`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterNodeStatus {
    pub node_id: String,
    /// Devices whose actors run there now.
    pub devices: u32,
    /// Shard leases it holds.
    pub leases: u32,
    /// It holds the jobs lease: it drives the OTA jobs (always, outside a cluster).
    pub drives_jobs: bool,
    pub last_seen: DateTime<Utc>,
    /// Seen within the lease time.
    pub live: bool,
    pub api_url: String,
}

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(crate::ops::resource("/cluster", "GET").route(web::get().to(cluster)));
}

async fn cluster(_auth: CanRead, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let status = state
        .backend
        .cluster()
        .await
        .map_err(|e| ApiError::from_backend(e, || "cluster".into()))?;
    Ok(HttpResponse::Ok().json(status))
}

/// The device a path under `/api/v1/devices/{id}` names (`None`: another route).
fn device_of(path: &str) -> Option<DeviceId> {
    let rest = path.strip_prefix("/api/v1/devices/")?;
    let id = rest.split('/').next()?;
    DeviceId::new(id).ok()
}

/// Whom a request under `/api` is for, on a cluster node.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A path under `/api/v1/devices/{id}`: the device's owner serves it.
    Device(DeviceId),
    /// `/api/v1/jobs` and below: the node driving the OTA jobs serves it.
    Jobs,
}

impl Target {
    /// `None`: any node serves the path.
    fn of(path: &str) -> Option<Self> {
        if path == "/api/v1/jobs" || path.starts_with("/api/v1/jobs/") {
            return Some(Target::Jobs);
        }
        device_of(path).map(Target::Device)
    }

    fn owner(&self, state: &ApiState) -> DeviceOwner {
        match self {
            Target::Device(id) => state.backend.owner(id),
            Target::Jobs => state.backend.jobs_owner(),
        }
    }

    /// The answer while nobody holds the lease.
    fn between_owners(&self) -> String {
        match self {
            Target::Device(id) => format!(
                "device {id} is between owners (a cloud node stopped or joined); retry in a few seconds"
            ),
            Target::Jobs => "the OTA jobs are between cloud nodes (the node driving them stopped or another joined); retry in a few seconds".to_owned(),
        }
    }

    /// The answer to a forwarded request that reached a node that is not the owner.
    fn owned_elsewhere(&self, node_id: &str) -> String {
        match self {
            Target::Device(id) => {
                format!("device {id} is owned by node {node_id}, not by this one")
            }
            Target::Jobs => format!("the OTA jobs are driven by node {node_id}, not by this one"),
        }
    }
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default()
    })
}

fn unavailable(detail: String) -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .insert_header((header::RETRY_AFTER, "2"))
        .json(json!({
            "error": "device_moving",
            "message": detail,
        }))
}

/// Middleware on `/api`: serves a device's request here if this node owns the device
/// (the jobs' if it drives them), else forwards it to the owner.
pub(crate) async fn forward(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(target) = Target::of(req.path()) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let Some(state) = req.app_data::<web::Data<ApiState>>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let forwarded = req.headers().contains_key(FORWARDED_BY);
    // A handover (a node failed, joined or left) leaves a device without an owner for up
    // to a round; the request waits for the next one rather than failing.
    let deadline = std::time::Instant::now() + HANDOVER_WAIT;
    let mut body: Option<web::Bytes> = None;
    loop {
        let owner = target.owner(&state);
        let waited_out = std::time::Instant::now() >= deadline;
        match owner {
            DeviceOwner::Here => {
                if let Some(b) = body.take() {
                    // Read for an owner that has since moved here: serve it from the copy.
                    req.set_payload(bytes_payload(b));
                }
                let node = state.backend.node_id();
                let mut res = next.call(req).await?.map_into_boxed_body();
                if let Ok(v) = header::HeaderValue::from_str(&node) {
                    res.headers_mut()
                        .insert(header::HeaderName::from_static(SERVED_BY), v);
                }
                return Ok(res);
            }
            DeviceOwner::Nobody if waited_out => {
                return Ok(req.into_response(unavailable(target.between_owners())));
            }
            DeviceOwner::Node { node_id, .. } if forwarded => {
                // Never forwarded twice: the forwarding node retries with what it knows.
                return Ok(req.into_response(unavailable(target.owned_elsewhere(&node_id))));
            }
            DeviceOwner::Node { node_id, api_url } => {
                let bytes = match &body {
                    Some(b) => b.clone(),
                    None => {
                        let b = read_body(&mut req, state.max_body_bytes).await?;
                        body = Some(b.clone());
                        b
                    }
                };
                let res = proxy(&req, &state, &node_id, &api_url, bytes).await;
                if res.status() != StatusCode::SERVICE_UNAVAILABLE || waited_out {
                    return Ok(req.into_response(res));
                }
            }
            DeviceOwner::Nobody => {}
        }
        actix_web::rt::time::sleep(HANDOVER_POLL).await;
    }
}

/// How long a device's request waits for its shard to get an owner (the jobs' for the
/// jobs lease).
const HANDOVER_WAIT: Duration = Duration::from_secs(6);
const HANDOVER_POLL: Duration = Duration::from_millis(200);

/// The request's body, to send on. `api.max_body_bytes` holds here as on every route: the
/// body limit middleware counts what is read and fails past it.
async fn read_body(req: &mut ServiceRequest, limit: usize) -> Result<web::Bytes, ApiError> {
    let mut body = web::BytesMut::new();
    let mut payload = req.take_payload();
    while let Some(chunk) = payload.next().await {
        match chunk {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(PayloadError::Overflow) => {
                return Err(ApiError::PayloadTooLarge {
                    limit: limit as u64,
                    setting: crate::error::BODY_LIMIT_KEY,
                });
            }
            Err(e) => {
                return Err(ApiError::InvalidBody(format!(
                    "cannot read the request body: {e}"
                )));
            }
        }
    }
    Ok(body.freeze())
}

fn bytes_payload(b: web::Bytes) -> actix_web::dev::Payload {
    let (_, mut payload) = actix_http::h1::Payload::create(true);
    payload.unread_data(b);
    payload.into()
}

/// Sends `req` with `body` to `api_url` and turns the answer into this node's response.
async fn proxy(
    req: &ServiceRequest,
    state: &ApiState,
    node_id: &str,
    api_url: &str,
    body: web::Bytes,
) -> HttpResponse {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or(req.path(), |p| p.as_str());
    let url = format!("{}{}", api_url.trim_end_matches('/'), path_and_query);
    let method = match reqwest::Method::from_bytes(req.method().as_str().as_bytes()) {
        Ok(m) => m,
        Err(_) => return HttpResponse::MethodNotAllowed().finish(),
    };
    let mut out = client().request(method, &url).body(body.to_vec());
    for (name, value) in req.headers() {
        // Hop-by-hop headers and the body's framing are the client's own.
        if matches!(
            name.as_str(),
            "host" | "connection" | "content-length" | "transfer-encoding" | "accept-encoding"
        ) {
            continue;
        }
        out = out.header(name.as_str(), value.as_bytes());
    }
    out = out.header(FORWARDED_BY, state.backend.node_id());
    tracing::debug!(%url, owner = node_id, "forwarding a request to the node that serves it");
    match out.send().await {
        Ok(res) => {
            let status =
                StatusCode::from_u16(res.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut builder = HttpResponse::build(status);
            for (name, value) in res.headers() {
                if matches!(
                    name.as_str(),
                    "content-type"
                        | "content-disposition"
                        | "retry-after"
                        | "www-authenticate"
                        | "location"
                        | SERVED_BY
                ) {
                    builder.insert_header((name.as_str(), value.as_bytes()));
                }
            }
            match res.bytes().await {
                Ok(bytes) => builder.body(bytes),
                Err(e) => bad_gateway(node_id, &e),
            }
        }
        Err(e) => bad_gateway(node_id, &e),
    }
}

fn bad_gateway(node_id: &str, e: &reqwest::Error) -> HttpResponse {
    tracing::warn!(owner = node_id, error = %e, "cannot reach the node that serves the request");
    HttpResponse::BadGateway()
        .insert_header((header::RETRY_AFTER, "2"))
        .json(json!({
            "error": "owner_unreachable",
            "message": format!("the node that serves this request ({node_id}) did not answer: {e}; retry in a few seconds"),
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_under_one_device_name_a_device() {
        assert_eq!(
            device_of("/api/v1/devices/gw-1/desired").map(|d| d.to_string()),
            Some("gw-1".into())
        );
        assert_eq!(
            device_of("/api/v1/devices/gw-1").map(|d| d.to_string()),
            Some("gw-1".into())
        );
        assert_eq!(device_of("/api/v1/devices"), None);
        assert_eq!(device_of("/api/v1/devices/"), None);
        assert_eq!(device_of("/api/v1/jobs/x"), None);
        assert_eq!(device_of("/api/v1/devices/not a device/x"), None);
    }

    #[test]
    fn job_paths_go_to_the_jobs_driver_device_paths_to_the_owner_the_rest_stays() {
        for jobs in [
            "/api/v1/jobs",
            "/api/v1/jobs/ota-1",
            "/api/v1/jobs/ota-1/cancel",
        ] {
            assert_eq!(Target::of(jobs), Some(Target::Jobs), "{jobs}");
        }
        assert_eq!(
            Target::of("/api/v1/devices/gw-1/history"),
            Some(Target::Device(DeviceId::new("gw-1").expect("valid")))
        );
        for any in [
            "/api/v1/jobsx",
            "/api/v1/devices",
            "/api/v1/artifacts",
            "/api/v1/cluster",
        ] {
            assert_eq!(Target::of(any), None, "{any}");
        }
    }
}
