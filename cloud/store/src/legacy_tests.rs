//! Records written by older versions of the cloud still load: the values below are the
//! bytes the old code stored, put into a redb file the way it put them there.

use chrono::{DateTime, Utc};
use redb::TableDefinition;
use serde_json::json;
use shiki_proto::DeviceId;

use super::*;
use crate::testing::stored_seqs;
use shiki_cloud_model::Role;

/// A `devices` row as the cloud wrote it while it had its own shadow copy
/// (`device/shadow.rs`: `desired_meta` / `reported_meta` with a per-key `version`).
/// `chw_setpoint` was set in version 1 and again in version 2 (with an `until`), `mode`
/// in version 1.
const OLD_SNAPSHOT: &str = r#"{"shadow":{"desired":{"chw_setpoint":7.5,"mode":"cooling"},"reported":{"chw_setpoint":7.0,"mode":"cooling"},"version":2,"desired_meta":{"chw_setpoint":{"timestamp":"2026-01-15T09:05:00Z","until":"2026-01-15T18:00:00Z","version":2},"mode":{"timestamp":"2026-01-15T09:00:00Z","version":1}},"reported_meta":{"chw_setpoint":{"timestamp":"2026-01-15T09:01:00Z","version":1},"mode":{"timestamp":"2026-01-15T09:01:00Z","version":1}}},"status":{"v":1,"state":"online","software_version":"0.1.0"},"catalog":{"v":1,"points":[{"name":"chw_setpoint","role":"setting","kind":"number","writable":true,"min":5.0,"max":15.0,"resolution":0.1,"unit":"°C"},{"name":"mode","role":"setting","kind":"enum","writable":true,"options":["cooling","heating"]}]},"last_seen":"2026-01-15T09:06:00Z","last_event_seq":3,"offline_since":null,"offline_alerted":false,"applied_version":1,"settings":{}}"#;

const DEVICES: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("devices");
const HISTORY: TableDefinition<'static, (&str, u64), &[u8]> = TableDefinition::new("history");

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("valid test instant")
}

/// A store file holding `rows` in the `devices` table and `history` rows, as an older
/// cloud left it.
fn old_store_with(
    dir: &tempfile::TempDir,
    rows: &[(&str, &str)],
    history: &[(&str, u64, &str)],
) -> RedbStore {
    let path = dir.path().join("cloud.redb");
    {
        let db = redb::Database::create(&path).expect("redb file");
        let wtx = db.begin_write().expect("write transaction");
        {
            let mut t = wtx.open_table(DEVICES).expect("devices table");
            for (device, json) in rows {
                t.insert(*device, json.as_bytes()).expect("insert");
            }
            let mut t = wtx.open_table(HISTORY).expect("history table");
            for (device, id, json) in history {
                t.insert((*device, *id), json.as_bytes()).expect("insert");
            }
        }
        wtx.commit().expect("commit");
    }
    RedbStore::open(&path, 64).expect("store opens")
}

fn old_store(dir: &tempfile::TempDir, rows: &[(&str, &str)]) -> RedbStore {
    old_store_with(dir, rows, &[])
}

#[test]
fn a_snapshot_of_the_old_cloud_shadow_restores_with_per_key_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = old_store(&dir, &[("gw-1", OLD_SNAPSHOT)]);
    let id = DeviceId::new("gw-1").expect("id");
    let snap = store.device(&id).expect("decodes").expect("stored");

    let shadow = &snap.shadow;
    assert_eq!(shadow.version(), 2);
    assert_eq!(
        shadow.desired(),
        json!({"chw_setpoint": 7.5, "mode": "cooling"})
            .as_object()
            .expect("object")
    );
    assert_eq!(shadow.reported()["chw_setpoint"], json!(7.0));
    let sp = &shadow.metadata().desired["chw_setpoint"];
    assert_eq!(sp.version, Some(2));
    assert_eq!(sp.until, Some(at("2026-01-15T18:00:00Z")));
    assert_eq!(sp.timestamp, at("2026-01-15T09:05:00Z"));
    assert_eq!(shadow.metadata().desired["mode"].version, Some(1));
    assert_eq!(shadow.set_in_version("mode"), Some(1));
    let reported = &shadow.metadata().reported["chw_setpoint"];
    assert_eq!(reported.timestamp, at("2026-01-15T09:01:00Z"));
    assert_eq!(reported.version, None, "reported metadata keeps no version");
    // The rest of the snapshot is untouched.
    assert_eq!(snap.last_event_seq, 3);
    assert_eq!(snap.applied_version, Some(1));
    assert!(snap.catalog.is_some());

    // The per-key versions hold: the edge ends the overrides it got in version 1; `mode`
    // goes, `chw_setpoint` (set again in version 2) stays.
    let mut shadow = snap.shadow.clone();
    let now = at("2026-01-15T10:00:02Z");
    assert!(shadow.remove_expired("chw_setpoint", 1, now).is_none());
    assert!(shadow.remove_expired("mode", 1, now).is_some());
    assert_eq!(shadow.version(), 3);
    assert!(!shadow.desired().contains_key("mode"));
    assert_eq!(shadow.desired()["chw_setpoint"], json!(7.5));

    // Saved again, the snapshot is in today's format and reads back the same.
    let snapshot = DeviceSnapshot { shadow, ..snap };
    let text = serde_json::to_string(&snapshot).expect("serialises");
    assert!(!text.contains("desired_meta"), "{text}");
    let back: DeviceSnapshot = serde_json::from_str(&text).expect("decodes");
    assert_eq!(back, snapshot);
}

#[test]
fn an_old_snapshot_without_metadata_or_key_versions_still_loads() {
    // Early snapshots had no per-key `version` (it was `#[serde(default)]`) and could
    // lack the metadata maps altogether.
    let early = r#"{"shadow":{"desired":{"sp":7.0},"reported":{},"version":4,"desired_meta":{"sp":{"timestamp":"2026-01-15T09:00:00Z"}}}}"#;
    let bare = r#"{"shadow":{"desired":{"sp":7.0},"reported":{"sp":7.0},"version":1}}"#;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = old_store(&dir, &[("early", early), ("bare", bare)]);

    let snap = store
        .device(&DeviceId::new("early").expect("id"))
        .expect("decodes")
        .expect("stored");
    assert_eq!(snap.shadow.version(), 4);
    assert_eq!(snap.shadow.metadata().desired["sp"].version, None);
    assert_eq!(snap.shadow.set_in_version("sp"), Some(0));

    let snap = store
        .device(&DeviceId::new("bare").expect("id"))
        .expect("decodes")
        .expect("stored");
    assert_eq!(snap.shadow.version(), 1);
    assert_eq!(snap.shadow.reported()["sp"], json!(7.0));
    assert!(snap.shadow.metadata().desired.is_empty());
}

/// History rows as the cloud wrote them before it kept API-key roles and device ids
/// (`Author` was adjacently tagged: `{"kind": "api_key", "name": "ops"}`, `{"kind":
/// "device"}`).
const OLD_HISTORY: [(&str, u64, &str); 4] = [
    (
        "gw-1",
        1,
        r#"{"id":1,"device":"gw-1","ts":"2026-01-15T09:00:00Z","actor":{"kind":"api_key","name":"ops"},"side":"desired","key":"chw_setpoint","old":null,"new":7.5,"version":1,"comment":"cold snap","verification_id":2}"#,
    ),
    (
        "gw-1",
        3,
        r#"{"id":3,"device":"gw-1","ts":"2026-01-15T09:01:00Z","actor":{"kind":"device"},"side":"reported","key":"chw_setpoint","old":7.0,"new":7.5,"version":1}"#,
    ),
    (
        "gw-1",
        4,
        r#"{"id":4,"device":"gw-1","ts":"2026-01-15T09:02:00Z","actor":{"kind":"operator","name":"alice"},"side":"desired","key":"mode","old":null,"new":"cooling","version":2}"#,
    ),
    (
        "gw-1",
        5,
        r#"{"id":5,"device":"gw-1","ts":"2026-01-15T10:00:00Z","actor":{"kind":"schedule"},"side":"desired","key":"chw_setpoint","old":7.5,"new":null,"version":3,"comment":"override expired at 2026-01-15T10:00:00+00:00"}"#,
    ),
];

#[test]
fn old_history_entries_load_with_no_role_and_the_entry_device_as_reporter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = old_store_with(&dir, &[], &OLD_HISTORY);
    let gw = DeviceId::new("gw-1").expect("id");
    let items = store
        .history(&gw, &TimeQuery::default())
        .expect("old entries decode");
    let actors: Vec<(u64, Author)> = items
        .iter()
        .map(|i| (i.entry.id, i.entry.actor.clone()))
        .collect();
    assert_eq!(
        actors,
        vec![
            (5, Author::Schedule),
            (4, Author::Operator("alice".into())),
            (3, Author::Device(gw.clone())),
            (
                1,
                Author::ApiKey {
                    name: "ops".into(),
                    role: None
                }
            ),
        ]
    );
    let first = &items[3].entry;
    assert_eq!(first.comment.as_deref(), Some("cold snap"));
    assert_eq!(first.verification_id, Some(2));
    assert_eq!(first.new, json!(7.5));
}

#[test]
fn history_actors_are_stored_with_role_and_device_id_and_read_back() {
    let gw = DeviceId::new("gw-1").expect("id");
    let entry = |id: u64, actor: Author| HistoryEntry {
        id,
        device: gw.clone(),
        ts: at("2026-01-15T09:00:00Z"),
        actor,
        side: Side::Desired,
        key: "chw_setpoint".into(),
        old: serde_json::Value::Null,
        new: json!(7.5),
        version: 1,
        comment: None,
        verification_id: None,
    };
    let cases = [
        (
            Author::api_key("ops", Role::Operator),
            json!({"kind": "api_key", "name": "ops", "role": "operator"}),
        ),
        (
            Author::Device(gw.clone()),
            json!({"kind": "device", "name": "gw-1"}),
        ),
        (
            Author::Operator("alice".into()),
            json!({"kind": "operator", "name": "alice"}),
        ),
        (Author::Schedule, json!({"kind": "schedule"})),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let store = old_store(&dir, &[]);
    let mut writes = Vec::new();
    for (i, (actor, stored)) in cases.iter().enumerate() {
        let e = entry(i as u64 + 1, actor.clone());
        let json = serde_json::to_value(&e).expect("serialises");
        assert_eq!(&json["actor"], stored);
        writes.push(Write::History(Box::new(e)));
    }
    store.submit(writes).wait_blocking().expect("commit");
    let back: Vec<Author> = store
        .history(&gw, &TimeQuery::default())
        .expect("reads")
        .into_iter()
        .rev()
        .map(|i| i.entry.actor)
        .collect();
    let expected: Vec<Author> = cases.into_iter().map(|(a, _)| a).collect();
    assert_eq!(back, expected);
}

const TELEMETRY: TableDefinition<'static, (&str, u64), &[u8]> = TableDefinition::new("telemetry");

/// Telemetry rows from before chunks held one sample each, as JSON. They read back, new
/// samples go around them, and a replay of one of them is a duplicate.
#[test]
fn telemetry_rows_of_one_sample_each_read_back_and_deduplicate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cloud.redb");
    {
        let db = redb::Database::create(&path).expect("redb file");
        let wtx = db.begin_write().expect("write transaction");
        {
            let mut t = wtx.open_table(TELEMETRY).expect("telemetry table");
            for seq in [1u64, 2, 4] {
                let row = format!(
                    r#"{{"seq":{seq},"ts":"2026-01-15T09:0{seq}:00Z","values":{{"supply_temp":7.{seq}}}}}"#
                );
                t.insert(("gw-1", seq), row.as_bytes()).expect("insert");
            }
        }
        wtx.commit().expect("commit");
    }
    let store = RedbStore::open(&path, 64).expect("store opens");
    let d = DeviceId::new("gw-1").expect("id");
    let sample = |seq: u64| shiki_proto::Sample {
        seq,
        ts: at(&format!("2026-01-15T09:0{seq}:00Z")),
        values: [("supply_temp".to_owned(), (7.0 + seq as f64 / 10.0).into())].into(),
    };
    store
        .submit(vec![Write::Telemetry {
            device: d.clone(),
            samples: [2, 3, 4, 5]
                .into_iter()
                .map(|s| SampleRow::encode(&sample(s)))
                .collect(),
        }])
        .wait_blocking()
        .expect("commit");
    let stats = store.stats();
    assert_eq!((stats.samples_stored, stats.duplicates_dropped), (2, 2));
    let got = store.telemetry(&d, &TimeQuery::default()).expect("query");
    assert_eq!(got, (1..=5).map(sample).collect::<Vec<_>>());
    assert!(store.telemetry_gaps(&d, 5).expect("gaps").is_empty());
    assert_eq!(store.last_sample(&d).expect("last"), Some(sample(5)));
}

const STAGING: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("telemetry_staging");

/// Staged rows from before group rows held one device's chunk each:
/// `[device length: u16 LE][device][chunk]`. They read back next to the group rows written
/// after them, and a replay moves both into `telemetry` in seq order.
#[test]
fn staged_rows_of_one_device_each_read_back_and_move_into_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cloud.redb");
    let json = |seq: u64| {
        format!(
            r#"{{"seq":{seq},"ts":"2026-01-15T09:0{seq}:00Z","values":{{"supply_temp":7.{seq}}}}}"#
        )
    };
    {
        let db = redb::Database::create(&path).expect("redb file");
        let wtx = db.begin_write().expect("write transaction");
        {
            let mut t = wtx.open_table(STAGING).expect("staging table");
            for (key, device, seqs) in [(0u64, "gw-1", &[1u64, 2][..]), (1, "gw-2", &[1][..])] {
                // A chunk: [0x01][last seq][count], then [seq][len][JSON] per sample.
                let mut chunk = vec![0x01];
                chunk.extend_from_slice(&seqs[seqs.len() - 1].to_le_bytes());
                chunk.extend_from_slice(&(seqs.len() as u32).to_le_bytes());
                for &seq in seqs {
                    let body = json(seq);
                    chunk.extend_from_slice(&seq.to_le_bytes());
                    chunk.extend_from_slice(&(body.len() as u32).to_le_bytes());
                    chunk.extend_from_slice(body.as_bytes());
                }
                let mut row = (device.len() as u16).to_le_bytes().to_vec();
                row.extend_from_slice(device.as_bytes());
                row.extend_from_slice(&chunk);
                t.insert(key, row.as_slice()).expect("insert");
            }
        }
        wtx.commit().expect("commit");
    }
    let store = RedbStore::open(&path, 64).expect("store opens");
    let (d1, d2) = (
        DeviceId::new("gw-1").expect("id"),
        DeviceId::new("gw-2").expect("id"),
    );
    let sample = |seq: u64| shiki_proto::Sample {
        seq,
        ts: at(&format!("2026-01-15T09:0{seq}:00Z")),
        values: [("supply_temp".to_owned(), (7.0 + seq as f64 / 10.0).into())].into(),
    };
    let commit = |writes: Vec<(&DeviceId, &[u64])>| {
        let writes = writes
            .into_iter()
            .map(|(d, seqs)| Write::Telemetry {
                device: d.clone(),
                samples: seqs
                    .iter()
                    .map(|&s| SampleRow::encode(&sample(s)))
                    .collect(),
            })
            .collect();
        store.submit(writes).wait_blocking().expect("commit");
    };
    let seqs = |d: &DeviceId| stored_seqs(&store, d);
    assert_eq!(seqs(&d1), vec![1, 2]);
    assert_eq!(store.last_sample(&d2).expect("last"), Some(sample(1)));

    // Fresh samples of both devices: one group row after the old rows.
    commit(vec![(&d1, &[3]), (&d2, &[2, 3])]);
    assert_eq!(seqs(&d1), vec![1, 2, 3]);
    assert_eq!(seqs(&d2), vec![1, 2, 3]);
    assert_eq!(store.stats().samples_stored, 3);

    // A replay of an old staged sample moves everything into chunks and is dropped.
    commit(vec![(&d1, &[2, 4])]);
    let stats = store.stats();
    assert_eq!((stats.samples_stored, stats.duplicates_dropped), (4, 1));
    assert_eq!(seqs(&d1), vec![1, 2, 3, 4]);
    assert_eq!(seqs(&d2), vec![1, 2, 3]);
    assert_eq!(store.last_sample(&d1).expect("last"), Some(sample(4)));
    assert_eq!(
        store.telemetry(&d2, &TimeQuery::default()).expect("query"),
        (1..=3).map(sample).collect::<Vec<_>>()
    );
}

const TOKENS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("tokens");

#[test]
fn a_stored_token_with_an_unknown_role_is_an_error_not_a_viewer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cloud.redb");
    {
        let db = redb::Database::create(&path).expect("redb file");
        let wtx = db.begin_write().expect("write transaction");
        {
            let mut t = wtx.open_table(TOKENS).expect("tokens table");
            let row =
                r#"{"hash":"ab","name":"ops","role":"superuser","created":"2026-01-01T00:00:00Z"}"#;
            t.insert("ab", row.as_bytes()).expect("insert");
        }
        wtx.commit().expect("commit");
    }
    let store = RedbStore::open(&path, 64).expect("store opens");
    let err = store
        .token("ab")
        .expect_err("an unknown role does not load");
    assert!(
        matches!(&err, StoreError::Corrupt { table: "tokens", reason } if reason.contains("superuser")),
        "{err}"
    );
    assert!(store.tokens().is_err());
}
