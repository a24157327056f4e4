//! Receipts: the embedded broker acknowledges a device's telemetry or events only once the
//! cloud has stored them.
//!
//! rumqttd answers a QoS 1 PUBLISH with its PUBACK as soon as its router has the message;
//! the ingest stores it a moment later. An edge deletes what the PUBACK acknowledged, so a
//! cloud killed in between (power cut, SIGKILL, OOM) lost those samples for good — the
//! fault campaign (`shiki-chaos`) found it. The front ([`super::DeviceFront`]) now holds
//! each data PUBACK until the ingest says the message is handled: committed, or refused
//! (malformed, a replay already stored), in the order the device published. A message the
//! store could not commit closes the device's connection instead, and the edge sends it
//! again; so does a PUBACK held longer than [`HOLD_LIMIT`].
//!
//! A message is known to both sides by its topic and payload ([`Receipts::key`]): the front
//! sees the device's bytes, the ingest rumqttd's copy of them.
//!
//! Until the ingest has subscribed (its SUBACK, [`Receipts::set_ready`]) the front refuses
//! devices (CONNACK 3, server unavailable; they retry): rumqttd drops a message nobody is
//! subscribed to, so data sent in the first moments after a start would be acknowledged to
//! no one.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;

/// Longest a data PUBACK is held for its commit; past it the front closes the device's
/// connection (the edge re-sends, the store drops what it already has).
pub const HOLD_LIMIT: Duration = Duration::from_secs(30);

/// Entries past which settled-or-abandoned waits are swept out (a device that disconnected
/// while its PUBACK was held leaves one behind until its message is handled).
const SWEEP_ABOVE: usize = 4096;

/// Messages the front waits for, by key.
#[derive(Debug, Default)]
pub struct Receipts {
    waiting: Mutex<HashMap<u64, Vec<oneshot::Sender<bool>>>>,
    ready: std::sync::atomic::AtomicBool,
}

impl Receipts {
    /// The ingest's subscriptions are in place: devices may connect.
    pub fn set_ready(&self) {
        self.ready.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether the ingest has subscribed.
    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The key of a message: a hash of its topic and payload.
    pub fn key(topic: &str, payload: &[u8]) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        topic.hash(&mut h);
        payload.hash(&mut h);
        h.finish()
    }

    /// Waits for the message with `key`: the answer is `true` once it is handled (stored or
    /// refused), `false` when the store could not commit it.
    pub fn expect(&self, key: u64) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if waiting.len() > SWEEP_ABOVE {
            waiting.retain(|_, senders| {
                senders.retain(|s| !s.is_closed());
                !senders.is_empty()
            });
        }
        waiting.entry(key).or_default().push(tx);
        rx
    }

    /// The ingest is done with the message with `key`: `stored` when its writes were
    /// committed (or it had none), `false` when the commit failed.
    pub fn settle(&self, key: u64, stored: bool) {
        self.settle_all([(key, stored)]);
    }

    /// [`Receipts::settle`] for each of a burst's messages, under one lock.
    pub fn settle_all(&self, settled: impl IntoIterator<Item = (u64, bool)>) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if waiting.is_empty() {
            return;
        }
        for (key, stored) in settled {
            for s in waiting.remove(&key).into_iter().flatten() {
                let _ = s.send(stored);
            }
        }
    }

    /// Messages waited for now.
    pub fn waiting(&self) -> usize {
        self.waiting.lock().map_or(0, |w| w.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_ends_when_its_message_is_settled_and_not_before() {
        let r = Receipts::default();
        let k = Receipts::key("shiki/v1/d/a/telemetry", b"{\"v\":1}");
        assert_ne!(k, Receipts::key("shiki/v1/d/b/telemetry", b"{\"v\":1}"));
        assert_ne!(k, Receipts::key("shiki/v1/d/a/telemetry", b"{\"v\":2}"));
        let mut first = r.expect(k);
        let mut again = r.expect(k);
        assert!(first.try_recv().is_err(), "not settled yet");
        r.settle(Receipts::key("other", b""), true);
        assert!(first.try_recv().is_err(), "another message settles nothing");
        r.settle(k, true);
        assert_eq!(first.try_recv(), Ok(true));
        assert_eq!(
            again.try_recv(),
            Ok(true),
            "a re-send waits for the same commit"
        );
        assert_eq!(r.waiting(), 0);

        let mut failed = r.expect(k);
        r.settle(k, false);
        assert_eq!(failed.try_recv(), Ok(false));
    }

    #[test]
    fn waits_whose_device_left_are_swept() {
        let r = Receipts::default();
        for k in 0..=SWEEP_ABOVE as u64 {
            drop(r.expect(k));
        }
        let _live = r.expect(u64::MAX);
        assert_eq!(r.waiting(), 1);
    }
}
