//! The lease state machine of one node, without I/O: which leases it holds and until when by
//! its own monotonic clock, and what each round should do (give up, claim, release).
//!
//! A round (see [`super::Coordinator`]):
//! 1. [`Leases::expire`]: leases whose local expiry passed are lost before any I/O (a node
//!    paused past its lease stops its devices before it touches anything);
//! 2. renewal in the database; [`Leases::renewed`] drops what was not renewed;
//! 3. [`Leases::plan`] on a snapshot of nodes and leases: release the shards another live
//!    node is preferred for, claim the free or expired shards this node is preferred for;
//! 4. [`Leases::claimed`] / [`Leases::released`] as the database answers.
//!
//! A lease's local expiry is counted from the instant its claim or renewal was *sent*, so
//! it never outlives the database's (which counts from when the statement ran).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::shards::preferred;
use crate::store::{ClusterSnapshot, Fence, JOBS_LEASE};

/// One lease held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    epoch: i64,
    /// By this node's monotonic clock.
    until: Instant,
}

/// What a round should do after renewal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Shards to hand over (stop their devices first, then release).
    pub release: Vec<Fence>,
    /// Shards to claim.
    pub claim: Vec<u32>,
}

/// The leases of one node.
#[derive(Debug)]
pub struct Leases {
    node: String,
    shards: u32,
    ttl: Duration,
    held: BTreeMap<u32, Held>,
}

impl Leases {
    pub fn new(node: &str, shards: u32, ttl: Duration) -> Self {
        Self {
            node: node.to_owned(),
            shards,
            ttl,
            held: BTreeMap::new(),
        }
    }

    /// Every lease held, as fences.
    pub fn held(&self) -> Vec<Fence> {
        self.held
            .iter()
            .map(|(shard, h)| Fence {
                shard: *shard,
                epoch: h.epoch,
            })
            .collect()
    }

    pub fn holds(&self, shard: u32) -> bool {
        self.held.contains_key(&shard)
    }

    /// When the lease of `shard` runs out by this node's clock (`None`: not held).
    pub fn valid_until(&self, shard: u32) -> Option<Instant> {
        self.held.get(&shard).map(|h| h.until)
    }

    /// Drops the leases whose local expiry is past at `now`; they are lost.
    pub fn expire(&mut self, now: Instant) -> Vec<Fence> {
        let lost: Vec<Fence> = self
            .held
            .iter()
            .filter(|(_, h)| h.until <= now)
            .map(|(shard, h)| Fence {
                shard: *shard,
                epoch: h.epoch,
            })
            .collect();
        for f in &lost {
            self.held.remove(&f.shard);
        }
        lost
    }

    /// The database renewed `renewed` (of the leases held when the renewal was sent at
    /// `sent`); the others are lost and returned.
    pub fn renewed(&mut self, sent: Instant, renewed: &[u32]) -> Vec<Fence> {
        let mut lost = Vec::new();
        for (shard, h) in &mut self.held {
            if renewed.contains(shard) {
                h.until = h.until.max(sent + self.ttl);
            } else {
                lost.push(Fence {
                    shard: *shard,
                    epoch: h.epoch,
                });
            }
        }
        for f in &lost {
            self.held.remove(&f.shard);
        }
        lost
    }

    /// A claim sent at `sent` succeeded with `epoch`.
    pub fn claimed(&mut self, shard: u32, epoch: i64, sent: Instant) {
        self.held.insert(
            shard,
            Held {
                epoch,
                until: sent + self.ttl,
            },
        );
    }

    /// The lease of `shard` was given up.
    pub fn released(&mut self, shard: u32) {
        self.held.remove(&shard);
    }

    /// The live nodes of a snapshot (seen within the lease time), this one always among
    /// them, sorted.
    pub fn live_nodes<'s>(&'s self, snap: &'s ClusterSnapshot) -> Vec<&'s str> {
        let mut live: Vec<&str> = snap
            .nodes
            .iter()
            .filter(|n| snap.is_live(n, self.ttl))
            .map(|n| n.node_id.as_str())
            .collect();
        if !live.contains(&self.node.as_str()) {
            live.push(&self.node);
        }
        live.sort_unstable();
        live.dedup();
        live
    }

    /// What to release and claim, given the database's view: the shards', and the jobs
    /// lease ([`JOBS_LEASE`]), which goes to its preferred live node like a shard.
    pub fn plan(&self, snap: &ClusterSnapshot) -> Plan {
        let live = self.live_nodes(snap);
        let mut plan = Plan::default();
        for shard in (0..self.shards).chain([JOBS_LEASE]) {
            let mine = preferred(shard, &live) == Some(self.node.as_str());
            match (self.held.get(&shard), mine) {
                (Some(h), false) => plan.release.push(Fence {
                    shard,
                    epoch: h.epoch,
                }),
                (None, true) if free(snap, shard, snap.now) => plan.claim.push(shard),
                _ => {}
            }
        }
        plan
    }
}

/// Whether the lease of `shard` may be claimed at the database's `now`.
fn free(snap: &ClusterSnapshot, shard: u32, now: DateTime<Utc>) -> bool {
    snap.leases
        .iter()
        .find(|l| l.shard == shard)
        .is_some_and(|l| l.owner.is_none() || l.expires_at <= now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LeaseRow, NodeRow};

    const TTL: Duration = Duration::from_secs(10);

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z")
            .expect("valid")
            .with_timezone(&Utc)
    }

    fn node(id: &str, seen_secs_ago: i64) -> NodeRow {
        NodeRow {
            node_id: id.into(),
            api_url: format!("http://{id}"),
            started_at: t0() - chrono::Duration::hours(1),
            last_seen: t0() - chrono::Duration::seconds(seen_secs_ago),
            devices: 0,
            leases: 0,
        }
    }

    fn lease(shard: u32, owner: Option<&str>, epoch: i64, expires_in: i64) -> LeaseRow {
        LeaseRow {
            shard,
            owner: owner.map(str::to_owned),
            epoch,
            expires_at: t0() + chrono::Duration::seconds(expires_in),
        }
    }

    fn snap(nodes: Vec<NodeRow>, leases: Vec<LeaseRow>) -> ClusterSnapshot {
        ClusterSnapshot {
            now: t0(),
            nodes,
            leases,
        }
    }

    #[test]
    fn a_lone_node_claims_every_free_shard() {
        let l = Leases::new("a", 4, TTL);
        let s = snap(
            vec![node("a", 0)],
            (0..4).map(|i| lease(i, None, 0, -100)).collect(),
        );
        assert_eq!(l.plan(&s).claim, vec![0, 1, 2, 3]);
        assert!(l.plan(&s).release.is_empty());
    }

    #[test]
    fn the_jobs_lease_goes_to_one_live_node_and_moves_when_it_dies() {
        let rows = |owner: Option<&str>, expires_in| {
            let mut l: Vec<LeaseRow> = (0..4).map(|i| lease(i, None, 0, -100)).collect();
            l.push(lease(JOBS_LEASE, owner, 3, expires_in));
            l
        };
        let nodes = ["a", "b", "c"];
        let free = snap(nodes.iter().map(|n| node(n, 0)).collect(), rows(None, -100));
        let claiming: Vec<&str> = nodes
            .iter()
            .copied()
            .filter(|n| {
                Leases::new(n, 4, TTL)
                    .plan(&free)
                    .claim
                    .contains(&JOBS_LEASE)
            })
            .collect();
        assert_eq!(
            claiming.len(),
            1,
            "exactly one node claims the jobs: {claiming:?}"
        );
        let holder = claiming[0];
        // The holder keeps it while it is preferred.
        let mut held = Leases::new(holder, 4, TTL);
        held.claimed(JOBS_LEASE, 3, Instant::now());
        assert!(held.holds(JOBS_LEASE));
        assert!(
            !held
                .plan(&free)
                .release
                .iter()
                .any(|f| f.shard == JOBS_LEASE)
        );
        // The holder dies: once its lease expired, one of the others claims it.
        let survivors: Vec<&str> = nodes.iter().copied().filter(|n| *n != holder).collect();
        let dead = snap(
            nodes
                .iter()
                .map(|n| node(n, if *n == holder { 30 } else { 0 }))
                .collect(),
            rows(Some(holder), 0),
        );
        let next: Vec<&str> = survivors
            .iter()
            .copied()
            .filter(|n| {
                Leases::new(n, 4, TTL)
                    .plan(&dead)
                    .claim
                    .contains(&JOBS_LEASE)
            })
            .collect();
        assert_eq!(next.len(), 1, "one survivor takes the jobs: {next:?}");
    }

    #[test]
    fn a_shard_held_by_a_live_node_is_not_claimed_until_its_lease_expires() {
        let l = Leases::new("a", 1, TTL);
        // Only "a" is live ("b" last seen 30 s ago), but b's lease runs 5 s more.
        let held = snap(
            vec![node("a", 0), node("b", 30)],
            vec![lease(0, Some("b"), 7, 5)],
        );
        assert!(l.plan(&held).claim.is_empty());
        let expired = snap(
            vec![node("a", 0), node("b", 30)],
            vec![lease(0, Some("b"), 7, 0)],
        );
        assert_eq!(l.plan(&expired).claim, vec![0]);
    }

    #[test]
    fn a_node_releases_what_a_joining_node_is_preferred_for_and_keeps_the_rest() {
        let shards = 32;
        let mut a = Leases::new("a", shards, TTL);
        let now = Instant::now();
        for s in 0..shards {
            a.claimed(s, 1, now);
        }
        let s = snap(
            vec![node("a", 0), node("b", 0)],
            (0..shards).map(|i| lease(i, Some("a"), 1, 8)).collect(),
        );
        let plan = a.plan(&s);
        let to_b: Vec<u32> = (0..shards)
            .filter(|&i| preferred(i, &["a", "b"]) == Some("b"))
            .collect();
        assert_eq!(
            plan.release.iter().map(|f| f.shard).collect::<Vec<_>>(),
            to_b
        );
        assert!(!to_b.is_empty() && to_b.len() < shards as usize);
        assert!(plan.claim.is_empty());
    }

    #[test]
    fn a_lease_not_renewed_in_time_is_lost_before_any_io() {
        let mut l = Leases::new("a", 2, TTL);
        let start = Instant::now();
        l.claimed(0, 3, start);
        l.claimed(1, 4, start + Duration::from_secs(5));
        // A pause (SIGSTOP) of 12 s: shard 0's lease ran out locally, shard 1's not yet.
        let lost = l.expire(start + Duration::from_secs(12));
        assert_eq!(lost, vec![Fence { shard: 0, epoch: 3 }]);
        assert!(!l.holds(0) && l.holds(1));
        assert_eq!(l.expire(start + Duration::from_secs(14)), vec![]);
        assert_eq!(
            l.expire(start + Duration::from_secs(15)),
            vec![Fence { shard: 1, epoch: 4 }]
        );
    }

    #[test]
    fn renewal_extends_from_when_it_was_sent_and_what_was_not_renewed_is_lost() {
        let mut l = Leases::new("a", 3, TTL);
        let start = Instant::now();
        for s in 0..3 {
            l.claimed(s, 1, start);
        }
        let sent = start + Duration::from_secs(2);
        let lost = l.renewed(sent, &[0, 2]);
        assert_eq!(lost, vec![Fence { shard: 1, epoch: 1 }]);
        assert_eq!(l.valid_until(0), Some(sent + TTL));
        assert_eq!(l.valid_until(1), None);
        // A late answer never shortens a lease.
        l.renewed(start, &[0, 2]);
        assert_eq!(l.valid_until(0), Some(sent + TTL));
    }

    #[test]
    fn a_dead_nodes_shards_go_to_the_live_ones_and_only_those_move() {
        // Three nodes held their preferred shards; c dies (last seen 20 s ago, leases
        // expired). a's plan claims exactly the shards of c that a is now preferred for.
        let shards = 48;
        let all = ["a", "b", "c"];
        let mut a = Leases::new("a", shards, TTL);
        let now = Instant::now();
        let mut leases = vec![];
        for s in 0..shards {
            let owner = preferred(s, &all).expect("nodes");
            if owner == "a" {
                a.claimed(s, 1, now);
            }
            let expires = if owner == "c" { -10 } else { 8 };
            leases.push(lease(s, Some(owner), 1, expires));
        }
        let s = snap(vec![node("a", 0), node("b", 1), node("c", 20)], leases);
        let plan = a.plan(&s);
        assert!(plan.release.is_empty(), "a keeps its own: {plan:?}");
        let expected: Vec<u32> = (0..shards)
            .filter(|&i| preferred(i, &all) == Some("c") && preferred(i, &["a", "b"]) == Some("a"))
            .collect();
        assert_eq!(plan.claim, expected);
        assert!(!expected.is_empty());
    }

    #[test]
    fn this_node_counts_as_live_before_its_first_heartbeat() {
        let l = Leases::new("new", 1, TTL);
        let s = snap(vec![], vec![lease(0, None, 0, -1)]);
        assert_eq!(l.live_nodes(&s), vec!["new"]);
        assert_eq!(l.plan(&s).claim, vec![0]);
    }
}
