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

#[test]
fn ota_defaults_and_keys_are_checked_at_load_naming_the_key() {
    let c = CloudConfig::parse("", Path::new("c.toml")).expect("defaults");
    assert_eq!(c.ota.url_ttl, Duration::from_secs(900));
    assert_eq!(c.ota.max_artifact_bytes(), 256 * 1024 * 1024);
    assert!(c.ota.trusted_keys().expect("none").is_empty());
    let key = shiki_shared::ota::ReleaseKey::generate().public_base64();
    let c = CloudConfig::parse(
        &format!("[ota]\npublic_keys = [\"{key}\"]\nurl_ttl = \"2m\"\nmax_artifact_mb = 8\n"),
        Path::new("c.toml"),
    )
    .expect("valid");
    assert!(!c.ota.trusted_keys().expect("one").is_empty());
    assert_eq!(c.ota.url_ttl, Duration::from_secs(120));
    for (text, names) in [
        (
            format!("[ota]\npublic_keys = [\"{key}\", \"not a key\"]\n"),
            "public key 1",
        ),
        ("[ota]\nurl_ttl = \"0s\"\n".to_owned(), "ota.url_ttl"),
        (
            "[ota]\nmax_artifact_mb = 0\n".to_owned(),
            "ota.max_artifact_mb",
        ),
    ] {
        let e = CloudConfig::parse(&text, Path::new("c.toml"))
            .expect_err("refused")
            .to_string();
        assert!(e.contains(names), "{names}: {e}");
        assert!(e.contains("ota."), "names the key: {e}");
    }
}

#[test]
fn the_public_url_defaults_to_the_bound_api_address_and_must_be_http() {
    let c = CloudConfig::parse("", Path::new("c.toml")).expect("defaults");
    let bound = "127.0.0.1:41234".parse().expect("addr");
    assert_eq!(c.api.public_url(bound), "http://127.0.0.1:41234");
    let c = CloudConfig::parse(
        "[api]\npublic_url = \"https://shiki.example/cloud/\"\n",
        Path::new("c.toml"),
    )
    .expect("valid");
    assert_eq!(c.api.public_url(bound), "https://shiki.example/cloud/");
    for bad in [
        "ftp://shiki.example",
        "shiki.example",
        "https://",
        "https://:8080/x",
        "https://shiki.example/?a=1",
        "https://shiki example",
    ] {
        let e = CloudConfig::parse(
            &format!("[api]\npublic_url = \"{bad}\"\n"),
            Path::new("c.toml"),
        )
        .expect_err(bad)
        .to_string();
        assert!(e.contains("api.public_url"), "{bad}: {e}");
    }
}

#[test]
fn a_cluster_node_needs_postgresql_and_an_external_broker_and_sane_lease_times() {
    let check = |t: &str| {
        CloudConfig::parse(t, Path::new("x.toml"))
            .and_then(|c| c.validate().map(|()| c))
            .map_err(|e| e.to_string())
    };
    let pg = "[store]\nurl = \"postgres://shiki@db/shiki\"\n";
    let broker = "[mqtt]\nurl = \"mqtt://broker:1883\"\n";
    let ok = check(&format!("{pg}{broker}[cluster]\nnode_id = \"cloud-a\"\n")).expect("valid");
    let cluster = ok.cluster.expect("a cluster node");
    assert_eq!(cluster.shards, 64);
    assert_eq!(cluster.lease_ttl, Duration::from_secs(10));

    let err = check(&format!("{broker}[cluster]\nnode_id = \"cloud-a\"\n")).expect_err("no PG");
    assert!(
        err.contains("cluster.node_id") && err.contains("store.url"),
        "{err}"
    );
    let err = check(&format!("{pg}[cluster]\nnode_id = \"cloud-a\"\n")).expect_err("embedded");
    assert!(err.contains("mqtt.url"), "{err}");
    let err =
        check(&format!("{pg}{broker}[cluster]\nnode_id = \"cloud a/1\"\n")).expect_err("bad name");
    assert!(
        err.contains("cluster.node_id") && err.contains("letters"),
        "{err}"
    );
    let err = check(&format!(
        "{pg}{broker}[cluster]\nnode_id = \"a\"\nlease_ttl = \"6s\"\nrenew_every = \"3s\"\n"
    ))
    .expect_err("renewing too rarely");
    assert!(
        err.contains("cluster.renew_every") && err.contains("a third"),
        "{err}"
    );
    let err = check(&format!(
        "{pg}{broker}[cluster]\nnode_id = \"a\"\nshards = 0\n"
    ))
    .expect_err("no shards");
    assert!(err.contains("cluster.shards"), "{err}");
    let err = check(&format!("{pg}{broker}[cluster]\nnode = \"a\"\n")).expect_err("typo");
    assert!(err.contains("node"), "{err}");
}

#[test]
fn hostile_input_keys_have_defaults_and_bad_values_name_the_key() {
    let parse = |t: &str| CloudConfig::parse(t, Path::new("c.toml"));
    let c = parse("").expect("defaults");
    assert_eq!(c.api.max_body_bytes, 1024 * 1024);
    let server = c.api.server_options();
    assert_eq!(server.client_request_timeout, Duration::from_secs(5));
    assert_eq!(server.client_disconnect_timeout, Duration::from_secs(1));
    assert_eq!(server.keep_alive, Duration::from_secs(5));
    let limits = c.auth.failed_auth_limits().expect("on by default");
    assert_eq!(limits.max_failures, 10);
    assert_eq!(limits.window, Duration::from_secs(60));
    assert_eq!(limits.lockout, Duration::from_secs(300));

    let c = parse(
        "[api]\nmax_body_bytes = 4096\nclient_request_timeout = \"2s\"\nkeep_alive = \"0s\"\n\
         [auth]\nmax_failed_attempts = 3\nlockout = \"1m\"\n",
    )
    .expect("valid");
    assert_eq!(c.api.max_body_bytes, 4096);
    assert_eq!(
        c.api.server_options().client_request_timeout,
        Duration::from_secs(2)
    );
    assert!(c.api.server_options().keep_alive.is_zero());
    let limits = c.auth.failed_auth_limits().expect("on");
    assert_eq!(
        (limits.max_failures, limits.lockout),
        (3, Duration::from_secs(60))
    );
    let off = parse("[auth]\nmax_failed_attempts = 0\nlockout = \"0s\"\n").expect("off");
    assert!(off.auth.failed_auth_limits().is_none());

    for (toml, key) in [
        ("[api]\nmax_body_bytes = 0\n", "api.max_body_bytes"),
        (
            "[api]\nclient_request_timeout = \"0s\"\n",
            "api.client_request_timeout",
        ),
        (
            "[api]\nclient_disconnect_timeout = \"0s\"\n",
            "api.client_disconnect_timeout",
        ),
        ("[auth]\nlockout = \"0s\"\n", "auth.lockout"),
        (
            "[auth]\nfailed_attempts_window = \"0s\"\n",
            "auth.failed_attempts_window",
        ),
        (
            "[auth]\nmax_tracked_addresses = 0\n",
            "auth.max_tracked_addresses",
        ),
    ] {
        let e = parse(toml).expect_err(toml).to_string();
        assert!(e.contains(key), "{toml}: {e}");
    }
}
