-- Shiki cloud store, schema version 4: the OTA jobs of a cluster have one driver
-- (ADR docs/adr/cluster-ota-jobs.md).

-- The jobs lease: a row of shard_leases beside the shards' (2147483647, far above any
-- `cluster.shards`), claimed, renewed and released like them. Its holder runs the jobs;
-- every job change it stores checks the row's epoch in the same transaction.
INSERT INTO shiki.shard_leases (shard) VALUES (2147483647) ON CONFLICT DO NOTHING;
