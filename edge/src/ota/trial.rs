//! Install with a trial run and automatic rollback (docs/adr/edge-ota-trial-and-rollback.md).
//!
//! After the agent stopped its actors and closed its store, [`install_and_supervise`] (called
//! by the binary's `main`) keeps the previous binary, writes the trial record, renames the
//! new binary over its own executable and runs it as a child in trial mode (environment
//! [`TRIAL_ENV`] = the socket the child reports health on). Healthy within the window → the
//! child is told to stop and this process `exec`s the new binary (same PID); otherwise the
//! previous binary is renamed back and `exec`ed. The process that starts next reads the
//! record ([`TrialRecord`]) and reports the job's outcome. [`before_start`] handles a
//! record left `trying` by a power loss or a dead supervisor: it rolls back.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shiki_proto::{JobId, JobStatus};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

/// Set for a build started on trial: the Unix socket it reports health on.
pub const TRIAL_ENV: &str = "SHIKI_OTA_TRIAL";
/// How long a healthy child has to stop after being told to.
const STOP_GRACE: Duration = Duration::from_secs(60);

/// Files of the OTA machinery inside `<data_dir>/ota`.
#[derive(Debug, Clone)]
pub struct OtaPaths(pub PathBuf);

impl OtaPaths {
    pub fn trial(&self) -> PathBuf {
        self.0.join("trial.json")
    }
    pub fn jobs(&self) -> PathBuf {
        self.0.join("jobs.json")
    }
    pub fn previous(&self) -> PathBuf {
        self.0.join("previous").join("shiki-edge")
    }
    pub fn socket(&self) -> PathBuf {
        self.0.join("trial.sock")
    }
    pub fn part(&self, job: &JobId) -> PathBuf {
        self.0.join(format!("{job}.part"))
    }
}

/// Where a trial is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TrialState {
    Trying,
    Healthy,
    RolledBack {
        reason: String,
    },
    /// The install could not start (the previous binary runs on).
    Failed {
        reason: String,
    },
}

/// `<data_dir>/ota/trial.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrialRecord {
    pub job_id: JobId,
    pub from: String,
    pub to: String,
    pub deadline: DateTime<Utc>,
    #[serde(flatten)]
    pub state: TrialState,
}

impl TrialRecord {
    /// The job's terminal status and detail, once the trial is decided.
    pub fn outcome(&self) -> Option<(JobStatus, Option<String>)> {
        match &self.state {
            TrialState::Trying => None,
            TrialState::Healthy => Some((
                JobStatus::Succeeded,
                Some(format!("{} runs (was {})", self.to, self.from)),
            )),
            TrialState::RolledBack { reason } => Some((
                JobStatus::RolledBack,
                Some(format!(
                    "{} rolled back to {}: {reason}",
                    self.to, self.from
                )),
            )),
            TrialState::Failed { reason } => Some((JobStatus::Failed, Some(reason.clone()))),
        }
    }
}

/// What failed around a trial.
#[derive(Debug, thiserror::Error)]
pub enum TrialError {
    #[error("OTA: cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("OTA: the trial record {path} is unreadable: {reason}")]
    Record { path: String, reason: String },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TrialError {
    let path = path.display().to_string();
    move |source| TrialError::Io { what, path, source }
}

/// Reads the trial record, if there is one.
pub fn read_record(paths: &OtaPaths) -> Result<Option<TrialRecord>, TrialError> {
    let path = paths.trial();
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| TrialError::Record {
                path: path.display().to_string(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", &path)(e)),
    }
}

/// Writes `bytes` to `path` atomically (temporary file beside it, fsync, rename).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TrialError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("sync", &tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io("rename over", path))
}

fn write_record(paths: &OtaPaths, record: &TrialRecord) -> Result<(), TrialError> {
    let bytes = serde_json::to_vec_pretty(record).map_err(|e| TrialError::Record {
        path: paths.trial().display().to_string(),
        reason: e.to_string(),
    })?;
    write_atomically(&paths.trial(), &bytes)
}

/// Copies `from` to a temporary file beside `to` (executable) and renames it over `to`:
/// `to` is at every moment either the old or the new file, even across file systems.
pub fn replace_file(from: &Path, to: &Path) -> Result<(), TrialError> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = to.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let tmp = dir.join(".shiki-edge.ota-tmp");
    std::fs::copy(from, &tmp).map_err(io("copy to", &tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
        .map_err(io("make executable", &tmp))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io("sync", &tmp))?;
    std::fs::rename(&tmp, to).map_err(io("rename over", to))
}

/// Replaces this process with `exe`, same arguments, without [`TRIAL_ENV`]. Returns only
/// when the exec failed.
pub fn exec_self(exe: &Path) -> TrialError {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    tracing::info!(exe = %exe.display(), "OTA: exec");
    let e = std::process::Command::new(exe)
        .args(args)
        .env_remove(TRIAL_ENV)
        .exec();
    io("exec", exe)(e)
}

/// What an agent must do at start-up about a trial record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeforeStart {
    /// Run normally (the Ota actor reports a decided trial).
    Run,
    /// Run on trial, reporting health on this socket.
    Trial(PathBuf),
}

/// At start-up, before the store is opened: a record still `trying` outside a trial run
/// (power loss, dead supervisor) is marked rolled back; a rolled-back or failed record
/// while this binary is not the previous version restores the previous binary and
/// `exec`s it (returns only on error).
pub fn before_start(
    paths: &OtaPaths,
    running_version: &str,
    trial_socket: Option<PathBuf>,
) -> Result<BeforeStart, TrialError> {
    let mut record = match read_record(paths) {
        Ok(Some(record)) => record,
        Ok(None) => return Ok(BeforeStart::Run),
        Err(e @ TrialError::Record { .. }) => {
            // Written atomically, so this is not a torn write; keep it for a person and run.
            let aside = paths.trial().with_extension("json.unreadable");
            tracing::error!(error = %e, aside = %aside.display(), "OTA: trial record set aside");
            std::fs::rename(paths.trial(), &aside).map_err(io("set aside", &aside))?;
            return Ok(BeforeStart::Run);
        }
        Err(e) => return Err(e),
    };
    if record.state == TrialState::Trying {
        if let Some(socket) = trial_socket {
            return Ok(BeforeStart::Trial(socket));
        }
        record.state = TrialState::RolledBack {
            reason: "the trial was interrupted (power loss, or its supervising agent died) \
                     before it proved healthy"
                .into(),
        };
        write_record(paths, &record)?;
    }
    let back_to_previous = matches!(
        record.state,
        TrialState::RolledBack { .. } | TrialState::Failed { .. }
    );
    if back_to_previous && running_version != record.from {
        tracing::warn!(running = running_version, previous = %record.from, "OTA: restoring the previous binary");
        let exe = std::env::current_exe().map_err(io("find", Path::new("own executable")))?;
        replace_file(&paths.previous(), &exe)?;
        return Err(exec_self(&exe));
    }
    Ok(BeforeStart::Run)
}

/// A verified artifact to install (what the agent returns when it stops for an install).
#[derive(Debug, Clone)]
pub struct Install {
    pub job_id: JobId,
    pub from: String,
    pub to: String,
    pub artifact: PathBuf,
    pub paths: OtaPaths,
    pub health_window: Duration,
}

/// Installs and supervises the trial, then `exec`s the new binary (healthy) or the
/// previous one. Returns only when that last `exec` (or the very first step) failed.
pub fn install_and_supervise(install: &Install) -> TrialError {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return io("find", Path::new("own executable"))(e),
    };
    let paths = &install.paths;
    let mut record = TrialRecord {
        job_id: install.job_id.clone(),
        from: install.from.clone(),
        to: install.to.clone(),
        deadline: Utc::now()
            + chrono::TimeDelta::from_std(install.health_window).unwrap_or_default(),
        state: TrialState::Trying,
    };
    let prepared = replace_file(&exe, &paths.previous())
        .and_then(|()| write_record(paths, &record))
        .and_then(|()| replace_file(&install.artifact, &exe));
    if let Err(e) = prepared {
        record.state = TrialState::Failed {
            reason: format!("install failed, {} keeps running: {e}", install.from),
        };
        if let Err(e) = write_record(paths, &record) {
            return e;
        }
        // `exe` is still the previous binary (the rename is the last step).
        return exec_self(&exe);
    }
    let _ = std::fs::remove_file(&install.artifact);
    tracing::info!(job = %install.job_id, to = %install.to, window = ?install.health_window, "OTA: new binary on trial");
    let verdict = run_trial(&exe, &paths.socket(), install.health_window);
    let _ = std::fs::remove_file(paths.socket());
    match verdict {
        Ok(()) => {
            record.state = TrialState::Healthy;
            if let Err(e) = write_record(paths, &record) {
                return e;
            }
        }
        Err(reason) => {
            tracing::error!(job = %install.job_id, %reason, "OTA: trial failed; rolling back");
            record.state = TrialState::RolledBack { reason };
            if let Err(e) =
                write_record(paths, &record).and_then(|()| replace_file(&paths.previous(), &exe))
            {
                return e;
            }
        }
    }
    exec_self(&exe)
}

/// Health reports of the child seen so far.
#[derive(Debug, Default)]
struct Seen {
    store: bool,
    broker: bool,
    plc: bool,
}

impl Seen {
    fn note(&mut self, line: &str) {
        match line {
            "store_opened" => self.store = true,
            "broker_reached" => self.broker = true,
            // Without a [plc] section the child says so at once.
            "plc_read" | "no_plc" => self.plc = true,
            _ => {}
        }
    }

    fn missing(&self) -> String {
        let mut m = Vec::new();
        if !self.store {
            m.push("store not opened");
        }
        if !self.broker {
            m.push("broker not reached");
        }
        if !self.plc {
            m.push("PLC not read");
        }
        if m.is_empty() {
            "no healthy report".into()
        } else {
            m.join(", ")
        }
    }
}

fn describe_exit(status: std::io::Result<ExitStatus>, after: Duration) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    let secs = after.as_secs_f64();
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with status {code} after {secs:.1} s"),
            (None, Some(sig)) => format!("was killed by signal {sig} after {secs:.1} s"),
            _ => format!("exited ({s}) after {secs:.1} s"),
        },
        Err(e) => format!("could not be waited for after {secs:.1} s: {e}"),
    }
}

/// Runs `exe` on trial; `Ok` when it reported healthy within `window` (and was then
/// stopped), else the reason.
fn run_trial(exe: &Path, socket: &Path, window: Duration) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the trial supervisor: {e}"))?;
    rt.block_on(supervise(exe, socket, window))
}

async fn supervise(exe: &Path, socket: &Path, window: Duration) -> Result<(), String> {
    let _ = std::fs::remove_file(socket);
    let listener = tokio::net::UnixListener::bind(socket)
        .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(TRIAL_ENV, socket)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("could not be started: {e}"))?;
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // The child's one connection: its lines in, then "stop" out.
    tokio::spawn(async move {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read).lines();
        let forward = async {
            while let Ok(Some(line)) = reader.next_line().await {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        };
        tokio::select! {
            () = forward => {}
            Ok(()) = stop_rx => { let _ = write.write_all(b"stop\n").await; }
        }
    });
    let deadline = tokio::time::sleep(window);
    tokio::pin!(deadline);
    let mut seen = Seen::default();
    let mut open = true;
    loop {
        tokio::select! {
            status = child.wait() => return Err(describe_exit(status, started.elapsed())),
            () = &mut deadline => {
                let _ = child.kill().await;
                return Err(format!("not healthy within {} s: {}", window.as_secs(), seen.missing()));
            }
            line = lines.recv(), if open => match line {
                Some(l) if l == "healthy" => break,
                Some(l) => seen.note(&l),
                None => open = false,
            },
        }
    }
    tracing::info!(after = ?started.elapsed(), "OTA: the new binary is healthy; stopping its trial run");
    let _ = stop_tx.send(());
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: TrialState) -> TrialRecord {
        TrialRecord {
            job_id: JobId::new("ota-1").expect("id"),
            from: "1.0.0".into(),
            to: "2.0.0".into(),
            deadline: Utc::now(),
            state,
        }
    }

    #[test]
    fn a_trying_record_is_a_trial_with_the_socket_and_an_interrupted_trial_otherwise() {
        let dir = tempfile::tempdir().expect("tmp");
        let paths = OtaPaths(dir.path().to_owned());
        assert_eq!(
            before_start(&paths, "1.0.0", None).expect("no record"),
            BeforeStart::Run
        );
        write_record(&paths, &record(TrialState::Trying)).expect("write");
        let socket = dir.path().join("trial.sock");
        assert_eq!(
            before_start(&paths, "2.0.0", Some(socket.clone())).expect("trial"),
            BeforeStart::Trial(socket)
        );
        // Started again without the supervisor, on the old version (already restored).
        assert_eq!(
            before_start(&paths, "1.0.0", None).expect("run"),
            BeforeStart::Run
        );
        let after = read_record(&paths)
            .expect("read")
            .expect("kept for the report");
        let (status, detail) = after.outcome().expect("decided");
        assert_eq!(status, JobStatus::RolledBack);
        assert!(detail.unwrap_or_default().contains("interrupted"));
    }

    #[test]
    fn an_unreadable_record_is_set_aside_and_the_agent_runs() {
        let dir = tempfile::tempdir().expect("tmp");
        let paths = OtaPaths(dir.path().to_owned());
        std::fs::write(paths.trial(), b"{ not json").expect("write");
        assert_eq!(
            before_start(&paths, "1.0.0", None).expect("runs"),
            BeforeStart::Run
        );
        assert!(!paths.trial().exists());
        assert!(dir.path().join("trial.json.unreadable").exists());
    }

    #[test]
    fn outcomes_name_both_versions_and_the_reason() {
        let r = record(TrialState::RolledBack {
            reason: "not healthy within 120 s: broker not reached".into(),
        });
        assert_eq!(
            r.outcome(),
            Some((
                JobStatus::RolledBack,
                Some(
                    "2.0.0 rolled back to 1.0.0: not healthy within 120 s: broker not reached"
                        .into()
                )
            ))
        );
        assert_eq!(
            record(TrialState::Healthy).outcome().map(|o| o.0),
            Some(JobStatus::Succeeded)
        );
        assert_eq!(record(TrialState::Trying).outcome(), None);
    }
}
