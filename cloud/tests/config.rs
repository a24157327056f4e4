//! The example configuration in deploy/ parses, and its commented keys are real keys.

use std::path::Path;

use shiki_cloud::{BrokerTarget, CloudConfig};

fn example() -> (String, &'static Path) {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/cloud.example.toml"
    ));
    (
        std::fs::read_to_string(path).expect("example config exists"),
        path,
    )
}

/// The example with its commented keys (`# key = value`) made real.
fn uncomment_keys(text: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => rest.to_owned(),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_example_config_parses_to_the_defaults() {
    let (text, path) = example();
    let c = CloudConfig::load(path).expect("example parses");
    let d = CloudConfig::default();
    assert_eq!(c.data_dir, d.data_dir);
    assert_eq!(c.mqtt.listen, d.mqtt.listen);
    assert_eq!(c.verification.attempts, 5);
    assert_eq!(c.notifier.offline_after, d.notifier.offline_after);
    assert!(text.contains("[notifier]"));
    assert!(text.contains("[schedule]"));
    assert!(text.contains("[ota]"));
    assert_eq!(c.ota.url_ttl, d.ota.url_ttl);
    assert_eq!(c.ota.max_artifact_mb, d.ota.max_artifact_mb);
    assert_eq!(c.schedule.yearly_push_cron, d.schedule.yearly_push_cron);
    assert_eq!(c.schedule.timezone, d.schedule.timezone);
    assert_eq!(c.schedule.first_retry, d.schedule.first_retry);
    assert_eq!(c.schedule.max_retry, d.schedule.max_retry);
    assert_eq!(
        c.schedule.alert_after_attempts,
        d.schedule.alert_after_attempts
    );
}

#[test]
fn the_commented_keys_parse_when_uncommented() {
    let (text, path) = example();
    let uncommented = uncomment_keys(&text);
    let c = CloudConfig::parse(&uncommented, path).expect("uncommented example parses");
    assert_eq!(
        c.broker().expect("broker"),
        BrokerTarget::External {
            host: "broker.example.com".into(),
            port: 8883,
            tls: true
        }
    );
    assert!(c.notifier.webhook_url.is_some());
    assert!(c.mqtt.cert_file.is_some());
    assert!(!c.ota.trusted_keys().expect("example key").is_empty());
    assert_eq!(
        c.api.public_url("127.0.0.1:1".parse().expect("addr")),
        "https://shiki.example.com"
    );
}

#[test]
fn the_oidc_example_parses_with_its_commented_keys_and_bad_values_name_their_key() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/cloud.oidc.example.toml"
    ));
    let text = std::fs::read_to_string(path).expect("oidc example exists");
    let c = CloudConfig::parse(&text, path).expect("oidc example parses");
    let oidc = c.auth.oidc.expect("[auth.oidc]");
    assert_eq!(oidc.role_map.len(), 3);
    assert_eq!(oidc.client_id.as_deref(), Some("shiki-web"));
    let uncommented = uncomment_keys(&text);
    let c = CloudConfig::parse(&uncommented, path).expect("uncommented oidc example parses");
    let oidc = c.auth.oidc.expect("[auth.oidc]");
    assert!(oidc.client_secret.is_some() && oidc.redirect_url.is_some());

    for (from, to, key) in [
        (
            "issuer = \"https://login.example.com/realms/shiki\"",
            "issuer = \"http://login.example.com/realms/shiki\"",
            "auth.oidc.issuer",
        ),
        (
            "audience = \"shiki-api\"",
            "audience = \"\"",
            "auth.oidc.audience",
        ),
        (
            "scopes = [\"openid\", \"profile\", \"email\", \"groups\"]",
            "scopes = [\"profile\"]",
            "auth.oidc.scopes",
        ),
    ] {
        assert!(text.contains(from), "{from}");
        let err = CloudConfig::parse(&text.replace(from, to), path).expect_err(key);
        assert!(err.to_string().contains(key), "{err}");
    }
    let no_roles: String = text
        .split("[auth.oidc.role_map]")
        .next()
        .unwrap_or_default()
        .to_owned();
    let err = CloudConfig::parse(&no_roles, path).expect_err("empty role_map");
    assert!(err.to_string().contains("auth.oidc.role_map"), "{err}");
    let unknown = text.replace("leeway = \"60s\"", "leway = \"60s\"");
    let err = CloudConfig::parse(&unknown, path).expect_err("unknown key");
    assert!(err.to_string().contains("leway"), "{err}");
}

#[test]
fn the_commented_cluster_section_parses_on_postgresql_and_an_external_broker() {
    let (text, path) = example();
    let at = text
        .find("# [cluster]")
        .expect("the example shows [cluster]");
    let section: String = text[at..]
        .lines()
        .map(|l| l.trim_start_matches('#').trim_start())
        .collect::<Vec<_>>()
        .join("\n");
    let toml = format!(
        "[store]\nurl = \"postgres://shiki@db/shiki\"\n[mqtt]\nurl = \"mqtt://broker:1883\"\n{section}\n"
    );
    let c = CloudConfig::parse(&toml, path).expect("the cluster example parses");
    let cluster = c.cluster.expect("[cluster]");
    assert_eq!(cluster.node_id, "cloud-a");
    assert_eq!(cluster.shards, 64);
    assert_eq!(cluster.api_url.as_deref(), Some("http://10.0.0.11:8080"));
}
