//! The faults of a campaign, drawn from a seed: the same seed, edges and round length give
//! the same plan (the processes' own timing still varies from run to run).

use std::fmt;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One fault (or, for `Desired`, one operator action) of a round, `at` after its start.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// SIGKILL of the edge (a power cut; lands in group commits and drains at random),
    /// started again after `down`.
    EdgeKill {
        edge: usize,
        at: Duration,
        down: Duration,
    },
    /// The link is cut for `cut`, comes back slow (a backlog drain over many round trips),
    /// and the edge is SIGKILLed `after` the link returned, while it drains.
    KillDuringDrain {
        edge: usize,
        at: Duration,
        cut: Duration,
        after: Duration,
    },
    /// SIGKILL of the cloud (and of its embedded broker), started again after `down`.
    CloudKill { at: Duration, down: Duration },
    /// SIGTERM of the cloud and a start (the embedded broker restarts with it).
    CloudRestart { at: Duration },
    /// An external broker (Mosquitto) stopped and started again (its persistence keeps
    /// the cloud's queued messages).
    BrokerRestart { at: Duration },
    /// The edge's link to the broker is cut for `for_` (seconds: a dropped cellular link;
    /// tens of seconds: hours of samples at one a minute).
    LinkCut {
        edge: usize,
        at: Duration,
        for_: Duration,
    },
    /// The PLC refuses connections for `for_`.
    PlcRefuses {
        edge: usize,
        at: Duration,
        for_: Duration,
    },
    /// The PLC answers every request with Modbus exception 04 for `for_`.
    PlcExceptions {
        edge: usize,
        at: Duration,
        for_: Duration,
    },
    /// The operator changes the edge's `hw_setpoint_c` to `value` through the API.
    Desired {
        edge: usize,
        at: Duration,
        value: f64,
    },
}

impl Fault {
    /// Short name, for the campaign's counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::EdgeKill { .. } => "edge-kill",
            Fault::KillDuringDrain { .. } => "edge-kill-during-drain",
            Fault::CloudKill { .. } => "cloud-kill",
            Fault::CloudRestart { .. } => "cloud-restart",
            Fault::BrokerRestart { .. } => "broker-restart",
            Fault::LinkCut { for_, .. } if *for_ >= LONG_CUT => "link-cut-long",
            Fault::LinkCut { .. } => "link-cut",
            Fault::PlcRefuses { .. } => "plc-refuses",
            Fault::PlcExceptions { .. } => "plc-exceptions",
            Fault::Desired { .. } => "desired-change",
        }
    }

    /// Whether this is a fault (not an operator action).
    pub fn is_fault(&self) -> bool {
        !matches!(self, Fault::Desired { .. })
    }

    /// When its last effect is over, from the round's start.
    pub fn ends(&self) -> Duration {
        match self {
            Fault::EdgeKill { at, down, .. } | Fault::CloudKill { at, down } => *at + *down,
            Fault::KillDuringDrain { at, cut, after, .. } => *at + *cut + *after,
            Fault::CloudRestart { at }
            | Fault::BrokerRestart { at }
            | Fault::Desired { at, .. } => *at,
            Fault::LinkCut { at, for_, .. }
            | Fault::PlcRefuses { at, for_, .. }
            | Fault::PlcExceptions { at, for_, .. } => *at + *for_,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |d: &Duration| format!("{:.1}s", d.as_secs_f64());
        match self {
            Fault::EdgeKill { edge, at, down } => {
                write!(f, "at {} SIGKILL edge {edge}, down {}", s(at), s(down))
            }
            Fault::KillDuringDrain {
                edge,
                at,
                cut,
                after,
            } => write!(
                f,
                "at {} cut edge {edge} for {}, SIGKILL it {} into the drain",
                s(at),
                s(cut),
                s(after)
            ),
            Fault::CloudKill { at, down } => {
                write!(f, "at {} SIGKILL the cloud, down {}", s(at), s(down))
            }
            Fault::CloudRestart { at } => write!(f, "at {} restart the cloud", s(at)),
            Fault::BrokerRestart { at } => write!(f, "at {} restart the broker", s(at)),
            Fault::LinkCut { edge, at, for_ } => {
                write!(f, "at {} cut edge {edge}'s link for {}", s(at), s(for_))
            }
            Fault::PlcRefuses { edge, at, for_ } => {
                write!(f, "at {} PLC of edge {edge} refuses for {}", s(at), s(for_))
            }
            Fault::PlcExceptions { edge, at, for_ } => write!(
                f,
                "at {} PLC of edge {edge} answers exceptions for {}",
                s(at),
                s(for_)
            ),
            Fault::Desired { edge, at, value } => {
                write!(
                    f,
                    "at {} set hw_setpoint_c of edge {edge} to {value}",
                    s(at)
                )
            }
        }
    }
}

/// A cut at least this long counts as a long one (hours of samples at one a minute).
pub const LONG_CUT: Duration = Duration::from_secs(10);

/// The faults of every round, from `seed`.
#[derive(Debug)]
pub struct Plan {
    rng: StdRng,
    edges: usize,
    round: Duration,
    /// Whether an external broker may be restarted (a separate draw, so plans without
    /// one stay as they were).
    broker: bool,
}

impl Plan {
    /// A plan for `edges` edges and rounds of about `round` (≥ 2 s).
    pub fn new(seed: u64, edges: usize, round: Duration) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            edges: edges.max(1),
            round: round.max(Duration::from_secs(2)),
            broker: false,
        }
    }

    /// With restarts of an external broker.
    pub fn with_broker_restarts(mut self) -> Self {
        self.broker = true;
        self
    }

    /// The next round's faults, by start time: one to three faults and at most one
    /// operator change; at most one fault of the cloud.
    pub fn round(&mut self) -> Vec<Fault> {
        let faults = self.rng.random_range(1..=3);
        let mut out = Vec::with_capacity(faults + 1);
        let mut cloud = false;
        for _ in 0..faults {
            let f = self.fault(&mut cloud);
            out.push(f);
        }
        if self.broker && self.rng.random_bool(0.2) {
            let at = self.at();
            out.push(Fault::BrokerRestart { at });
        }
        if self.rng.random_bool(0.5) {
            let edge = self.rng.random_range(0..self.edges);
            // 40.0–60.0 °C in steps of 0.5 (the point's limits).
            let value = 40.0 + f64::from(self.rng.random_range(0..=40u32)) * 0.5;
            let at = self.at();
            out.push(Fault::Desired { edge, at, value });
        }
        out.sort_by_key(start_of);
        out
    }

    fn at(&mut self) -> Duration {
        let half = self.round.as_millis() as u64 / 2;
        Duration::from_millis(self.rng.random_range(0..=half))
    }

    fn span(&mut self, min_ms: u64, max_ms: u64) -> Duration {
        Duration::from_millis(self.rng.random_range(min_ms..=max_ms))
    }

    fn fault(&mut self, cloud: &mut bool) -> Fault {
        let edge = self.rng.random_range(0..self.edges);
        let at = self.at();
        loop {
            // Weights: edge kills and cuts are the common case.
            let pick = self.rng.random_range(0..100u32);
            let fault = match pick {
                0..20 => Fault::EdgeKill {
                    edge,
                    at,
                    down: self.span(0, 2_000),
                },
                20..32 => Fault::KillDuringDrain {
                    edge,
                    at,
                    cut: self.span(2_000, 6_000),
                    after: self.span(0, 1_500),
                },
                32..40 => Fault::CloudKill {
                    at,
                    down: self.span(0, 3_000),
                },
                40..46 => Fault::CloudRestart { at },
                46..66 => Fault::LinkCut {
                    edge,
                    at,
                    for_: self.span(500, 5_000),
                },
                66..74 => Fault::LinkCut {
                    edge,
                    at,
                    for_: self.span(10_000, 25_000),
                },
                74..87 => Fault::PlcRefuses {
                    edge,
                    at,
                    for_: self.span(1_000, 8_000),
                },
                _ => Fault::PlcExceptions {
                    edge,
                    at,
                    for_: self.span(1_000, 8_000),
                },
            };
            let of_cloud = matches!(fault, Fault::CloudKill { .. } | Fault::CloudRestart { .. });
            if of_cloud && *cloud {
                continue;
            }
            *cloud |= of_cloud;
            return fault;
        }
    }
}

fn start_of(f: &Fault) -> Duration {
    match f {
        Fault::EdgeKill { at, .. }
        | Fault::KillDuringDrain { at, .. }
        | Fault::CloudKill { at, .. }
        | Fault::CloudRestart { at }
        | Fault::BrokerRestart { at }
        | Fault::LinkCut { at, .. }
        | Fault::PlcRefuses { at, .. }
        | Fault::PlcExceptions { at, .. }
        | Fault::Desired { at, .. } => *at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_plan_and_another_seed_another() {
        let rounds = |seed| {
            let mut p = Plan::new(seed, 3, Duration::from_secs(6));
            (0..20).map(|_| p.round()).collect::<Vec<_>>()
        };
        assert_eq!(rounds(7), rounds(7));
        assert_ne!(rounds(7), rounds(8));
    }

    #[test]
    fn every_round_has_a_fault_at_most_one_of_the_cloud_and_only_known_edges() {
        let mut p = Plan::new(1, 3, Duration::from_secs(6));
        let mut kinds = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let round = p.round();
            assert!(round.iter().any(Fault::is_fault), "{round:?}");
            let cloud = round
                .iter()
                .filter(|f| matches!(f, Fault::CloudKill { .. } | Fault::CloudRestart { .. }))
                .count();
            assert!(cloud <= 1, "{round:?}");
            assert!(round.windows(2).all(|w| start_of(&w[0]) <= start_of(&w[1])));
            for f in &round {
                kinds.insert(f.kind());
                if let Fault::EdgeKill { edge, .. }
                | Fault::KillDuringDrain { edge, .. }
                | Fault::LinkCut { edge, .. }
                | Fault::PlcRefuses { edge, .. }
                | Fault::PlcExceptions { edge, .. }
                | Fault::Desired { edge, .. } = f
                {
                    assert!(*edge < 3);
                }
            }
        }
        // 500 rounds draw every kind.
        assert_eq!(kinds.len(), 9, "{kinds:?}");
        assert!(
            !kinds.contains("broker-restart"),
            "no external broker, no restarts of it"
        );

        let mut p = Plan::new(1, 3, Duration::from_secs(6)).with_broker_restarts();
        let restarts = (0..100)
            .flat_map(|_| p.round())
            .filter(|f| matches!(f, Fault::BrokerRestart { .. }))
            .count();
        assert!(
            (5..=40).contains(&restarts),
            "{restarts} broker restarts in 100 rounds"
        );
    }
}
