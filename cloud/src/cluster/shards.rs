//! Which shard a device belongs to, and which live node a shard prefers: rendezvous
//! (highest random weight) hashing, so that a node joining or leaving moves only the shards
//! it wins or held, ≈ 1/N of them.

use shiki_proto::DeviceId;

/// FNV-1a, 64 bits: stable across versions and platforms (a device's shard must never
/// change under a running fleet), and plenty for spreading names.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    // FNV's low bits mix poorly for short inputs: finish with a 64-bit avalanche.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The shard of `device` among `shards`.
pub fn shard_of(device: &DeviceId, shards: u32) -> u32 {
    (fnv1a(&[device.as_str().as_bytes()]) % u64::from(shards.max(1))) as u32
}

/// The node among `nodes` that `shard` prefers (`None`: no nodes).
pub fn preferred<'a>(shard: u32, nodes: &[&'a str]) -> Option<&'a str> {
    nodes
        .iter()
        .copied()
        .max_by_key(|n| (fnv1a(&[n.as_bytes(), &shard.to_le_bytes()]), *n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(shards: u32, nodes: &[&str]) -> Vec<String> {
        (0..shards)
            .map(|s| preferred(s, nodes).unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn a_devices_shard_is_stable_and_devices_spread_over_the_shards() {
        let d = DeviceId::new("chiller-042").expect("valid id");
        assert_eq!(shard_of(&d, 64), shard_of(&d, 64));
        let mut counts = [0u32; 16];
        for i in 0..16_000 {
            let d = DeviceId::new(format!("gw-{i}")).expect("valid id");
            counts[shard_of(&d, 16) as usize] += 1;
        }
        // 1,000 expected per shard.
        assert!(counts.iter().all(|c| (850..1150).contains(c)), "{counts:?}");
    }

    #[test]
    fn shards_spread_evenly_over_nodes() {
        let nodes = ["node-a", "node-b", "node-c"];
        let owners = owners(64, &nodes);
        for n in nodes {
            let mine = owners.iter().filter(|o| *o == n).count();
            assert!((13..=30).contains(&mine), "{n} prefers {mine} of 64");
        }
    }

    #[test]
    fn a_join_moves_only_the_shards_the_new_node_wins() {
        let before = owners(256, &["node-a", "node-b", "node-c"]);
        let after = owners(256, &["node-a", "node-b", "node-c", "node-d"]);
        let moved: Vec<usize> = (0..256).filter(|&s| before[s] != after[s]).collect();
        assert!(moved.iter().all(|&s| after[s] == "node-d"));
        // ≈ 1/4 of 256 = 64.
        assert!((40..=90).contains(&moved.len()), "{} moved", moved.len());
    }

    #[test]
    fn a_leave_moves_only_the_shards_the_leaving_node_held() {
        let before = owners(256, &["node-a", "node-b", "node-c"]);
        let after = owners(256, &["node-a", "node-c"]);
        for s in 0..256 {
            if before[s] != "node-b" {
                assert_eq!(before[s], after[s], "shard {s} moved");
            } else {
                assert_ne!(after[s], "node-b");
            }
        }
    }

    #[test]
    fn no_nodes_no_owner() {
        assert_eq!(preferred(3, &[]), None);
    }
}
