//! Every message type: golden example decodes, round-trips, and survives malformed input.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::PathBuf;

use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use shiki_proto::*;

fn golden(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Decodes the golden file, re-encodes it (plain and compressed) and decodes again.
fn round_trip<T>(name: &str) -> T
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let msg: T = decode(&golden(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let again: T = decode(&encode(&msg).expect("encodes")).expect("decodes its own encoding");
    assert_eq!(again, msg, "{name}: plain round trip");
    let again: T = decode(&encode_compressed(&msg).expect("encodes")).expect("decodes gzip");
    assert_eq!(again, msg, "{name}: compressed round trip");
    msg
}

/// Truncations and byte flips of the golden file never panic and mostly fail cleanly.
fn malformed<T: DeserializeOwned + Debug>(name: &str) {
    let bytes = golden(name);
    for cut in 0..bytes.len() {
        let _ = decode::<T>(&bytes[..cut]);
    }
    assert!(decode::<T>(b"").is_err(), "{name}: empty payload accepted");
    assert!(decode::<T>(b"[1,2,3]").is_err(), "{name}: array accepted");
    assert!(
        decode::<T>(b"{\"v\":1").is_err(),
        "{name}: truncated accepted"
    );
    assert!(
        decode::<T>(&[0x1f, 0x8b, 0, 1, 2]).is_err(),
        "{name}: bad gzip accepted"
    );
    let mut huge = b"{\"pad\":\"".to_vec();
    huge.resize(MAX_MESSAGE_BYTES + 1, b'x');
    assert!(matches!(
        decode::<T>(&huge),
        Err(CodecError::TooLarge { .. })
    ));
}

macro_rules! golden_tests {
    ($($test:ident: $ty:ty = $file:literal;)*) => {
        $(
            #[test]
            fn $test() {
                round_trip::<$ty>($file);
                malformed::<$ty>($file);
            }
        )*
    };
}

golden_tests! {
    telemetry_batch: TelemetryBatch = "telemetry.json";
    event_batch: EventBatch = "events.json";
    status_online: Status = "status-online.json";
    status_last_will: Status = "status-last-will.json";
    catalog: Catalog = "catalog.json";
    shadow_get: ShadowGet = "shadow-get.json";
    shadow_document: ShadowDocument = "shadow-document.json";
    shadow_document_key_versions: ShadowDocument = "shadow-document-key-versions.json";
    shadow_delta: ShadowDelta = "shadow-delta.json";
    shadow_reported: ReportedUpdate = "shadow-reported.json";
    schedule_set: ScheduleSet = "schedule-set.json";
    schedule_ack: ScheduleAck = "schedule-ack.json";
    jobs_notify: JobNotify = "jobs-notify.json";
    job_update: JobUpdate = "job-update.json";
    job_update_progress: JobUpdate = "job-update-progress.json";
}

#[test]
fn golden_values_decode_to_the_expected_types() {
    let t: TelemetryBatch = decode(&golden("telemetry.json")).expect("decodes");
    assert_eq!(t.samples[0].seq, 1041);
    assert_eq!(t.samples[0].values["running"], PointValue::Bool(true));
    assert_eq!(t.samples[0].values["supply_c"], PointValue::Number(7.2));
    assert_eq!(
        t.samples[0].values["mode"],
        PointValue::Text("cooling".into())
    );

    let e: EventBatch = decode(&golden("events.json")).expect("decodes");
    assert_eq!(e.events[0].kind, EventKind::PlcError);
    assert_eq!(e.events[2].kind, EventKind::Unknown);

    let s: Status = decode(&golden("status-last-will.json")).expect("decodes");
    assert_eq!(s.state, Connectivity::Offline);

    let d: ShadowDelta = decode(&golden("shadow-delta.json")).expect("decodes");
    assert!(d.state["demand_limit_pct"].is_null());
    assert!(d.metadata["chw_setpoint_c"].until.is_some());
    assert_eq!(
        d.metadata["chw_setpoint_c"].version, None,
        "written before key versions"
    );

    let doc: ShadowDocument =
        decode(&golden("shadow-document-key-versions.json")).expect("decodes");
    assert_eq!(doc.metadata.desired["chw_setpoint_c"].version, Some(12));
    assert_eq!(doc.metadata.desired["saving"].version, Some(9));
    assert_eq!(doc.metadata.reported["chw_setpoint_c"].version, None);
    let text = String::from_utf8(encode(&doc.metadata.reported).expect("encodes")).expect("utf-8");
    assert!(
        !text.contains("version"),
        "an absent version is not written: {text}"
    );

    let r: ReportedUpdate = decode(&golden("shadow-reported.json")).expect("decodes");
    assert_eq!(r.settings["chw_setpoint_c"].source, SettingSource::Clamped);
    assert_eq!(r.settings["saving"].source, SettingSource::Refused);

    let j: JobNotify = decode(&golden("jobs-notify.json")).expect("decodes");
    assert!(matches!(j.jobs[0].operation, JobOperation::Ota { .. }));
    assert_eq!(j.jobs[1].operation, JobOperation::Unknown);
    let JobOperation::Ota {
        url_expires,
        allow_downgrade,
        ..
    } = &j.jobs[0].operation
    else {
        unreachable!("checked above")
    };
    assert_eq!(
        (*url_expires, *allow_downgrade),
        (None, false),
        "older documents"
    );
    let u: JobUpdate = decode(&golden("job-update-progress.json")).expect("decodes");
    assert_eq!((u.step, u.progress), (Some(JobStep::Downloading), Some(40)));
    let old: JobUpdate = decode(&golden("job-update.json")).expect("decodes");
    assert_eq!((old.step, old.progress), (None, None));
}

#[test]
fn unknown_fields_are_ignored_and_missing_version_defaults_to_1() {
    let s: Status = decode(br#"{"state":"online","future_field":{"x":1}}"#).expect("tolerant");
    assert_eq!(s.v, 1);
    assert_eq!(s.state, Connectivity::Online);
    let s: Status = decode(br#"{"v":2,"state":"hibernating"}"#).expect("tolerant");
    assert_eq!(s.state, Connectivity::Unknown);
}

#[test]
fn a_device_id_in_a_job_document_is_validated() {
    let bad = br#"{"v":1,"jobs":[{"job_id":"../etc","operation":"ota"}]}"#;
    assert!(decode::<JobNotify>(bad).is_err());
}

#[test]
fn encode_refuses_messages_over_the_limit_and_compression_helps() {
    let samples = (1..=3000)
        .map(|seq| Sample {
            seq,
            ts: chrono::DateTime::from_timestamp(1_780_000_000 + seq as i64 * 60, 0)
                .expect("valid"),
            values: [
                ("supply_c".to_owned(), PointValue::Number(7.0)),
                ("return_c".to_owned(), PointValue::Number(12.0)),
                ("running".to_owned(), PointValue::Bool(true)),
            ]
            .into(),
        })
        .collect();
    let batch = TelemetryBatch {
        v: PROTOCOL_VERSION,
        backlog: true,
        samples,
    };
    assert!(matches!(encode(&batch), Err(CodecError::TooLarge { .. })));
    let gz = encode_compressed(&batch).expect("compresses under the limit");
    assert!(gz.len() < MAX_MESSAGE_BYTES);
    let back: TelemetryBatch = decode(&gz).expect("decodes");
    assert_eq!(back, batch);
}

#[test]
fn a_gzip_bomb_is_refused() {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![b' '; 1024 * 1024];
    for _ in 0..(MAX_DECOMPRESSED_BYTES / zeros.len() + 2) {
        enc.write_all(&zeros).expect("in memory");
    }
    let bomb = enc.finish().expect("in memory");
    assert!(bomb.len() <= MAX_MESSAGE_BYTES);
    assert!(matches!(
        decode::<Status>(&bomb),
        Err(CodecError::DecompressedTooLarge { .. })
    ));
}

#[test]
fn point_values_decode_from_bare_json_and_refuse_other_shapes() {
    let v: BTreeMap<String, PointValue> =
        serde_json::from_str(r#"{"a": 3, "b": -2, "c": 7.25, "d": true, "e": "cooling"}"#)
            .expect("valid values");
    assert_eq!(v["a"], PointValue::Number(3.0));
    assert_eq!(v["b"], PointValue::Number(-2.0));
    assert_eq!(v["c"], PointValue::Number(7.25));
    assert_eq!(v["d"], PointValue::Bool(true));
    assert_eq!(v["e"], PointValue::Text("cooling".into()));
    for bad in ["null", "[1]", r#"{"x": 1}"#] {
        let e = serde_json::from_str::<PointValue>(bad).expect_err(bad);
        assert!(
            e.to_string()
                .contains("expected a number, a boolean or a string"),
            "{bad}: {e}"
        );
    }
    // Encoding is the bare value, so it round-trips.
    let text = serde_json::to_string(&v).expect("encodes");
    let back: BTreeMap<String, PointValue> = serde_json::from_str(&text).expect("decodes");
    assert_eq!(back, v);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode::<TelemetryBatch>(&bytes);
        let _ = decode::<EventBatch>(&bytes);
        let _ = decode::<ShadowDocument>(&bytes);
        let _ = decode::<ShadowDelta>(&bytes);
        let _ = decode::<ReportedUpdate>(&bytes);
        let _ = decode::<ScheduleSet>(&bytes);
        let _ = decode::<JobNotify>(&bytes);
        let mut gz = vec![0x1f, 0x8b];
        gz.extend_from_slice(&bytes);
        let _ = decode::<Status>(&gz);
    }

    #[test]
    fn telemetry_round_trips(seqs in proptest::collection::vec(any::<u64>(), 0..50), x in -1e9f64..1e9) {
        let batch = TelemetryBatch {
            v: 1,
            backlog: false,
            samples: seqs.iter().map(|&seq| Sample {
                seq,
                ts: chrono::DateTime::from_timestamp((seq % 4_000_000_000) as i64, 0).expect("in range"),
                values: [("x".to_owned(), PointValue::Number(x))].into(),
            }).collect(),
        };
        let back: TelemetryBatch = decode(&encode_compressed(&batch).expect("fits")).expect("decodes");
        prop_assert_eq!(back, batch);
    }
}
