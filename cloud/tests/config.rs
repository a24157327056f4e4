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
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => rest.to_owned(),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
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
