//! The artifact handlers: upload and list under `/api/v1`, signed downloads under `/ota/v1`.

use actix_files::NamedFile;
use actix_web::{
    HttpRequest, HttpResponse,
    http::{Method, header},
    web,
};
use serde::Deserialize;
use serde_json::json;
use shiki_shared::ota::{Manifest, OtaError, check_version};

use super::files::{ReceiveError, Received};
use super::{Artifact, ArtifactPut, Artifacts, SIGNATURE_HEADER};
use crate::auth::{CanAdminister, CanRead};
use crate::ops::resource;
use crate::{ApiError, ApiState, Backend};

/// The config key of the upload limit, named in 413 answers.
const UPLOAD_LIMIT_KEY: &str = "ota.max_artifact_mb";

/// Where uploads go (`/api` + `/v1` + `/artifacts/{version}`).
const UPLOAD_PREFIX: &str = "/api/v1/artifacts/";

/// Whether a request is an artifact upload, which streams to disk under its own limit
/// (`ota.max_artifact_mb`) instead of `api.max_body_bytes`. Judged on the raw path: a
/// percent-encoded one is not exempted, so it gets the smaller limit, never a larger one.
pub(crate) fn is_upload(method: &Method, path: &str) -> bool {
    method == Method::PUT
        && path
            .strip_prefix(UPLOAD_PREFIX)
            .is_some_and(|version| !version.is_empty() && !version.contains('/'))
}

/// Routes under `/api/v1`.
pub(crate) fn configure_api(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/artifacts", "GET").route(web::get().to(list)))
        .service(resource("/artifacts/{version}", "PUT").route(web::put().to(upload)));
}

/// The download route (no token: the signed URL is the credential).
pub(crate) fn configure_public(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource(
            &format!("{}/{{sha256}}", super::url::DOWNLOAD_PATH),
            "GET, HEAD",
        )
        .route(web::get().to(download))
        .route(web::head().to(download)),
    );
}

async fn upload(
    auth: CanAdminister,
    state: web::Data<ApiState>,
    version: web::Path<String>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let artifacts = state.artifact_storage()?;
    let version = version.into_inner();
    check_version(&version).map_err(|e| ApiError::InvalidParameter {
        parameter: "version",
        reason: e.to_string(),
    })?;
    let signature = signature(&req)?;
    let keys = &artifacts.config.trusted_keys;
    if keys.is_empty() {
        return Err(ApiError::SignatureRefused(
            OtaError::NoTrustedKeys.to_string(),
        ));
    }
    let limit = artifacts.config.max_bytes;
    if content_length(&req).is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge {
            limit,
            setting: UPLOAD_LIMIT_KEY,
        });
    }
    let received = artifacts
        .files
        .receive(body, limit)
        .await
        .map_err(receive_error)?;
    let manifest = Manifest {
        version: version.clone(),
        sha256: received.sha256.clone(),
        size: received.size,
    };
    keys.verify(&manifest, &signature)
        .map_err(|e| ApiError::SignatureRefused(e.to_string()))?;
    let record = Artifact {
        version,
        sha256: manifest.sha256,
        size: manifest.size,
        signature,
        uploaded_at: state.now(),
        uploaded_by: auth.caller.name.clone(),
    };
    let outcome = artifacts
        .finish(state.backend.as_ref(), received, record.clone())
        .await?;
    let summary = |a: &Artifact| json!({"version": a.version, "sha256": a.sha256, "size": a.size});
    match outcome {
        ArtifactPut::Created => {
            tracing::info!(version = %record.version, sha256 = %record.sha256, size = record.size,
                by = %record.uploaded_by, "artifact uploaded");
            Ok(HttpResponse::Created().json(summary(&record)))
        }
        ArtifactPut::Unchanged(stored) => Ok(HttpResponse::Ok().json(summary(&stored))),
        ArtifactPut::Conflict(stored) => Err(ApiError::Conflict(format!(
            "artifact version {:?} exists with other content (sha256 {}, {} bytes); upload \
             these bytes under a new version",
            stored.version, stored.sha256, stored.size
        ))),
    }
}

impl Artifacts {
    /// Places the received file and records the version, one upload at a time; a file
    /// this upload placed goes again when the record is refused or fails.
    async fn finish(
        &self,
        backend: &dyn Backend,
        received: Received,
        record: Artifact,
    ) -> Result<ArtifactPut, ApiError> {
        let _one_at_a_time = self.finishing.lock().await;
        let placed = self.files.place(received).await.map_err(|e| {
            tracing::error!(error = %e, "cannot move an upload into the artifacts dir");
            ApiError::Internal
        })?;
        let version = record.version.clone();
        let outcome = backend.put_artifact(record).await;
        let kept = matches!(
            outcome,
            Ok(ArtifactPut::Created | ArtifactPut::Unchanged(_))
        );
        if placed.new
            && !kept
            && let Err(e) = tokio::fs::remove_file(&placed.path).await
        {
            tracing::warn!(error = %e, path = %placed.path.display(), "cannot remove a refused artifact");
        }
        outcome.map_err(|e| ApiError::from_backend(e, || format!("artifact {version:?}")))
    }
}

/// The `Shiki-Signature` header.
fn signature(req: &HttpRequest) -> Result<String, ApiError> {
    let missing = |reason: &str| ApiError::InvalidParameter {
        parameter: SIGNATURE_HEADER,
        reason: reason.to_owned(),
    };
    let value = req.headers().get(SIGNATURE_HEADER).ok_or_else(|| {
        missing("send the base64 signature `shiki-cloud ota sign` printed in this header")
    })?;
    let text = value
        .to_str()
        .map_err(|_| missing("must be base64 text"))?
        .trim();
    if text.is_empty() {
        return Err(missing("is empty: send the base64 signature"));
    }
    Ok(text.to_owned())
}

fn content_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn receive_error(e: ReceiveError) -> ApiError {
    match e {
        ReceiveError::TooLarge { limit } => ApiError::PayloadTooLarge {
            limit,
            setting: UPLOAD_LIMIT_KEY,
        },
        ReceiveError::Broken(reason) => {
            ApiError::InvalidBody(format!("the upload broke off: {reason}"))
        }
        io @ ReceiveError::Io { .. } => {
            tracing::error!(error = %io, "artifact upload failed");
            ApiError::Internal
        }
    }
}

async fn list(_auth: CanRead, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let mut artifacts = state
        .backend
        .artifacts()
        .await
        .map_err(|e| ApiError::from_backend(e, || "artifacts".into()))?;
    artifacts.sort_by(|a, b| {
        b.uploaded_at
            .cmp(&a.uploaded_at)
            .then_with(|| a.version.cmp(&b.version))
    });
    Ok(HttpResponse::Ok().json(json!({ "artifacts": artifacts })))
}

/// The query of a download URL.
#[derive(Debug, Deserialize)]
struct DownloadQuery {
    expires: i64,
    sig: String,
}

async fn download(
    req: HttpRequest,
    state: web::Data<ApiState>,
    sha256: web::Path<String>,
    query: web::Query<DownloadQuery>,
) -> Result<HttpResponse, ApiError> {
    let artifacts = state.artifact_storage()?;
    let sha256 = sha256.into_inner();
    if sha256.len() != 64
        || !sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(ApiError::NotFound(format!(
            "no artifact {sha256:?}: artifacts are named by their lowercase hex SHA-256"
        )));
    }
    artifacts
        .urls()
        .verify(&sha256, query.expires, &query.sig, state.now())
        .map_err(ApiError::UrlRefused)?;
    let file = NamedFile::open(artifacts.path_of(&sha256)).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ApiError::NotFound(format!("artifact {sha256} is not stored on this cloud"))
        } else {
            tracing::error!(error = %e, %sha256, "cannot open an artifact");
            ApiError::Internal
        }
    })?;
    let mut res = file.into_response(&req);
    // The URL is a credential: keep the bytes out of shared caches.
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("private, no-transform"),
    );
    Ok(res)
}
