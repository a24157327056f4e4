//! Helpers for tests that drive the API app without a socket (feature `test-support`, and
//! this crate's own tests). Not part of the production API.

use actix_web::{
    body::{MessageBody, to_bytes},
    dev::{Service, ServiceResponse},
    http::{StatusCode, header::HeaderMap},
    test::TestRequest,
    web::Bytes,
};
use serde_json::Value;

/// A request with `method`, `path` and, when given, `Authorization: Bearer <token>`.
pub fn req(method: &str, path: &str, token: Option<&str>) -> TestRequest {
    let method = actix_web::http::Method::from_bytes(method.as_bytes()).expect("test method");
    let r = TestRequest::default().method(method).uri(path);
    match token {
        Some(t) => r.insert_header(("Authorization", format!("Bearer {t}"))),
        None => r,
    }
}

/// Sends `req` to an app made with `actix_web::test::init_service` and reads the answer.
pub async fn call<S, B>(app: &S, req: TestRequest) -> Resp
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    Resp::read(actix_web::test::call_service(app, req.to_request()).await).await
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The body as JSON, or `Null` when it is not JSON.
    pub json: Value,
}

impl Resp {
    /// Reads a response whole.
    pub async fn read<B: MessageBody>(res: ServiceResponse<B>) -> Resp {
        let status = res.status();
        let headers = res.headers().clone();
        let body = to_bytes(res.into_body()).await.ok().unwrap_or_default();
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            json,
        }
    }

    /// The body as text (panics when it is not UTF-8).
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }

    /// A header's value, or `""`.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts an error response with the documented JSON body and returns its code.
    pub fn error_code(&self) -> &str {
        let err = &self.json["error"];
        assert!(
            err["message"].is_string(),
            "no JSON error body: {} {:?}",
            self.status,
            self.body
        );
        err["code"].as_str().expect("error code")
    }
}
