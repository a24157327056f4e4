//! Telemetry payloads of either protocol version (`shiki_proto::decode_telemetry`): the JSON
//! batch (v1) and the compact batch (v2), plain and gzip-compressed.
//!
//! Input: one selector byte (high bit: gzip the rest first; bit 0: the cloud knows the
//! golden dictionaries by id), then the payload.
//!
//! Properties:
//! - decoding never panics;
//! - every decoded sample, written as the JSON the cloud stores for it, passes the cloud's
//!   cheap check (`Sample::check_json`) with its seq and decodes to the same sample;
//! - samples in seq order encode as a compact batch (or are refused with an error) that
//!   decodes to the same samples.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shiki_fuzz::{known_dictionary, selector_and_payload};
use shiki_proto::{PointDictionary, Sample, decode_telemetry, encode_compact};

fuzz_target!(|data: &[u8]| {
    let Some((selector, payload)) = selector_and_payload(data) else {
        return;
    };
    let payload = &payload[..];
    let knows = selector & 1 != 0;
    let Ok((batch, carried)) =
        decode_telemetry(
            payload,
            |id| {
                if knows { known_dictionary(id) } else { None }
            },
        )
    else {
        return;
    };
    if let Some(dict) = &carried {
        assert_eq!(PointDictionary::new(dict.names().to_vec()).id(), dict.id());
    }
    for sample in &batch.samples {
        let json = serde_json::to_string(sample).expect("a sample serialises");
        let seq = Sample::check_json(&json)
            .unwrap_or_else(|e| panic!("stored sample {json} fails the cloud's check: {e}"));
        assert_eq!(seq, sample.seq);
        let back: Sample = serde_json::from_str(&json).expect("a stored sample decodes");
        assert_eq!(&back, sample, "stored sample {json} decodes differently");
    }
    let in_order = batch.samples.windows(2).all(|w| w[0].seq < w[1].seq);
    if !in_order || batch.samples.is_empty() {
        return;
    }
    let dict = PointDictionary::of_samples(&batch.samples);
    let Ok(bytes) = encode_compact(&batch.samples, &dict, true, batch.backlog) else {
        return;
    };
    let (again, carried) = decode_telemetry(&bytes, |_| None)
        .unwrap_or_else(|e| panic!("an encoded compact batch does not decode: {e}"));
    assert_eq!(carried.as_ref(), Some(&dict));
    assert_eq!(
        again.samples, batch.samples,
        "compact round trip changed the samples"
    );
    assert_eq!(again.backlog, batch.backlog);
});
