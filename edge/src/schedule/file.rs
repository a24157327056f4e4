//! `schedule.file`: a schedule document (JSON) installed at start-up as the current
//! schedule when the store holds none (field engineers, demos, a gateway commissioned
//! before its first link). It is checked exactly as a `schedule/set` for the current slot.

use std::path::Path;

use chrono::{DateTime, Utc};
use shiki_proto::{AckResult, PROTOCOL_VERSION, PointInfo, ScheduleSet, ScheduleSlot};
use shiki_shared::schedule::ScheduleDocument;

use super::{ScheduleState, StoredSchedules};

/// Reads the schedule at `path` and validates it against `catalog` at `now`. Returns the
/// pair to store (the document in the current slot), or why it cannot be used (the file,
/// then every problem).
pub fn schedule_from_file(
    path: &Path,
    catalog: Option<&[PointInfo]>,
    now: DateTime<Utc>,
) -> Result<StoredSchedules, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let document: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{shown} is not valid JSON: {e}"))?;
    let parsed = ScheduleDocument::from_value(&document)
        .map_err(|e| format!("{shown} is not a schedule document: {e}"))?;
    let set = ScheduleSet {
        v: PROTOCOL_VERSION,
        schedule_id: parsed.id.clone(),
        hash: parsed.hash(),
        slot: ScheduleSlot::Current,
        document,
    };
    let fx = ScheduleState::default().on_schedule_set(&set, catalog, now);
    match (fx.ack, fx.persist) {
        (Some(ack), Some(pair)) if ack.result == AckResult::Accepted => Ok(pair),
        (Some(ack), _) => Err(format!(
            "schedule {} in {shown} is refused: {}",
            set.schedule_id,
            ack.reason.unwrap_or_else(|| "no reason given".into())
        )),
        _ => Err(format!(
            "schedule {} in {shown} was not accepted",
            set.schedule_id
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/schedule.example.json")
    }

    #[test]
    fn the_deploy_example_installs_against_the_default_map() {
        let catalog = crate::plc_sim::default_map().catalog().points;
        let now = "2026-11-23T12:00:00Z".parse().expect("instant");
        let pair = schedule_from_file(&example(), Some(&catalog), now).expect("example installs");
        let current = pair.current.expect("current slot");
        assert_eq!(current.id, "sapporo-2027");
        assert!(pair.next.is_none());
    }

    #[test]
    fn a_bad_file_says_which_file_and_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = "2026-11-23T12:00:00Z".parse().expect("instant");
        let missing = dir.path().join("none.json");
        let err = schedule_from_file(&missing, None, now).expect_err("missing");
        assert!(
            err.contains("none.json") && err.contains("cannot read"),
            "{err}"
        );

        let text = std::fs::read_to_string(example()).expect("example");
        let bad = dir.path().join("bad.json");
        std::fs::write(
            &bad,
            text.replace("\"chw_setpoint_c\": 7.0", "\"chw_setpoint_c\": 99.0"),
        )
        .expect("write");
        let catalog = crate::plc_sim::default_map().catalog().points;
        let err = schedule_from_file(&bad, Some(&catalog), now).expect_err("out of limits");
        assert!(
            err.contains("bad.json") && err.contains("refused") && err.contains("chw_setpoint_c"),
            "{err}"
        );
    }
}
