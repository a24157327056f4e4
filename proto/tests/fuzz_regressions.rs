//! Inputs the fuzz targets (`fuzz/`, `scripts/fuzz`) found crashes with, kept as tests.
//! Each payload is under `tests/fuzz-regressions/`, without the target's selector byte.

use shiki_proto::{CompactError, PointDictionary, decode_telemetry, encode_compact};

fn payload(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fuzz-regressions/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// `proto_telemetry`: a sample dated 7989 decodes from a JSON batch, but a compact batch
/// counts time in i64 nanoseconds; the encoder saturated it to 2262-04-11 and the cloud
/// stored a wrong time. It must refuse instead (the edge then sends the JSON batch).
#[test]
fn compact_batch_refuses_a_time_it_cannot_carry() {
    let (batch, _) =
        decode_telemetry(&payload("compact-time-past-2262.json"), |_| None).expect("decodes");
    let dict = PointDictionary::of_samples(&batch.samples);
    match encode_compact(&batch.samples, &dict, true, false) {
        Err(CompactError::TimeOutOfRange { seq, ts }) => {
            assert_eq!(seq, 2084);
            assert_eq!(ts.to_rfc3339(), "7989-07-01T03:01:00+00:00");
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(bytes) => {
            let (again, _) = decode_telemetry(&bytes, |_| None).expect("own batch decodes");
            panic!(
                "encoded a time it cannot carry: {} came back as {}",
                batch.samples[1].ts, again.samples[1].ts
            );
        }
    }
    // Samples within range still encode.
    assert!(encode_compact(&batch.samples[..1], &dict, true, false).is_ok());
}
