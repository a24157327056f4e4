//! Parsing, overrides, environment and validation of the edge configuration.

use super::*;

const MINIMAL: &str = "device_id = \"gw-1\"\n";

#[test]
fn a_minimal_config_gets_documented_defaults() {
    let cfg = EdgeConfig::parse(MINIMAL, "t.toml").expect("parses");
    cfg.validate().expect("valid");
    assert_eq!(cfg.telemetry.interval, Duration::from_secs(60));
    assert_eq!(cfg.outbox.quota_mib, 256);
    assert_eq!(cfg.mqtt.url, "mqtt://127.0.0.1:1883");
}

#[test]
fn unknown_keys_and_bad_values_are_named() {
    let err = EdgeConfig::parse("device_id = \"gw\"\n[mqtt]\nurll = \"x\"\n", "a.toml")
        .expect_err("unknown key");
    let msg = err.to_string();
    assert!(msg.contains("a.toml") && msg.contains("urll"), "{msg}");

    let err = EdgeConfig::parse("device_id = \"g/w\"\n", "b.toml").expect_err("bad id");
    assert!(err.to_string().contains("b.toml"), "{err}");

    let mut cfg = EdgeConfig::parse(MINIMAL, "c.toml").expect("parses");
    cfg.source_file = Some("c.toml".into());
    cfg.mqtt.url = "http://x".into();
    let msg = cfg.validate().expect_err("bad url").to_string();
    assert!(msg.contains("mqtt.url") && msg.contains("c.toml"), "{msg}");

    let mut cfg = EdgeConfig::parse(MINIMAL, "d.toml").expect("parses");
    cfg.telemetry.interval = Duration::from_millis(1);
    assert!(
        cfg.validate()
            .expect_err("too fast")
            .to_string()
            .contains("telemetry.interval")
    );
}

#[test]
fn shiki_variables_override_nested_keys_and_errors_name_the_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("edge.toml");
    std::fs::write(
        &path,
        "device_id = \"gw-1\"\n[mqtt]\nurl = \"mqtt://a:1883\"\n",
    )
    .expect("write");
    let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let cfg = EdgeConfig::load_with_env(
        &path,
        env(&[
            ("SHIKI_MQTT__URL", "mqtt://b:1884"),
            ("SHIKI_TELEMETRY__INTERVAL", "5s"),
            // Not config keys: the flags' variables and unrelated SHIKI_* names.
            ("SHIKI_MQTT_URL", "mqtt://flag:1"),
            ("SHIKI_PLC", "127.0.0.1:5020"),
            ("SHIKI_TEST_BROKER", "127.0.0.1:1883"),
            ("SHIKI_LOG", "debug"),
        ]),
    )
    .expect("loads");
    assert_eq!(cfg.mqtt.url, "mqtt://b:1884");
    assert_eq!(cfg.telemetry.interval, Duration::from_secs(5));
    assert!(cfg.plc.is_none());

    let err = EdgeConfig::load_with_env(&path, env(&[("SHIKI_OUTBOX__QUOTA_MIB", "lots")]))
        .expect_err("not a number");
    let msg = err.to_string();
    assert!(
        msg.contains("edge.toml") && msg.contains("outbox.quota_mib"),
        "{msg}"
    );
    assert!(msg.contains("SHIKI_OUTBOX__QUOTA_MIB"), "{msg}");
}

#[test]
fn broker_urls_parse_with_default_ports() {
    let a = parse_broker_url("mqtt://beam.soracom.io").expect("ok");
    assert_eq!((a.tls, a.port), (false, 1883));
    let a = parse_broker_url("mqtts://broker.example:8884").expect("ok");
    assert_eq!(
        (a.tls, a.host.as_str(), a.port),
        (true, "broker.example", 8884)
    );
    for bad in ["tcp://x", "mqtt://", "mqtt://h:99999", "mqtt://h:x"] {
        assert!(parse_broker_url(bad).is_err(), "{bad}");
    }
}

#[test]
fn overrides_replace_file_values() {
    let mut cfg = EdgeConfig::parse(MINIMAL, "t.toml").expect("parses");
    cfg.apply(Overrides {
        device_id: Some("gw-2".into()),
        mqtt_url: Some("mqtt://127.0.0.1:1999".into()),
        plc: Some("127.0.0.1:5020".into()),
        data_dir: Some("/tmp/x".into()),
        telemetry_interval: Some(Duration::from_secs(1)),
    })
    .expect("apply");
    cfg.validate().expect("valid");
    assert_eq!(cfg.device_id.as_str(), "gw-2");
    assert_eq!(cfg.telemetry.interval, Duration::from_secs(1));
    assert_eq!(
        cfg.plc.as_ref().map(|p| p.address.as_str()),
        Some("127.0.0.1:5020")
    );
    assert!(!cfg.plc.as_ref().expect("default map").points.is_empty());
    assert!(
        cfg.clone()
            .apply(Overrides {
                device_id: Some("bad id".into()),
                ..Overrides::default()
            })
            .is_err()
    );
}

#[test]
fn the_deploy_example_parses_and_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/edge.example.toml");
    let cfg = EdgeConfig::load(&path).expect("example parses");
    cfg.validate().expect("example validates");
    let map = cfg.register_map().expect("map").expect("example has [plc]");
    assert!(map.point("chw_setpoint_c").is_some());
    assert_eq!(
        cfg.control.defaults.get("mode"),
        Some(&serde_json::json!("cooling"))
    );
}

#[test]
fn a_bad_point_or_control_default_is_named() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/edge.example.toml");
    let text = std::fs::read_to_string(&path).expect("example");
    let bad = text.replace("chw_setpoint_c = 7.0", "chw_setpoint_c = \"warm\"");
    let mut cfg = EdgeConfig::parse(&bad, "bad.toml").expect("parses");
    cfg.source_file = Some("bad.toml".into());
    let msg = cfg.validate().expect_err("bad default").to_string();
    assert!(
        msg.contains("control") && msg.contains("chw_setpoint_c"),
        "{msg}"
    );

    let bad = text.replacen("type = \"i16\"", "type = \"i17\"", 1);
    let msg = EdgeConfig::parse(&bad, "bad.toml")
        .expect_err("bad type")
        .to_string();
    assert!(msg.contains("i17") && msg.contains("bad.toml"), "{msg}");
}

#[test]
fn ota_keys_are_checked_and_a_bad_one_is_named_by_position() {
    let cfg = EdgeConfig::parse(MINIMAL, "t.toml").expect("parses");
    assert_eq!(cfg.ota.health_window, Duration::from_secs(120));
    assert!(cfg.trusted_keys().expect("no keys").is_empty());
    assert_eq!(cfg.ota_dir(), cfg.data_dir.join("ota"));

    let key = shiki_shared::ota::ReleaseKey::generate().public_base64();
    let text = format!("{MINIMAL}[ota]\npublic_keys = [\"{key}\", \"bm90IGEga2V5\"]\n");
    let cfg = EdgeConfig::parse(&text, "k.toml").expect("parses");
    let msg = cfg.validate().expect_err("second key is bad").to_string();
    assert!(
        msg.contains("ota.public_keys") && msg.contains("public key 1"),
        "{msg}"
    );

    let text = format!("{MINIMAL}[ota]\npublic_keys = [\"{key}\"]\nhealth_window = \"1s\"\n");
    let cfg = EdgeConfig::parse(&text, "w.toml").expect("parses");
    let msg = cfg.validate().expect_err("window too short").to_string();
    assert!(msg.contains("ota.health_window"), "{msg}");
}

#[test]
fn a_password_file_must_be_readable_and_not_empty_and_not_beside_a_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("mqtt-password");
    let cfg_with = |extra: &str| {
        EdgeConfig::parse(&format!("{MINIMAL}[mqtt]\n{extra}"), "p.toml").expect("parses")
    };
    let with_file = format!("password_file = {:?}\n", file.display().to_string());
    let msg = cfg_with(&with_file)
        .validate()
        .expect_err("missing")
        .to_string();
    assert!(
        msg.contains("mqtt.password_file") && msg.contains("cannot read"),
        "{msg}"
    );
    std::fs::write(&file, "\n").expect("write");
    let msg = cfg_with(&with_file)
        .validate()
        .expect_err("empty")
        .to_string();
    assert!(msg.contains("is empty"), "{msg}");
    std::fs::write(&file, "s3cret-from-the-cloud\n# a note\n").expect("write");
    cfg_with(&with_file).validate().expect("valid");
    assert_eq!(
        first_line(&std::fs::read_to_string(&file).expect("read")),
        "s3cret-from-the-cloud"
    );
    let both = format!("{with_file}password = \"x\"\n");
    let msg = cfg_with(&both).validate().expect_err("both").to_string();
    assert!(msg.contains("not both"), "{msg}");
}

#[test]
fn link_economy_keys_parse_and_a_delay_longer_than_a_batch_names_what_to_raise() {
    let cfg = EdgeConfig::parse(MINIMAL, "t.toml").expect("parses");
    assert_eq!(
        cfg.telemetry.batch_max_delay,
        Duration::ZERO,
        "as before: at once"
    );
    assert_eq!(cfg.telemetry.encoding, TelemetryEncoding::Compact);

    let text = "device_id = \"gw\"\n[telemetry]\nbatch_max_delay = \"5m\"\nencoding = \"json\"\n[mqtt]\nkeep_alive = \"20m\"\n";
    let cfg = EdgeConfig::parse(text, "e.toml").expect("parses");
    cfg.validate()
        .expect("5 samples of a minute fit live_batch_max 10");
    assert_eq!(cfg.telemetry.batch_max_delay, Duration::from_secs(300));
    assert_eq!(cfg.telemetry.encoding, TelemetryEncoding::Json);
    assert_eq!(cfg.mqtt.keep_alive, Duration::from_secs(1200));

    let err = EdgeConfig::parse(
        "device_id = \"gw\"\n[telemetry]\nencoding = \"cbor\"\n",
        "f.toml",
    )
    .expect_err("unknown encoding");
    assert!(err.to_string().contains("encoding"), "{err}");

    let mut cfg = EdgeConfig::parse(MINIMAL, "g.toml").expect("parses");
    cfg.telemetry.interval = Duration::from_secs(10);
    cfg.telemetry.batch_max_delay = Duration::from_secs(300);
    let msg = cfg.validate().expect_err("30 samples > 10").to_string();
    assert!(
        msg.contains("telemetry.batch_max_delay")
            && msg.contains("raise mqtt.live_batch_max to at least 30"),
        "{msg}"
    );
    cfg.mqtt.live_batch_max = 30;
    cfg.validate().expect("valid once the batch holds them");

    let mut cfg = EdgeConfig::parse(MINIMAL, "h.toml").expect("parses");
    cfg.mqtt.keep_alive = Duration::from_secs(70_000);
    let msg = cfg
        .validate()
        .expect_err("over the MQTT maximum")
        .to_string();
    assert!(
        msg.contains("mqtt.keep_alive") && msg.contains("65535"),
        "{msg}"
    );
}

#[test]
fn a_quota_in_kib_wins_over_mib_and_a_tiny_one_is_refused() {
    let cfg = EdgeConfig::parse(MINIMAL, "t.toml").expect("parses");
    assert_eq!(cfg.outbox.quota_bytes(), 256 * 1024 * 1024);

    let cfg = EdgeConfig::parse(
        "device_id = \"gw-1\"\n[outbox]\nquota_mib = 2\nquota_kib = 64\n",
        "t.toml",
    )
    .expect("parses");
    cfg.validate().expect("valid");
    assert_eq!(cfg.outbox.quota_bytes(), 64 * 1024);

    let cfg = EdgeConfig::parse("device_id = \"gw-1\"\n[outbox]\nquota_kib = 4\n", "q.toml")
        .expect("parses");
    let msg = cfg.validate().expect_err("too small").to_string();
    assert!(
        msg.contains("outbox.quota_kib") && msg.contains("at least 16"),
        "{msg}"
    );
}
