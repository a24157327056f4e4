//! The edge's config loader (`EdgeConfig::parse`, then `validate`) from TOML text.
//!
//! File-naming keys (`mqtt.password_file`, TLS files, `schedule.file`) are cleared before
//! validation: the target fuzzes the text, not this machine's file system. Properties:
//! nothing panics; a config that validates has a valid register map whose catalog and
//! read plan build.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shiki_edge::EdgeConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut config) = EdgeConfig::parse(text, "fuzz.toml") else {
        return;
    };
    config.mqtt.password_file = None;
    config.mqtt.ca_file = None;
    config.mqtt.cert_file = None;
    config.mqtt.key_file = None;
    config.schedule.file = None;
    if config.validate().is_err() {
        return;
    }
    let _ = config.topics();
    if let Some(map) = config
        .register_map()
        .expect("a validated config has a valid map")
    {
        let catalog = map.catalog();
        assert_eq!(catalog.points.len(), map.points().len());
        let _ = map.plan_reads();
    }
});
