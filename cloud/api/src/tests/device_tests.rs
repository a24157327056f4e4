//! Device routes: happy paths, ordering, CSV, and every error.

use actix_web::http::StatusCode;
use serde_json::json;

use super::*;

fn patch(body: Value, token: &str) -> TestRequest {
    req("PATCH", "/api/v1/devices/plant-01/desired", Some(token)).set_json(body)
}

#[actix_web::test]
async fn lists_devices_sorted_with_summary_fields() {
    let app = app!(state(seeded()));
    let res = send!(app, req("GET", "/api/v1/devices", Some(VIEWER)));
    assert_eq!(res.status, StatusCode::OK);
    let devices = res.json["devices"].as_array().expect("devices array");
    assert_eq!(devices.len(), 2);
    assert_eq!(devices[0]["id"], "plant-01");
    assert_eq!(devices[0]["online"], true);
    assert_eq!(devices[0]["shadow_version"], 3);
    assert_eq!(devices[0]["pending_verifications"], 0);
    assert!(devices[0]["last_seen"].is_string());
    assert!(devices[0]["state_since"].is_string(), "{:?}", devices[0]);
    assert_eq!(devices[1]["id"], "plant-02");
    assert_eq!(devices[1]["online"], false);
}

#[actix_web::test]
async fn the_device_list_filters_sorts_and_pages_and_names_tenants() {
    let backend = seeded();
    {
        let mut d = backend.data();
        for i in 3..=12 {
            let v = view(&format!("plant-{i:02}"), i % 2 == 0, false);
            d.devices.insert(v.id.clone(), v);
        }
    }
    let app = app!(state(backend));
    let ids = |res: &crate::testing::Resp| -> Vec<String> {
        res.json["devices"]
            .as_array()
            .expect("devices")
            .iter()
            .map(|d| d["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let res = send!(
        app,
        req("GET", "/api/v1/devices?limit=5&offset=5", Some(VIEWER))
    );
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json["total"], 12);
    assert_eq!(
        ids(&res),
        ["plant-06", "plant-07", "plant-08", "plant-09", "plant-10"]
    );
    let res = send!(
        app,
        req("GET", "/api/v1/devices?state=offline", Some(VIEWER))
    );
    assert!(
        ids(&res)
            .iter()
            .all(|id| id != "plant-01" && id != "plant-04")
    );
    assert_eq!(res.json["total"], 6);
    // The tenant is searched too, and shown.
    let res = send!(app, req("GET", "/api/v1/devices?q=ACME", Some(VIEWER)));
    assert_eq!(ids(&res), ["plant-01"]);
    assert_eq!(res.json["devices"][0]["tenant"], "acme");
    let res = send!(app, req("GET", "/api/v1/devices?q=plant-1", Some(VIEWER)));
    assert_eq!(ids(&res), ["plant-10", "plant-11", "plant-12"]);
    for bad in [
        "state=sleeping",
        "sort=colour",
        "limit=0",
        "limit=100000",
        "colour=red",
    ] {
        let res = send!(
            app,
            req("GET", &format!("/api/v1/devices?{bad}"), Some(VIEWER))
        );
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[actix_web::test]
async fn telemetry_and_events_give_the_newest_n_and_csv() {
    let app = app!(state(seeded()));
    let seqs = |res: &crate::testing::Resp, field: &str| -> Vec<u64> {
        res.json[field]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r["seq"].as_u64().expect("seq"))
            .collect()
    };
    let res = send!(
        app,
        req(
            "GET",
            "/api/v1/devices/plant-01/telemetry?order=newest_first&limit=2",
            Some(VIEWER)
        )
    );
    assert_eq!(seqs(&res, "samples"), [5, 4]);
    let res = send!(
        app,
        req(
            "GET",
            "/api/v1/devices/plant-01/telemetry?limit=2",
            Some(VIEWER)
        )
    );
    assert_eq!(seqs(&res, "samples"), [1, 2]);
    let res = send!(
        app,
        req(
            "GET",
            "/api/v1/devices/plant-01/events?order=newest_first&limit=1",
            Some(VIEWER)
        )
    );
    assert_eq!(seqs(&res, "events"), [5]);
    let res = send!(
        app,
        req(
            "GET",
            "/api/v1/devices/plant-01/telemetry?order=sideways",
            Some(VIEWER)
        )
    );
    assert_eq!(res.status, StatusCode::BAD_REQUEST);

    let res = send!(
        app,
        req(
            "GET",
            "/api/v1/devices/plant-01/telemetry?format=csv",
            Some(VIEWER)
        )
    );
    assert!(res.header("content-type").starts_with("text/csv"));
    let text = res.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "seq,ts,chw_supply_temp");
    assert_eq!(lines.len(), 6, "{text}");
    assert!(
        lines[1].starts_with("1,") && lines[1].ends_with(",7.0"),
        "{text}"
    );
    let res = send!(
        app,
        req(
            "GET",
            "/api/v1/devices/plant-01/events?format=csv&order=newest_first",
            Some(VIEWER)
        )
    );
    let text = res.text();
    assert!(
        text.starts_with("seq,ts,kind,severity,message,data\r\n5,"),
        "{text}"
    );
    assert!(text.contains(",setting_applied,info,event 5,"), "{text}");
}

#[actix_web::test]
async fn shows_one_device_with_shadow_and_catalog() {
    let app = app!(state(seeded()));
    let res = send!(app, req("GET", "/api/v1/devices/plant-01", Some(VIEWER)));
    assert_eq!(res.status, StatusCode::OK);
    for field in ["desired", "reported", "delta", "metadata"] {
        assert!(res.json[field].is_object(), "{field}");
    }
    assert_eq!(res.json["version"], 3);
    assert_eq!(res.json["reported"]["mode"], "cooling");
    assert_eq!(res.json["catalog"]["points"][0]["name"], "chw_setpoint_c");
}

#[actix_web::test]
async fn unknown_device_is_404_and_invalid_id_is_400_on_every_device_route() {
    let app = app!(state(seeded()));
    for suffix in ["", "/history", "/telemetry", "/events"] {
        let res = send!(
            app,
            req(
                "GET",
                &format!("/api/v1/devices/nope{suffix}"),
                Some(VIEWER)
            )
        );
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{suffix}");
        assert_eq!(res.error_code(), "not_found");
        assert!(
            res.json["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("nope")
        );

        let res = send!(
            app,
            req(
                "GET",
                &format!("/api/v1/devices/bad.id%20x{suffix}"),
                Some(VIEWER)
            )
        );
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{suffix}");
        assert_eq!(res.json["error"]["parameter"], "id");
    }
    let res = send!(
        app,
        req("PATCH", "/api/v1/devices/nope/desired", Some(OPERATOR))
            .set_json(json!({"settings": {"mode": "heating"}}))
    );
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn operator_changes_desired_and_history_records_who() {
    let backend = seeded();
    let app = app!(state(backend.clone()));
    let until = "2026-11-24T06:00:00+09:00";
    let res = send!(
        app,
        patch(
            json!({"settings": {"chw_setpoint_c": 8.5}, "expected_version": 3, "until": until, "comment": "cold snap"}),
            OPERATOR
        )
    );
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.json, json!({"version": 4}));

    let res = send!(
        app,
        req("GET", "/api/v1/devices/plant-01/history", Some(VIEWER))
    );
    let newest = &res.json["history"][0];
    assert_eq!(newest["key"], "chw_setpoint_c");
    assert_eq!(newest["new"], 8.5);
    assert_eq!(newest["version"], 4);
    assert_eq!(newest["comment"], "cold snap");
    assert_eq!(
        newest["actor"],
        json!({"kind": "api_key", "name": "operator", "role": "operator"})
    );
    assert_eq!(newest["verification"]["outcome"], "pending");
    let (_, passed, actor) = backend.data().last_patch.clone().expect("patch passed on");
    assert_eq!(passed.until, Some(now() + Duration::hours(9)));
    assert_eq!(passed.expected_version, Some(3));
    assert_eq!(passed.comment.as_deref(), Some("cold snap"));
    assert_eq!(actor, Author::api_key("operator", Role::Operator));
    assert_eq!(res.header("cache-control"), "no-store");
    assert_eq!(
        backend.data().devices[&dev("plant-01")].desired["chw_setpoint_c"],
        8.5
    );
}

#[actix_web::test]
async fn stale_expected_version_is_409_with_current_version() {
    let app = app!(state(seeded()));
    let res = send!(
        app,
        patch(
            json!({"settings": {"mode": "heating"}, "expected_version": 2}),
            OPERATOR
        )
    );
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert_eq!(res.error_code(), "version_conflict");
    assert_eq!(res.json["error"]["current_version"], 3);
    assert_eq!(res.json["error"]["expected_version"], 2);
}

#[actix_web::test]
async fn refused_settings_are_422_naming_the_key() {
    let app = app!(state(seeded()));
    for (settings, key) in [
        (json!({"no_such_point": 1}), "no_such_point"),
        (json!({"chw_supply_temp": 7.0}), "chw_supply_temp"),
        (json!({"chw_setpoint_c": 99.0}), "chw_setpoint_c"),
        (json!({"mode": "turbo"}), "mode"),
    ] {
        let res = send!(app, patch(json!({ "settings": settings }), OPERATOR));
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{key}");
        assert_eq!(res.error_code(), "unprocessable_setting");
        assert_eq!(res.json["error"]["key"], key);
    }
    // No catalog yet: nothing can be validated, so nothing is accepted.
    let res = send!(
        app,
        req("PATCH", "/api/v1/devices/plant-02/desired", Some(OPERATOR))
            .set_json(json!({"settings": {"mode": "heating"}}))
    );
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[actix_web::test]
async fn malformed_patch_bodies_are_400_with_json_errors() {
    let app = app!(state(seeded()));
    let raw = |body: &'static str, ct: &'static str| {
        req("PATCH", "/api/v1/devices/plant-01/desired", Some(OPERATOR))
            .insert_header(("Content-Type", ct))
            .set_payload(body)
    };
    let cases = [
        raw("{not json", "application/json"),
        raw("[]", "application/json"),
        raw(r#"{"settings": {"mode": "heating"}}"#, "text/plain"),
        raw(r#"{"setting": {"mode": "heating"}}"#, "application/json"),
        raw(r#"{"settings": {}}"#, "application/json"),
        raw(
            r#"{"settings": {"mode": "heating"}, "until": "tomorrow"}"#,
            "application/json",
        ),
        raw(
            r#"{"settings": {"mode": "heating"}, "until": "2020-01-01T00:00:00Z"}"#,
            "application/json",
        ),
        raw(
            r#"{"settings": {"mode": "heating"}, "expected_version": -1}"#,
            "application/json",
        ),
        raw("", "application/json"),
    ];
    for (i, r) in cases.into_iter().enumerate() {
        let res = send!(app, r);
        assert_eq!(
            res.status,
            StatusCode::BAD_REQUEST,
            "case {i}: {:?}",
            res.body
        );
        assert_eq!(res.error_code(), "invalid_body", "case {i}");
    }
    // An until without its zone says what to write, not serde's "premature end of input".
    let res = send!(
        app,
        raw(
            r#"{"settings": {"mode": "heating"}, "until": "2026-12-24T18:00"}"#,
            "application/json",
        )
    );
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let message = res.json["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("RFC 3339 instant with an offset") && message.contains("+09:00"),
        "{message}"
    );
    let huge = format!(
        r#"{{"settings": {{"mode": "heating"}}, "comment": "{}"}}"#,
        "x".repeat(crate::DEFAULT_MAX_BODY_BYTES)
    );
    let res = send!(app, raw("", "application/json").set_payload(huge));
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.error_code(), "payload_too_large");
}

#[actix_web::test]
async fn null_removes_a_desired_key() {
    let backend = seeded();
    let app = app!(state(backend.clone()));
    send!(
        app,
        patch(json!({"settings": {"mode": "heating"}}), OPERATOR)
    );
    let res = send!(app, patch(json!({"settings": {"mode": null}}), OPERATOR));
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        !backend.data().devices[&dev("plant-01")]
            .desired
            .contains_key("mode")
    );
}

#[actix_web::test]
async fn history_is_newest_first_and_filtered_by_range() {
    let app = app!(state(seeded()));
    let res = send!(
        app,
        req("GET", "/api/v1/devices/plant-01/history", Some(VIEWER))
    );
    assert_eq!(res.status, StatusCode::OK);
    let ts: Vec<&str> = res.json["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|e| e["ts"].as_str().expect("ts"))
        .collect();
    assert_eq!(ts.len(), 3);
    assert!(ts.windows(2).all(|w| w[0] >= w[1]), "{ts:?}");

    let res = send!(
        app,
        req(
            "GET",
            "/api/v1/devices/plant-01/history?from=2026-11-23T10:05:00Z&to=2026-11-23T19:15:00%2B09:00",
            Some(VIEWER)
        )
    );
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json["history"].as_array().map(Vec::len), Some(1));
    assert_eq!(res.json["history"][0]["key"], "mode");
}

#[actix_web::test]
async fn history_exports_csv_with_quoting() {
    let backend = seeded();
    backend.data().history.push((
        dev("plant-01"),
        history_entry(50, "mode", Some("said \"hot\", then\nleft")),
    ));
    backend
        .data()
        .history
        .push((dev("plant-01"), history_entry(55, "mode", Some("=1+1"))));
    let app = app!(state(backend));
    let res = send!(
        app,
        req(
            "GET",
            "/api/v1/devices/plant-01/history?format=csv",
            Some(VIEWER)
        )
    );
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.header("content-type").starts_with("text/csv"));
    assert!(
        res.header("content-disposition")
            .contains("plant-01-history.csv")
    );
    let text = res.text();
    let mut lines = text.split("\r\n");
    assert_eq!(
        lines.next(),
        Some(
            "ts,side,key,old,new,version,actor_kind,actor_name,actor_role,comment,verification,verification_reason,verification_at"
        )
    );
    assert!(text.contains(",'=1+1,"), "{text}");
    assert!(text.contains("\"said \"\"hot\"\", then\nleft\""), "{text}");
    assert!(
        text.contains(",reported,chw_setpoint_c,7.0,8.5,3,device,plant-01,,"),
        "{text}"
    );
    assert_eq!(text.matches("\r\n").count(), 6, "header + 5 rows");
    // Newest first here too.
    let first_row = text.split("\r\n").nth(1).expect("row");
    assert!(
        first_row.starts_with("2026-11-23T10:55:00Z,"),
        "{first_row}"
    );
}

#[actix_web::test]
async fn telemetry_is_oldest_first_and_limited() {
    let app = app!(state(seeded()));
    let res = send!(
        app,
        req(
            "GET",
            "/api/v1/devices/plant-01/telemetry?limit=3",
            Some(VIEWER)
        )
    );
    assert_eq!(res.status, StatusCode::OK);
    let seqs: Vec<u64> = res.json["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .map(|s| s["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(res.json["limit"], 3);
    assert_eq!(res.json["samples"][0]["values"]["chw_supply_temp"], 7.0);

    let res = send!(
        app,
        req(
            "GET",
            "/api/v1/devices/plant-01/telemetry?limit=99999999",
            Some(VIEWER)
        )
    );
    assert_eq!(res.json["limit"], MAX_LIMIT);
    let res = send!(
        app,
        req("GET", "/api/v1/devices/plant-01/telemetry", Some(VIEWER))
    );
    assert_eq!(res.json["limit"], DEFAULT_LIMIT);
    let res = send!(
        app,
        req(
            "GET",
            "/api/v1/devices/plant-01/telemetry?from=2026-11-23T11:04:00Z",
            Some(VIEWER)
        )
    );
    assert_eq!(res.json["samples"].as_array().map(Vec::len), Some(2));
}

#[actix_web::test]
async fn events_are_listed_oldest_first() {
    let app = app!(state(seeded()));
    let res = send!(
        app,
        req(
            "GET",
            "/api/v1/devices/plant-01/events?limit=2",
            Some(VIEWER)
        )
    );
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json["events"][0]["seq"], 1);
    assert_eq!(res.json["events"][1]["kind"], "setting_applied");
    assert_eq!(res.json["events"].as_array().map(Vec::len), Some(2));
}

#[actix_web::test]
async fn bad_query_parameters_are_400_naming_the_parameter() {
    let app = app!(state(seeded()));
    for (query, parameter) in [
        ("from=yesterday", "from"),
        ("to=2026-02-30T00:00:00Z", "to"),
        ("from=2026-11-24T00:00:00Z&to=2026-11-23T00:00:00Z", "from"),
        ("limit=ten", "limit"),
        ("limit=0", "limit"),
        ("format=xml", "format"),
        ("from=a&from=b", "query"),
    ] {
        for route in ["history", "telemetry", "events"] {
            if parameter == "format" && route != "history" {
                continue;
            }
            let path = format!("/api/v1/devices/plant-01/{route}?{query}");
            let res = send!(app, req("GET", &path, Some(VIEWER)));
            assert_eq!(res.status, StatusCode::BAD_REQUEST, "{path}");
            assert_eq!(res.error_code(), "invalid_parameter");
            assert_eq!(res.json["error"]["parameter"], parameter, "{path}");
        }
    }
}

#[actix_web::test]
async fn wrong_method_is_json_405() {
    let app = app!(state(seeded()));
    let res = send!(app, req("PUT", "/api/v1/devices", Some(ADMIN)));
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.error_code(), "method_not_allowed");
    let res = send!(
        app,
        req("PUT", "/api/v1/devices/plant-01/desired", Some(ADMIN))
    );
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[actix_web::test]
async fn backend_outage_is_503_json() {
    let backend = seeded();
    let app = app!(state_with(
        backend.clone(),
        ApiConfig {
            auth: crate::auth::AuthConfig {
                admin_token: Some(ENV_ADMIN.into()),
                oidc: None,
            },
            ..ApiConfig::default()
        }
    ));
    backend
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let res = send!(app, req("GET", "/api/v1/devices", Some(ENV_ADMIN)));
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.error_code(), "unavailable");
}
