//! `/healthz`, `/metrics`, the OpenAPI document, the web page and JSON fallbacks.

use std::collections::BTreeSet;

use actix_web::http::StatusCode;

use super::*;

#[actix_web::test]
async fn healthz_needs_no_token() {
    let app = app!(state(seeded()));
    let res = send!(app, req("GET", "/healthz", None));
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json["status"], "ok");
}

#[actix_web::test]
async fn public_routes_answer_without_a_token() {
    let app = app!(state(seeded()));
    for (method, path) in PUBLIC_ROUTES {
        let res = send!(app, req(method, path, None));
        assert_eq!(res.status, StatusCode::OK, "{method} {path}");
    }
    // Without [auth.oidc]: no single sign-on offered, its routes say how to set it up.
    let res = send!(app, req("GET", "/auth/session", None));
    assert_eq!(res.json["sso"], false);
    for (method, path) in SSO_ROUTES {
        let res = send!(app, req(method, path, None));
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert!(
            res.json["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("auth.oidc.client_id"))
        );
    }
}

/// A small checker of the Prometheus text format (0.0.4): every sample belongs to a family
/// declared by a preceding `# TYPE`, counters end in `_total`, values parse as floats,
/// label sets are well formed.
fn check_prometheus(text: &str) -> BTreeSet<String> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                ["counter", "gauge", "summary", "histogram", "untyped"].contains(&kind),
                "{line}"
            );
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter without _total: {name}");
            }
            assert!(
                types.insert(name.into(), kind.into()).is_none(),
                "duplicate TYPE {name}"
            );
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment {line}");
        let (series, value) = line.rsplit_once(' ').expect("sample value");
        value
            .parse::<f64>()
            .map_err(|e| format!("{line}: {e}"))
            .expect("float value");
        let name = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').expect("closing brace");
                for pair in labels.split(',') {
                    let (k, v) = pair.split_once('=').expect("label k=v");
                    assert!(
                        k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "{line}"
                    );
                    assert!(
                        v.starts_with('"') && v.ends_with('"') && v.len() >= 2,
                        "{line}"
                    );
                }
                name
            }
            None => series,
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        let family = ["_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|k| k == "summary"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample before its TYPE: {line}");
        samples.insert(name.to_owned());
    }
    samples
}

#[actix_web::test]
async fn metrics_are_prometheus_text() {
    let backend = seeded();
    {
        let mut d = backend.data();
        d.metrics = MetricsSnapshot {
            devices: 2,
            devices_online: 1,
            ingest_messages_total: BTreeMap::from([
                ("telemetry".into(), 120),
                ("shadow/reported".into(), 3),
            ]),
            ingest_samples_total: 118,
            ingest_rate_per_second: 4.5,
            dedup_dropped_total: 2,
            malformed_dropped_total: 1,
            verifications_total: BTreeMap::from([
                (VerificationOutcome::Verified, 7),
                (VerificationOutcome::Failed, 1),
            ]),
            verifications_pending: 2,
            store_commit: LatencySummary {
                count: 40,
                sum_seconds: 0.02,
                quantiles: vec![(0.5, 0.0004), (0.99, 0.003)],
            },
            store_commit_failures_total: 3,
            ingest_unstored_total: 12,
            ingest_implausible_time_total: 4,
            store_quarantined_rows_total: 1,
            mqtt_connections_refused_total: BTreeMap::from([
                ("unknown_device".into(), 4),
                ("wrong_password".into(), 2),
            ]),
            mqtt_connections_accepted_total: 9,
            mqtt_publishes_refused_total: 1,
            mqtt_subscriptions_refused_total: 3,
            mqtt_devices_connected: 2,
            store_fenced_total: 5,
            cluster_leases: 11,
        };
    }
    let app = app!(state(backend));
    send!(app, req("GET", "/api/v1/devices", None)); // one refused request
    let res = send!(app, req("GET", "/metrics", None));
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        res.header("content-type")
            .starts_with("text/plain; version=0.0.4")
    );
    let text = res.text();
    let names = check_prometheus(text);
    for name in [
        "shiki_devices",
        "shiki_devices_online",
        "shiki_ingest_messages_total",
        "shiki_ingest_messages_per_second",
        "shiki_ingest_dedup_dropped_total",
        "shiki_ingest_malformed_dropped_total",
        "shiki_verifications_total",
        "shiki_store_commit_seconds",
        "shiki_store_commit_seconds_count",
        "shiki_store_commit_failures_total",
        "shiki_ingest_unstored_total",
        "shiki_ingest_implausible_time_total",
        "shiki_store_quarantined_rows_total",
        "shiki_api_auth_failures_total",
        "shiki_mqtt_connections_refused_total",
        "shiki_mqtt_connections_accepted_total",
        "shiki_mqtt_publishes_refused_total",
        "shiki_mqtt_subscriptions_refused_total",
        "shiki_mqtt_devices_connected",
    ] {
        assert!(names.contains(name), "{name} missing:\n{text}");
    }
    assert!(text.contains("shiki_devices_online 1\n"), "{text}");
    assert!(
        text.contains("shiki_verifications_total{outcome=\"verified\"} 7\n"),
        "{text}"
    );
    assert!(text.contains("shiki_ingest_messages_total{channel=\"shadow/reported\"} 3\n"));
    assert!(text.contains("shiki_store_commit_seconds{quantile=\"0.99\"} 0.003\n"));
    assert!(text.contains("shiki_api_auth_failures_total 1\n"), "{text}");
    assert!(
        text.contains("shiki_store_commit_failures_total 3\n"),
        "{text}"
    );
    assert!(text.contains("shiki_ingest_unstored_total 12\n"), "{text}");
    assert!(
        text.contains("shiki_ingest_implausible_time_total 4\n"),
        "{text}"
    );
    assert!(
        text.contains("shiki_mqtt_connections_refused_total{reason=\"wrong_password\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("shiki_mqtt_subscriptions_refused_total 3\n"),
        "{text}"
    );
    assert!(
        text.contains("shiki_store_quarantined_rows_total 1\n"),
        "{text}"
    );
    assert!(text.contains("shiki_store_fenced_total 5\n"), "{text}");
    assert!(text.contains("shiki_cluster_leases 11\n"), "{text}");
    assert!(
        text.contains("shiki_api_responses_total{class=\"4xx\"} 1\n"),
        "{text}"
    );
}

#[actix_web::test]
async fn openapi_document_parses_and_describes_every_route() {
    let app = app!(state(seeded()));
    let res = send!(app, req("GET", "/api/v1/openapi.json", Some(VIEWER)));
    assert_eq!(res.status, StatusCode::OK);
    let doc = &res.json;
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "openapi version"
    );
    assert!(doc["info"]["title"].is_string());
    let paths = doc["paths"].as_object().expect("paths");
    for route in ROUTES {
        let op = &paths
            .get(route.template)
            .unwrap_or_else(|| panic!("{} missing from openapi", route.template))
            [route.method.to_lowercase()];
        assert!(
            op.is_object(),
            "{} {} missing",
            route.method,
            route.template
        );
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.contains_key(&route.ok.to_string()),
            "{} {}",
            route.method,
            route.template
        );
        assert!(
            responses.contains_key("401"),
            "{} {} lacks 401",
            route.method,
            route.template
        );
        if route.role != Role::Viewer {
            assert!(
                responses.contains_key("403"),
                "{} {} lacks 403",
                route.method,
                route.template
            );
        }
    }
    for (method, path) in PUBLIC_ROUTES
        .iter()
        .chain(SIGNED_ROUTES)
        .filter(|(_, p)| !p.ends_with(".js") && !p.ends_with(".css"))
    {
        assert!(
            paths
                .get(*path)
                .is_some_and(|p| p[method.to_lowercase()].is_object()),
            "{path}"
        );
    }
    let patch = &paths["/api/v1/devices/{id}/desired"]["patch"]["responses"];
    for status in ["400", "404", "409", "422"] {
        assert!(patch[status].is_object(), "PATCH desired lacks {status}");
    }
    // Every documented operation is a real route (nothing documented that 404s).
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.template.to_owned(), r.method.to_lowercase()))
        .chain(
            PUBLIC_ROUTES
                .iter()
                .chain(SIGNED_ROUTES)
                .chain(SSO_ROUTES)
                .map(|(m, p)| ((*p).to_owned(), m.to_lowercase())),
        )
        .collect();
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                assert!(
                    routed.contains(&(path.clone(), method.clone())),
                    "{method} {path} documented but not routed"
                );
            }
        }
    }
    // Every $ref resolves.
    let text = res.text();
    for r in text.split("\"$ref\"").skip(1) {
        let target = r.split('"').nth(1).expect("ref target");
        let pointer = target.strip_prefix('#').expect("local ref");
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {target}");
    }
}

#[actix_web::test]
async fn web_page_is_served_and_uses_the_api() {
    let app = app!(state(seeded()));
    let res = send!(app, req("GET", "/", None));
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.header("content-type").starts_with("text/html"));
    assert!(
        res.header("content-security-policy")
            .contains("script-src 'self'")
    );
    assert!(
        res.text()
            .contains("<script type=\"module\" src=\"/app.js\""),
        "page loads app.js"
    );
    // The console's modules, read as the browser gets them.
    let mut js = String::new();
    for path in [
        "/app.js",
        "/lib.js",
        "/fleet.js",
        "/device.js",
        "/chart.js",
        "/schedule.js",
        "/jobs.js",
    ] {
        let res = send!(app, req("GET", path, None));
        assert!(
            res.header("content-type").starts_with("text/javascript"),
            "{path}"
        );
        js.push_str(res.text());
    }
    let js = js.as_str();
    for path in [
        "\"/api/v1\"",
        "\"/devices?\"",
        "/telemetry/series?",
        "/schedule",
        "\"/whoami\"",
        "\"/jobs\"",
        "/cancel",
        "/desired",
        "/history",
        "format=csv",
        "\"PATCH\"",
        "Authorization",
        "Bearer ",
        "\"/auth/session\"",
        "\"/auth/login?return_to=\"",
        "\"/auth/logout\"",
        "X-Shiki-Csrf",
        "end_session_url",
        "login_error",
    ] {
        assert!(js.contains(path), "the console does not use {path}");
    }
    assert!(
        !js.contains("innerHTML"),
        "device data must be inserted as text"
    );
    // Tokens live in the page's memory (or, signed in through the provider, on the server).
    for storage in ["localStorage", "sessionStorage", "document.cookie"] {
        assert!(!js.contains(storage), "the console must not use {storage}");
    }
}

#[actix_web::test]
async fn unknown_routes_outside_api_are_json_404() {
    let app = app!(state(seeded()));
    let res = send!(app, req("GET", "/nothing", None));
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.error_code(), "not_found");
    let res = send!(app, req("POST", "/healthz", None));
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
}

/// Plain HTTP/1.1 over a socket (no client library: reqwest would need a TLS provider).
async fn http_get(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

#[actix_web::test]
async fn server_serves_over_a_real_socket_on_port_zero() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let addr = listener.local_addr().expect("local addr");
    let options = ServerOptions {
        workers: 1,
        ..ServerOptions::default()
    };
    let server = server(listener, state(seeded()), &options).expect("server");
    let handle = server.handle();
    actix_web::rt::spawn(server);

    let health = http_get(addr, "/healthz", None).await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let denied = http_get(addr, "/api/v1/devices", None).await;
    assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
    assert!(
        denied
            .to_ascii_lowercase()
            .contains("www-authenticate: bearer")
    );
    let devices = http_get(addr, "/api/v1/devices", Some(VIEWER)).await;
    assert!(devices.starts_with("HTTP/1.1 200"), "{devices}");
    assert!(devices.contains("plant-01"));

    handle.stop(true).await;
}

#[test]
fn openapi_lists_every_error_code_and_status() {
    let doc: Value = serde_json::from_str(crate::ops::OPENAPI_JSON).expect("openapi parses");
    let codes: Vec<&str> =
        doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
            .as_array()
            .expect("code enum")
            .iter()
            .map(|c| c.as_str().expect("code"))
            .collect();
    let all = [
        ApiError::InvalidBody(String::new()),
        ApiError::InvalidParameter {
            parameter: "from",
            reason: String::new(),
        },
        ApiError::MissingToken,
        ApiError::InvalidToken,
        ApiError::Forbidden {
            name: String::new(),
            required: Role::Admin,
            actual: Role::Viewer,
        },
        ApiError::NotFound(String::new()),
        ApiError::MethodNotAllowed,
        ApiError::VersionConflict {
            expected: 1,
            current: 2,
        },
        ApiError::Conflict(String::new()),
        ApiError::PayloadTooLarge {
            limit: 1,
            setting: crate::BODY_LIMIT_KEY,
        },
        ApiError::TooManyFailedAttempts {
            retry_after_secs: 1,
        },
        ApiError::SignatureRefused(String::new()),
        ApiError::UrlRefused(crate::artifacts::url::UrlRefused::BadSignature),
        ApiError::UrlRefused(crate::artifacts::url::UrlRefused::Expired { at: now() }),
        ApiError::Unprocessable {
            key: String::new(),
            reason: String::new(),
        },
        ApiError::InvalidJob {
            key: String::new(),
            reason: String::new(),
        },
        ApiError::InvalidSchedule {
            problems: Vec::new(),
        },
        ApiError::Unavailable(String::new()),
        ApiError::Internal,
        ApiError::SessionEnded,
        ApiError::Identity(crate::auth::oidc::IdentityError::NoRole {
            name: String::new(),
            claim: String::new(),
            groups: Vec::new(),
        }),
        ApiError::Identity(crate::auth::oidc::IdentityError::BadTenant {
            claim: String::new(),
            reason: String::new(),
        }),
        ApiError::CsrfHeaderMissing,
    ];
    // invalid_token also stands for a refused JWT (with a reason).
    assert_eq!(codes.len(), all.len(), "every code documented once");
    let reasons: Vec<&str> =
        doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["reason"]["enum"]
            .as_array()
            .expect("reason enum")
            .iter()
            .map(|c| c.as_str().expect("reason"))
            .collect();
    use crate::auth::oidc::Refusal;
    for refusal in [
        Refusal::Malformed(String::new()),
        Refusal::AlgNone,
        Refusal::Hmac(String::new()),
        Refusal::UnsupportedAlg(String::new()),
        Refusal::NoKid,
        Refusal::UnknownKid(String::new()),
        Refusal::WrongKeyType {
            alg: String::new(),
            kid: String::new(),
        },
        Refusal::BadSignature,
        Refusal::Expired,
        Refusal::NotYetValid,
        Refusal::WrongIssuer {
            got: String::new(),
            want: String::new(),
        },
        Refusal::WrongAudience {
            got: String::new(),
            want: String::new(),
        },
        Refusal::MissingClaim(String::new()),
    ] {
        let reason = refusal.reason();
        assert!(reasons.contains(&reason), "{reason} not in openapi");
        let e = ApiError::TokenRefused(refusal);
        assert_eq!(e.body()["error"]["reason"], reason);
        assert_eq!(e.code(), "invalid_token");
    }
    assert_eq!(reasons.len(), 13, "every reason documented once");
    for e in &all {
        assert!(codes.contains(&e.code()), "{} not in openapi", e.code());
        let body = e.body();
        assert_eq!(body["error"]["code"], e.code());
        assert!(body["error"]["message"].is_string());
    }
}

/// schemathesis: `GET /api/v1/devices` and the calendar answered 400 for a bad query
/// parameter, which their entries did not list. Every answer any request can get is
/// documented on every operation: 400 where there is a query, 413 everywhere (the body
/// limit holds on every route), and under `/api` the refusals of the authentication
/// (401, 403 for a provider identity without a role, 429 for a locked-out address, 503
/// when the token store cannot answer).
#[test]
fn every_operation_documents_the_answers_any_request_can_get() {
    let doc: Value = serde_json::from_str(crate::ops::OPENAPI_JSON).expect("openapi parses");
    let mut missing = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let has_query = op["parameters"].as_array().is_some_and(|ps| {
                ps.iter().any(|p| {
                    p["in"] == "query"
                        || p["$ref"].as_str().is_some_and(|r| {
                            let name = r.rsplit('/').next().unwrap_or_default();
                            doc["components"]["parameters"][name]["in"] == "query"
                        })
                })
            });
            let authenticated = path.starts_with("/api/") || path == "/metrics";
            let mut wanted = vec!["413"];
            if has_query {
                wanted.push("400");
            }
            if authenticated {
                wanted.extend(["401", "403", "429", "503"]);
            }
            for code in wanted {
                if op["responses"].get(code).is_none() {
                    missing.push(format!("{method} {path}: {code}"));
                }
            }
        }
    }
    assert!(missing.is_empty(), "undocumented answers: {missing:#?}");
    let too_many = &doc["components"]["responses"]["TooManyRequests"];
    assert!(too_many["headers"]["Retry-After"].is_object());
}

/// schemathesis (`unsupported_method`): a 405 had no `Allow` header, which RFC 9110
/// requires. Every documented path answers a method it does not serve with 405 and
/// `Allow` listing exactly its documented methods (the download also serves HEAD).
#[actix_web::test]
async fn a_method_a_route_does_not_serve_is_405_with_its_documented_methods_in_allow() {
    let doc: Value = serde_json::from_str(crate::ops::OPENAPI_JSON).expect("openapi parses");
    let app = app!(state(seeded()));
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let mut documented: Vec<String> = item
            .as_object()
            .expect("path item")
            .keys()
            .filter(|k| *k != "parameters")
            .map(|k| k.to_uppercase())
            .collect();
        if path.starts_with("/ota/") {
            documented.push("HEAD".into());
        }
        documented.sort();
        let uri = path
            .replace("{id}", "plant-01")
            .replace("{name}", "grafana")
            .replace("{version}", "0.2.0")
            .replace("{sha256}", &"0".repeat(64));
        let res = send!(app, req("TRACE", &uri, Some(ADMIN)));
        assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED, "TRACE {path}");
        assert_eq!(res.error_code(), "method_not_allowed");
        let mut allowed: Vec<String> = res
            .header("allow")
            .split(", ")
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect();
        allowed.sort();
        assert_eq!(allowed, documented, "Allow of {path}");
    }
}

/// schemathesis (`negative_data_rejection`): the API treats an empty `state` or `sort`
/// (the console's "all") and a null `expected_version` as absent, where the document
/// allowed neither. The document admits what the API accepts.
#[actix_web::test]
async fn the_document_admits_the_empty_and_null_values_the_api_takes_as_absent() {
    let doc: Value = serde_json::from_str(crate::ops::OPENAPI_JSON).expect("openapi parses");
    let params = doc["paths"]["/api/v1/devices"]["get"]["parameters"]
        .as_array()
        .expect("parameters");
    for name in ["state", "sort"] {
        let p = params.iter().find(|p| p["name"] == name).expect(name);
        let allowed = p["schema"]["enum"].as_array().expect("enum");
        assert!(allowed.contains(&json!("")), "{name}: {allowed:?}");
    }
    let version = &doc["components"]["schemas"]["DesiredPatch"]["properties"]["expected_version"];
    assert_eq!(version["type"], json!(["integer", "null"]));

    let app = app!(state(seeded()));
    let res = send!(
        app,
        req("GET", "/api/v1/devices?state=&sort=", Some(VIEWER))
    );
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.json);
    let res = send!(
        app,
        req("PATCH", "/api/v1/devices/plant-01/desired", Some(OPERATOR))
            .set_json(json!({"settings": {"mode": "heating"}, "expected_version": null}))
    );
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.json);
}

#[actix_web::test]
async fn every_request_example_in_the_openapi_document_is_accepted() {
    let doc: Value = serde_json::from_str(crate::ops::OPENAPI_JSON).expect("openapi parses");
    let mut tried = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let Some(example) = op["requestBody"]["content"]["application/json"]
                .get("example")
                .cloned()
            else {
                continue;
            };
            // A fresh seeded API for each: plant-01 is registered, at desired version 3.
            let app = app!(state(seeded()));
            let uri = path
                .replace("{id}", "plant-01")
                .replace("{name}", "grafana");
            let res = send!(
                app,
                req(&method.to_uppercase(), &uri, Some(ADMIN)).set_json(&example)
            );
            assert!(
                res.status.is_success(),
                "{method} {path} with its example {example}: {} {:?}",
                res.status,
                res.json
            );
            tried += 1;
        }
    }
    assert!(tried >= 4, "only {tried} examples found");
}
