//! Every topic's message decoder (`shiki_proto::decode`), plain and gzip-compressed.
//!
//! Input: one selector byte, then the payload. The low bits pick the channel (its message
//! type, in `Channel::FIXED` order, telemetry aside: `proto_telemetry` has it); the high
//! bit gzips the payload first, so the fuzzer reaches the JSON behind the compressed path.
//!
//! Properties: decoding never panics; what decodes encodes again (or is refused as too
//! large), and that encoding decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use shiki_fuzz::selector_and_payload;
use shiki_proto::{
    Catalog, CodecError, EventBatch, JobNotify, JobUpdate, ReportedUpdate, ScheduleAck,
    ScheduleSet, ShadowDelta, ShadowDocument, ShadowGet, Status, TelemetryBatch, decode, encode,
};

fn roundtrip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(payload: &[u8]) {
    let Ok(msg) = decode::<T>(payload) else {
        return;
    };
    let bytes = match encode(&msg) {
        Ok(bytes) => bytes,
        // A compressed payload may expand to more than one message may hold.
        Err(CodecError::TooLarge { .. }) => return,
        Err(e) => panic!("a decoded message does not encode: {e}"),
    };
    let back: T = decode(&bytes).expect("an encoded message decodes");
    assert_eq!(back, msg, "decode(encode(m)) != m");
}

/// The message types by selector (see the module docs).
const TYPES: usize = 12;

fuzz_target!(|data: &[u8]| {
    let Some((selector, payload)) = selector_and_payload(data) else {
        return;
    };
    let payload = &payload[..];
    match usize::from(selector & 0x7f) % TYPES {
        0 => roundtrip::<EventBatch>(payload),
        1 => roundtrip::<Status>(payload),
        2 => roundtrip::<Catalog>(payload),
        3 => roundtrip::<ReportedUpdate>(payload),
        4 => roundtrip::<ShadowGet>(payload),
        5 => roundtrip::<ShadowDocument>(payload),
        6 => roundtrip::<ShadowDelta>(payload),
        7 => roundtrip::<ScheduleSet>(payload),
        8 => roundtrip::<ScheduleAck>(payload),
        9 => roundtrip::<JobNotify>(payload),
        10 => roundtrip::<JobUpdate>(payload),
        _ => roundtrip::<TelemetryBatch>(payload),
    }
});
