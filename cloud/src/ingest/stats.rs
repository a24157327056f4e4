//! Ingest counters (lock-free; read by `/metrics` and the benches).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use shiki_proto::{Channel, ChannelKind, Direction};

/// Why a message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Payload not decodable (bad JSON, wrong shape, too large, bad gzip).
    Malformed,
    /// Topic outside the prefix or naming no known channel.
    UnknownTopic,
    /// Topic carries an invalid device id.
    InvalidDeviceId,
    /// A cloud→edge topic arrived at the cloud.
    WrongDirection,
    /// A compact telemetry batch names a point dictionary this cloud has not seen (neither
    /// in an earlier batch nor as the device's catalog) and does not carry its names.
    UnknownDictionary,
}

impl DropReason {
    pub const ALL: [DropReason; 5] = [
        DropReason::Malformed,
        DropReason::UnknownTopic,
        DropReason::InvalidDeviceId,
        DropReason::WrongDirection,
        DropReason::UnknownDictionary,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownTopic => "unknown_topic",
            DropReason::InvalidDeviceId => "invalid_device_id",
            DropReason::WrongDirection => "wrong_direction",
            DropReason::UnknownDictionary => "unknown_dictionary",
        }
    }
}

/// Ingest counters.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Messages accepted, by [`ChannelKind::index`].
    accepted: [AtomicU64; ChannelKind::ALL.len()],
    dropped: [AtomicU64; DropReason::ALL.len()],
    samples: AtomicU64,
    unstored: AtomicU64,
    implausible_time: AtomicU64,
}

impl IngestStats {
    pub(crate) fn accepted(&self, channel: &Channel) {
        self.accepted[channel.kind().index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dropped(&self, reason: DropReason) {
        let i = DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.dropped[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn samples(&self, n: usize) {
        self.samples.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn implausible_time(&self, n: usize) {
        self.implausible_time.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn unstored(&self, n: usize) {
        self.unstored.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Messages accepted, by the name of every edge→cloud channel kind.
    pub fn accepted_by_channel(&self) -> BTreeMap<String, u64> {
        ChannelKind::ALL
            .iter()
            .zip(&self.accepted)
            .filter(|(kind, _)| kind.direction() == Direction::EdgeToCloud)
            .map(|(kind, n)| (kind.name().to_owned(), n.load(Ordering::Relaxed)))
            .collect()
    }

    /// Messages accepted on every channel.
    pub fn accepted_total(&self) -> u64 {
        self.accepted
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .sum()
    }

    /// Messages dropped for `reason`.
    pub fn dropped_count(&self, reason: DropReason) -> u64 {
        DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.dropped[i].load(Ordering::Relaxed))
    }

    /// Messages dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }

    /// Messages whose store commit failed.
    pub fn unstored_total(&self) -> u64 {
        self.unstored.load(Ordering::Relaxed)
    }

    /// Telemetry samples stamped with an implausible time (stored all the same; see
    /// `ingest::odd_times`).
    pub fn implausible_time_total(&self) -> u64 {
        self.implausible_time.load(Ordering::Relaxed)
    }

    /// Telemetry samples received (before de-duplication).
    pub fn samples_received(&self) -> u64 {
        self.samples.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_messages_are_counted_under_the_name_of_every_edge_to_cloud_channel() {
        let stats = IngestStats::default();
        stats.accepted(&Channel::ShadowReported);
        stats.accepted(&Channel::JobUpdate(
            shiki_proto::JobId::new("ota-7").expect("valid"),
        ));
        stats.accepted(&Channel::JobUpdate(
            shiki_proto::JobId::new("ota-8").expect("valid"),
        ));
        let counts = stats.accepted_by_channel();
        let names: Vec<&str> = counts.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "catalog",
                "events",
                "jobs/update",
                "schedule/ack",
                "shadow/get",
                "shadow/reported",
                "status",
                "telemetry"
            ]
        );
        assert_eq!(counts["shadow/reported"], 1);
        assert_eq!(counts["jobs/update"], 2);
        assert_eq!(stats.accepted_total(), 3);
    }
}
