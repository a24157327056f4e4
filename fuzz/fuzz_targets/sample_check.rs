//! Differential: the cloud's cheap telemetry row check (`Sample::check_json`, which builds
//! nothing) against full decoding (`serde_json::from_str::<Sample>`). Its documented
//! contract: `Ok` exactly when decoding is `Ok`, with the same seq, so that every row the
//! store keeps decodes later.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shiki_proto::Sample;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    let decoded = serde_json::from_str::<Sample>(json);
    let checked = Sample::check_json(json);
    match (&decoded, &checked) {
        (Ok(sample), Ok(seq)) => assert_eq!(sample.seq, *seq, "seq differs for {json:?}"),
        (Err(_), Err(_)) => {}
        _ => panic!(
            "check and decode disagree on {json:?}: decode {:?}, check {:?}",
            decoded.as_ref().map(|s| s.seq).map_err(ToString::to_string),
            checked.as_ref().map_err(ToString::to_string)
        ),
    }
});
