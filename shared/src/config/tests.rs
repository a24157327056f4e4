use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::*;

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct EdgeConfig {
    device_id: String,
    mqtt: Mqtt,
    plc: Plc,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mqtt {
    url: String,
    #[serde(default)]
    tls: bool,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Plc {
    #[serde(with = "duration")]
    poll_interval: Duration,
    #[serde(default, with = "duration::option")]
    write_timeout: Option<Duration>,
    #[serde(default = "default_unit")]
    unit: u8,
}

fn default_unit() -> u8 {
    1
}

impl Validate for EdgeConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.plc.poll_interval < Duration::from_millis(100) {
            return Err(ConfigError::invalid(
                "plc.poll_interval",
                "must be at least 100ms",
            ));
        }
        Ok(())
    }
}

const EDGE: &str = r#"
device_id = "sapporo-01"

[mqtt]
url = "mqtt://localhost:1883"

[plc]
poll_interval = "10s"
"#;

fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn with_env(text: &str, list: &[(&str, &str)]) -> Result<EdgeConfig, ConfigError> {
    from_str_with_env(text, Path::new("deploy/edge.toml"), "SHIKI_", vars(list))
}

#[test]
fn parses_a_file_with_defaults() {
    let c: EdgeConfig = from_str(EDGE).expect("valid");
    assert_eq!(c.device_id, "sapporo-01");
    assert_eq!(c.plc.poll_interval, Duration::from_secs(10));
    assert_eq!(c.plc.write_timeout, None);
    assert_eq!(c.plc.unit, 1);
    assert!(!c.mqtt.tls);
}

#[test]
fn invalid_duration_names_file_and_key() {
    let text = EDGE.replace("\"10s\"", "\"ten\"");
    let err = with_env(&text, &[]).expect_err("ten is no duration");
    let msg = err.to_string();
    assert!(
        msg.starts_with("deploy/edge.toml: key `plc.poll_interval`: invalid duration \"ten\""),
        "{msg}"
    );
    assert!(matches!(err, ConfigError::Key { ref key, .. } if key == "plc.poll_interval"));
}

#[test]
fn unitless_duration_says_a_unit_is_needed() {
    let text = EDGE.replace("\"10s\"", "10");
    let msg = with_env(&text, &[]).expect_err("no unit").to_string();
    assert!(msg.contains("key `plc.poll_interval`"), "{msg}");
    assert!(msg.contains("\"10s\""), "{msg}");
}

#[test]
fn missing_and_unknown_keys_name_their_table() {
    let text = EDGE.replace("url = \"mqtt://localhost:1883\"", "");
    let msg = with_env(&text, &[]).expect_err("missing url").to_string();
    assert_eq!(msg, "deploy/edge.toml: key `mqtt`: missing field `url`");

    let text = EDGE.replace("[plc]", "[plc]\npoll_intervall = \"1s\"");
    let msg = with_env(&text, &[]).expect_err("typo").to_string();
    assert!(msg.starts_with("deploy/edge.toml: key `plc"), "{msg}");
    assert!(msg.contains("poll_intervall"), "{msg}");
}

#[test]
fn syntax_errors_give_line_and_column() {
    let text = "device_id = \"x\"\n[mqtt\nurl = 1\n";
    let err = with_env(text, &[]).expect_err("broken header");
    match &err {
        ConfigError::Syntax { line, .. } => assert_eq!(*line, 2, "{err}"),
        other => panic!("expected a syntax error, got {other}"),
    }
    assert!(err.to_string().starts_with("deploy/edge.toml:2:"), "{err}");
}

#[test]
fn environment_overrides_nested_keys_with_typed_values() {
    let c = with_env(
        EDGE,
        &[
            ("SHIKI_MQTT__URL", "mqtts://broker.example:8883"),
            ("SHIKI_MQTT__TLS", "true"),
            ("SHIKI_PLC__POLL_INTERVAL", "1m"),
            ("SHIKI_PLC__WRITE_TIMEOUT", "2s"),
            ("SHIKI_PLC__UNIT", "7"),
            ("SHIKI_LOG", "debug"),
            ("OTHER_MQTT__URL", "ignored"),
        ],
    )
    .expect("valid");
    assert_eq!(c.mqtt.url, "mqtts://broker.example:8883");
    assert!(c.mqtt.tls);
    assert_eq!(c.plc.poll_interval, Duration::from_secs(60));
    assert_eq!(c.plc.write_timeout, Some(Duration::from_secs(2)));
    assert_eq!(c.plc.unit, 7);
}

#[test]
fn a_numeric_env_value_for_a_string_key_stays_a_string() {
    let c = with_env(EDGE, &[("SHIKI_DEVICE_ID", "12345")]).expect("retried as string");
    assert_eq!(c.device_id, "12345");
}

#[test]
fn a_bad_env_value_names_the_variable() {
    let err = with_env(EDGE, &[("SHIKI_PLC__UNIT", "many")]).expect_err("not a number");
    let msg = err.to_string();
    assert!(
        msg.starts_with("deploy/edge.toml: key `plc.unit` (set by SHIKI_PLC__UNIT): "),
        "{msg}"
    );
    let err = with_env(EDGE, &[("SHIKI_PLC__POLL_INTERVAL", "10")]).expect_err("no unit");
    assert!(err.to_string().contains("invalid duration \"10\""), "{err}");
}

#[test]
fn load_reads_the_file_and_validates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("edge.toml");
    std::fs::write(&path, EDGE).expect("write");
    let c: EdgeConfig = load_validated(&path, "SHIKI_TEST_NO_SUCH_PREFIX_").expect("valid");
    assert_eq!(c.device_id, "sapporo-01");

    std::fs::write(&path, EDGE.replace("\"10s\"", "\"10ms\"")).expect("write");
    let err =
        load_validated::<EdgeConfig>(&path, "SHIKI_TEST_NO_SUCH_PREFIX_").expect_err("too fast");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: key `plc.poll_interval`: must be at least 100ms",
            path.display()
        )
    );

    let missing = dir.path().join("absent.toml");
    let err = load::<EdgeConfig>(&missing, "SHIKI_").expect_err("no file");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot read config file {}", missing.display())),
        "{err}"
    );
}

#[test]
fn durations_round_trip_through_serde() {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct D {
        #[serde(with = "duration")]
        every: Duration,
    }
    let d = D {
        every: Duration::from_secs(90),
    };
    let text = toml::to_string(&d).expect("serialises");
    assert_eq!(text.trim(), "every = \"1m 30s\"");
    assert_eq!(from_str::<D>(&text).expect("parses"), d);
    assert!(duration::parse("ten").is_err());
    assert_eq!(duration::parse(" 250ms "), Ok(Duration::from_millis(250)));
}
