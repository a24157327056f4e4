//! A Mosquitto broker the test starts with its own config: TLS with client certificates,
//! the certificate CN as user name, and an ACL file; TLS with a password file and an ACL
//! file; or plain and anonymous. [`TwoDevices`] checks that the broker keeps one device off
//! another's topics, whichever way the devices authenticate.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::ota::{ReleaseKeys, copy_binary};
use crate::pki::CertFiles;
use crate::probe::MqttProbe;
use crate::stack::strip_ansi;
use crate::{Api, Child, free_port, wait_for};

/// A running Mosquitto (killed on drop).
#[derive(Debug)]
pub struct Mosquitto {
    pub child: Child,
    pub port: u16,
    tls: bool,
    /// Its configuration file and directory, to start it again ([`Mosquitto::restart`]).
    conf: std::path::PathBuf,
    dir: std::path::PathBuf,
    starts: u32,
}

impl Mosquitto {
    /// Starts `mosquitto` on a free loopback port with a TLS listener that requires a client
    /// certificate signed by `ca`, uses its CN as the user name and applies `acl`.
    /// Mosquitto cannot bind port 0: on a port clash it retries with another port.
    pub async fn start_tls(
        dir: &Path,
        ca: &Path,
        server: &CertFiles,
        acl: &Path,
    ) -> anyhow::Result<Self> {
        let settings = format!(
            "allow_anonymous false\n\
             acl_file {acl}\n\
             cafile {ca}\n\
             certfile {cert}\n\
             keyfile {key}\n\
             require_certificate true\n\
             use_identity_as_username true\n\
             persistence false\n",
            acl = acl.display(),
            ca = ca.display(),
            cert = server.cert.display(),
            key = server.key.display(),
        );
        Self::start(dir, &settings, true).await
    }

    /// Starts `mosquitto` on a free loopback port with a TLS listener (server certificate
    /// only) where clients log in with a user name and password from `passwords` (written
    /// by `mosquitto_passwd`), and applies `acl`.
    pub async fn start_tls_passwords(
        dir: &Path,
        server: &CertFiles,
        passwords: &Path,
        acl: &Path,
    ) -> anyhow::Result<Self> {
        let settings = format!(
            "allow_anonymous false\n\
             password_file {passwords}\n\
             acl_file {acl}\n\
             certfile {cert}\n\
             keyfile {key}\n\
             require_certificate false\n\
             persistence false\n",
            passwords = passwords.display(),
            acl = acl.display(),
            cert = server.cert.display(),
            key = server.key.display(),
        );
        Self::start(dir, &settings, true).await
    }

    /// Starts `mosquitto` on a free loopback port, plain MQTT, any client allowed (with
    /// persistent sessions kept in memory, as the ingest's acknowledgement after commit
    /// needs).
    pub async fn start_plain(dir: &Path) -> anyhow::Result<Self> {
        Self::start(dir, "allow_anonymous true\npersistence false\n", false).await
    }

    /// Starts `mosquitto` on a free loopback port, plain MQTT, any client allowed, with
    /// persistence in `dir`: what it holds for persistent sessions (the cloud's queued QoS 1
    /// messages) survives [`Mosquitto::restart`], as with `persistence true` in production.
    pub async fn start_persistent(dir: &Path) -> anyhow::Result<Self> {
        let settings = format!(
            "allow_anonymous true\npersistence true\npersistence_location {}/\n",
            dir.display()
        );
        Self::start(dir, &settings, false).await
    }

    /// SIGTERM (Mosquitto saves its persistence file) and a start on the same port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.child.terminate()?;
        self.starts += 1;
        let conf = self.conf.display().to_string();
        let mut child = Child::spawn(
            &format!("mosquitto-run-{}", self.starts),
            Path::new("mosquitto"),
            &["-c", &conf],
            &[],
            &self.dir,
        )?;
        let ready = running(&mut child).await?;
        if let Err(out) = ready {
            anyhow::bail!("mosquitto did not start again:\n{out}");
        }
        self.child = child;
        Ok(())
    }

    /// Starts `mosquitto` with `settings` for its one listener.
    async fn start(dir: &Path, settings: &str, tls: bool) -> anyhow::Result<Self> {
        let mut last = String::new();
        for attempt in 0..5 {
            let port = free_port()?;
            let conf = dir.join(format!("mosquitto-{attempt}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "# written by the Shiki end-to-end tests\n\
                     user root\n\
                     per_listener_settings false\n\
                     log_dest stderr\n\
                     log_type all\n\
                     connection_messages true\n\
                     message_size_limit 131072\n\
                     listener {port} 127.0.0.1\n\
                     {settings}"
                ),
            )?;
            let conf_s = conf.display().to_string();
            let mut child = Child::spawn(
                &format!("mosquitto-{attempt}"),
                Path::new("mosquitto"),
                &["-c", &conf_s],
                &[],
                dir,
            )?;
            let ready = running(&mut child).await?;
            match ready {
                Ok(()) => {
                    return Ok(Self {
                        child,
                        port,
                        tls,
                        conf,
                        dir: dir.to_owned(),
                        starts: 0,
                    });
                }
                Err(out) if out.contains("in use") => last = out,
                Err(out) => anyhow::bail!("mosquitto exited:\n{out}"),
            }
        }
        anyhow::bail!("mosquitto found no free port:\n{last}")
    }

    /// `mqtts://127.0.0.1:PORT` (TLS) or `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The lines of the broker's log that record a PUBLISH it refused (Mosquitto logs them
    /// only at `log_type debug`, which the test broker has).
    pub fn denied_publishes(&self) -> Vec<String> {
        strip_ansi(&self.child.output())
            .lines()
            .filter(|l| l.contains("Denied PUBLISH"))
            .map(str::to_owned)
            .collect()
    }
}

/// Telemetry `seq` and event `seq` of the forged batches: far beyond anything a real edge
/// reaches in a test, so a forged sample cannot hide among (or be deduplicated against)
/// the victim's own.
const FORGED_SEQ: u64 = 1_000_001;
/// The chilled-water setpoint of the forged reported state (no test sets it).
const FORGED_SETPOINT: f64 = 11.7;
/// The setpoint the cloud asks of the victim, and (the marker) of the intruder.
const VICTIM_SETPOINT: f64 = 9.5;
const INTRUDER_SETPOINT: f64 = 8.0;
/// The version of the OTA job sent to the victim.
const RELEASE_VERSION: &str = "9.9.9";

const TELEMETRY_EXAMPLE: &str = include_str!("../../proto/examples/telemetry.json");
const EVENTS_EXAMPLE: &str = include_str!("../../proto/examples/events.json");
const REPORTED_EXAMPLE: &str = include_str!("../../proto/examples/shadow-reported.json");
const CATALOG_EXAMPLE: &str = include_str!("../../proto/examples/catalog.json");
const SHADOW_GET_EXAMPLE: &str = include_str!("../../proto/examples/shadow-get.json");

/// Two devices on one broker, seen through the cloud's API (issue #18 against an external
/// broker): device B (the victim) runs a real edge; device A (the intruder) is a probe
/// connected with A's own identity (certificate or password). `b_watch` is a second
/// connection with B's identity, beside B's edge, that shows what reaches B's command
/// topics.
#[derive(Debug)]
pub struct TwoDevices<'a> {
    pub api: &'a Api,
    pub a_id: &'a str,
    pub a: &'a MqttProbe,
    pub b_id: &'a str,
    pub b_watch: &'a MqttProbe,
    /// B's PLC simulator.
    pub b_plc: SocketAddr,
    /// A release key the cloud trusts (`[ota] public_keys`) and B's edge does not, so the
    /// OTA job sent to B is refused there without a download.
    pub release_keys: &'a ReleaseKeys,
    /// Where the release artifact is written.
    pub dir: &'a Path,
}

impl TwoDevices<'_> {
    fn topic(device: &str, channel: &str) -> String {
        format!("shiki/v1/{device}/{channel}")
    }

    /// The whole check against `broker`: both known, A's forgeries stored nothing for B and
    /// Mosquitto logged each refused publish, and none of B's commands reached A.
    pub async fn check_isolation(&self, broker: &Mosquitto) -> anyhow::Result<()> {
        self.register().await?;
        let forged = self.a_cannot_publish_for_b().await?;
        let denied = broker.denied_publishes();
        for topic in &forged {
            anyhow::ensure!(
                denied
                    .iter()
                    .any(|l| l.contains(&format!("from {} ", self.a_id)) && l.contains(topic)),
                "mosquitto logs the refused publish on {topic}:\n{}",
                broker.child.output()
            );
        }
        self.a_cannot_read_b_commands().await
    }

    /// A makes itself known to the cloud with its own catalog (so that a desired change
    /// can be made for A later), and B's edge is up: known, with a catalog and telemetry.
    pub async fn register(&self) -> anyhow::Result<()> {
        self.api
            .wait_device_ready(self.b_id, Duration::from_secs(30))
            .await?;
        self.a
            .publish(
                &Self::topic(self.a_id, "catalog"),
                CATALOG_EXAMPLE.as_bytes().to_vec(),
            )
            .await?;
        wait_for(
            &format!("{} known with its catalog", self.a_id),
            Duration::from_secs(10),
            || async { (!self.api.device(self.a_id).await?["catalog"].is_null()).then_some(()) },
        )
        .await
    }

    /// A publishes telemetry, events and reported state on B's topics, then its own
    /// telemetry over the same connection. Once A's own batch is stored, the forgeries were
    /// handled before it (the broker passes one client's messages on in order, the cloud
    /// stores each network read in order and routes each message to its device's mailbox
    /// before it stores the next read): nothing of them may be stored for B, nor show in B's
    /// shadow. Returns the topics A tried.
    pub async fn a_cannot_publish_for_b(&self) -> anyhow::Result<Vec<String>> {
        let (api, a, b) = (self.api, self.a_id, self.b_id);
        let mut telemetry: Value = serde_json::from_str(TELEMETRY_EXAMPLE)?;
        for (i, s) in sample_list(&mut telemetry, "samples")?
            .iter_mut()
            .enumerate()
        {
            s["seq"] = json!(FORGED_SEQ + i as u64);
        }
        let mut events: Value = serde_json::from_str(EVENTS_EXAMPLE)?;
        for (i, e) in sample_list(&mut events, "events")?.iter_mut().enumerate() {
            e["seq"] = json!(FORGED_SEQ + i as u64);
        }
        let mut reported: Value = serde_json::from_str(REPORTED_EXAMPLE)?;
        reported["state"]["reported"] = json!({ "chw_setpoint_c": FORGED_SETPOINT });
        reported["timestamp"] = json!(chrono::Utc::now().to_rfc3339());
        reported["clientToken"] = json!(format!("forged-by-{a}"));
        let forgeries = [
            (Self::topic(b, "telemetry"), telemetry),
            (Self::topic(b, "events"), events),
            (Self::topic(b, "shadow/reported"), reported),
        ];
        for (topic, payload) in &forgeries {
            self.a.publish(topic, serde_json::to_vec(payload)?).await?;
        }
        // The marker, and the positive control: the same kind of message on A's own topic,
        // over the same connection, is stored.
        self.a
            .publish(
                &Self::topic(a, "telemetry"),
                TELEMETRY_EXAMPLE.as_bytes().to_vec(),
            )
            .await?;
        wait_for(
            &format!("{a}'s own telemetry (seq 1041, 1042) stored"),
            Duration::from_secs(10),
            || async { (api.telemetry_seqs(a).await == [1041, 1042]).then_some(()) },
        )
        .await?;

        let b_seqs = api.telemetry_seqs(b).await;
        anyhow::ensure!(
            !b_seqs.is_empty(),
            "{b}'s own telemetry should be stored (the edge runs)"
        );
        anyhow::ensure!(
            b_seqs.iter().all(|s| *s < FORGED_SEQ),
            "{a}'s forged telemetry was stored for {b}: {b_seqs:?}"
        );
        let forged_events: Vec<Value> = api
            .events(b)
            .await
            .into_iter()
            .filter(|e| e["seq"].as_u64().is_some_and(|s| s >= FORGED_SEQ))
            .collect();
        anyhow::ensure!(
            forged_events.is_empty(),
            "{a}'s forged events were stored for {b}: {forged_events:?}"
        );
        // The view comes from B's actor, whose mailbox had the forged report before it.
        let view = api
            .device(b)
            .await
            .ok_or_else(|| anyhow::anyhow!("{b} unknown to the cloud"))?;
        anyhow::ensure!(
            view["reported"]["chw_setpoint_c"] != json!(FORGED_SETPOINT),
            "{a}'s forged reported state reached {b}'s shadow: {view}"
        );
        let forged_history: Vec<Value> = api
            .history(b)
            .await
            .into_iter()
            .filter(|h| h["side"] == "reported" && h["new"] == json!(FORGED_SETPOINT))
            .collect();
        anyhow::ensure!(
            forged_history.is_empty(),
            "{a}'s forged reported state is in {b}'s history: {forged_history:?}"
        );
        Ok(forgeries.into_iter().map(|(t, _)| t).collect())
    }

    /// A subscribes to B's command topics (exactly and with wildcards). The cloud sends B a
    /// delta (a desired change that B's edge writes to its PLC and the cloud verifies), a
    /// shadow document (answering a `shadow/get` under B's identity), a schedule and an OTA
    /// job; each reaches B's watcher. Then the cloud sends A a delta of its own, which A
    /// receives through the same subscriptions: by then anything of B's the broker let
    /// through would have reached A before it (one connection from the cloud, one queue to
    /// A). A must have received nothing of B's.
    pub async fn a_cannot_read_b_commands(&self) -> anyhow::Result<()> {
        let (api, a, b) = (self.api, self.a_id, self.b_id);
        let b_commands = [
            "shadow/delta",
            "shadow/document",
            "schedule/set",
            "jobs/notify",
        ];
        for channel in b_commands {
            self.b_watch.subscribe(&Self::topic(b, channel)).await?;
        }
        let spying = [
            Self::topic(b, "shadow/delta"),
            Self::topic(b, "shadow/document"),
            Self::topic(b, "schedule/set"),
            Self::topic(b, "jobs/notify"),
            Self::topic(b, "#"),
            "shiki/v1/+/shadow/delta".to_owned(),
            "shiki/v1/+/schedule/set".to_owned(),
            "shiki/v1/#".to_owned(),
        ];
        for filter in &spying {
            self.a.subscribe(filter).await?;
        }

        // A delta for B, applied by B's edge and verified by the cloud.
        let (status, body) = api
            .patch_desired(
                b,
                json!({ "chw_setpoint_c": VICTIM_SETPOINT }),
                "for B only",
            )
            .await?;
        anyhow::ensure!(status == 200, "PATCH {b} desired: {status} {body}");
        let version = body["version"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("PATCH {b} desired answered no version: {body}"))?;
        let raw = (VICTIM_SETPOINT * 10.0).round() as u16;
        wait_for(
            &format!("{b}'s PLC register 40002 = {raw}"),
            Duration::from_secs(30),
            || async {
                (crate::read_holding(self.b_plc, 1, 1).await.ok()? == vec![raw]).then_some(())
            },
        )
        .await?;
        api.wait_verified(b, "chw_setpoint_c", version, Duration::from_secs(30))
            .await?;
        // A shadow document for B.
        self.b_watch
            .publish(
                &Self::topic(b, "shadow/get"),
                SHADOW_GET_EXAMPLE.as_bytes().to_vec(),
            )
            .await?;
        // A schedule for B.
        let (status, body) = api.put_schedule(b, None, &constant_schedule()).await?;
        anyhow::ensure!(
            matches!(status, 200 | 202),
            "PUT {b} schedule: {status} {body}"
        );
        // An OTA job for B.
        let build = copy_binary(
            Path::new("/bin/false"),
            &self.dir.join("release"),
            "shiki-edge",
        )?;
        let signature = self.release_keys.sign(&build, RELEASE_VERSION)?;
        let (status, body) = api
            .put_artifact(RELEASE_VERSION, std::fs::read(&build)?, &signature)
            .await?;
        anyhow::ensure!(status == 201, "PUT artifact: {status} {body}");
        api.create_job(RELEASE_VERSION, &[b]).await?;
        for channel in b_commands {
            let topic = Self::topic(b, channel);
            wait_for(
                &format!("{topic} at {b}'s watcher"),
                Duration::from_secs(10),
                || async {
                    self.b_watch
                        .messages()
                        .iter()
                        .any(|(t, _)| *t == topic)
                        .then_some(())
                },
            )
            .await?;
        }

        // The marker: a delta for A.
        let (status, body) = api
            .patch_desired(a, json!({ "chw_setpoint_c": INTRUDER_SETPOINT }), "for A")
            .await?;
        anyhow::ensure!(status == 200, "PATCH {a} desired: {status} {body}");
        let own = Self::topic(a, "shadow/delta");
        wait_for(
            &format!("{own} at {a}"),
            Duration::from_secs(10),
            || async {
                self.a
                    .messages()
                    .iter()
                    .any(|(t, _)| *t == own)
                    .then_some(())
            },
        )
        .await?;
        let leaked: Vec<String> = self
            .a
            .messages()
            .into_iter()
            .map(|(t, _)| t)
            .filter(|t| !t.starts_with(&format!("shiki/v1/{a}/")))
            .collect();
        anyhow::ensure!(
            leaked.is_empty(),
            "{a} subscribed to {spying:?} and received {b}'s (or another's) messages: {leaked:?}"
        );
        Ok(())
    }
}

/// The array `key` of a golden example.
fn sample_list<'v>(v: &'v mut Value, key: &str) -> anyhow::Result<&'v mut Vec<Value>> {
    v[key]
        .as_array_mut()
        .ok_or_else(|| anyhow::anyhow!("the example has no array {key:?}"))
}

/// A schedule valid today and tomorrow (Asia/Tokyo) holding 9.5 °C all day, the setpoint
/// the victim already has.
fn constant_schedule() -> Value {
    let tokyo = chrono::FixedOffset::east_opt(9 * 3600).expect("UTC+9");
    let today = chrono::Utc::now().with_timezone(&tokyo).date_naive();
    json!({
        "id": "e2e-victim",
        "timezone": "Asia/Tokyo",
        "valid_from": today.to_string(),
        "valid_to": (today + chrono::Duration::days(1)).to_string(),
        "defaults": { "chw_setpoint_c": VICTIM_SETPOINT },
        "profiles": { "day": [{ "time": "00:00", "settings": { "chw_setpoint_c": VICTIM_SETPOINT } }] },
        "seasons": [{ "name": "all-year", "from": "01-01", "to": "12-31",
                      "weekday": "day", "saturday": "day", "sunday": "day" }]
    })
}

/// Waits until `child` (a Mosquitto) says it is running: `Err` with its output when it
/// exited instead.
async fn running(child: &mut Child) -> anyhow::Result<Result<(), String>> {
    wait_for("mosquitto to start", Duration::from_secs(10), || {
        let running = child.is_running();
        let out = strip_ansi(&child.output());
        async move {
            if out.contains(" running") {
                Some(Ok(()))
            } else if !running {
                Some(Err(out))
            } else {
                None
            }
        }
    })
    .await
}
