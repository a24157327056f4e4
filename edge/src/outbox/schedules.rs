//! [`ScheduleStore`] on the edge's redb file: the schedule actor's two slots live in the
//! `schedules` table of the same database as the outbox, written through the outbox writer
//! thread (the only owner of the database) in one transaction per save.

use crate::schedule::{ScheduleStore, ScheduleStoreError, StoredSchedules};

use super::OutboxHandle;

/// The schedule store of the running agent. Its calls block until the writer thread has
/// answered, so the schedule actor runs them on `spawn_blocking` (never on an async task).
#[derive(Debug, Clone)]
pub struct RedbScheduleStore {
    outbox: OutboxHandle,
}

impl RedbScheduleStore {
    pub fn new(outbox: OutboxHandle) -> Self {
        Self { outbox }
    }
}

impl ScheduleStore for RedbScheduleStore {
    fn load(&self) -> Result<StoredSchedules, ScheduleStoreError> {
        self.outbox
            .load_schedules_blocking()
            .map_err(|e| ScheduleStoreError::Load(e.to_string()))
    }

    fn save(&self, schedules: &StoredSchedules) -> Result<(), ScheduleStoreError> {
        self.outbox
            .save_schedules_blocking(schedules.clone())
            .map_err(|e| ScheduleStoreError::Save(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::outbox::{OutboxOptions, RedbOutbox};
    use crate::schedule::StoredSchedule;

    fn open(path: &Path) -> (OutboxHandle, std::thread::JoinHandle<()>) {
        OutboxHandle::start(RedbOutbox::open(path, OutboxOptions::default()).expect("open"))
            .expect("start writer")
    }

    fn doc(id: &str) -> StoredSchedule {
        StoredSchedule {
            id: id.to_owned(),
            hash: format!("{id}-hash"),
            document: serde_json::json!({ "id": id, "profiles": {} }),
        }
    }

    async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        tokio::task::spawn_blocking(f).await.expect("blocking task")
    }

    #[tokio::test]
    async fn schedules_round_trip_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("edge.redb");
        let pair = StoredSchedules {
            current: Some(doc("tokyo-2027")),
            next: Some(doc("tokyo-2028")),
        };
        {
            let (outbox, join) = open(&path);
            let store = RedbScheduleStore::new(outbox.clone());
            let empty = blocking({
                let s = store.clone();
                move || s.load()
            })
            .await
            .expect("load");
            assert_eq!(empty, StoredSchedules::default(), "nothing stored yet");
            blocking({
                let (s, p) = (store.clone(), pair.clone());
                move || s.save(&p)
            })
            .await
            .expect("save");
            let back = blocking(move || store.load()).await.expect("load");
            assert_eq!(back, pair);
            outbox.close().await;
            join.join().expect("writer");
        }
        let (outbox, _join) = open(&path);
        assert_eq!(outbox.load_schedules().await.expect("reload"), pair);

        // One save replaces both slots: an emptied slot is removed.
        let only_next = StoredSchedules {
            current: None,
            next: Some(doc("tokyo-2029")),
        };
        outbox
            .save_schedules(only_next.clone())
            .await
            .expect("save");
        assert_eq!(outbox.load_schedules().await.expect("load"), only_next);
    }

    #[tokio::test]
    async fn a_store_whose_writer_stopped_reports_what_failed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (outbox, join) = open(&dir.path().join("edge.redb"));
        outbox.close().await;
        join.join().expect("writer");
        let store = RedbScheduleStore::new(outbox);
        let err = blocking(move || store.save(&StoredSchedules::default()))
            .await
            .expect_err("writer gone");
        assert!(
            err.to_string().contains("saving the schedules failed"),
            "{err}"
        );
    }
}
