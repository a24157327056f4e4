//! Ingest counters (lock-free; read by `/metrics` and the benches).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use shiki_proto::Channel;

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
}

impl DropReason {
    pub const ALL: [DropReason; 4] = [
        DropReason::Malformed,
        DropReason::UnknownTopic,
        DropReason::InvalidDeviceId,
        DropReason::WrongDirection,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownTopic => "unknown_topic",
            DropReason::InvalidDeviceId => "invalid_device_id",
            DropReason::WrongDirection => "wrong_direction",
        }
    }
}

const CHANNELS: [&str; 8] = [
    "telemetry",
    "events",
    "status",
    "catalog",
    "shadow/reported",
    "shadow/get",
    "schedule/ack",
    "jobs/update",
];

/// Ingest counters.
#[derive(Debug, Default)]
pub struct IngestStats {
    accepted: [AtomicU64; 8],
    dropped: [AtomicU64; 4],
    samples: AtomicU64,
    unstored: AtomicU64,
}

impl IngestStats {
    pub(crate) fn accepted(&self, channel: &Channel) {
        let i = match channel {
            Channel::Telemetry => 0,
            Channel::Events => 1,
            Channel::Status => 2,
            Channel::Catalog => 3,
            Channel::ShadowReported => 4,
            Channel::ShadowGet => 5,
            Channel::ScheduleAck => 6,
            _ => 7,
        };
        self.accepted[i].fetch_add(1, Ordering::Relaxed);
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

    pub(crate) fn unstored(&self, n: usize) {
        self.unstored.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Messages accepted, by channel.
    pub fn accepted_by_channel(&self) -> BTreeMap<String, u64> {
        CHANNELS
            .iter()
            .zip(&self.accepted)
            .map(|(c, n)| ((*c).to_owned(), n.load(Ordering::Relaxed)))
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

    /// Telemetry samples received (before de-duplication).
    pub fn samples_received(&self) -> u64 {
        self.samples.load(Ordering::Relaxed)
    }
}
