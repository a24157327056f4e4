//! Helpers for tests of the store and of its users (feature `test-support`, and this
//! crate's own tests). Not part of the production API.

/// The seqs of a device's stored samples in `query`, oldest first.
pub fn stored_seqs_in(
    store: &dyn crate::Store,
    device: &shiki_proto::DeviceId,
    query: &crate::TimeQuery,
) -> Vec<u64> {
    store
        .telemetry(device, query)
        .expect("telemetry reads")
        .iter()
        .map(|s| s.seq)
        .collect()
}

/// The seqs of all of a device's stored samples, oldest first.
pub fn stored_seqs(store: &dyn crate::Store, device: &shiki_proto::DeviceId) -> Vec<u64> {
    stored_seqs_in(store, device, &crate::TimeQuery::default())
}
