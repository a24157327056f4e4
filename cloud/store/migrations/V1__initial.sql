-- Shiki cloud store, schema version 1.
--
-- Schema `shiki` holds the cloud's tables: records are the store's serde JSON (the same
-- text the redb backend keeps) in a `jsonb` column, beside the key columns queries use.
-- Schema `grafana` holds the views dashboards read (docs/grafana.md): a stable surface,
-- changed only by a new migration that keeps its columns.

CREATE SCHEMA IF NOT EXISTS shiki;

-- Telemetry: one row per sample, partitioned by month of `ts` (partitions are created
-- ahead and on demand by the store, and dropped whole by `store.retention`). The primary
-- key makes one device's time range an index range scan and drops a replayed sample.
CREATE TABLE shiki.telemetry (
    device text COLLATE "C" NOT NULL,
    seq    bigint NOT NULL,
    ts     timestamptz NOT NULL,
    body   jsonb NOT NULL,
    PRIMARY KEY (device, ts, seq)
) PARTITION BY RANGE (ts);
-- Sequence order (gaps, the newest sample, de-duplication of a seq).
CREATE INDEX telemetry_device_seq ON shiki.telemetry (device, seq);

-- Hourly min/max/sum/count of each numeric (and boolean, as 0/1) point, kept in the same
-- transaction as the samples it counts: long ranges read these rows, not the samples.
CREATE TABLE shiki.telemetry_hourly (
    device text COLLATE "C" NOT NULL,
    point  text COLLATE "C" NOT NULL,
    hour   timestamptz NOT NULL,
    n      bigint NOT NULL,
    sum    double precision NOT NULL,
    min    double precision NOT NULL,
    max    double precision NOT NULL,
    PRIMARY KEY (device, point, hour)
);

CREATE TABLE shiki.events (
    device text COLLATE "C" NOT NULL,
    seq    bigint NOT NULL,
    ts     timestamptz NOT NULL,
    body   jsonb NOT NULL,
    PRIMARY KEY (device, seq)
);
CREATE INDEX events_device_ts ON shiki.events (device, ts);
CREATE INDEX events_ts ON shiki.events (ts);

CREATE TABLE shiki.history (
    device text COLLATE "C" NOT NULL,
    id     bigint NOT NULL,
    ts     timestamptz NOT NULL,
    body   jsonb NOT NULL,
    PRIMARY KEY (device, id)
);
CREATE INDEX history_device_ts ON shiki.history (device, ts);
CREATE INDEX history_ts ON shiki.history (ts);

CREATE TABLE shiki.verifications (
    device text COLLATE "C" NOT NULL,
    id     bigint NOT NULL,
    body   jsonb NOT NULL,
    PRIMARY KEY (device, id)
);

CREATE TABLE shiki.devices (
    device   text COLLATE "C" PRIMARY KEY,
    -- The customer the device belongs to (set by the device registry; NULL: none yet).
    tenant   text,
    snapshot jsonb NOT NULL
);

CREATE TABLE shiki.tokens (
    hash text COLLATE "C" PRIMARY KEY,
    body jsonb NOT NULL
);

CREATE TABLE shiki.schedules (
    device text COLLATE "C" PRIMARY KEY,
    body   jsonb NOT NULL
);

CREATE TABLE shiki.meta (
    key   text COLLATE "C" PRIMARY KEY,
    value jsonb NOT NULL
);

CREATE TABLE shiki.artifacts (
    version     text COLLATE "C" PRIMARY KEY,
    uploaded_at timestamptz NOT NULL,
    body        jsonb NOT NULL
);

CREATE TABLE shiki.jobs (
    id   text COLLATE "C" PRIMARY KEY,
    body jsonb NOT NULL
);

-- What Grafana reads. Views run with their owner's rights, so a role granted only this
-- schema (`shiki-cloud db grant-grafana ROLE`) reads these and nothing else.
CREATE SCHEMA IF NOT EXISTS grafana;

-- Numeric samples, one row per point; booleans as 0/1.
CREATE VIEW grafana.samples AS
SELECT t.ts AS "time",
       t.device,
       v.key AS point,
       CASE jsonb_typeof(v.value)
           WHEN 'number' THEN (v.value)::double precision
           ELSE CASE WHEN (v.value)::boolean THEN 1.0 ELSE 0.0 END
       END AS value
FROM shiki.telemetry t
CROSS JOIN LATERAL jsonb_each(t.body -> 'values') v
WHERE jsonb_typeof(v.value) IN ('number', 'boolean');

-- The same points per hour: for ranges where a panel's interval is an hour or more.
CREATE VIEW grafana.samples_hourly AS
SELECT hour AS "time",
       device,
       point,
       sum / n AS value,
       min,
       max,
       n AS samples
FROM shiki.telemetry_hourly;

-- Settings changes with who made them and whether they took effect (annotations).
CREATE VIEW grafana.settings_history AS
SELECT h.ts AS "time",
       h.device,
       h.body ->> 'key' AS key,
       h.body ->> 'side' AS side,
       h.body -> 'old' AS old,
       h.body -> 'new' AS new,
       CASE WHEN jsonb_typeof(h.body -> 'new') = 'number'
            THEN (h.body -> 'new')::double precision END AS new_value,
       concat_ws(':', h.body -> 'actor' ->> 'kind', h.body -> 'actor' ->> 'name') AS actor,
       h.body -> 'actor' ->> 'role' AS actor_role,
       h.body ->> 'comment' AS comment,
       (h.body ->> 'version')::bigint AS version,
       CASE
           WHEN h.body ->> 'side' <> 'desired' THEN NULL
           WHEN v.body IS NULL THEN 'none'
           ELSE v.body -> 'outcome' ->> 'state'
       END AS verification,
       v.body -> 'outcome' ->> 'reason' AS failure_reason,
       (v.body -> 'outcome' ->> 'at')::timestamptz AS verified_at
FROM shiki.history h
LEFT JOIN shiki.verifications v
       ON v.device = h.device AND v.id = (h.body ->> 'verification_id')::bigint;

-- Events (alarms, schedule transitions, PLC errors, OTA steps, ...).
CREATE VIEW grafana.events AS
SELECT e.ts AS "time",
       e.device,
       e.seq,
       e.body ->> 'kind' AS kind,
       e.body ->> 'severity' AS severity,
       e.body ->> 'message' AS message,
       e.body -> 'data' AS data
FROM shiki.events e;

-- Every device with its tenant and whether it is online now.
CREATE VIEW grafana.devices AS
SELECT d.device,
       d.tenant,
       coalesce(d.snapshot -> 'status' ->> 'state', 'unknown') AS state,
       coalesce(d.snapshot -> 'status' ->> 'state', '') = 'online' AS online,
       (d.snapshot ->> 'last_seen')::timestamptz AS last_seen,
       (d.snapshot ->> 'offline_since')::timestamptz AS offline_since,
       d.snapshot -> 'status' ->> 'software_version' AS software_version
FROM shiki.devices d;
