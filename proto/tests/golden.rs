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

// ---------------------------------------------------------------------------------------
// telemetry, protocol version 2 (compact)

fn no_dictionary(_: &str) -> Option<PointDictionary> {
    None
}

#[test]
fn compact_golden_holds_the_same_samples_as_the_json_golden() {
    let json: TelemetryBatch = decode(&golden("telemetry.json")).expect("v1 decodes");
    let (compact, carried) =
        decode_telemetry(&golden("telemetry-compact.json"), no_dictionary).expect("v2 decodes");
    assert_eq!(compact.v, COMPACT_VERSION);
    assert_eq!(compact.samples, json.samples);
    let dict = carried.expect("the golden batch carries its names");
    assert_eq!(dict.id(), "7fa56edb2c0e97a3");
    // The edge's encoder writes exactly the golden batch (as JSON values; the file is
    // pretty-printed).
    let ours = compact_json(&json.samples, &dict, true, false).expect("encodes");
    let ours: serde_json::Value = serde_json::from_slice(&ours).expect("json");
    let expected: serde_json::Value =
        serde_json::from_slice(&golden("telemetry-compact.json")).expect("json");
    assert_eq!(ours, expected);
    // And the v1 decoder of an older build still reads the v1 golden through the new
    // entry point.
    let (again, none) =
        decode_telemetry(&golden("telemetry.json"), no_dictionary).expect("v1 through v2");
    assert_eq!(again, json);
    assert!(none.is_none());
}

#[test]
fn compact_golden_without_names_needs_a_known_dictionary() {
    let by_id = golden("telemetry-compact-by-id.json");
    let err = decode_telemetry(&by_id, no_dictionary).expect_err("unknown dictionary");
    assert!(
        err.to_string().contains("7fa56edb2c0e97a3"),
        "error names the dictionary: {err}"
    );
    let (_, carried) =
        decode_telemetry(&golden("telemetry-compact.json"), no_dictionary).expect("decodes");
    let dict = carried.expect("carried");
    let (batch, _) = decode_telemetry(&by_id, |id| (id == dict.id()).then(|| dict.clone()))
        .expect("decodes with the dictionary");
    let seqs: Vec<u64> = batch.samples.iter().map(|s| s.seq).collect();
    assert_eq!(seqs, [1043, 1044]);
    assert_eq!(
        batch.samples[1].values["return_c"],
        PointValue::Number(11.9)
    );
    assert_eq!(batch.samples[1].values["supply_c"], PointValue::Number(7.0));
    assert_eq!(
        batch.samples[1].ts - batch.samples[0].ts,
        chrono::Duration::seconds(60)
    );
}

#[test]
fn malformed_compact_batches_fail_with_a_reason() {
    let golden_text = String::from_utf8(golden("telemetry-compact.json")).expect("utf8");
    let bytes = golden_text.as_bytes();
    for cut in 0..bytes.len() {
        let _ = decode_telemetry(&bytes[..cut], no_dictionary);
    }
    for (edit, expect) in [
        (
            golden_text.replace("7fa56edb2c0e97a3", "0000000000000000"),
            "not the",
        ),
        (golden_text.replace("[1, 60,", "[0, 60,"), "seq delta 0"),
        (golden_text.replace("\"p\": 0", "\"p\": 2"), "precision"),
        (
            golden_text.replace("\"cooling\"]", "\"cooling\", 1]"),
            "values for a dictionary",
        ),
        (golden_text.replace("[1, 60,", "[1, {},"), "time delta"),
        (golden_text.replace("27.4", "[27.4]"), "not a point value"),
    ] {
        let err = decode_telemetry(edit.as_bytes(), no_dictionary).expect_err(expect);
        assert!(err.to_string().contains(expect), "{expect}: {err}");
    }
}

proptest! {
    #[test]
    fn compact_batches_round_trip(
        start in 1u64..1_000_000,
        gaps in proptest::collection::vec(1u64..5, 0..40),
        steps in proptest::collection::vec(0i64..120_000, 40),
        nanos in prop_oneof![Just(0u32), Just(250_000_000), Just(1_000), Just(7)],
        values in proptest::collection::vec(
            proptest::collection::btree_map(
                prop_oneof![Just("a"), Just("b"), Just("c_long_name")],
                prop_oneof![
                    any::<bool>().prop_map(PointValue::Bool),
                    (-1e6f64..1e6).prop_map(PointValue::Number),
                    (-1000i32..1000).prop_map(|n| PointValue::Number(f64::from(n))),
                    "[a-z]{0,8}".prop_map(PointValue::Text),
                ],
                0..3,
            ),
            40,
        ),
        with_names in any::<bool>(),
    ) {
        let mut seq = start;
        let mut ts = chrono::DateTime::from_timestamp(1_780_000_000, nanos).expect("ts");
        let mut samples = vec![];
        for (i, gap) in std::iter::once(0).chain(gaps).enumerate() {
            seq += gap;
            ts += chrono::Duration::milliseconds(steps[i]);
            samples.push(Sample {
                seq,
                ts,
                values: values[i].iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
            });
        }
        let dict = PointDictionary::new(vec!["c_long_name".into(), "a".into(), "b".into()]);
        prop_assert!(dict.covers(&samples));
        let payload = encode_compact(&samples, &dict, with_names, true).expect("fits");
        let (back, carried) =
            decode_telemetry(&payload, |id| (id == dict.id()).then(|| dict.clone())).expect("decodes");
        prop_assert_eq!(back.samples, samples);
        prop_assert!(back.backlog);
        prop_assert_eq!(carried.is_some(), with_names);
    }
}
