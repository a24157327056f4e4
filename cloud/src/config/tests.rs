//! Parsing, defaults, overrides and validation of the cloud configuration.

use super::*;

#[test]
fn empty_file_gives_defaults() {
    let c = CloudConfig::parse("", Path::new("x.toml")).expect("defaults");
    assert_eq!(c.verification.attempts, 5);
    assert_eq!(
        c.broker().expect("embedded"),
        BrokerTarget::Embedded("127.0.0.1:1883".parse().expect("addr"))
    );
}

#[test]
fn acks_follow_the_broker_unless_set() {
    let parse = |t: &str| CloudConfig::parse(t, Path::new("x.toml")).expect("valid");
    let embedded = parse("");
    assert!(
        !embedded
            .mqtt
            .acks_after_commit(&embedded.broker().expect("target"))
    );
    let external = parse("[mqtt]\nurl = \"mqtt://broker:1883\"\n");
    assert!(
        external
            .mqtt
            .acks_after_commit(&external.broker().expect("target"))
    );
    let forced = parse("[mqtt]\nack_after_commit = true\n");
    assert!(
        forced
            .mqtt
            .acks_after_commit(&forced.broker().expect("target"))
    );
    let off = parse("[mqtt]\nurl = \"mqtt://broker\"\nack_after_commit = false\n");
    assert!(!off.mqtt.acks_after_commit(&off.broker().expect("target")));
}

#[test]
fn broker_urls_are_parsed() {
    let mut c = CloudConfig::default();
    c.mqtt.url = Some("mqtts://broker.example:8884".into());
    assert_eq!(
        c.broker().expect("valid"),
        BrokerTarget::External {
            host: "broker.example".into(),
            port: 8884,
            tls: true
        }
    );
    c.mqtt.url = Some("mqtt://10.0.0.1".into());
    assert_eq!(
        c.broker().expect("valid"),
        BrokerTarget::External {
            host: "10.0.0.1".into(),
            port: 1883,
            tls: false
        }
    );
    c.mqtt.url = Some("http://x".into());
    let e = c.broker().expect_err("refused").to_string();
    assert!(e.contains("mqtt.url"), "{e}");
}

#[test]
fn environment_overrides_win_over_the_file() {
    let c: CloudConfig = shiki_shared::config::from_str_with_env(
        "[mqtt]\nurl = \"mqtt://file:1883\"\n",
        Path::new("c.toml"),
        ENV_PREFIX,
        [
            (
                "SHIKI_CLOUD_MQTT__URL".to_owned(),
                "mqtt://env:1884".to_owned(),
            ),
            (
                "SHIKI_ADMIN_TOKEN".to_owned(),
                "not-a-config-key".to_owned(),
            ),
        ],
    )
    .expect("parses");
    assert_eq!(c.mqtt.url.as_deref(), Some("mqtt://env:1884"));
}

#[test]
fn invalid_values_name_the_key() {
    let e = CloudConfig::parse("[verification]\nattempts = 0\n", Path::new("c.toml"))
        .expect_err("refused")
        .to_string();
    assert!(e.contains("verification.attempts"), "{e}");
    let e = CloudConfig::parse(
        "[schedule]\nyearly_push_cron = \"every december\"\n",
        Path::new("c.toml"),
    )
    .expect_err("refused")
    .to_string();
    assert!(e.contains("schedule.yearly_push_cron"), "{e}");
    let e = CloudConfig::parse(
        "[schedule]\ntimezone = \"Mars/Olympus\"\n",
        Path::new("c.toml"),
    )
    .expect_err("refused")
    .to_string();
    assert!(e.contains("schedule.timezone"), "{e}");
    let e = CloudConfig::parse("bogus = 1\n", Path::new("c.toml"))
        .expect_err("refused")
        .to_string();
    assert!(e.contains("bogus"), "{e}");
    let e = CloudConfig::parse("[shadow]\nmax_bytes = 0\n", Path::new("c.toml"))
        .expect_err("refused")
        .to_string();
    assert!(e.contains("shadow.max_bytes"), "{e}");
}

#[test]
fn shadow_limits_default_to_aws_iot_and_can_be_raised() {
    let c = CloudConfig::parse("", Path::new("c.toml")).expect("defaults");
    assert_eq!(c.shadow.limits(), ShadowLimits::DEFAULT);
    let c =
        CloudConfig::parse("[shadow]\nmax_bytes = 65536\n", Path::new("c.toml")).expect("valid");
    assert_eq!(c.shadow.limits().max_bytes, 65536);
    assert_eq!(c.shadow.limits().max_depth, 6);
    let e = CloudConfig::parse("[shadow]\nmax_byte = 1\n", Path::new("c.toml"))
        .expect_err("typo refused")
        .to_string();
    assert!(e.contains("max_byte"), "{e}");
}
