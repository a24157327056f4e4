//! `/metrics` in the Prometheus text exposition format (version 0.0.4): a `# HELP` and a
//! `# TYPE` line before each family, counters named `*_total`, label values escaped.

use std::fmt::Write as _;

use super::{MetricsSnapshot, stats::ApiStats};

/// Content type of the text exposition format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders the backend's figures and the API's own counters.
pub(crate) fn render(m: &MetricsSnapshot, api: &ApiStats) -> String {
    let mut out = Out(String::with_capacity(4096));
    devices_and_ingest(&mut out, m);
    verifications_and_store(&mut out, m);
    api_counters(&mut out, api);
    out.0
}

fn devices_and_ingest(out: &mut Out, m: &MetricsSnapshot) {
    out.single(
        "shiki_devices",
        "gauge",
        "Devices known to the cloud.",
        m.devices as f64,
    );
    out.single(
        "shiki_devices_online",
        "gauge",
        "Devices whose status is online.",
        m.devices_online as f64,
    );

    out.family(
        "shiki_ingest_messages_total",
        "counter",
        "MQTT messages accepted by ingest, by channel.",
    );
    for (channel, n) in &m.ingest_messages_total {
        out.sample(
            "shiki_ingest_messages_total",
            &[("channel", channel)],
            *n as f64,
        );
    }
    out.single(
        "shiki_ingest_samples_total",
        "counter",
        "Telemetry samples stored after de-duplication.",
        m.ingest_samples_total as f64,
    );
    out.single(
        "shiki_ingest_messages_per_second",
        "gauge",
        "Messages accepted per second over the last few seconds.",
        m.ingest_rate_per_second,
    );
    out.single(
        "shiki_ingest_dedup_dropped_total",
        "counter",
        "Samples and events dropped as duplicates of a stored (device, seq).",
        m.dedup_dropped_total as f64,
    );
    out.single(
        "shiki_ingest_malformed_dropped_total",
        "counter",
        "Messages dropped as undecodable or with an invalid topic or device id.",
        m.malformed_dropped_total as f64,
    );
}

fn verifications_and_store(out: &mut Out, m: &MetricsSnapshot) {
    out.family(
        "shiki_verifications_total",
        "counter",
        "Finished verifications of desired changes, by outcome.",
    );
    for (outcome, n) in &m.verifications_total {
        out.sample(
            "shiki_verifications_total",
            &[("outcome", outcome.as_str())],
            *n as f64,
        );
    }
    out.single(
        "shiki_verifications_pending",
        "gauge",
        "Verifications still waiting for a matching report.",
        m.verifications_pending as f64,
    );

    out.family(
        "shiki_store_commit_seconds",
        "summary",
        "Latency of store group commits.",
    );
    for (q, secs) in &m.store_commit.quantiles {
        out.sample(
            "shiki_store_commit_seconds",
            &[("quantile", &fmt_f64(*q))],
            *secs,
        );
    }
    out.sample(
        "shiki_store_commit_seconds_sum",
        &[],
        m.store_commit.sum_seconds,
    );
    out.sample(
        "shiki_store_commit_seconds_count",
        &[],
        m.store_commit.count as f64,
    );

    out.single(
        "shiki_store_commit_failures_total",
        "counter",
        "Store group commits that failed; their writes were not stored.",
        m.store_commit_failures_total as f64,
    );
    out.single(
        "shiki_store_quarantined_rows_total",
        "counter",
        "Staged telemetry rows that did not decode, moved to the telemetry_quarantine table \
         (their samples are not readable).",
        m.store_quarantined_rows_total as f64,
    );
    out.single(
        "shiki_store_fenced_total",
        "counter",
        "Submissions of device actors refused because their shard's lease had passed to \
         another cluster node (nothing of them was stored).",
        m.store_fenced_total as f64,
    );
    out.single(
        "shiki_cluster_leases",
        "gauge",
        "Shard leases this cluster node holds (0 outside a cluster).",
        m.cluster_leases as f64,
    );
    out.family(
        "shiki_mqtt_connections_refused_total",
        "counter",
        "Device connections the embedded broker refused (CONNACK 5), by reason.",
    );
    for (reason, n) in &m.mqtt_connections_refused_total {
        out.sample(
            "shiki_mqtt_connections_refused_total",
            &[("reason", reason)],
            *n as f64,
        );
    }
    out.single(
        "shiki_mqtt_connections_accepted_total",
        "counter",
        "Device connections the embedded broker accepted.",
        m.mqtt_connections_accepted_total as f64,
    );
    out.single(
        "shiki_mqtt_publishes_refused_total",
        "counter",
        "Device connections closed for publishing outside the device's own topics.",
        m.mqtt_publishes_refused_total as f64,
    );
    out.single(
        "shiki_mqtt_subscriptions_refused_total",
        "counter",
        "Subscription filters refused: outside the subscribing device's own topics.",
        m.mqtt_subscriptions_refused_total as f64,
    );
    out.single(
        "shiki_mqtt_devices_connected",
        "gauge",
        "Devices connected to the embedded broker now.",
        m.mqtt_devices_connected as f64,
    );
    out.single(
        "shiki_ingest_unstored_total",
        "counter",
        "Ingested MQTT messages whose store commit failed (acknowledged on receipt: lost; \
         acknowledged after the commit: left for the broker to redeliver).",
        m.ingest_unstored_total as f64,
    );
    out.single(
        "shiki_ingest_implausible_time_total",
        "counter",
        "Telemetry samples stamped with a time no set gateway clock shows (before any release, \
         e.g. 1970 after an RTC reset, or over an hour ahead of the cloud); stored all the same, \
         the device is named in the log. Fix the gateway's NTP and RTC.",
        m.ingest_implausible_time_total as f64,
    );
}

fn api_counters(out: &mut Out, api: &ApiStats) {
    out.family(
        "shiki_api_responses_total",
        "counter",
        "Admin API responses by status class.",
    );
    for (class, n) in api.responses() {
        out.sample("shiki_api_responses_total", &[("class", class)], n as f64);
    }
    out.single(
        "shiki_api_auth_failures_total",
        "counter",
        "Admin API requests refused for a missing or invalid token.",
        api.auth_failures() as f64,
    );
    out.single(
        "shiki_api_auth_rate_limited_total",
        "counter",
        "Admin API requests refused (429) because their address was locked out after \
         repeated failed authentications.",
        api.auth_rate_limited_total() as f64,
    );
    out.single(
        "shiki_api_auth_lockouts_total",
        "counter",
        "Addresses locked out after repeated failed authentications.",
        api.auth_lockouts_total() as f64,
    );
}

struct Out(String);

impl Out {
    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.0, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape_label(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {}", fmt_f64(value));
    }
}

fn fmt_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        v.to_string()
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_and_labels_follow_the_exposition_format() {
        assert_eq!(fmt_f64(f64::INFINITY), "+Inf");
        assert_eq!(fmt_f64(3.0), "3");
        assert_eq!(fmt_f64(0.0004), "0.0004");
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
