//! Over-the-air updates of `shiki-edge` (design: docs/adr/edge-ota-trial-and-rollback.md).
//!
//! - `state.rs`: [`OtaState`], the job state machine (checks, progress, expiry, cancel).
//! - `download.rs` / `verify.rs`: the resumable `Range` download and the artifact checks.
//! - `trial.rs`: install, trial run, rollback and the trial record (run by the binary after
//!   the agent stopped), and [`trial::before_start`].
//! - `health.rs`: the `Health` actor of a run on trial.
//!
//! The [`Ota`] actor is a shell over [`OtaState`]: `jobs/notify` arrives from the Uplink as
//! [`JobsReceived`]; updates go back as [`PublishJobUpdate`]; downloads run as futures of
//! the actor; a verified artifact is handed to the composition root ([`trial::Install`]),
//! which stops the agent so the binary can install it.

pub mod download;
#[cfg(test)]
mod download_tests;
pub mod health;
pub mod state;
#[cfg(test)]
mod state_tests;
#[cfg(test)]
mod tests;
pub mod trial;
pub mod verify;

use std::time::Duration;

use actix::prelude::*;
use shiki_proto::{JobId, JobNotify, JobUpdate};
use shiki_shared::clock::SharedClock;
use tokio::sync::mpsc;

pub use state::{DownloadEnd, Effect, OtaJob, OtaRules, OtaState, Saved};
pub use trial::{Install, OtaPaths};

use download::{Fetch, Retry};
use verify::Machine;

/// `jobs/notify` from the cloud (Uplink → Ota).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct JobsReceived(pub JobNotify);

/// Publish `jobs/{job_id}/update` (Ota → Uplink).
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct PublishJobUpdate {
    pub job_id: JobId,
    pub update: JobUpdate,
}

#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Progress {
    job_id: JobId,
    received: u64,
}

#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Ended {
    job_id: JobId,
    end: DownloadEnd,
}

/// What a run on trial reports for its job (`in_progress`, step `trial`), from the trial
/// record; `None` without a readable `trying` record.
pub fn trial_update(
    paths: &OtaPaths,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<PublishJobUpdate> {
    let record = trial::read_record(paths).ok().flatten()?;
    (record.state == trial::TrialState::Trying).then(|| {
        let mut update = state::update(
            shiki_proto::JobStatus::InProgress,
            Some(shiki_proto::JobStep::Trial),
            Some(100),
            None,
            now,
        );
        update.detail = Some(format!(
            "{} runs on trial until {} (previous: {})",
            record.to, record.deadline, record.from
        ));
        PublishJobUpdate {
            job_id: record.job_id,
            update,
        }
    })
}

/// Plain settings of the Ota actor.
#[derive(Debug, Clone)]
pub struct OtaConfig {
    pub paths: OtaPaths,
    pub rules: OtaRules,
    pub health_window: Duration,
    pub retry: Retry,
}

/// Who the Ota actor talks to.
#[derive(Debug, Clone)]
pub struct OtaPeers {
    pub updates: Recipient<PublishJobUpdate>,
    /// The composition root: stops the agent and returns the install to the binary.
    pub install: mpsc::UnboundedSender<Install>,
}

/// The OTA actor.
#[derive(Debug)]
pub struct Ota {
    cfg: OtaConfig,
    peers: OtaPeers,
    clock: SharedClock,
    state: OtaState,
    client: reqwest::Client,
    download: Option<(JobId, SpawnHandle)>,
}

impl Ota {
    /// Loads the saved jobs (`jobs.json`; unreadable → logged, started empty).
    pub fn new(cfg: OtaConfig, peers: OtaPeers, clock: SharedClock) -> Self {
        let saved = match std::fs::read(cfg.paths.jobs()) {
            Ok(bytes) => serde_json::from_slice::<Saved>(&bytes).unwrap_or_else(|e| {
                tracing::error!(file = %cfg.paths.jobs().display(), error = %e, "OTA job state unreadable; starting without it");
                Saved::default()
            }),
            Err(_) => Saved::default(),
        };
        shiki_shared::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(20))
            .read_timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        Self {
            state: OtaState::new(cfg.rules.clone(), saved),
            cfg,
            peers,
            clock,
            client,
            download: None,
        }
    }

    fn apply(&mut self, effects: Vec<Effect>, ctx: &mut Context<Self>) {
        for effect in effects {
            match effect {
                Effect::Publish { job_id, update } => {
                    tracing::info!(job = %job_id, status = ?update.status, step = ?update.step, progress = ?update.progress, detail = ?update.detail, "OTA job update");
                    self.peers
                        .updates
                        .do_send(PublishJobUpdate { job_id, update });
                }
                Effect::Download(job) => self.start_download(job, ctx),
                Effect::StopDownload(job_id) => {
                    if let Some((_, handle)) = self.download.take() {
                        ctx.cancel_future(handle);
                    }
                    tracing::info!(job = %job_id, "OTA job no longer listed: download stopped");
                    let _ = std::fs::remove_file(self.cfg.paths.part(&job_id));
                }
                Effect::Install(job) => {
                    let install = Install {
                        artifact: self.cfg.paths.part(&job.job_id),
                        job_id: job.job_id,
                        from: self.cfg.rules.running_version.clone(),
                        to: job.version,
                        paths: self.cfg.paths.clone(),
                        health_window: self.cfg.health_window,
                    };
                    if self.peers.install.send(install).is_err() {
                        tracing::error!("OTA: the agent is already stopping; install dropped");
                    }
                }
                Effect::Persist => self.persist(),
            }
        }
    }

    fn persist(&self) {
        let path = self.cfg.paths.jobs();
        let result = serde_json::to_vec_pretty(&self.state.saved())
            .map_err(|e| e.to_string())
            .and_then(|b| trial::write_atomically(&path, &b).map_err(|e| e.to_string()));
        if let Err(e) = result {
            tracing::error!(file = %path.display(), error = %e, "OTA job state not saved");
        }
    }

    fn start_download(&mut self, job: OtaJob, ctx: &mut Context<Self>) {
        if let Some((_, handle)) = self.download.take() {
            ctx.cancel_future(handle);
        }
        let machine = match Machine::running() {
            Ok(m) => m,
            Err(e) => {
                let end = DownloadEnd::Failed(format!("cannot read this agent's binary: {e}"));
                let fx = self
                    .state
                    .download_ended(&job.job_id, end, self.clock.now());
                return self.apply(fx, ctx);
            }
        };
        let reserve = std::env::current_exe()
            .and_then(std::fs::metadata)
            .map_or(0, |m| m.len());
        let fetch = Fetch {
            url: job.url.clone(),
            size: job.size,
            sha256: job.sha256.clone(),
            part: self.cfg.paths.part(&job.job_id),
            machine,
            reserve: reserve + 1024 * 1024,
        };
        let (client, retry, addr, job_id) = (
            self.client.clone(),
            self.cfg.retry,
            ctx.address(),
            job.job_id.clone(),
        );
        let fut = async move {
            let mut last = u8::MAX;
            let end = download::fetch(&client, &fetch, retry, |received| {
                let pct = state::percent(received, fetch.size);
                if pct != last {
                    last = pct;
                    addr.do_send(Progress {
                        job_id: job_id.clone(),
                        received,
                    });
                }
            })
            .await;
            addr.do_send(Ended { job_id, end });
        };
        let handle = ctx.spawn(fut.into_actor(self));
        tracing::info!(job = %job.job_id, url = %job.url, size = job.size, "OTA download started");
        self.download = Some((job.job_id, handle));
    }

    /// At start: report a decided trial, then resume a saved download.
    fn recover(&mut self, ctx: &mut Context<Self>) {
        let now = self.clock.now();
        match trial::read_record(&self.cfg.paths) {
            Ok(Some(record)) => {
                if let Some((status, detail)) = record.outcome() {
                    let fx = self.state.trial_ended(record.job_id, status, detail, now);
                    self.apply(fx, ctx);
                    let _ = std::fs::remove_file(self.cfg.paths.trial());
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "OTA trial record ignored"),
        }
        let fx = self.state.resume(now);
        self.apply(fx, ctx);
    }
}

impl Actor for Ota {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.recover(ctx);
    }
}

impl Handler<crate::messages::Stop> for Ota {
    type Result = ();
    fn handle(&mut self, _: crate::messages::Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<JobsReceived> for Ota {
    type Result = ();
    fn handle(&mut self, msg: JobsReceived, ctx: &mut Context<Self>) {
        let fx = self.state.notify(msg.0.jobs, self.clock.now());
        self.apply(fx, ctx);
    }
}

impl Handler<Progress> for Ota {
    type Result = ();
    fn handle(&mut self, msg: Progress, ctx: &mut Context<Self>) {
        let fx = self
            .state
            .progress(&msg.job_id, msg.received, self.clock.now());
        self.apply(fx, ctx);
    }
}

impl Handler<Ended> for Ota {
    type Result = ();
    fn handle(&mut self, msg: Ended, ctx: &mut Context<Self>) {
        if self
            .download
            .as_ref()
            .is_some_and(|(j, _)| *j == msg.job_id)
        {
            self.download = None;
        }
        tracing::info!(job = %msg.job_id, end = ?msg.end, "OTA download ended");
        let fx = self
            .state
            .download_ended(&msg.job_id, msg.end, self.clock.now());
        self.apply(fx, ctx);
    }
}
