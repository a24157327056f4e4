-- Shiki cloud store, schema version 3: several shiki-cloud processes share one fleet
-- (ADR docs/adr/cluster-leases.md).

-- The nodes of a cluster: each writes its row at every lease round; a node whose
-- `last_seen` is older than the lease time is dead to the others.
CREATE TABLE shiki.cluster_nodes (
    node_id    text COLLATE "C" PRIMARY KEY,
    api_url    text NOT NULL,
    started_at timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    devices    integer NOT NULL DEFAULT 0,
    leases     integer NOT NULL DEFAULT 0
);

-- One lease per shard of the fleet's devices. A node claims a free or expired lease with a
-- conditional UPDATE that bumps `epoch` (the fencing token) and renews it while it holds
-- it; writes that depend on ownership check the epoch in their own transaction.
CREATE TABLE shiki.shard_leases (
    shard      integer PRIMARY KEY,
    owner      text COLLATE "C",
    epoch      bigint NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL DEFAULT '-infinity'
);

-- History and verification ids: each process takes blocks of 1024 (unique across nodes).
CREATE SEQUENCE shiki.record_ids INCREMENT BY 1024 MINVALUE 1;
SELECT setval('shiki.record_ids',
              coalesce(greatest((SELECT max(id) FROM shiki.history),
                                (SELECT max(id) FROM shiki.verifications)), 0) + 1,
              false);
