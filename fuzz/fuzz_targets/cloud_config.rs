//! The cloud's config loader (`CloudConfig::parse`: TOML, then validation) from TOML text.
//! Properties: nothing panics; a config that loads names a broker target.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use shiki_cloud::CloudConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = CloudConfig::parse(text, Path::new("fuzz.toml")) else {
        return;
    };
    config
        .broker()
        .expect("a validated config has a broker target");
    let _ = (
        config.shadow.limits(),
        config.schedule.fleet(),
        config.schedule.sync(),
    );
});
