//! `[cluster]`: this process as one node of several sharing a fleet on PostgreSQL and an
//! external broker (ADR `docs/adr/cluster-leases.md`).

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// One node of a cluster (`[cluster]`, or `shiki-cloud serve --node-id`). Unset: a single
/// process owns every device.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's name, unique in the cluster (letters, digits, `-`, `_`, `.`).
    pub node_id: String,
    /// Devices are spread over this many shards (leases); the same on every node, fixed for
    /// the cluster's life. More shards than nodes × 4 spread devices evenly.
    #[serde(default = "default_shards")]
    pub shards: u32,
    /// A lease not renewed for this long is free for another node: the longest a dead
    /// node's devices wait for a new owner (plus one `renew_every`).
    #[serde(default = "default_lease_ttl", with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How often a node renews its leases, writes its heartbeat and rebalances.
    #[serde(default = "default_renew_every", with = "humantime_serde")]
    pub renew_every: Duration,
    /// The base URL other nodes reach this node's API at (they forward requests for its
    /// devices, and for the OTA jobs when it drives them). Unset: `http://{api.listen as
    /// bound}`; never `api.public_url`, which in a cluster is the address in front of every
    /// node (the gateways' download URLs live under it).
    #[serde(default)]
    pub api_url: Option<String>,
}

fn default_shards() -> u32 {
    64
}

fn default_lease_ttl() -> Duration {
    Duration::from_secs(10)
}

fn default_renew_every() -> Duration {
    Duration::from_secs(2)
}

impl ClusterConfig {
    /// A node named `node_id` with the defaults.
    pub fn node(node_id: &str) -> Self {
        Self {
            node_id: node_id.to_owned(),
            shards: default_shards(),
            lease_ttl: default_lease_ttl(),
            renew_every: default_renew_every(),
            api_url: None,
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let id = &self.node_id;
        if id.is_empty()
            || id.len() > 64
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ConfigError::Invalid {
                key: "cluster.node_id",
                reason: format!(
                    "{id:?} is not a node name: use 1 to 64 letters, digits, '-', '_' or '.'"
                ),
            });
        }
        if self.shards == 0 || self.shards > 4096 {
            return Err(ConfigError::Invalid {
                key: "cluster.shards",
                reason: "must be between 1 and 4096".into(),
            });
        }
        if self.renew_every.is_zero() || self.renew_every * 3 > self.lease_ttl {
            return Err(ConfigError::Invalid {
                key: "cluster.renew_every",
                reason: format!(
                    "must be above zero and at most a third of cluster.lease_ttl ({:?}), so \
                     that one slow round does not lose the leases",
                    self.lease_ttl
                ),
            });
        }
        Ok(())
    }
}
