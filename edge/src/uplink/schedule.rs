//! The uplink's part of the yearly schedule: `schedule/set` in, `schedule/ack` out.
//!
//! - An incoming `schedule/set` is decoded here; a malformed one is logged with its topic
//!   and the reason, counted ([`MalformedSchedules`]) and dropped. A decoded one goes to the
//!   schedule actor as [`ScheduleSetReceived`].
//! - A [`PublishScheduleAck`] is kept in [`PendingAcks`] (the latest per schedule id) until
//!   the broker's PUBACK, and published on every (re)connect while it is pending, so an ack
//!   produced offline (or lost with a dropped connection) still reaches the cloud.

use std::collections::BTreeMap;

use actix::prelude::*;
use rumqttc::QoS;
use shiki_proto::{Channel, ScheduleAck, ScheduleSet, decode, encode};

use super::{Tag, Uplink};
use crate::schedule::{PublishScheduleAck, ScheduleSetReceived};

/// Most schedule ids with an ack waiting; past it the oldest pending ack is forgotten (the
/// cloud pushes again until it sees an ack, which is then acked again).
pub const MAX_PENDING_ACKS: usize = 16;

/// Acks waiting for the broker's PUBACK: the latest one per schedule id.
#[derive(Debug, Default)]
pub struct PendingAcks {
    last_generation: u64,
    by_id: BTreeMap<String, (u64, ScheduleAck)>,
}

impl PendingAcks {
    /// Keeps `ack` (replacing an older one for the same schedule id); returns its generation.
    pub fn push(&mut self, ack: ScheduleAck) -> u64 {
        self.last_generation += 1;
        let generation = self.last_generation;
        self.by_id
            .insert(ack.schedule_id.clone(), (generation, ack));
        while self.by_id.len() > MAX_PENDING_ACKS {
            let oldest = self
                .by_id
                .iter()
                .min_by_key(|(_, (g, _))| *g)
                .map(|(id, _)| id.clone());
            let Some(id) = oldest else { break };
            tracing::warn!(schedule_id = %id, "too many schedule acks pending; oldest forgotten");
            self.by_id.remove(&id);
        }
        generation
    }

    /// The broker acknowledged the ack of `generation`: it is delivered. A newer ack for
    /// the same schedule (another generation) stays pending.
    pub fn delivered(&mut self, generation: u64) {
        self.by_id.retain(|_, (g, _)| *g != generation);
    }

    /// Pending acks with their generations, oldest first.
    pub fn pending(&self) -> Vec<(u64, ScheduleAck)> {
        let mut out: Vec<_> = self.by_id.values().cloned().collect();
        out.sort_by_key(|(g, _)| *g);
        out
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// How many `schedule/set` messages were dropped as malformed (tests, diagnostics).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "u64")]
pub struct MalformedSchedules;

impl Uplink {
    pub(super) fn on_schedule_set(&mut self, topic: &str, payload: &[u8]) {
        let set = match decode::<ScheduleSet>(payload) {
            Ok(set) => set,
            Err(e) => {
                self.malformed_schedules += 1;
                tracing::warn!(%topic, reason = %e, count = self.malformed_schedules, "malformed schedule/set dropped");
                return;
            }
        };
        match &self.schedule {
            Some(to) => {
                tracing::info!(%topic, id = %set.schedule_id, slot = ?set.slot, "schedule received");
                to.do_send(ScheduleSetReceived(set));
            }
            None => {
                tracing::warn!(%topic, id = %set.schedule_id, "schedule received but no schedule actor runs; dropped")
            }
        }
    }

    fn publish_schedule_ack(&mut self, generation: u64, ack: &ScheduleAck) {
        let payload = match encode(ack) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, id = %ack.schedule_id, "schedule ack cannot be encoded; dropped");
                self.schedule_acks.delivered(generation);
                return;
            }
        };
        let topic = self.topic(&Channel::ScheduleAck);
        match self
            .client
            .try_publish(topic.clone(), QoS::AtLeastOnce, false, payload)
        {
            Ok(()) => {
                tracing::info!(%topic, id = %ack.schedule_id, result = ?ack.result, "schedule ack published");
                self.window.requested(Tag::ScheduleAck { generation });
            }
            // Still pending: published again on the next connect.
            Err(e) => tracing::warn!(%topic, error = %e, "schedule ack publish refused; kept"),
        }
    }

    /// After a connect: publish every ack still waiting for its PUBACK.
    pub(super) fn publish_pending_schedule_acks(&mut self) {
        for (generation, ack) in self.schedule_acks.pending() {
            self.publish_schedule_ack(generation, &ack);
        }
    }
}

impl Handler<PublishScheduleAck> for Uplink {
    type Result = ();

    fn handle(&mut self, msg: PublishScheduleAck, _ctx: &mut Context<Self>) {
        let generation = self.schedule_acks.push(msg.0.clone());
        if self.window.mode().sends() {
            self.publish_schedule_ack(generation, &msg.0);
        } else {
            tracing::info!(id = %msg.0.schedule_id, pending = self.schedule_acks.len(), "link down: schedule ack kept until the next connect");
        }
    }
}

impl Handler<MalformedSchedules> for Uplink {
    type Result = u64;

    fn handle(&mut self, _: MalformedSchedules, _ctx: &mut Context<Self>) -> u64 {
        self.malformed_schedules
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use shiki_proto::{AckResult, PROTOCOL_VERSION};

    use super::*;

    fn ack(id: &str, hash: &str) -> ScheduleAck {
        ScheduleAck {
            v: PROTOCOL_VERSION,
            schedule_id: id.to_owned(),
            hash: hash.to_owned(),
            result: AckResult::Accepted,
            reason: None,
            ts: Utc::now(),
        }
    }

    #[test]
    fn the_latest_ack_per_schedule_stays_pending_until_its_own_puback() {
        let mut p = PendingAcks::default();
        let g1 = p.push(ack("a", "h1"));
        let g2 = p.push(ack("b", "h"));
        let g3 = p.push(ack("a", "h2"));
        assert_eq!(p.len(), 2);
        // The PUBACK of the superseded ack does not remove the newer one.
        p.delivered(g1);
        let pending = p.pending();
        assert_eq!(
            pending
                .iter()
                .map(|(g, a)| (*g, a.hash.as_str()))
                .collect::<Vec<_>>(),
            vec![(g2, "h"), (g3, "h2")]
        );
        p.delivered(g3);
        p.delivered(g2);
        assert!(p.is_empty());
    }

    #[test]
    fn pending_acks_are_bounded_oldest_forgotten_first() {
        let mut p = PendingAcks::default();
        for i in 0..MAX_PENDING_ACKS + 3 {
            p.push(ack(&format!("s{i}"), "h"));
        }
        assert_eq!(p.len(), MAX_PENDING_ACKS);
        let ids: Vec<_> = p
            .pending()
            .into_iter()
            .map(|(_, a)| a.schedule_id)
            .collect();
        assert_eq!(ids.first().map(String::as_str), Some("s3"));
    }
}
