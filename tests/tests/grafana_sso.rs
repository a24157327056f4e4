//! One login for Shiki and Grafana (issue #18): the shipped `deploy/grafana/grafana.ini`
//! signs in at the same issuer as `deploy/cloud.oidc.example.toml` and gives every group of
//! `[auth.oidc.role_map]` the matching Grafana role. Grafana's server cannot run here, so
//! its `role_attribute_path` is evaluated by the reference JMESPath implementation
//! (Python's `jmespath`, which Grafana's go-jmespath follows).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use shiki_cloud::CloudConfig;

fn deploy(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

/// `[section] key = value` with `;` or `#` comments.
fn ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            out.entry(section.clone())
                .or_default()
                .insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    out
}

/// `expr` evaluated on each of `inputs` by Python's jmespath.
fn jmespath(expr: &str, inputs: &[Value]) -> Vec<Value> {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, json, jmespath\n\
             print(json.dumps([jmespath.search(sys.argv[1], c) for c in json.load(sys.stdin)]))",
            expr,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(Value::from(inputs.to_vec()).to_string().as_bytes())
            .expect("write claims");
    }
    let out = child.wait_with_output().expect("python3 finishes");
    assert!(
        out.status.success(),
        "python3 jmespath failed (pip install jmespath; .ci/run does): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON list")
}

fn grafana_role(shiki: &str) -> &'static str {
    match shiki {
        "admin" => "Admin",
        "operator" => "Editor",
        "viewer" => "Viewer",
        other => panic!("unknown Shiki role {other}"),
    }
}

#[test]
fn grafana_signs_in_at_the_same_issuer_with_the_same_group_mapping() {
    let shiki = CloudConfig::load(&deploy("cloud.oidc.example.toml")).expect("example parses");
    let oidc = shiki.auth.oidc.expect("[auth.oidc]");
    let grafana =
        ini(&std::fs::read_to_string(deploy("grafana/grafana.ini")).expect("grafana.ini"));
    let oauth = &grafana["auth.generic_oauth"];

    // The same provider: every endpoint Grafana calls is the issuer's.
    assert_eq!(oauth["enabled"], "true");
    let issuer = format!("{}/", oidc.issuer.trim_end_matches('/'));
    for key in ["auth_url", "token_url", "api_url"] {
        assert!(
            oauth[key].starts_with(&issuer),
            "{key} = {} is not under {issuer}",
            oauth[key]
        );
    }
    assert!(grafana["auth"]["signout_redirect_url"].starts_with(&issuer));
    assert_eq!(oauth["use_pkce"], "true");
    assert_eq!(oauth["role_attribute_strict"], "true");
    // The same claims.
    assert_eq!(oauth["groups_attribute_path"], oidc.roles_claim);
    assert_eq!(oauth["login_attribute_path"], oidc.name_claim);
    assert!(oauth["scopes"].split_whitespace().any(|s| s == "openid"));
    for scope in &oidc.scopes {
        assert!(
            oauth["scopes"].split_whitespace().any(|s| s == scope),
            "Grafana does not ask for scope {scope} the web page asks for"
        );
    }

    // The same mapping: each group alone, the strongest of several, none, and customers.
    let expr = &oauth["role_attribute_path"];
    let tenant_claim = oidc
        .tenant_claim
        .clone()
        .expect("tenant_claim in the example");
    let mut cases: Vec<(Value, Option<&str>)> = oidc
        .role_map
        .iter()
        .map(|(group, role)| {
            (
                json!({ "groups": [group] }),
                Some(grafana_role(role.as_str())),
            )
        })
        .collect();
    let all: Vec<&String> = oidc.role_map.keys().collect();
    let strongest = oidc.role_map.values().max().expect("a role");
    cases.push((
        json!({ "groups": all }),
        Some(grafana_role(strongest.as_str())),
    ));
    cases.push((json!({ "groups": ["marketing"] }), None));
    cases.push((json!({ "groups": [] }), None));
    cases.push((json!({ "sub": "no-groups-claim" }), None));
    for group in oidc.role_map.keys() {
        cases.push((
            json!({ "groups": [group], tenant_claim.clone(): "acme" }),
            None,
        ));
    }
    let inputs: Vec<Value> = cases.iter().map(|(c, _)| c.clone()).collect();
    let roles = jmespath(expr, &inputs);
    for ((claims, want), got) in cases.iter().zip(&roles) {
        match want {
            Some(role) => assert_eq!(got, &json!(role), "claims {claims}"),
            // Not a role name: with role_attribute_strict Grafana refuses the sign-in.
            None => assert!(
                !got.as_str().is_some_and(|r| [
                    "Admin",
                    "Editor",
                    "Viewer",
                    "None",
                    "GrafanaAdmin"
                ]
                .contains(&r)),
                "claims {claims} must get no Grafana role, got {got}"
            ),
        }
    }
}
