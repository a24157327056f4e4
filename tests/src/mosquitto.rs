//! A Mosquitto broker the test starts with its own config: TLS with client certificates,
//! the certificate CN as user name, and an ACL file; or plain and anonymous.

use std::path::Path;
use std::time::Duration;

use crate::pki::CertFiles;
use crate::stack::strip_ansi;
use crate::{Child, free_port, wait_for};

/// A running Mosquitto (killed on drop).
#[derive(Debug)]
pub struct Mosquitto {
    pub child: Child,
    pub port: u16,
    tls: bool,
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
             use_identity_as_username true\n",
            acl = acl.display(),
            ca = ca.display(),
            cert = server.cert.display(),
            key = server.key.display(),
        );
        Self::start(dir, &settings, true).await
    }

    /// Starts `mosquitto` on a free loopback port, plain MQTT, any client allowed (with
    /// persistent sessions kept in memory, as the ingest's acknowledgement after commit
    /// needs).
    pub async fn start_plain(dir: &Path) -> anyhow::Result<Self> {
        Self::start(dir, "allow_anonymous true\n", false).await
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
                     persistence false\n\
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
            let ready = wait_for("mosquitto to start", Duration::from_secs(10), || {
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
            .await?;
            match ready {
                Ok(()) => return Ok(Self { child, port, tls }),
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
}
