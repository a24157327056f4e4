//! The OTA job state machine: no I/O, no clock of its own (every input carries `now`), so it
//! is tested synchronously (`state_tests.rs`).
//!
//! One job runs at a time. Transitions of the active job:
//!
//! | phase | input | next | effects |
//! |---|---|---|---|
//! | — | `notify` lists a new Ota job, checks pass | `Downloading` | `Download`, `in_progress/downloading 0` |
//! | — | signature, keys, downgrade refused | — | `rejected` with the reason |
//! | — | version already running | — | `succeeded` ("already installed") |
//! | `Downloading` | `progress` (+10 points or 30 s) | same | `in_progress/downloading n` |
//! | `Downloading` | `Ready` | `Installing` | `in_progress/installing 100`, `Install` |
//! | `Downloading` | `UrlExpired` | `WaitingForUrl` | `in_progress/url_expired` |
//! | `WaitingForUrl` | `notify` lists the job (fresh URL) | `Downloading` | `Download` (resumes) |
//! | `Downloading`, `WaitingForUrl` | `notify` no longer lists the job | — | `StopDownload` (cancel) |
//! | any | `Failed` / `Rejected` | — | `failed` / `rejected` with the reason |
//! | — | `trial_ended` (after a restart) | — | `succeeded`, `rolled_back` or `failed` |
//!
//! Terminal updates are kept (the newest [`MAX_FINISHED`]): a `jobs/notify` that lists a
//! finished job gets its terminal update again instead of a second run. Every change asks
//! for `Persist`, so a reboot resumes the active job ([`Saved`]).

use std::cmp::Ordering;
use std::collections::VecDeque;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use shiki_proto::{
    JobDocument, JobId, JobOperation, JobStatus, JobStep, JobUpdate, PROTOCOL_VERSION,
};
use shiki_shared::ota::{Manifest, TrustedKeys};

/// Most terminal updates remembered.
pub const MAX_FINISHED: usize = 32;
/// Progress is reported when it advanced by this many points…
pub const PROGRESS_STEP: u8 = 10;
/// …or when this long passed since the last report.
pub const PROGRESS_INTERVAL: TimeDelta = TimeDelta::seconds(30);

/// One OTA job as the edge keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtaJob {
    pub job_id: JobId,
    pub version: String,
    pub url: String,
    pub size: u64,
    pub sha256: String,
    pub signature: String,
    pub allow_downgrade: bool,
}

impl OtaJob {
    /// The Ota job of `doc`; `None` for another operation.
    pub fn from_document(doc: &JobDocument) -> Option<Self> {
        match &doc.operation {
            JobOperation::Ota {
                software_version,
                url,
                size,
                sha256,
                signature,
                allow_downgrade,
                ..
            } => Some(Self {
                job_id: doc.job_id.clone(),
                version: software_version.clone(),
                url: url.clone(),
                size: *size,
                sha256: sha256.clone(),
                signature: signature.clone(),
                allow_downgrade: *allow_downgrade,
            }),
            JobOperation::Unknown => None,
        }
    }

    fn manifest(&self) -> Manifest {
        Manifest {
            version: self.version.clone(),
            sha256: self.sha256.clone(),
            size: self.size,
        }
    }
}

/// Where the active job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Downloading,
    /// The URL expired; waiting for a `jobs/notify` with a fresh one.
    WaitingForUrl,
    /// Downloaded and verified; the agent stops to install it.
    Installing,
}

/// The active job and its phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Active {
    pub job: OtaJob,
    pub phase: Phase,
}

/// A job's terminal update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finished {
    pub job_id: JobId,
    pub update: JobUpdate,
}

/// What survives a restart (`<data_dir>/ota/jobs.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub active: Option<Active>,
    pub finished: Vec<Finished>,
}

/// How a download (with its checks) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadEnd {
    /// The file is complete, its SHA-256 and size match and it runs on this machine.
    Ready,
    /// The server refused the URL (HTTP 403): it expired.
    UrlExpired,
    /// Could not download (disk space, server error, retries exhausted).
    Failed(String),
    /// The bytes are not what was signed, or not an executable for this machine.
    Rejected(String),
}

/// What the actor must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Publish {
        job_id: JobId,
        update: JobUpdate,
    },
    /// Download (resuming a partial file) and check `job`'s artifact.
    Download(OtaJob),
    /// Stop the download of this job and delete its partial file.
    StopDownload(JobId),
    /// Stop the agent and install the verified artifact of `job`.
    Install(OtaJob),
    /// Save [`OtaState::saved`].
    Persist,
}

/// What the state machine checks jobs against.
#[derive(Debug, Clone)]
pub struct OtaRules {
    /// This build's version.
    pub running_version: String,
    pub keys: TrustedKeys,
    /// False when the agent runs in-process (`shiki_edge::run`) and cannot replace and
    /// restart its binary: every job is rejected.
    pub installs: bool,
}

/// The last progress report of the active job.
#[derive(Debug, Clone, Copy)]
struct Reported {
    progress: u8,
    at: DateTime<Utc>,
}

/// The OTA state machine.
#[derive(Debug)]
pub struct OtaState {
    rules: OtaRules,
    active: Option<Active>,
    finished: VecDeque<Finished>,
    last_report: Option<Reported>,
    /// The jobs of the last `jobs/notify`, to start the next one when the active job ends.
    listed: Vec<JobDocument>,
}

/// A JobUpdate at `now`.
pub fn update(
    status: JobStatus,
    step: Option<JobStep>,
    progress: Option<u8>,
    detail: Option<String>,
    now: DateTime<Utc>,
) -> JobUpdate {
    JobUpdate {
        v: PROTOCOL_VERSION,
        status,
        detail,
        step,
        progress,
        ts: now,
    }
}

fn in_progress(step: JobStep, progress: u8, now: DateTime<Utc>) -> JobUpdate {
    update(JobStatus::InProgress, Some(step), Some(progress), None, now)
}

impl OtaState {
    pub fn new(rules: OtaRules, saved: Saved) -> Self {
        Self {
            rules,
            active: saved.active,
            finished: saved.finished.into(),
            last_report: None,
            listed: Vec::new(),
        }
    }

    /// The active job, if any.
    pub fn active(&self) -> Option<&Active> {
        self.active.as_ref()
    }

    /// What to save for a restart.
    pub fn saved(&self) -> Saved {
        Saved {
            active: self.active.clone(),
            finished: self.finished.iter().cloned().collect(),
        }
    }

    /// At start-up: resume the download of a saved active job (an interrupted install is
    /// downloaded, that is checked, again: the partial file is complete).
    pub fn resume(&mut self, now: DateTime<Utc>) -> Vec<Effect> {
        let Some(active) = &mut self.active else {
            return Vec::new();
        };
        if active.phase == Phase::WaitingForUrl {
            return Vec::new();
        }
        let job = active.job.clone();
        self.begin_download(job, 0, now)
    }

    /// Makes `job` the active download (reported at `progress`).
    fn begin_download(&mut self, job: OtaJob, progress: u8, now: DateTime<Utc>) -> Vec<Effect> {
        self.active = Some(Active {
            job: job.clone(),
            phase: Phase::Downloading,
        });
        self.last_report = Some(Reported { progress, at: now });
        vec![
            Effect::Persist,
            Effect::Publish {
                job_id: job.job_id.clone(),
                update: in_progress(JobStep::Downloading, progress, now),
            },
            Effect::Download(job),
        ]
    }

    /// The outcome of a trial run, found in the trial record after a restart.
    pub fn trial_ended(
        &mut self,
        job_id: JobId,
        status: JobStatus,
        detail: Option<String>,
        now: DateTime<Utc>,
    ) -> Vec<Effect> {
        self.finish(job_id, update(status, None, None, detail, now))
    }

    /// A `jobs/notify`: the device's pending jobs.
    pub fn notify(&mut self, jobs: Vec<JobDocument>, now: DateTime<Utc>) -> Vec<Effect> {
        self.listed = jobs;
        let mut fx = Vec::new();
        if let Some(active) = &self.active
            && active.phase != Phase::Installing
            && !self.listed.iter().any(|j| j.job_id == active.job.job_id)
        {
            let job_id = active.job.job_id.clone();
            self.active = None;
            fx.extend([Effect::StopDownload(job_id), Effect::Persist]);
        }
        for doc in self.listed.clone() {
            if let Some(f) = self.finished.iter().find(|f| f.job_id == doc.job_id) {
                fx.push(Effect::Publish {
                    job_id: f.job_id.clone(),
                    update: f.update.clone(),
                });
                continue;
            }
            fx.extend(self.consider(&doc, now));
        }
        fx
    }

    /// Starts `doc` when no job is active, or resumes the active one with a fresh URL.
    fn consider(&mut self, doc: &JobDocument, now: DateTime<Utc>) -> Vec<Effect> {
        let Some(job) = OtaJob::from_document(doc) else {
            return self.finish(
                doc.job_id.clone(),
                update(
                    JobStatus::Rejected,
                    None,
                    None,
                    Some(
                        "unknown job operation: this build of shiki-edge runs ota jobs only".into(),
                    ),
                    now,
                ),
            );
        };
        match &mut self.active {
            Some(active) if active.job.job_id == job.job_id => {
                if active.phase != Phase::WaitingForUrl {
                    return Vec::new();
                }
                let resumed = OtaJob {
                    url: job.url,
                    ..active.job.clone()
                };
                let progress = self.last_report.map_or(0, |r| r.progress);
                self.begin_download(resumed, progress, now)
            }
            // Another job runs: this one waits for a later notify (or the end of that one).
            Some(_) => Vec::new(),
            None => self.start(job, now),
        }
    }

    fn start(&mut self, job: OtaJob, now: DateTime<Utc>) -> Vec<Effect> {
        if let Err((status, reason)) = self.check(&job) {
            return self.finish(job.job_id, update(status, None, None, Some(reason), now));
        }
        self.begin_download(job, 0, now)
    }

    /// Why `job` is not run: `rejected` with the reason, or `succeeded` when its version
    /// already runs.
    fn check(&self, job: &OtaJob) -> Result<(), (JobStatus, String)> {
        let running = &self.rules.running_version;
        let refuse = |reason: String| (JobStatus::Rejected, reason);
        if !self.rules.installs {
            return Err(refuse(
                "this agent runs in-process (shiki_edge::run) and cannot replace its \
                 binary: run the shiki-edge binary to install updates"
                    .into(),
            ));
        }
        if self.rules.keys.is_empty() {
            return Err(refuse(
                "no OTA release keys are configured on this gateway: set [ota] \
                 public_keys to the release keys' ota.pub"
                    .into(),
            ));
        }
        self.rules
            .keys
            .verify(&job.manifest(), &job.signature)
            .map_err(|e| refuse(e.to_string()))?;
        match compare_versions(&job.version, running) {
            Ordering::Equal => Err((
                JobStatus::Succeeded,
                format!("version {running} is already installed"),
            )),
            Ordering::Less if !job.allow_downgrade => Err(refuse(format!(
                "downgrade from {running} to {} refused: the job does not allow downgrades",
                job.version
            ))),
            _ => Ok(()),
        }
    }

    /// `received` bytes of the active job's artifact are on disk.
    pub fn progress(&mut self, job_id: &JobId, received: u64, now: DateTime<Utc>) -> Vec<Effect> {
        let Some(active) = &self.active else {
            return Vec::new();
        };
        if &active.job.job_id != job_id || active.phase != Phase::Downloading {
            return Vec::new();
        }
        let pct = percent(received, active.job.size);
        let due = match self.last_report {
            None => true,
            Some(last) => {
                pct >= last.progress.saturating_add(PROGRESS_STEP)
                    || (pct > last.progress && now - last.at >= PROGRESS_INTERVAL)
            }
        };
        if !due {
            return Vec::new();
        }
        self.last_report = Some(Reported {
            progress: pct,
            at: now,
        });
        vec![Effect::Publish {
            job_id: job_id.clone(),
            update: in_progress(JobStep::Downloading, pct, now),
        }]
    }

    /// The download of `job_id` (with its checks) ended.
    pub fn download_ended(
        &mut self,
        job_id: &JobId,
        end: DownloadEnd,
        now: DateTime<Utc>,
    ) -> Vec<Effect> {
        let Some(active) = &mut self.active else {
            return Vec::new();
        };
        if &active.job.job_id != job_id || active.phase != Phase::Downloading {
            return Vec::new();
        }
        match end {
            DownloadEnd::Ready => {
                active.phase = Phase::Installing;
                let job = active.job.clone();
                vec![
                    Effect::Persist,
                    Effect::Publish {
                        job_id: job_id.clone(),
                        update: in_progress(JobStep::Installing, 100, now),
                    },
                    Effect::Install(job),
                ]
            }
            DownloadEnd::UrlExpired => {
                active.phase = Phase::WaitingForUrl;
                let progress = self.last_report.map_or(0, |r| r.progress);
                let mut u = in_progress(JobStep::UrlExpired, progress, now);
                u.detail = Some(
                    "the download URL expired (HTTP 403): send the job again with a fresh URL"
                        .into(),
                );
                vec![
                    Effect::Persist,
                    Effect::Publish {
                        job_id: job_id.clone(),
                        update: u,
                    },
                ]
            }
            DownloadEnd::Failed(reason) => self.finish(
                job_id.clone(),
                update(JobStatus::Failed, None, None, Some(reason), now),
            ),
            DownloadEnd::Rejected(reason) => self.finish(
                job_id.clone(),
                update(JobStatus::Rejected, None, None, Some(reason), now),
            ),
        }
    }

    /// Records a terminal update, publishes it and starts the next listed job.
    fn finish(&mut self, job_id: JobId, update: JobUpdate) -> Vec<Effect> {
        if self.active.as_ref().is_some_and(|a| a.job.job_id == job_id) {
            self.active = None;
        }
        self.finished.retain(|f| f.job_id != job_id);
        self.finished.push_back(Finished {
            job_id: job_id.clone(),
            update: update.clone(),
        });
        while self.finished.len() > MAX_FINISHED {
            self.finished.pop_front();
        }
        let mut fx = vec![Effect::Persist, Effect::Publish { job_id, update }];
        if self.active.is_none() {
            let now = fx_time(&fx);
            for doc in self.listed.clone() {
                if self.active.is_some() {
                    break;
                }
                if !self.finished.iter().any(|f| f.job_id == doc.job_id) {
                    fx.extend(self.consider(&doc, now));
                }
            }
        }
        fx
    }
}

/// The timestamp of the update in `fx` (every `finish` starts with one).
fn fx_time(fx: &[Effect]) -> DateTime<Utc> {
    fx.iter()
        .find_map(|e| match e {
            Effect::Publish { update, .. } => Some(update.ts),
            _ => None,
        })
        .unwrap_or_default()
}

/// `received` of `size` in whole percent (0–100).
pub fn percent(received: u64, size: u64) -> u8 {
    if size == 0 {
        return 100;
    }
    u8::try_from((u128::from(received.min(size)) * 100 / u128::from(size)).min(100)).unwrap_or(100)
}

/// Compares dotted versions number by number (`1.10.0` > `1.9.2`; missing parts are 0);
/// a pre-release (`-rc1`) is below its release; equal numbers with different suffixes
/// compare as text. Parts that are not numbers compare as text.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> (Vec<&str>, Option<&str>) {
        let v = v.trim().trim_start_matches('v');
        let (core, pre) = match v.find(['-', '+']) {
            Some(i) => (&v[..i], Some(&v[i + 1..])),
            None => (v, None),
        };
        (core.split('.').collect(), pre)
    }
    let ((ca, pa), (cb, pb)) = (split(a), split(b));
    for i in 0..ca.len().max(cb.len()) {
        let (x, y) = (
            ca.get(i).copied().unwrap_or("0"),
            cb.get(i).copied().unwrap_or("0"),
        );
        let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    match (pa, pb) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => x.cmp(y),
    }
}
