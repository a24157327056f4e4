-- Shiki cloud store, schema version 2: the device registry (who may use the embedded
-- broker, with which password hash, for which customer).

CREATE TABLE shiki.registry (
    device text COLLATE "C" PRIMARY KEY,
    body   jsonb NOT NULL
);

-- The tenant now comes from the registry (same columns as in version 1).
CREATE OR REPLACE VIEW grafana.devices AS
SELECT d.device,
       coalesce(r.body ->> 'tenant', d.tenant) AS tenant,
       coalesce(d.snapshot -> 'status' ->> 'state', 'unknown') AS state,
       coalesce(d.snapshot -> 'status' ->> 'state', '') = 'online' AS online,
       (d.snapshot ->> 'last_seen')::timestamptz AS last_seen,
       (d.snapshot ->> 'offline_since')::timestamptz AS offline_since,
       d.snapshot -> 'status' ->> 'software_version' AS software_version
FROM shiki.devices d
LEFT JOIN shiki.registry r ON r.device = d.device;
